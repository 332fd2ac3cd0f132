#!/usr/bin/env bash
# Gives the nine light model-zoo networks random weights (tools/light_random_weights.py, expected
# outputs from onnxruntime), then checks kiln on them with `kiln conformance` (rtol 1e-3): all
# nine must pass, and the generated models (1.3 GB) are then removed. Exits 77 (skip) when the
# Python modules or the light models are missing.
# usage: run_light_random.sh PYTHON SCRIPT KILN LIGHT_DIR OUT_DIR
set -u
python=$1 script=$2 kiln=$3 light=$4 out=$5
if [ ! -d "$light" ]; then
  echo "SKIP: light models not found at $light (set KILN_TEST_DATA to the onnx-backend-data folder)"
  exit 77
fi
"$python" "$script" "$out" --data "$light"
status=$?
[ $status -ne 0 ] && exit $status   # 77: onnx/onnxruntime missing
res=$("$kiln" conformance "$out" --quiet --timeout 600)
status=$?
printf '%s\n' "$res"
summary=$(printf '%s\n' "$res" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ unsupported$' | tail -n 1)
if [ -z "$summary" ]; then
  echo "no summary line from kiln conformance (exit status $status)"
  exit 1
fi
if [ "$summary" != "9 passed, 0 failed, 0 unsupported" ]; then
  echo "light models with random weights: expected 9 passed, 0 failed, 0 unsupported"
  exit 1
fi
echo "light models with random weights: all 9 match onnxruntime"
rm -rf "$out"   # 1.3 GB of full-size random weights; kept above when a model fails
