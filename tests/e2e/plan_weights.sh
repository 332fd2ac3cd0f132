#!/usr/bin/env bash
# A plan runs with the weights it was built from and is refused, naming both hashes, with any
# other weights file. usage: plan_weights.sh KILN DATA_DIR WORK_DIR
set -u
kiln=$1 data=$2 work=$3
model="$data/light/light_squeezenet.onnx" other="$data/light/light_bvlc_alexnet.onnx"
if [ ! -f "$model" ] || [ ! -f "$other" ]; then
  echo "SKIP: ONNX backend data not found under $data"
  exit 77
fi
mkdir -p "$work"
plan="$work/squeezenet.plan"
"$kiln" build "$model" --save "$plan" > /dev/null || { echo "kiln build failed"; exit 1; }
"$kiln" run --plan "$plan" --weights "$model" > "$work/same.txt" || { echo "refused its own weights"; exit 1; }
grep -q '^output ' "$work/same.txt" || { echo "no output line"; exit 1; }
if "$kiln" run --plan "$plan" --weights "$other" > /dev/null 2> "$work/other.txt"; then
  echo "a plan ran with weights it was not built from"
  exit 1
fi
grep -q 'plan was built from other weights' "$work/other.txt" || { cat "$work/other.txt"; exit 1; }
echo "plan weights check: same weights run, other weights refused: $(cat "$work/other.txt")"
