#!/usr/bin/env bash
# kiln's main job, end to end on an example network written in the typed DSL (ResNet-50, random
# weights, seed 42): run it on the CPU reference, build it into a fused FP16 plan for the GPU,
# and where a GPU is usable, run that plan on the GPU and benchmark it (CUDA graph replay).
# Without a GPU the plan is still built and written, and the GPU steps are skipped, saying why.
# Run after tools/build.sh; uses build/ (or $KILN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KILN_BUILD_DIR:-build}
kiln=$build/tools/kiln
plan=$build/resnet50-fp16.plan

echo "=== 1. ResNet-50 (examples/resnet50.hpp) on the CPU reference"
"$build/examples/resnet50"

echo
echo "=== 2. kiln build --example resnet50 --fp16: the fused plan for the GPU (target cuda-fp16)"
build_log=$(mktemp)
trap 'rm -f "$build_log"' EXIT
"$kiln" build --example resnet50 --fp16 --save "$plan" 2>&1 | tee "$build_log"

echo
echo "=== 3. the plan on the GPU: kiln run --gpu, kiln bench --cuda-graph"
if ! nvidia-smi -L > /dev/null 2>&1; then
  echo "no GPU: nvidia-smi -L found none; skipped (the plan is in $plan)"
  exit 0
fi
if grep -q '^no GPU' "$build_log"; then
  echo "no GPU: the CUDA runtime cannot use it (see the build's \"no GPU\" line); skipped (the plan is in $plan)"
  exit 0
fi
"$kiln" run --plan "$plan" --gpu
"$kiln" bench "$plan" --cuda-graph
