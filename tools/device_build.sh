#!/usr/bin/env bash
# The GPU tests, built here and run on the GPU machine (the `run` tool of this workplace, or any
# machine with an NVIDIA GPU, CUDA 13 and cuDNN 9).
#
#   tools/device_build.sh build      # here: release build of the gpu test targets only, size printed
#   tools/device_build.sh run        # there: runs every tests/gpu/test_*_gpu, prints each result
#   tools/device_build.sh run WRAPPER...   # the same, each under WRAPPER (tools/gpu_sanitize.sh)
#
# On this workplace the build dir is git-ignored, so the device call carries it:
#   run(command="tools/device_build.sh run", carry=["build-gpu/tests/gpu"], timeout_s=360)
# Only the test executables travel (they link libkiln_core and the runtime statically; CUDA,
# cuBLAS and cuDNN come from the GPU machine: cuDNN from the torch wheel's nvidia/cudnn/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KILN_BUILD_DIR:-build-gpu}
case "${1:-build}" in
  build)
    export PATH="/usr/local/cuda/bin:$PATH"
    [ -f "$build/build.ninja" ] || meson setup "$build" --buildtype=release
    targets=()
    for src in tests/gpu/test_*_gpu.cpp; do
      name=$(basename "$src" .cpp)
      targets+=("tests/gpu/$name")
    done
    ninja -C "$build" -j"${JOBS:-2}" "${targets[@]}"
    du -sh "$build/tests/gpu"
    ;;
  run)
    export LD_LIBRARY_PATH=/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
    status=0
    for t in "$build"/tests/gpu/test_*_gpu; do
      [ -x "$t" ] || continue
      echo "=== $(basename "$t")"
      "${@:2}" "$t" || { rc=$?; [ "$rc" = 77 ] || status=1; }
    done
    exit $status
    ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
