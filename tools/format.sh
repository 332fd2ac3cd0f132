#!/usr/bin/env bash
# kiln's C++ and CUDA sources in the style of .clang-format (Google's, 100 columns), with
# clang-format-16 (tools/setup.sh installs it).
#
#   tools/format.sh           formats every tracked source in place
#   tools/format.sh --check   lists the sources that differ from the style and fails (the meson
#                             test `format`); exits 77 (skipped) without clang-format-16
#
# tests/compile_fail/cases are left as they are: their comments are directives that must stay on
# one line each, and their text is what the compile-fail diagnostics quote.
set -euo pipefail
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format-16}
if ! command -v "$cf" > /dev/null; then
  echo "SKIP: $cf not found (tools/setup.sh installs it)"
  exit 77
fi
if ! git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  echo "SKIP: not a git checkout (the sources to check are git's tracked files)"
  exit 77
fi
mapfile -t files < <(git ls-files '*.cpp' '*.hpp' '*.cu' '*.cuh' '*.h' | grep -v '^tests/compile_fail/cases/')
if [ "${1:-}" = --check ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! "$cf" --style=file "$f" | cmp -s - "$f"; then
      echo "not formatted: $f (tools/format.sh formats it)"
      bad=$((bad + 1))
    fi
  done
  echo "${#files[@]} sources checked, $bad not formatted"
  [ "$bad" = 0 ]
else
  "$cf" --style=file -i "${files[@]}"
  echo "${#files[@]} sources formatted"
fi
