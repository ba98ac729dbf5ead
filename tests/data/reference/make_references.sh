#!/usr/bin/env bash
# Regenerates the model reference fixtures in this folder from scratch (see README.md):
# texts.jsonl, tokens.jsonl (the BERT references' token ids), <family>.tokens.jsonl (the
# others') and, per reference, <name>.f32 + <name>.json.
#
#   bash tests/data/reference/make_references.sh [WORK_DIR]
#
# Needs /usr/bin/python3 with torch and numpy, Node 20 and npm (tools/setup.sh --dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
echo "working in $work"

/usr/bin/python3 "$here/make_texts.py" --out "$here/texts.jsonl"
/usr/bin/python3 "$root/tools/models/make_test_models.py" --out "$work/models"
families=(roberta xlm-roberta jina-code jina-code-f16 jina-code-bf16 jina-en)
/usr/bin/python3 "$root/tools/models/export_onnx.py" "$work/models/minilm" "$work/models/minilm-f16" \
  "${families[@]/#/$work/models/}"
if [[ ! -d "$root/tools/reference/node_modules/@huggingface/transformers" ||
      ! -d "$root/tools/reference/node_modules/@anush008/tokenizers" ]]; then
  (cd "$root/tools/reference" && npm ci --ignore-scripts)
fi

embed() { node "$root/tools/reference/embed_reference.mjs" "$@"; }
embed "$work/models" minilm "$here/texts.jsonl" "$work/minilm"
embed "$work/models" minilm-f16 "$here/texts.jsonl" "$work/minilm-f16"
embed --limit 120 --pooling cls "$work/models" minilm "$here/texts.jsonl" "$work/minilm-cls"
embed --limit 120 --pooling last_token "$work/models" minilm "$here/texts.jsonl" "$work/minilm-last_token"

# The other families: token ids from the Hugging Face Rust tokenizer (tools/models/embed_families.mjs).
family() { node "$root/tools/models/embed_families.mjs" "$@"; }
family --limit 600 "$work/models" roberta "$here/texts.jsonl" "$work/roberta"
family --limit 600 --pooling cls "$work/models" xlm-roberta "$here/texts.jsonl" "$work/xlm-roberta"
family --limit 600 "$work/models" jina-code "$here/texts.jsonl" "$work/jina-code"
for dtype in f16 bf16; do
  family --limit 300 --tokens-name jina-code.tokens.jsonl "$work/models" "jina-code-$dtype" "$here/texts.jsonl" \
    "$work/jina-code-$dtype"
done
family --limit 600 --no-normalize "$work/models" jina-en "$here/texts.jsonl" "$work/jina-en"

# Every run of a tokenizer fed the model the same token ids: keep one copy.
cmp "$work/minilm.tokens.jsonl" "$work/minilm-f16.tokens.jsonl"
head -n 120 "$work/minilm.tokens.jsonl" | cmp - "$work/minilm-cls.tokens.jsonl"
head -n 120 "$work/minilm.tokens.jsonl" | cmp - "$work/minilm-last_token.tokens.jsonl"
for dtype in f16 bf16; do
  head -n 300 "$work/jina-code.tokens.jsonl" | cmp - "$work/jina-code-$dtype.tokens.jsonl"
done
cp "$work/minilm.tokens.jsonl" "$here/tokens.jsonl"
for name in roberta xlm-roberta jina-code jina-en; do
  cp "$work/$name.tokens.jsonl" "$here/"
done
for name in minilm minilm-f16 minilm-cls minilm-last_token "${families[@]}"; do
  cp "$work/$name.f32" "$work/$name.json" "$here/"
done

# onnxruntime's results against the eager PyTorch models they were exported from, on a sample:
# an export that lost a dynamic shape would show here, not in sluice's tests.
for name in minilm minilm-f16 "${families[@]}"; do
  /usr/bin/python3 "$root/tools/models/check_reference.py" "$work/models/$name" "$here/$name"
done
echo "references written to $here"
