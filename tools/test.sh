#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds sluice and runs the whole test suite.
#   bash tools/test.sh            (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/setup.sh
if [[ ! -f build/build.ninja ]]; then
  meson setup build
fi
ninja -C build
set +e
meson test -C build --print-errorlogs --num-processes 1 "$@" | tee build/meson-test-output.txt
status=${PIPESTATUS[0]}
set -e
ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' build/meson-test-output.txt | tail -n1)
fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' build/meson-test-output.txt | tail -n1)
timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' build/meson-test-output.txt | tail -n1)
skipped=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' build/meson-test-output.txt | tail -n1)
echo "${ok:-0} passed, $(( ${fail:-0} + ${timeout:-0} )) failed, ${skipped:-0} skipped"
exit "$status"
