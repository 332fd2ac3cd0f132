#!/usr/bin/env bash
# Installs what kiln needs to build and test on a fresh Debian 12 machine with the CUDA toolkit
# in /usr/local/cuda: compilers' libraries from Debian, a current Meson, the ONNX Python tools,
# and nanobind, meson-python and pytest (the Python module), nvidia-pytriton and tritonclient
# (serving) from PyPI. Safe to run again: it
# installs only what is missing.
set -euo pipefail

apt_packages=(libfmt-dev doctest-dev libprotobuf-dev protobuf-compiler libopenblas-dev ninja-build
              pkg-config libcli11-dev nlohmann-json3-dev python3-torch python3-torchvision python3-sklearn
              clang-16 libclang-rt-16-dev libfuzzer-16-dev  # clang: the sanitizer, fuzz and DSL builds
              clang-format-16)  # tools/format.sh and the meson test `format`
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing from Debian: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi

py=${PYTHON:-python3}
need_pip=()
$py -c "import mesonbuild, sys; from mesonbuild import coredata; v=tuple(int(x) for x in coredata.version.split('.')[:2]); sys.exit(0 if v >= (1, 4) else 1)" 2>/dev/null || need_pip+=("meson>=1.4")
$py -c "import onnx" 2>/dev/null || need_pip+=(onnx)
$py -c "import onnxruntime" 2>/dev/null || need_pip+=(onnxruntime)
$py -c "import numpy" 2>/dev/null || need_pip+=(numpy)
# The Python module (python/kiln, pyproject.toml) and its tests (tests/python).
$py -c "import nanobind" 2>/dev/null || need_pip+=(nanobind)
$py -c "import mesonpy" 2>/dev/null || need_pip+=(meson-python)
$py -c "import pytest" 2>/dev/null || need_pip+=(pytest)
# Serving plans with Triton (python -m kiln.serve, tests/python/test_triton.py): nvidia-pytriton
# bundles a tritonserver with its Python backend; tritonclient is Triton's client (HTTP and gRPC).
# nvidia-pytriton 0.7 pins numpy<2 (it installs numpy 1.26).
$py -c "import pytriton" 2>/dev/null || need_pip+=(nvidia-pytriton)
$py -c "import tritonclient.http, tritonclient.grpc" 2>/dev/null || need_pip+=("tritonclient[all]")
# deploy/kserve's manifests are validated offline against a vendored JSON Schema (tests/python/test_deploy.py).
$py -c "import yaml" 2>/dev/null || need_pip+=(pyyaml)
$py -c "import jsonschema" 2>/dev/null || need_pip+=(jsonschema)
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: installing from PyPI: ${need_pip[*]}"
  $py -m pip install -q "${need_pip[@]}"
fi
if ! command -v meson >/dev/null; then
  echo "setup: meson is installed but not on PATH" >&2
  exit 1
fi
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: note: add /usr/local/cuda/bin to PATH (tools/build.sh does)"
fi
echo "setup: done (meson $(meson --version))"
