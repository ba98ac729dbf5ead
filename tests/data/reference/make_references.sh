#!/usr/bin/env bash
# Regenerates the model reference fixtures in this folder from scratch (see README.md):
# texts.jsonl, tokens.jsonl and, per reference, <name>.f32 + <name>.json.
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
/usr/bin/python3 "$root/tools/models/export_onnx.py" "$work/models/minilm" "$work/models/minilm-f16"
if [[ ! -d "$root/tools/reference/node_modules/@huggingface/transformers" ||
      ! -d "$root/tools/reference/node_modules/@anush008/tokenizers" ]]; then
  (cd "$root/tools/reference" && npm ci --ignore-scripts)
fi

embed() { node "$root/tools/reference/embed_reference.mjs" "$@"; }
embed "$work/models" minilm "$here/texts.jsonl" "$work/minilm"
embed "$work/models" minilm-f16 "$here/texts.jsonl" "$work/minilm-f16"
embed --limit 120 --pooling cls "$work/models" minilm "$here/texts.jsonl" "$work/minilm-cls"
embed --limit 120 --pooling last_token "$work/models" minilm "$here/texts.jsonl" "$work/minilm-last_token"

# Every run fed the model the same token ids: keep one copy.
cmp "$work/minilm.tokens.jsonl" "$work/minilm-f16.tokens.jsonl"
head -n 120 "$work/minilm.tokens.jsonl" | cmp - "$work/minilm-cls.tokens.jsonl"
head -n 120 "$work/minilm.tokens.jsonl" | cmp - "$work/minilm-last_token.tokens.jsonl"
cp "$work/minilm.tokens.jsonl" "$here/tokens.jsonl"
for name in minilm minilm-f16 minilm-cls minilm-last_token; do
  cp "$work/$name.f32" "$work/$name.json" "$here/"
done
echo "references written to $here"
