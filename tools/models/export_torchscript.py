#!/usr/bin/python3
"""Writes a TorchScript model folder: a model folder's encoder traced to model.pt.

    /usr/bin/python3 tools/models/export_torchscript.py --model MODEL_DIR --out OUT_DIR

Loads MODEL_DIR's weights into the independent PyTorch implementation of reference_models.py
(BERT, RoBERTa / XLM-RoBERTa or JinaBERT v2; nothing shared with sluice's C++ encoder), traces
it with torch.jit.trace and writes OUT_DIR (replaced) holding:

- model.pt: forward(input_ids, attention_mask), both int64 [batch, tokens], returning the tuple
  (last_hidden_state [batch, tokens, hidden], last_hidden_state[:, 0]) — the shape of a Hugging
  Face model traced with torchscript=True, whose first element is what sluice pools;
- every other file of MODEL_DIR except model.safetensors and onnx/ (config.json, tokenizer,
  sentence-transformers files), so pooling, normalisation and lengths are the folder's.

The trace is checked on a second batch of another shape (torch.jit.trace's check_inputs), so a
length baked into the graph fails here rather than in sluice.
"""

import argparse
import os
import shutil

import torch
from torch import nn

from reference_models import load_model


class Traceable(nn.Module):
    """(input_ids, attention_mask) -> (last_hidden_state, first token's hidden state)."""

    def __init__(self, model, inputs):
        super().__init__()
        self.model = model
        self.takes_types = "token_type_ids" in inputs

    def forward(self, input_ids, attention_mask):
        if self.takes_types:
            hidden = self.model(input_ids, attention_mask, torch.zeros_like(input_ids))
        else:
            hidden = self.model(input_ids, attention_mask)
        return hidden, hidden[:, 0]


def example(pad, rows, length, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (rows, length), generator=g)
    mask = torch.ones(rows, length, dtype=torch.int64)
    mask[-1, length // 2:] = 0
    ids[mask == 0] = pad
    return ids, mask


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a model folder with config.json and model.safetensors")
    ap.add_argument("--out", required=True, help="the TorchScript folder to write (replaced)")
    args = ap.parse_args()

    model, config, inputs = load_model(args.model)
    pad = config.get("pad_token_id", 0)
    module = Traceable(model, inputs).eval()
    with torch.no_grad():
        traced = torch.jit.trace(module, example(pad, 2, 7, 1), check_inputs=[example(pad, 3, 12, 2)])

    out = os.path.abspath(args.out)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.model, tmp, ignore=shutil.ignore_patterns("model.safetensors", "onnx"))
    traced.save(os.path.join(tmp, "model.pt"))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"wrote {out}/model.pt (traced from {args.model}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
