#!/usr/bin/python3
"""Writes the variant tokenizer.json files of sluice's tokenizer parity tests.

    /usr/bin/python3 tools/reference/make_tokenizer_variants.py

From tests/data/tokenizer/bert-base-uncased/tokenizer.json (its first 12,000 vocabulary entries,
to keep the files small), writes tests/data/tokenizer/variants/<name>/tokenizer.json, each
configured to exercise components and settings that bert-base-uncased does not use:

  seq-whitespace  Sequence[NFD, Lowercase, StripAccents], Whitespace, BertProcessing, truncation
                  left 24, padding, [MASK] with lstrip/rstrip, normalized added tokens
                  ("Hello World", single_word "ok", "ÉTÉ"), a raw added token "<sep/>",
                  max_input_chars_per_word 20
  cased-template  BertNormalizer without cleaning, CJK padding or lowercasing, Sequence
                  [WhitespaceSplit, BertPreTokenizer], TemplateProcessing with type ids and a
                  two-id special token, truncation right 16, raw added tokens "<eos>" (lstrip)
                  and single_word "x", max_input_chars_per_word 12

The reference ids, type ids and offsets come from the Hugging Face tokenizer: see
tests/data/tokenizer/README.md. Standard library only; deterministic.
"""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
VOCAB_SIZE = 12000


def added(content, id_, special, normalized, single_word=False, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def specials(vocab, mask_strip=False):
    out = []
    for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]:
        strip = mask_strip and t == "[MASK]"
        out.append(added(t, vocab[t], True, False, lstrip=strip, rstrip=strip))
    return out


def model(vocab, max_chars):
    return {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": max_chars, "vocab": vocab}


def new_ids(vocab, contents):
    """Ids as Hugging Face gives them: a token of the vocabulary keeps its id, others follow it."""
    out, n = {}, len(vocab)
    for c in contents:
        if c in vocab:
            out[c] = vocab[c]
        else:
            out[c], n = n, n + 1
    return out


def seq_whitespace(vocab):
    n = new_ids(vocab, ["Hello World", "ok", "ÉTÉ", "<sep/>"])
    return {
        "version": "1.0",
        "truncation": {"direction": "Left", "max_length": 24, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0,
                    "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": specials(vocab, mask_strip=True) + [
            added("Hello World", n["Hello World"], False, True),
            added("ok", n["ok"], False, True, single_word=True),  # also in the vocabulary
            added("ÉTÉ", n["ÉTÉ"], False, True),
            added("<sep/>", n["<sep/>"], False, False),
        ],
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"},
                                                           {"type": "StripAccents"}]},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", vocab["[SEP]"]],
                           "cls": ["[CLS]", vocab["[CLS]"]]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": model(vocab, 20),
    }


def cased_template(vocab):
    n = new_ids(vocab, ["<eos>", "x"])
    cls, sep, mask = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    return {
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 16, "strategy": "LongestFirst", "stride": 0},
        "padding": None,
        "added_tokens": specials(vocab) + [
            added("<eos>", n["<eos>"], True, False, lstrip=True),
            added("x", n["x"], False, False, single_word=True),  # also in the vocabulary
        ],
        "normalizer": {"type": "BertNormalizer", "clean_text": False, "handle_chinese_chars": False,
                       "strip_accents": None, "lowercase": False},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"},
                                                                {"type": "BertPreTokenizer"}]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 1}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep, mask], "tokens": ["[SEP]", "[MASK]"]},
            },
        },
        "decoder": None,
        "model": model(vocab, 12),
    }


def main():
    with open(os.path.join(DATA, "bert-base-uncased", "tokenizer.json"), encoding="utf-8") as f:
        bert = json.load(f)
    tokens = sorted(bert["model"]["vocab"].items(), key=lambda kv: kv[1])[:VOCAB_SIZE]
    vocab = {t: i for i, (t, _) in enumerate(tokens)}
    for name, make in [("seq-whitespace", seq_whitespace), ("cased-template", cased_template)]:
        out = os.path.join(DATA, "variants", name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(make(vocab), f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name} -> {out}/tokenizer.json")


if __name__ == "__main__":
    main()
