#!/bin/sh
# Held-out check of the default model from text to vector: embeds texts that no unit test reads
# (records 600-999 of tests/data/reference/texts.jsonl and every 8th line of
# tests/data/tokenizer/corpus.jsonl from the 3rd) with the package's own runtime and with
# `pipeline-run embed` (no --model: the default model), and prints the cosines. Needs the npm
# reference runtime once: (cd tools/reference && npm ci --ignore-scripts), and a build in
# BUILD (default: build). About 2 minutes on two cores.
set -eu
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-use-lite-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
{ tail -n +601 tests/data/reference/texts.jsonl | head -400; awk 'NR % 8 == 3' tests/data/tokenizer/corpus.jsonl; } |
  /usr/bin/python3 -c '
import json, sys
for n, line in enumerate(sys.stdin):
    print(json.dumps({"n": n, "text": json.loads(line)["text"]}))' > "$work/texts.jsonl"
node tools/reference/use_lite_reference.mjs embed "$work/texts.jsonl" "$work/ref" >/dev/null
# Texts without any non-space character are refused by the pipeline (the package embeds them).
"$BUILD/apps/pipeline-run/pipeline-run" embed "$work/texts.jsonl" -o "$work/out.jsonl" --on-error skip \
  --dead-letter "$work/refused.jsonl" --progress never || [ $? -eq 4 ]  # 4: some records refused
/usr/bin/python3 - "$work" <<'PY'
import json, sys
import numpy as np
work = sys.argv[1]
ref = np.fromfile(f"{work}/ref.f32", dtype="<f4").reshape(-1, 512).astype(np.float64)
rows, got = [], []
for line in open(f"{work}/out.jsonl"):
    d = json.loads(line)
    rows.append(d["n"])
    got.append(d["embedding"])
got = np.array(got)
want = ref[rows]
cos = (want * got).sum(1) / np.linalg.norm(want, axis=1) / np.linalg.norm(got, axis=1)
refused = sum(1 for _ in open(f"{work}/refused.jsonl"))
print(f"{len(rows)} texts embedded ({refused} refused as empty): min cosine 1 - {1 - cos.min():.1e} "
      f"(text {rows[int(cos.argmin())]}), {int((cos < 0.9999).sum())} below 0.9999")
sys.exit(1 if cos.min() < 0.9999 else 0)
PY
