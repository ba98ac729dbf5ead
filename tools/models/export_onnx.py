#!/usr/bin/python3
"""Exports model folders to ONNX for the independent reference (transformers.js / onnxruntime).

    /usr/bin/python3 tools/models/export_onnx.py MODEL_DIR [MODEL_DIR ...]

Reads MODEL_DIR/config.json and MODEL_DIR/model.safetensors (F32, F16 or BF16; F16/BF16 are
widened to F32 exactly), builds them into the matching PyTorch model of reference_models.py
(BERT, RoBERTa / XLM-RoBERTa, or JinaBERT v2 in either layout; written after the published
modeling code, sharing nothing with sluice's C++ encoder) and writes MODEL_DIR/onnx/model.onnx,
the layout transformers.js loads: inputs input_ids, attention_mask (and token_type_ids except
for RoBERTa), output last_hidden_state, dynamic batch and sequence axes, opset 14.

After exporting, the script checks that the ONNX graph kept its dynamic shapes: it cannot run
ONNX itself (Debian has no onnxruntime for Python), so tests/data/reference/make_references.sh
compares a sample of onnxruntime's embeddings with this PyTorch model's (check_reference.py).
"""

import argparse
import os

import torch

from reference_models import load_model


def export(model_dir):
    model, config, inputs = load_model(model_dir)
    out_dir = os.path.join(model_dir, "onnx")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "model.onnx")
    # Two rows of different lengths, the second one padded with the model's padding id.
    pad = config.get("pad_token_id", 0)
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, pad]], dtype=torch.int64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.int64)
    args = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    axes = {0: "batch_size", 1: "sequence_length"}
    dynamic = {name: axes for name in inputs + ["last_hidden_state"]}
    with torch.no_grad():
        torch.onnx.export(model, tuple(args[n] for n in inputs), out, input_names=inputs,
                          output_names=["last_hidden_state"], dynamic_axes=dynamic,
                          opset_version=14, do_constant_folding=True)
    print(f"wrote {out} ({', '.join(inputs)})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dirs", nargs="+")
    args = ap.parse_args()
    torch.manual_seed(0)
    for d in args.model_dirs:
        export(d)


if __name__ == "__main__":
    main()
