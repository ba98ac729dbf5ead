#!/bin/sh
# Regenerates every tokenizer parity file under tests/data/tokenizer/ (see its README.md).
# Needs Node 20 and, once: (cd tools/reference && npm install --ignore-scripts).
set -eu
cd "$(dirname "$0")/../.."
D=tests/data/tokenizer
REF="node tools/reference/tokenize_reference.mjs"
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
node tools/reference/unicode_reference.mjs $D/unicode_reference.tsv
/usr/bin/python3 tools/reference/make_unicode_exceptions.py
