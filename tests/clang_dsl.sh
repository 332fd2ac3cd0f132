#!/usr/bin/env bash
# The typed DSL under a second compiler: tests/unit/test_dsl.cpp and the example networks
# compiled with clang (clang++-16), linked with the kiln_core library that the main compiler
# built (both use libstdc++), then run: the DSL's tests pass and each example runs on the CPU
# reference with random weights.
# usage: clang_dsl.sh CLANG SOURCE_ROOT LIBKILN_CORE WORK_DIR
set -euo pipefail
clang=$1 src=$2 lib=$3 work=$4
mkdir -p "$work"
libs=$(pkg-config --libs fmt protobuf openblas)
flags=(-std=c++20 -O1 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
       -I "$src/include" -I "$src/src" -I "$src/examples")
"$clang" "${flags[@]}" -o "$work/test_dsl_clang" "$src/tests/unit/test_dsl.cpp" \
  "$src/tests/unit/doctest_main.cpp" "$lib" $libs -lpthread
"$work/test_dsl_clang"
for ex in lenet googlenet charrnn; do
  "$clang" "${flags[@]}" -o "$work/${ex}_clang" "$src/examples/$ex.cpp" "$lib" $libs -lpthread
  "$work/${ex}_clang" > "$work/$ex.txt" || { cat "$work/$ex.txt"; echo "FAIL: $ex (clang) exited $?"; exit 1; }
  echo "ok: $ex (clang): $(tail -1 "$work/$ex.txt")"
done
