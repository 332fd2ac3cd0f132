#!/usr/bin/env bash
# The GPU correctness suite, run on a machine with an NVIDIA GPU (the H100 of this workplace):
# every tests/gpu suite (kernels and layers against the CPU reference), the whole-plan suite
# (ONNX node tests, converted models and the light networks through the Engine, FP32 and FP16),
# and compute-sanitizer's memcheck (with leak check), racecheck, initcheck and synccheck.
#
#   tools/gpu_check.sh DATA_DIR [LOG_DIR]
#
# KILN_SANITIZE=0 skips the compute-sanitizer pass (a second device call runs it: both together can
# exceed one call's ten minutes); KILN_SANITIZE_TOOLS="initcheck synccheck" runs only those tools.
# DATA_DIR is the ONNX backend data (onnx-backend-data). Binaries come from
# `tools/device_build.sh build` (build-gpu/). tests/gpu/RESULTS.md records the latest run.
set -uo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: tools/gpu_check.sh DATA_DIR [LOG_DIR]}
logs=${2:-/tmp/kiln-gpu-check}
mkdir -p "$logs"
build=${KILN_BUILD_DIR:-build-gpu}
export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
date -u +"date: %Y-%m-%dT%H:%M:%SZ"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
status=0
for t in "$build"/tests/gpu/test_*_gpu; do
  name=$(basename "$t")
  [ "$name" = test_engine_gpu ] && continue
  timeout 300 "$t" > "$logs/$name.log" 2>&1
  rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 77 ] || status=1
  echo "$name (exit $rc): $(tail -1 "$logs/$name.log")"
done
timeout 420 "$build/tests/gpu/test_engine_gpu" --data "$data" --quiet > "$logs/test_engine_gpu.log" 2>&1
rc=$?
[ "$rc" = 0 ] || status=1
echo "test_engine_gpu (exit $rc):"
sed -n '/^suite/,$p' "$logs/test_engine_gpu.log" | grep -v "^  unsupported"
grep "^FAIL" "$logs/test_engine_gpu.log" | head -20
san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ "${KILN_SANITIZE:-1}" = 0 ]; then
  echo "compute-sanitizer: skipped (KILN_SANITIZE=0)"
elif [ -x "$san" ]; then
  # memcheck (with the leak check) and racecheck over the suites that launch our kernels and the
  # engine's contracts; initcheck and synccheck over the kernel suites. KILN_SANITIZE_DEADLINE_S
  # (seconds since this script started) stops starting new runs, so one device call holds it all.
  deadline=${KILN_SANITIZE_DEADLINE_S:-100000}
  runs_all="test_engine_gpu --suite engine --enqueues 20;test_pool_gpu;test_reduce_gpu;test_norm_gpu;test_transformer_gpu;test_dynamic_gpu"
  runs_kernels="test_transformer_gpu;test_norm_gpu;test_pointwise_gpu;test_copy_gpu"
  for tool in ${KILN_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}; do
    runs=$runs_all
    case $tool in initcheck|synccheck) runs=$runs_kernels ;; esac
    IFS=';' read -ra list <<< "$runs"
    for run in "${list[@]}"; do
      # KILN_SANITIZE_ONLY=test_x_gpu: only that suite's runs (a second call for one suite).
      if [ -n "${KILN_SANITIZE_ONLY:-}" ] && [ "${run%% *}" != "$KILN_SANITIZE_ONLY" ]; then continue; fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "compute-sanitizer $tool $run: not run (past KILN_SANITIZE_DEADLINE_S=$deadline)"
        continue
      fi
      set -- $run
      extra=""
      [ "$tool" = memcheck ] && extra="--leak-check full"
      limit=$((deadline + 60 - SECONDS))
      [ "$limit" -gt 240 ] && limit=240
      timeout "$limit" "$san" --tool "$tool" $extra --error-exitcode 9 "$build/tests/gpu/$1" "${@:2}" > "$logs/san-$tool-$1.log" 2>&1
      rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 77 ] || status=1
      echo "compute-sanitizer $tool $extra $run: exit $rc, $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY' "$logs/san-$tool-$1.log" | tr '\n' ' ')"
    done
  done
else
  echo "compute-sanitizer: not found on this machine (not run)"
fi
exit $status
