#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang, ASan and UBSan in build-fuzz/ and runs
# each for a while. Exits non-zero if any target crashed or broke an invariant.
#
#   tools/fuzz.sh                      every target, 30 s each
#   tools/fuzz.sh -t 60 -j 2           60 s each, two targets at a time (what CI runs)
#   tools/fuzz.sh -t 3600 tokenizer    one target for an hour
#   nice -n 19 tools/fuzz.sh -t 7200 -j 4   the long campaign: every target for 2 hours at once
#   tools/fuzz.sh --replay             only run the seed corpora and saved crashes once
#   FUZZ_BUILD_DIR=DIR                 another build folder than build-fuzz (e.g. one per compiler)
#
# -j N (or FUZZ_JOBS=N) runs N targets at once, each one libFuzzer process.
# Targets: jsonl_reader tokenizer safetensors checkpoint (docs/reliability.md says what each
# checks). Inputs found to add coverage go to build-fuzz/corpus/<target>/ and are reused by
# the next run; the seeds in tests/fuzz/corpus/<target>/ are only read. A crashing input is
# saved as build-fuzz/crashes/<target>/crash-<sha1> (or leak-, timeout-, oom-); reproduce with
#   build-fuzz/tests/fuzz/fuzz_<target> build-fuzz/crashes/<target>/crash-...
# A summary line per target (wall time, executions, coverage, corpus size) goes to stdout and
# to build-fuzz/fuzz-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-1}
replay=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -t|--seconds) seconds="$2"; shift 2 ;;
    -j|--jobs) jobs="$2"; shift 2 ;;
    --replay) replay=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all_targets=(jsonl_reader tokenizer safetensors checkpoint)
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (known: ${all_targets[*]})" >&2; exit 2; }
done

build=${FUZZ_BUILD_DIR:-build-fuzz}
CXX_FUZZ=${CXX_FUZZ:-clang++-16}
CC_FUZZ=${CC_FUZZ:-clang-16}
if ! command -v "$CXX_FUZZ" >/dev/null; then
  echo "fuzz.sh: $CXX_FUZZ not found: run tools/setup.sh --dev (installs clang-16 and libclang-rt-16-dev)" >&2
  exit 2
fi
if [[ -f $build/build.ninja ]] && ! grep -q "command = $CXX_FUZZ " "$build/build.ninja"; then
  echo "fuzz.sh: $build was configured with another compiler than $CXX_FUZZ; remove it" \
    "(keep $build/crashes and $build/corpus if you want them) and run again" >&2
  exit 2
fi
if [[ ! -f $build/build.ninja ]]; then
  # tcmalloc would replace malloc under ASan; no target links it anyway.
  CXX=$CXX_FUZZ CC=$CC_FUZZ meson setup "$build" -Dfuzz=enabled -Dtcmalloc=disabled \
    -Dbuildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fsanitize=fuzzer-no-link
fi
ninja -C "$build" -j"${FUZZ_BUILD_JOBS:-2}" $(printf "tests/fuzz/fuzz_%s " "${targets[@]}")

# UBSan reports are fatal, so libFuzzer keeps the input; ASan also looks for leaks at exit.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}

summary=$build/fuzz-summary.txt
: >"$summary"

# One target: fuzz (or replay) it, write its summary line to $build/fuzz-<target>.summary and
# return non-zero if it crashed or broke an invariant.
fuzz_one() {
  local t=$1
  local exe=$build/tests/fuzz/fuzz_$t
  local seeds=tests/fuzz/corpus/$t
  local crashes=$build/crashes/$t
  local work=$build/corpus/$t
  local log=$build/fuzz-$t.log
  local out=$build/fuzz-$t.summary
  mkdir -p "$crashes" "$work"
  : >"$out"
  if [[ $replay -eq 1 ]]; then
    # Seeds and saved crashes, once each.
    local inputs=("$seeds")
    compgen -G "$crashes/*" >/dev/null && inputs+=("$crashes")
    echo "== $t: replaying ${inputs[*]}"
    if ! "$exe" -runs=0 "${inputs[@]}" >"$log" 2>&1; then
      tail -n 40 "$log"
      echo "$t: replay FAILED" >"$out"
      return 1
    fi
    echo "$t: replay ok" >"$out"
    return 0
  fi
  echo "== $t: fuzzing for $seconds s (log: $log)"
  local before after status t0 t1
  before=$(find "$crashes" -type f | wc -l)
  t0=$(date +%s)
  set +e
  "$exe" "$work" "$seeds" -dict=tests/fuzz/dict/json.dict -max_total_time="$seconds" \
    -timeout=20 -rss_limit_mb=2560 -max_len=8192 -use_value_profile=1 -print_final_stats=1 \
    -artifact_prefix="$crashes/" >"$log" 2>&1
  status=$?
  set -e
  t1=$(date +%s)
  after=$(find "$crashes" -type f | wc -l)
  local execs last cov ft corp files
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  last=$(grep -E '^#[0-9]+.*(cov|DONE)' "$log" | tail -n1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  files=$(find "$work" -type f | wc -l)
  echo "$t: $((t1 - t0))s wall, ${execs:-?} executions, cov ${cov:-?} edges, ft ${ft:-?}," \
    "corpus ${corp:-?} (${files} files kept), exit $status, $((after - before)) new crash files" >"$out"
  cat "$out"
  if [[ $status -ne 0 || $after -gt $before ]]; then
    grep -E 'ERROR|invariant failed|runtime error|SUMMARY' "$log" | head -n 20 || true
    echo "   crash inputs: $crashes/"
    return 1
  fi
}

# Up to $jobs targets at once (-j), each a single libFuzzer process.
failed=()
declare -A pid_of=()
for t in "${targets[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  fuzz_one "$t" &
  pid_of[$t]=$!
done
for t in "${targets[@]}"; do
  wait "${pid_of[$t]}" || failed+=("$t")
  cat "$build/fuzz-$t.summary" >>"$summary"
done

echo "fuzz.sh summary ($build/fuzz-summary.txt):"
sed 's/^/  /' "$summary"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (logs in $build/fuzz-<target>.log)" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
