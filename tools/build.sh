#!/usr/bin/env bash
# Configures (once) and builds kiln into build/ (or $KILN_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
build=${KILN_BUILD_DIR:-build}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" "$@"
fi
meson compile -C "$build"
