#!/usr/bin/env bash
# Configures (once) and builds the CPU-only sanitizer build into build-san/ (or $KILN_SAN_DIR):
# clang-16, AddressSanitizer + UndefinedBehaviorSanitizer (any UB report aborts), libFuzzer's
# coverage instrumentation and the fuzz targets of tests/fuzz. Its CPU unit tests run with
#   meson test -C build-san --suite unit --suite fuzz
# and tools/fuzz.sh fuzzes the targets (docs/RELIABILITY.md). Extra arguments go to ninja.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${KILN_SAN_DIR:-build-san}
if [ ! -f "$build/build.ninja" ]; then
  # b_lundef=false: the sanitizer runtimes define symbols at link time that Meson's --no-undefined
  # check would refuse. libstdc++ (clang's default here) matches the Debian libraries we link.
  # -O1 with line tables only, as libFuzzer's documentation advises: reports keep file:line, and
  # the build takes much less time than -O2 -g under three instrumentations.
  CC=clang-16 CXX=clang++-16 meson setup "$build" -Dgpu=disabled -Dfuzz=true \
    -Db_sanitize=address,undefined -Db_lundef=false -Doptimization=1 -Ddebug=false \
    "-Dcpp_args=['-fno-sanitize-recover=undefined', '-gline-tables-only']" \
    -Dcpp_link_args=-fno-sanitize-recover=undefined
fi
ninja -C "$build" -j"${JOBS:-2}" "$@"
