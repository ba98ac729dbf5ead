#!/usr/bin/env bash
# Builds sluice with sanitizers and runs tests there:
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer): the unit
#                suite, the fuzz targets' seed replay and the end-to-end tests (the real
#                pipeline-run binary, instrumented)
#   build-tsan/  ThreadSanitizer: the threaded unit tests (pipeline, bounded_queue, event_bus,
#                tokenizer, tokenizer_bpe, tokenizer_unigram)
#
#   tools/sanitize.sh          both
#   tools/sanitize.sh asan     only ASan+UBSan
#   tools/sanitize.sh tsan     only TSan
#   SANITIZE_E2E=0             ASan without the end-to-end tests
#   SANITIZE_JOBS=N            build and test jobs (default 2)
#
# Both use the default compiler (GCC 12 on Debian 12), at -O1 -g1: a third of the compile
# time of -O2 -g (the libtorch headers dominate), line numbers still in every report.
# libtorch, libgomp and OpenBLAS are Debian's, not built with sanitizers; a report from
# inside them would be silenced in tests/sanitizers/*.supp with a comment saying why it is
# not ours. Every other report fails the run. Times of each phase are printed at the end.
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

# tcmalloc replaces malloc, which the sanitizers must own: off in these builds. The fuzz
# targets are built in their seed-replay form (GCC has no libFuzzer).
common_setup=(-Dbuildtype=debugoptimized -Doptimization=1 -Dcpp_args=-g1 -Db_lundef=false -Dtcmalloc=disabled
  -Dfuzz=auto)
e2e=${SANITIZE_E2E:-1}

# Sets a build folder up, or brings an existing one to these options (no rebuild when they
# are already its options).
configure() {  # dir, options...
  local dir=$1
  shift
  if [[ -f $dir/build.ninja ]]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
}

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

# The build outputs (programs, generated model folders) that the tests of a build folder in
# the given suites or with the given names need, as ninja targets.
test_targets() {  # dir, suite or test name...
  local dir=$1
  shift
  ninja -C "$dir" build.ninja >/dev/null  # tests added since the last build are listed
  /usr/bin/python3 - "$dir" "$@" <<'PY'
import json, os, subprocess, sys
root = os.path.realpath(sys.argv[1])
wanted = set(sys.argv[2:])
def introspect(what):
    return json.loads(subprocess.run(["meson", "introspect", root, what], check=True,
                                     capture_output=True, text=True).stdout)
files = {t["id"]: t["filename"] for t in introspect("--targets")}
names = set()
for t in introspect("--tests"):
    if t["name"] in wanted or any(s.split(":")[-1] in wanted for s in t["suite"]):
        for dep in t["depends"]:
            names.update(os.path.relpath(f, root) for f in files.get(dep, []))
print(" ".join(sorted(names)))
PY
}

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
  configure build-asan "${common_setup[@]}" -Db_sanitize=address,undefined
  suites=(unit fuzz)
  [[ $e2e == 1 ]] && suites+=(e2e)
  asan_targets=$(test_targets build-asan "${suites[@]}")
  run_phase "asan build" ninja -C build-asan -j"$jobs" $asan_targets
  run_phase "asan tests (${suites[*]})" meson test -C build-asan --no-rebuild --print-errorlogs \
    --num-processes "$jobs" --timeout-multiplier 4 $(printf -- "--suite %s " "${suites[@]}")
fi

if [[ $which == all || $which == tsan ]]; then
  configure build-tsan "${common_setup[@]}" -Db_sanitize=thread
  tsan_tests=(pipeline store serve bounded_queue event_bus tokenizer tokenizer_bpe tokenizer_unigram)
  run_phase "tsan build" ninja -C build-tsan -j"$jobs" $(test_targets build-tsan "${tsan_tests[@]}")
  run_phase "tsan tests" meson test -C build-tsan --no-rebuild --print-errorlogs --num-processes 1 \
    --timeout-multiplier 6 "${tsan_tests[@]}"
fi

echo "sanitize.sh timings:"
printf '  %s\n' "${timings[@]}"
exit $status
