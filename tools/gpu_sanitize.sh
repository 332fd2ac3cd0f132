#!/usr/bin/env bash
# compute-sanitizer over every GPU test executable (tests/gpu/test_*_gpu, the engine's included),
# one tool after another; the run belongs to the GPU correctness issue (19), on the GPU machine,
# after `tools/device_build.sh build` here (docs/RELIABILITY.md):
#
#   tools/gpu_sanitize.sh                    # memcheck (with leak check), racecheck, initcheck, synccheck
#   tools/gpu_sanitize.sh racecheck          # one tool
#   run(command="tools/gpu_sanitize.sh", carry=["build-gpu/tests/gpu"], timeout_s=600)
#
# Any report fails the tool's run (--error-exitcode 1); a test that skips (77, no GPU) does not.
# Prints "gpu-sanitize TOOL: clean" or "... : FAILED" per tool; exits 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(memcheck racecheck initcheck synccheck)
status=0
for tool in "${tools[@]}"; do
  extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  echo "=== compute-sanitizer --tool $tool"
  if tools/device_build.sh run compute-sanitizer --tool "$tool" "${extra[@]}" --error-exitcode 1 \
       --print-limit 20; then
    echo "gpu-sanitize $tool: clean"
  else
    echo "gpu-sanitize $tool: FAILED"
    status=1
  fi
done
exit $status
