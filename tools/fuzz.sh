#!/usr/bin/env bash
# Fuzzes the targets of tests/fuzz (built by tools/build_sanitize.sh) on top of their seed
# corpora, one after another on one core, and prints one line per target:
#   fuzz onnx: 123456 runs in 60 s, cov 4321 ft 12345, corpus 2100/3Mb (+55 new), no crash
#
#   tools/fuzz.sh                              # each target for 60 s (-max_total_time=60; CI gives 45)
#   tools/fuzz.sh -runs=1000000                # the long run of docs/RELIABILITY.md
#   FUZZ_TARGETS="onnx plan" tools/fuzz.sh -max_total_time=600
#
# Arguments are libFuzzer flags given to every target (default -max_total_time=60). The seeds
# (tests/fuzz/make_corpus.sh) go to BUILD/fuzz-seeds/ when missing; what the fuzzer adds goes to
# BUILD/fuzz-corpus/TARGET/, a crashing input to BUILD/fuzz-artifacts/TARGET/ and each log to
# BUILD/fuzz-logs/TARGET.log ($FUZZ_LOGS/TARGET.log). Exits 1 when any target crashed (its log's
# end is printed).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${KILN_SAN_DIR:-build-san}
targets=${FUZZ_TARGETS:-onnx tensor_pb npy wts plan timing_cache calib_cache}
bin=${FUZZ_BIN:-$build/tests/fuzz}     # where the fuzz_TARGET executables are
logs=${FUZZ_LOGS:-$build/fuzz-logs}
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-max_total_time=60)
if [ ! -d "$build/fuzz-seeds" ]; then
  tests/fuzz/make_corpus.sh "$build" "$build/fuzz-seeds.tmp" ${KILN_TEST_DATA:+"$KILN_TEST_DATA"} || exit 1
  mv "$build/fuzz-seeds.tmp" "$build/fuzz-seeds"
fi
# A UB report or a leak is a finding; a slow input (30 s) is one too. Stack-use-after-return
# detection stays on in the sanitizer unit tests but is off here: every rejected input throws, and
# ASan's fake-stack collection on each throw took half of the fuzzers' time.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in $targets; do
  exe="$bin/fuzz_$t"
  corpus="$build/fuzz-corpus/$t"
  log="$logs/$t.log"
  mkdir -p "$corpus" "$build/fuzz-artifacts/$t" "$(dirname "$log")"
  before=$(ls "$corpus" | wc -l)
  t0=$SECONDS
  "$exe" -timeout=30 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$t/" \
    "${flags[@]}" "$corpus" "$build/fuzz-seeds/$t" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  after=$(ls "$corpus" | wc -l)
  if [ $rc -eq 0 ]; then
    result="no crash"
  else
    result="CRASH (exit $rc; input in $build/fuzz-artifacts/$t/)"
    status=1
  fi
  echo "fuzz $t: ${runs:-?} runs in $((SECONDS - t0)) s, cov ${cov:-?} ft ${ft:-?}, corpus ${corp:-?} (+$((after - before)) new), $result"
  [ $rc -eq 0 ] || tail -40 "$log"
done
exit $status
