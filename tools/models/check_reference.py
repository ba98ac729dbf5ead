#!/usr/bin/python3
"""Checks reference embeddings (onnxruntime via transformers.js) against the PyTorch model they
were exported from (reference_models.py), on a sample of records.

    /usr/bin/python3 tools/models/check_reference.py MODEL_DIR PREFIX [--every N]

PREFIX.json, PREFIX.f32 and the token file PREFIX.json names (PREFIX.tokens.jsonl) are read;
every N-th record (default 10) is embedded by the eager PyTorch model in padded batches of 4,
pooled (mean, cls or last_token over the mask) and, if PREFIX.json says so, L2-normalised.
Fails unless every sampled record has cosine >= 0.99999 with the reference. This catches an ONNX
export that lost a dynamic shape (e.g. an ALiBi bias traced at one length), which the C++ tests
would otherwise blame on sluice.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

from reference_models import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("prefix")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()

    with open(args.prefix + ".json") as f:
        meta = json.load(f)
    tokens_path = os.path.join(os.path.dirname(args.prefix), meta.get("tokens", "tokens.jsonl"))
    with open(tokens_path) as f:
        ids = [json.loads(line)["ids"] for line in f if line.strip()][: meta["records"]]
    want = np.fromfile(args.prefix + ".f32", dtype="<f4").reshape(meta["records"], meta["dimensions"])
    model, config, inputs = load_model(args.model_dir)
    pad = config.get("pad_token_id", 0)

    sample = list(range(0, len(ids), args.every))
    worst = 1.0
    with torch.no_grad():
        for start in range(0, len(sample), 4):
            rows = sample[start:start + 4]
            length = max(len(ids[r]) for r in rows)
            x = torch.full((len(rows), length), pad, dtype=torch.int64)
            mask = torch.zeros((len(rows), length), dtype=torch.int64)
            for b, r in enumerate(rows):
                x[b, :len(ids[r])] = torch.tensor(ids[r])
                mask[b, :len(ids[r])] = 1
            feed = {"input_ids": x, "attention_mask": mask, "token_type_ids": torch.zeros_like(x)}
            hidden = model(*(feed[n] for n in inputs))
            m = mask.unsqueeze(-1).float()
            if meta["pooling"] == "mean":
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            elif meta["pooling"] == "cls":
                pooled = hidden[:, 0]
            else:
                pooled = hidden[torch.arange(len(rows)), mask.sum(1) - 1]
            if meta.get("normalize", True):
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            for b, r in enumerate(rows):
                got = pooled[b].double().numpy()
                ref = want[r].astype(np.float64)
                cos = float(got @ ref / np.sqrt((got @ got) * (ref @ ref)))
                worst = min(worst, cos)
                if cos < 0.99999:
                    sys.exit(f"{args.prefix}: record {r}: cosine {cos:.9f} between onnxruntime and PyTorch")
    print(f"{os.path.basename(args.prefix)}: {len(sample)} records agree with PyTorch, cosine min {worst:.9f} "
          f"(1 - {1 - worst:.1e})")


if __name__ == "__main__":
    main()
