#!/usr/bin/python3
"""Writes the model folders the tests run on: BERT encoders with random weights.

    /usr/bin/python3 tools/models/make_test_models.py --out DIR

DIR/minilm      all-MiniLM-L6-v2's exact shape and files (vocab 30522, hidden 384, 6 layers,
                12 heads, intermediate 1536), weights F32, random from a fixed seed
DIR/minilm-f16  the same weights stored as F16
DIR/tiny        hidden 32, 2 layers, 4 heads, intermediate 64, same vocabulary: for fast engine
                tests (tensor names carry the "bert." prefix of a BertForMaskedLM checkpoint)

Every folder holds config.json, model.safetensors, the sentence-transformers files
(modules.json with Transformer, Pooling and Normalize; 1_Pooling/config.json with mean pooling;
sentence_bert_config.json with max_seq_length 256) and the bert-base-uncased tokenizer files
(tools/models/bert_tokenizer.py).

The output is bit-for-bit the same on every machine: the random numbers come from splitmix64
over integers and are turned into floats with exact IEEE operations only (no libm), so neither
numpy's nor torch's generators are involved. The sha256 of each model.safetensors is checked
against EXPECTED_SHA256 (also in tools/models/README.md); the reference embeddings in
tests/data/reference/ were computed from exactly these weights.

Weights are uniform with BERT's initializer std (0.02) except where that would hide bugs:
biases are non-zero, LayerNorm weights are 1 +- U(std 0.2) and biases U(std 0.05), and the
query/key weights have std 1.2/sqrt(hidden) so attention is far from uniform.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2)
TINY = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=512, type_vocab_size=2)
MAX_SEQ_LENGTH = 256

EXPECTED_SHA256 = {
    "minilm": "eefa2ebd784f23ebc21d48615eb1aefaeb9979278a2357a365dbaba67169786e",
    "minilm-f16": "7dd210b95a5c5214a86794f332300e555d863141442ae9646efd2fca5403bb84",
    "tiny": "b1a57d28515b47afdd45c2ea39da988f2b407a5840564d9ce48ad17e629235e5",
}

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def uniform(seed, name, shape, std, mean=0.0):
    """Uniform values of the given mean and standard deviation, from splitmix64(key + i)."""
    key = int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    z = np.arange(n, dtype=np.uint64) * _M1 + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    z ^= z >> np.uint64(31)
    u = ((z >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)  # exact, in (0, 1)
    half_width = std * math.sqrt(3.0)  # sqrt is correctly rounded everywhere
    return (mean + (2.0 * u - 1.0) * half_width).astype(np.float32).reshape(shape)


def bert_weights(cfg, seed):
    """HF BertModel tensor names (no prefix) -> float32 arrays."""
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    qk_std = 1.2 / math.sqrt(H)
    w = {}

    def dense(name, out, inp, std=0.02):
        w[name + ".weight"] = uniform(seed, name + ".weight", (out, inp), std)
        w[name + ".bias"] = uniform(seed, name + ".bias", (out,), 0.02)

    def norm(name):
        w[name + ".weight"] = uniform(seed, name + ".weight", (H,), 0.2, mean=1.0)
        w[name + ".bias"] = uniform(seed, name + ".bias", (H,), 0.05)

    w["embeddings.word_embeddings.weight"] = uniform(seed, "word", (cfg["vocab_size"], H), 0.02)
    w["embeddings.position_embeddings.weight"] = uniform(seed, "position", (cfg["max_position_embeddings"], H), 0.02)
    w["embeddings.token_type_embeddings.weight"] = uniform(seed, "type", (cfg["type_vocab_size"], H), 0.02)
    norm("embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        dense(p + "attention.self.query", H, H, qk_std)
        dense(p + "attention.self.key", H, H, qk_std)
        dense(p + "attention.self.value", H, H)
        dense(p + "attention.output.dense", H, H)
        norm(p + "attention.output.LayerNorm")
        dense(p + "intermediate.dense", I, H)
        dense(p + "output.dense", H, I)
        norm(p + "output.LayerNorm")
    dense("pooler.dense", H, H)  # in the checkpoint, unused by sentence embeddings
    return w


SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format: u64 LE header length, JSON header (names sorted), raw LE bytes."""
    header = {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        a = tensors[name]
        nbytes = a.size * a.dtype.itemsize
        header[name] = {"dtype": SAFETENSORS_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)  # the data area starts 8-byte aligned
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        for chunk in (struct.pack("<Q", len(text)), text):
            f.write(chunk)
            sha.update(chunk)
        for name in names:
            data = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes()
            f.write(data)
            sha.update(data)
    return sha.hexdigest()


def config_json(cfg):
    # As all-MiniLM-L6-v2's config.json.
    return {
        "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": cfg["max_position_embeddings"],
        "model_type": "bert",
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "transformers_version": "4.8.2",
        "type_vocab_size": cfg["type_vocab_size"],
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def write_folder(out, cfg, tensors):
    """A sentence-transformers folder laid out like all-MiniLM-L6-v2's."""
    from bert_tokenizer import write_bert_tokenizer

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), config_json(cfg))
    write_json(os.path.join(out, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": cfg["hidden_size"],
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(os.path.join(out, "sentence_bert_config.json"),
               {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    write_json(os.path.join(out, "config_sentence_transformers.json"),
               {"__version__": {"sentence_transformers": "2.0.0", "transformers": "4.6.1", "pytorch": "1.8.1"}})
    write_bert_tokenizer(out)
    return write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})


def build(out_root):
    """Writes every folder under out_root; returns {name: sha256 of model.safetensors}."""
    shas = {}
    minilm = bert_weights(MINILM, "minilm")
    # Older checkpoints also hold the position_ids buffer (I64): loaders must skip it.
    with_ids = dict(minilm)
    with_ids["embeddings.position_ids"] = np.arange(MINILM["max_position_embeddings"], dtype=np.int64)[None, :]
    shas["minilm"] = write_folder(os.path.join(out_root, "minilm"), MINILM, with_ids)
    f16 = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in with_ids.items()}
    shas["minilm-f16"] = write_folder(os.path.join(out_root, "minilm-f16"), MINILM, f16)
    tiny = {"bert." + k: v for k, v in bert_weights(TINY, "tiny").items()}
    shas["tiny"] = write_folder(os.path.join(out_root, "tiny"), TINY, tiny)
    return shas


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write the model folders into (replaced)")
    ap.add_argument("--allow-drift", action="store_true",
                    help="do not fail when a sha256 differs from EXPECTED_SHA256 (while changing the generator)")
    args = ap.parse_args()
    t0 = time.time()
    out = os.path.abspath(args.out)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shas = build(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    drift = []
    for name, sha in shas.items():
        expected = EXPECTED_SHA256.get(name)
        status = "ok" if sha == expected else f"DIFFERS from the recorded {expected}"
        print(f"{name}/model.safetensors sha256 {sha} {status}")
        if sha != expected:
            drift.append(name)
    print(f"wrote {out} in {time.time() - t0:.1f} s")
    if drift and not args.allow_drift:
        print(f"error: the generated weights of {', '.join(drift)} changed; the reference embeddings in "
              "tests/data/reference/ no longer match them. If the change is intended, update EXPECTED_SHA256 "
              "and tools/models/README.md and regenerate the references (tests/data/reference/README.md).",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
