#!/usr/bin/python3
"""Writes the model folders the tests run on: encoders with random weights.

    /usr/bin/python3 tools/models/make_test_models.py --out DIR

DIR/minilm         all-MiniLM-L6-v2's exact shape and files (vocab 30522, hidden 384, 6 layers,
                   12 heads, intermediate 1536), weights F32, random from a fixed seed
DIR/minilm-f16     the same weights stored as F16
DIR/tiny           hidden 32, 2 layers, 4 heads, intermediate 64, same vocabulary: for fast engine
                   tests (tensor names carry the "bert." prefix of a BertForMaskedLM checkpoint)
DIR/roberta        RoBERTa (all-distilroberta-v1's files): byte-level BPE tokenizer
                   (tests/data/tokenizer/roberta), hidden 256, 4 layers, 8 heads, 514 positions,
                   padding index 1, "roberta." prefix (RobertaForMaskedLM), mean pooling
DIR/xlm-roberta    XLM-RoBERTa (bge-m3's layout): Unigram tokenizer
                   (tests/data/tokenizer/xlm-roberta), hidden 256, 4 layers, 4 heads, no prefix,
                   CLS pooling, e5-style prompts in config_sentence_transformers.json
DIR/jina-code      JinaBERT v2 as jina-embeddings-v2-base-code (jina-bert-v2-qk-post-norm layout:
                   ALiBi, query/key layer norms, GEGLU up_gated_layer/down_layer, layer_norm_1/2),
                   byte-level BPE tokenizer, hidden 192, 4 layers, 12 heads (ALiBi's slopes for
                   a head count that is not a power of 2), max_seq_length 512
DIR/jina-code-f16  the same weights stored as F16
DIR/jina-code-bf16 the same weights stored as BF16 (rounded to nearest even)
DIR/jina-en        JinaBERT v2 as jina-embeddings-v2-small-en (jina-bert-implementation layout:
                   mlp.gated_layers/wo/layernorm), bert-base-uncased vocabulary, hidden 192,
                   2 layers, 6 heads, feed_forward_type reglu, "bert." prefix, not normalised

Every folder holds config.json (laid out like the real model's), model.safetensors, the
sentence-transformers files (modules.json with Transformer, Pooling and, except jina-en,
Normalize; 1_Pooling/config.json; sentence_bert_config.json) and the tokenizer files.

The output is bit-for-bit the same on every machine: the random numbers come from splitmix64
over integers and are turned into floats with exact IEEE operations only (no libm), so neither
numpy's nor torch's generators are involved. The sha256 of each model.safetensors is checked
against EXPECTED_SHA256 (also in tools/models/README.md); the reference embeddings in
tests/data/reference/ were computed from exactly these weights.

Weights are uniform with BERT's initializer std (0.02) except where that would hide bugs:
biases are non-zero, LayerNorm weights are 1 +- U(std 0.2) and biases U(std 0.05), the
query/key weights have std 1.2/sqrt(hidden) so attention is far from uniform, and JinaBERT's
gated feed-forward has std 1/sqrt(fan-in) so its non-linearity and gate order matter.
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
ROBERTA = dict(vocab_size=50262, hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
               intermediate_size=1024, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
XLM_ROBERTA = dict(vocab_size=50002, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                   intermediate_size=512, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
JINA_CODE = dict(vocab_size=50262, hidden_size=192, num_hidden_layers=4, num_attention_heads=12,
                 intermediate_size=512, max_position_embeddings=8192, type_vocab_size=2, pad_token_id=0,
                 feed_forward_type="geglu")
JINA_EN = dict(vocab_size=30522, hidden_size=192, num_hidden_layers=2, num_attention_heads=6,
               intermediate_size=384, max_position_embeddings=8192, type_vocab_size=2, pad_token_id=0,
               feed_forward_type="reglu")
MAX_SEQ_LENGTH = 256
JINA_MAX_SEQ_LENGTH = 512
TOKENIZERS = os.path.join(HERE, "..", "..", "tests", "data", "tokenizer")

EXPECTED_SHA256 = {
    "minilm": "eefa2ebd784f23ebc21d48615eb1aefaeb9979278a2357a365dbaba67169786e",
    "minilm-f16": "7dd210b95a5c5214a86794f332300e555d863141442ae9646efd2fca5403bb84",
    "tiny": "b1a57d28515b47afdd45c2ea39da988f2b407a5840564d9ce48ad17e629235e5",
    "roberta": "5aa6d88f7dc0131de8346c925b176cbdcb05a5f72e676afbbbcf9ffdc18c8fd7",
    "xlm-roberta": "87d7c1abdef4e2bc409f0e47973977cdea2eac5b2b89a55f0cab08268aaf5c82",
    "jina-code": "6a637d32b3211eee817ba4ce0facf3d8cc5fee87018f6c573a39dce60edb8aaf",
    "jina-code-f16": "5184ff08159f01ede56d808ff0cdd9ad6842dc628e7dc2e41b9c3f6ef2468095",
    "jina-code-bf16": "2bbe55269dba9412ac192b23144ef7e1ecbd61906d2e691ebdc737155d15c7d7",
    "jina-en": "285d8d927681ac36d90632fbd37bb669499a0b8b9e54cd1ea33147247d9ad2f0",
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


def jina_weights(cfg, seed, layout):
    """JinaBERT v2 tensor names (no prefix) -> float32 arrays. layout: "qk_post_norm"
    (jina-bert-v2-qk-post-norm, jina-embeddings-v2-base-code) or "implementation"
    (jina-bert-implementation, jina-embeddings-v2-small/base-en)."""
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    qk_std = 1.2 / math.sqrt(H)
    w = {}

    def dense(name, out, inp, std=0.02, bias=True):
        w[name + ".weight"] = uniform(seed, name + ".weight", (out, inp), std)
        if bias:
            w[name + ".bias"] = uniform(seed, name + ".bias", (out,), 0.02)

    def norm(name):
        w[name + ".weight"] = uniform(seed, name + ".weight", (H,), 0.2, mean=1.0)
        w[name + ".bias"] = uniform(seed, name + ".bias", (H,), 0.05)

    w["embeddings.word_embeddings.weight"] = uniform(seed, "word", (cfg["vocab_size"], H), 0.02)
    w["embeddings.token_type_embeddings.weight"] = uniform(seed, "type", (cfg["type_vocab_size"], H), 0.02)
    norm("embeddings.LayerNorm")
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        dense(p + "attention.self.query", H, H, qk_std)
        dense(p + "attention.self.key", H, H, qk_std)
        dense(p + "attention.self.value", H, H)
        dense(p + "attention.output.dense", H, H)
        norm(p + "attention.output.LayerNorm")
        if layout == "qk_post_norm":
            norm(p + "attention.self.layer_norm_q")
            norm(p + "attention.self.layer_norm_k")
            norm(p + "layer_norm_1")
            dense(p + "mlp.up_gated_layer", 2 * I, H, 1.0 / math.sqrt(H), bias=False)
            dense(p + "mlp.down_layer", H, I, 1.0 / math.sqrt(I))
            norm(p + "layer_norm_2")
        else:
            dense(p + "mlp.gated_layers", 2 * I, H, 1.0 / math.sqrt(H), bias=False)
            dense(p + "mlp.wo", H, I, 1.0 / math.sqrt(I))
            norm(p + "mlp.layernorm")
    dense("pooler.dense", H, H)  # in the checkpoint, unused by sentence embeddings
    return w


class BF16:
    """A float32 array rounded to bfloat16 (to nearest, ties to even), kept as its 16-bit patterns."""

    def __init__(self, a):
        bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
        self.bits = ((bits + np.uint64(0x7FFF) + ((bits >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)).astype(
            np.uint16)
        self.shape = a.shape
        self.size = a.size


SAFETENSORS_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def write_safetensors(path, tensors, metadata=None):
    """The safetensors format: u64 LE header length, JSON header (names sorted), raw LE bytes."""
    header = {}
    offset = 0
    names = sorted(tensors)
    for name in names:
        a = tensors[name]
        if isinstance(a, BF16):
            dtype, nbytes = "BF16", a.size * 2
        else:
            dtype, nbytes = SAFETENSORS_DTYPES[a.dtype], a.size * a.dtype.itemsize
        header[name] = {"dtype": dtype, "shape": list(a.shape),
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
            a = tensors[name]
            if isinstance(a, BF16):
                data = np.ascontiguousarray(a.bits).astype("<u2").tobytes()
            else:
                data = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
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


def roberta_config_json(cfg, model_type):
    # As all-distilroberta-v1's (roberta) and bge-m3's (xlm-roberta) config.json.
    return {
        "architectures": ["RobertaModel" if model_type == "roberta" else "XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": cfg["max_position_embeddings"],
        "model_type": model_type,
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "pad_token_id": cfg["pad_token_id"],
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "transformers_version": "4.33.0",
        "type_vocab_size": cfg["type_vocab_size"],
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }


def jina_config_json(cfg, layout):
    # As jina-embeddings-v2-base-code's (qk_post_norm) and jina-embeddings-v2-small-en's
    # (implementation) config.json: model_type "bert", the code on the hub through auto_map.
    repo = "jinaai/jina-bert-v2-qk-post-norm" if layout == "qk_post_norm" else "jinaai/jina-bert-implementation"
    return {
        "_name_or_path": repo,
        "architectures": ["JinaBertForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "attn_implementation": "torch" if layout == "qk_post_norm" else None,
        "auto_map": {
            "AutoConfig": f"{repo}--configuration_bert.JinaBertConfig",
            "AutoModel": f"{repo}--modeling_bert.JinaBertModel",
            "AutoModelForMaskedLM": f"{repo}--modeling_bert.JinaBertForMaskedLM",
            "AutoModelForSequenceClassification": f"{repo}--modeling_bert.JinaBertForSequenceClassification",
        },
        "classifier_dropout": None,
        "emb_pooler": "mean",
        "feed_forward_type": cfg["feed_forward_type"],
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": cfg["max_position_embeddings"],
        "model_max_length": cfg["max_position_embeddings"],
        "model_type": "bert",
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "pad_token_id": cfg["pad_token_id"],
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "transformers_version": "4.34.0",
        "type_vocab_size": cfg["type_vocab_size"],
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }


def write_roberta_tokenizer(out, kind, model_max_length):
    """tokenizer.json from tests/data/tokenizer/<kind>/ (byte-level BPE "roberta" or Unigram
    "xlm-roberta") with the tokenizer_config.json and special_tokens_map.json of such a model."""
    shutil.copyfile(os.path.join(TOKENIZERS, kind, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    specials = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "mask_token": "<mask>",
                "pad_token": "<pad>", "sep_token": "</s>", "unk_token": "<unk>"}
    config = dict(specials)
    config.update({"tokenizer_class": "RobertaTokenizer" if kind == "roberta" else "XLMRobertaTokenizer",
                   "model_max_length": model_max_length, "clean_up_tokenization_spaces": True})
    if kind == "roberta":
        config["add_prefix_space"] = False
    write_json(os.path.join(out, "tokenizer_config.json"), config)
    write_json(os.path.join(out, "special_tokens_map.json"), specials)


def write_st_folder(out, config, tensors, hidden, tokenizer, pooling="mean", normalize=True,
                    max_seq_length=MAX_SEQ_LENGTH, st_config=None):
    """A sentence-transformers folder laid out like all-MiniLM-L6-v2's; `tokenizer(out)` writes
    the tokenizer files."""
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), config)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    write_json(os.path.join(out, "modules.json"), modules)
    write_json(os.path.join(out, "1_Pooling", "config.json"), {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_json(os.path.join(out, "sentence_bert_config.json"),
               {"max_seq_length": max_seq_length, "do_lower_case": False})
    write_json(os.path.join(out, "config_sentence_transformers.json"), st_config or
               {"__version__": {"sentence_transformers": "2.0.0", "transformers": "4.6.1", "pytorch": "1.8.1"}})
    tokenizer(out)
    return write_safetensors(os.path.join(out, "model.safetensors"), tensors, {"format": "pt"})


def write_folder(out, cfg, tensors):
    """A BERT folder laid out like all-MiniLM-L6-v2's."""
    from bert_tokenizer import write_bert_tokenizer

    return write_st_folder(out, config_json(cfg), tensors, cfg["hidden_size"], write_bert_tokenizer)


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

    from bert_tokenizer import write_bert_tokenizer

    st_version = {"__version__": {"sentence_transformers": "2.2.2", "transformers": "4.33.0", "pytorch": "2.0.1"}}
    roberta = {"roberta." + k: v for k, v in bert_weights(ROBERTA, "roberta").items()}
    shas["roberta"] = write_st_folder(
        os.path.join(out_root, "roberta"), roberta_config_json(ROBERTA, "roberta"), roberta, ROBERTA["hidden_size"],
        lambda out: write_roberta_tokenizer(out, "roberta", 512), st_config=st_version)
    # e5's prompts (multilingual-e5 is an XLM-RoBERTa model), to check that they are read.
    xlmr_st = dict(st_version, prompts={"query": "query: ", "passage": "passage: "}, default_prompt_name=None)
    shas["xlm-roberta"] = write_st_folder(
        os.path.join(out_root, "xlm-roberta"), roberta_config_json(XLM_ROBERTA, "xlm-roberta"),
        bert_weights(XLM_ROBERTA, "xlm-roberta"), XLM_ROBERTA["hidden_size"],
        lambda out: write_roberta_tokenizer(out, "xlm-roberta", 512), pooling="cls", st_config=xlmr_st)

    jina_code = jina_weights(JINA_CODE, "jina-code", "qk_post_norm")
    code_tokenizer = lambda out: write_roberta_tokenizer(out, "roberta", JINA_CODE["max_position_embeddings"])
    for name, tensors in (("jina-code", jina_code),
                          ("jina-code-f16", {k: v.astype(np.float16) for k, v in jina_code.items()}),
                          ("jina-code-bf16", {k: BF16(v) for k, v in jina_code.items()})):
        shas[name] = write_st_folder(
            os.path.join(out_root, name), jina_config_json(JINA_CODE, "qk_post_norm"), tensors,
            JINA_CODE["hidden_size"], code_tokenizer, max_seq_length=JINA_MAX_SEQ_LENGTH, st_config=st_version)
    jina_en = {"bert." + k: v for k, v in jina_weights(JINA_EN, "jina-en", "implementation").items()}
    shas["jina-en"] = write_st_folder(
        os.path.join(out_root, "jina-en"), jina_config_json(JINA_EN, "implementation"), jina_en,
        JINA_EN["hidden_size"], lambda out: write_bert_tokenizer(out, model_max_length=8192), normalize=False,
        max_seq_length=JINA_MAX_SEQ_LENGTH, st_config=st_version)
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
