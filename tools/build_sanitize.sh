#!/usr/bin/env bash
# Configures (once) and builds the CPU-only sanitizer build into build-san/ (or $KILN_SAN_DIR):
# clang-16, AddressSanitizer + UndefinedBehaviorSanitizer (any UB report aborts), libFuzzer's
# coverage instrumentation and the fuzz targets of tests/fuzz. Its CPU unit tests run with
#   meson test -C build-san --no-rebuild --suite unit --suite fuzz
# and tools/fuzz.sh fuzzes the targets (docs/RELIABILITY.md). Arguments, if any, are the ninja
# targets to build instead.
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
if [ $# -gt 0 ]; then
  ninja -C "$build" -j"${JOBS:-2}" "$@"
  exit
fi
# What the unit and fuzz suites run, the fuzz targets and fuzz_seeds; not the examples and tools
# (their templates cost minutes under the sanitizers, and no test of these suites runs them).
mapfile -t targets < <(python3 - "$build" <<'PY'
import json, os, subprocess, sys
build = sys.argv[1]
intro = lambda what: json.loads(subprocess.check_output(["meson", "introspect", what, build]))
wanted = {d for t in intro("--tests") if {"kiln:unit", "kiln:fuzz"} & set(t["suite"]) for d in t["depends"]}
for t in intro("--targets"):
    if t["type"] == "executable" and (t["id"] in wanted or t["name"].startswith("fuzz_")):
        print(os.path.relpath(t["filename"][0], os.path.abspath(build)))
PY
)
ninja -C "$build" -j"${JOBS:-2}" "${targets[@]}"
