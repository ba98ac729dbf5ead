#!/usr/bin/env bash
# Builds sluice with sanitizers and runs tests there:
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer, the whole unit suite
#   build-tsan/  ThreadSanitizer, the threaded unit tests (pipeline, bounded_queue,
#                event_bus, tokenizer)
#
#   tools/sanitize.sh          both
#   tools/sanitize.sh asan     only ASan+UBSan
#   tools/sanitize.sh tsan     only TSan
#
# Both use the default compiler (GCC 12 on Debian 12). libtorch, libgomp and OpenBLAS are
# Debian's, not built with sanitizers; a report from inside them would be silenced in
# tests/sanitizers/*.supp with a comment saying why it is not ours (none is needed today).
# Every other report fails the run. Times of each phase are printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
case "$which" in
  all|asan|tsan) ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
  *) echo "sanitize.sh: unknown argument $which (all, asan or tsan)" >&2; exit 2 ;;
esac
jobs=${SANITIZE_JOBS:-2}
supp=$PWD/tests/sanitizers
timings=()
now() { date +%s; }

# tcmalloc replaces malloc, which the sanitizers must own: off in these builds.
common_setup=(-Dbuildtype=debugoptimized -Db_lundef=false -Dtcmalloc=disabled)

# Reports are fatal; UBSan prints a stack. Leak checking covers our code and uses the LSan
# suppressions for one-time allocations made inside libtorch's and glog's initialisers.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
# quarantine_size_mb: freed memory is held back this long to catch use-after-free. The default
# (256 MB) makes libtorch's large, short-lived tensors come from fresh mmaps every time: the
# model test then takes 6x longer (227 s instead of 36 s for one minilm case); 16 MB is as fast
# as none and still catches a use of anything freed in the last 16 MB of frees.
export ASAN_OPTIONS="detect_leaks=1:quarantine_size_mb=16:strict_init_order=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
# TSan: libgomp's and OpenBLAS's own synchronisation is invisible to TSan (see tsan.supp).
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$supp/tsan.supp"
# One intra-op thread pool size for libtorch, so the runs are alike on any machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

status=0
run_phase() {  # name, command...
  local name=$1
  shift
  local t0
  t0=$(now)
  if "$@"; then
    timings+=("$name: $(( $(now) - t0 )) s")
  else
    timings+=("$name: $(( $(now) - t0 )) s, FAILED")
    status=1
  fi
}

if [[ $which == all || $which == asan ]]; then
  [[ -f build-asan/build.ninja ]] ||
    meson setup build-asan "${common_setup[@]}" -Db_sanitize=address,undefined
  # Only what the unit suite needs: its test programs and the test model folders (the build
  # files are regenerated first, so tests added since the last build are listed).
  ninja -C build-asan build.ninja >/dev/null
  asan_targets=$(meson introspect build-asan --tests | /usr/bin/python3 -c '
import json, sys, os
root = os.path.realpath("build-asan")
names = set()
for t in json.load(sys.stdin):
    if any(s.split(":")[-1] == "unit" for s in t["suite"]):
        names.add(os.path.relpath(t["cmd"][0], root))
print(" ".join(sorted(names)))')
  run_phase "asan build" ninja -C build-asan -j"$jobs" $asan_targets tests/test-models
  run_phase "asan unit tests" meson test -C build-asan --no-rebuild --suite unit --print-errorlogs \
    --num-processes "$jobs" --timeout-multiplier 4
fi

if [[ $which == all || $which == tsan ]]; then
  [[ -f build-tsan/build.ninja ]] ||
    meson setup build-tsan "${common_setup[@]}" -Db_sanitize=thread
  ninja -C build-tsan build.ninja >/dev/null
  tsan_tests=(pipeline bounded_queue event_bus tokenizer)
  run_phase "tsan build" ninja -C build-tsan -j"$jobs" $(printf "tests/unit/%s_test " "${tsan_tests[@]}") \
    tests/test-models
  run_phase "tsan tests" meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 1 \
    --timeout-multiplier 6 "${tsan_tests[@]}"
fi

echo "sanitize.sh timings:"
printf '  %s\n' "${timings[@]}"
exit $status
