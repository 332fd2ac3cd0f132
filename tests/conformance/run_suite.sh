#!/usr/bin/env bash
# Runs `kiln conformance` over one suite of the ONNX backend data and checks its summary line:
# no test may fail, and at least MIN_PASS must pass. Skips (exit 77) when the data is absent.
# usage: run_suite.sh KILN DATA_DIR SUITE MIN_PASS
set -u
kiln=$1 data=$2 suite=$3 min_pass=$4
dir="$data/$suite"
if [ ! -d "$dir" ]; then
  echo "SKIP: ONNX backend data not found at $dir (set KILN_TEST_DATA to the onnx-backend-data folder)"
  exit 77
fi
out=$("$kiln" conformance "$dir" --quiet --timeout 300)
status=$?
printf '%s\n' "$out"
summary=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ unsupported$' | tail -n 1)
if [ -z "$summary" ]; then
  echo "no summary line from kiln conformance (exit status $status)"
  exit 1
fi
passed=$(echo "$summary" | cut -d' ' -f1)
failed=$(echo "$summary" | cut -d' ' -f3)
if [ "$failed" -ne 0 ]; then
  echo "conformance $suite: $failed failed"
  exit 1
fi
if [ "$passed" -lt "$min_pass" ]; then
  echo "conformance $suite: $passed passed, fewer than the required $min_pass"
  exit 1
fi
echo "conformance $suite: $passed passed (at least $min_pass required), 0 failed"
