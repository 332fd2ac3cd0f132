#!/usr/bin/env bash
# The command line with hostile or mistaken input (issue 18): every case must end in an error
# message naming the thing and what was expected (exit 1), never a crash, and must leave the
# user's files as they were. Also INT8 calibration data for a DSL example (issue 13 item 8), and
# plugins from a shared library (issue 16 item 5). usage: untrusted_cli.sh KILN PYTHON WORK_DIR
# [PLUGIN_LIBRARY]
set -u
kiln=$1 py=$2 work=$3 plugin_lib=${4:-}
rm -rf "$work"
mkdir -p "$work"
if ! "$py" -c "import onnx" 2>/dev/null; then
  echo "SKIP: $py cannot import onnx (tools/setup.sh installs it)"
  exit 77
fi
fails=0
# expect_error NAME PATTERN COMMAND...: the command exits 1 (not a signal) and stderr matches.
expect_error() {
  local name=$1 pattern=$2
  shift 2
  "$@" > "$work/$name.out" 2> "$work/$name.err"
  local rc=$?
  if [ "$rc" -ne 1 ] || ! grep -qE -e "$pattern" "$work/$name.err"; then
    echo "FAIL $name: exit $rc, stderr: $(head -c 400 "$work/$name.err")"
    fails=$((fails + 1))
  else
    echo "ok   $name: $(head -c 300 "$work/$name.err")"
  fi
}
"$py" - "$work" <<'PY'
import sys, onnx
from onnx import helper, TensorProto
work = sys.argv[1]
def save(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f"{work}/{name}.onnx")
relu = [helper.make_node("Relu", ["x"], ["y"])]
y = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
save("relu", relu, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], y)
save("huge_input", relu, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**31 - 1])], y)
save("huger_input", relu, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**40])], y)
shape = helper.make_tensor("shape", TensorProto.INT64, [2], [100000, 100000])
save("const_of_shape", [helper.make_node("ConstantOfShape", ["shape"], ["y"], name="cos")], [], y, [shape])
PY
# A declared input dim of 2^31-1 or 2^40 with random inputs: the limit names the input.
expect_error huge_input "random input 'x'.*f32\[2147483647\].*8589934588 bytes.*limit" \
  "$kiln" run "$work/huge_input.onnx" --max-memory 1G
expect_error huger_input "random input 'x'.*f32\[1099511627776\]" "$kiln" run "$work/huger_input.onnx"
expect_error const_of_shape "\[ConstantOfShape 'cos'\].*f32\[100000,100000\].*40000000000 bytes" \
  "$kiln" run "$work/const_of_shape.onnx" --max-memory 2G
expect_error bad_max_memory "--max-memory.*'lots'" "$kiln" run "$work/relu.onnx" --max-memory lots
# kiln build --save refuses to write over the model it reads (by any path to it).
cp "$work/relu.onnx" "$work/relu.copy"
expect_error save_over_model "--save.*is the model" "$kiln" build "$work/relu.onnx" --save "$work/relu.onnx"
ln -s relu.onnx "$work/link.onnx"
expect_error save_over_model_link "--save.*is the model" "$kiln" build "$work/relu.onnx" --save "$work/link.onnx"
if cmp -s "$work/relu.onnx" "$work/relu.copy"; then echo "ok   the model is unchanged"
else echo "FAIL the model was changed"; fails=$((fails + 1)); fi
# A plan written over an existing plan is replaced whole.
"$kiln" build "$work/relu.onnx" --save "$work/relu.plan" > /dev/null || { echo "FAIL build"; fails=$((fails + 1)); }
"$kiln" build "$work/relu.onnx" --save "$work/relu.plan" > /dev/null || { echo "FAIL rebuild"; fails=$((fails + 1)); }
"$kiln" run --plan "$work/relu.plan" > /dev/null || { echo "FAIL the rewritten plan does not run"; fails=$((fails + 1)); }
[ -e "$work/relu.plan.kiln-tmp" ] && { echo "FAIL a temporary plan file was left"; fails=$((fails + 1)); }
# INT8 of a network written in the DSL (kiln build --example lenet --int8): bad calibration data
# is refused naming the file (and the element of a NaN), and good data gives a plan that runs.
"$py" - "$work" <<'PY'
import os, sys
import numpy as np
work = sys.argv[1]
for d in ("calib_good", "calib_nan", "calib_shape", "calib_empty"):
    os.makedirs(f"{work}/{d}", exist_ok=True)
rng = np.random.RandomState(3)
for i in range(2):
    np.save(f"{work}/calib_good/batch_{i}.npy", rng.rand(2, 1, 28, 28).astype(np.float32))
x = rng.rand(1, 1, 28, 28).astype(np.float32)
x.flat[3] = np.nan
np.save(f"{work}/calib_nan/batch_0.npy", x)
np.save(f"{work}/calib_shape/batch_0.npy", rng.rand(1, 28, 28).astype(np.float32))
PY
expect_error int8_nan "--calib-data: '.*calib_nan/batch_0.npy' holds nan at element 3" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_nan"
expect_error int8_shape "--calib-data: '.*calib_shape/batch_0.npy' holds f32\[1,28,28\]; input 'data' is f32\[N,1,28,28\]" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_shape"
expect_error int8_empty "--calib-data: '.*calib_empty' holds no .npy or .pb files" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_empty"
expect_error int8_no_data "kiln build --int8: give --calib-data DIR" "$kiln" build --example lenet --int8
expect_error int8_layer_name "layer precision 'conv9:fp16': no layer 'conv9' that INT8 applies to" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --layer-precision conv9:fp16
expect_error int8_layer_form "--layer-precision 'conv1': expected NAME:PREC" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --layer-precision conv1
expect_error int8_tolerance "--int8-tolerance: expected a positive number" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --int8-tolerance -1
expect_error int8_layer_alone "kiln build: --layer-precision goes with --int8" \
  "$kiln" build --example lenet --layer-precision conv1:fp16
expect_error int8_calib_on "--calib-on 'tpu': expected gpu or cpu" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --calib-on tpu
expect_error int8_calib_on_cpu_target "--calib-on gpu: calibration runs on the GPU for GPU builds only" \
  "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --calib-on gpu
expect_error int8_timing_alone "kiln build: --no-precision-timing goes with --int8 or --fp8" \
  "$kiln" build --example lenet --fp16 --no-precision-timing
# For a GPU target the 8-bit layers are timed against FP16 where there is a GPU; where there is
# none the build says so and keeps them 8-bit.
if "$kiln" build --example lenet --fp16 --int8 --calib-data "$work/calib_good" \
     > "$work/lenet_int8_fp16.out" 2>&1 \
   && grep -qE "int8 layers were not timed against cuda-fp16|int8 or FP16 per layer, timed on the GPU" \
        "$work/lenet_int8_fp16.out"; then
  echo "ok   kiln build --example lenet --fp16 --int8: the layers' precision by timing (or why not)"
else
  echo "FAIL kiln build --example lenet --fp16 --int8: $(tail -c 400 "$work/lenet_int8_fp16.out")"
  fails=$((fails + 1))
fi
if "$kiln" build --example lenet --int8 --calib-data "$work/calib_good" --save "$work/lenet_int8.plan" \
     > "$work/lenet_int8.out" 2>&1 && grep -q "int8: calibrated 4 tensors on 2 batches" "$work/lenet_int8.out" \
   && "$kiln" run --plan "$work/lenet_int8.plan" > /dev/null 2>&1; then
  echo "ok   kiln build --example lenet --int8 --save: the INT8 plan runs"
else
  echo "FAIL kiln build --example lenet --int8 --save: $(tail -c 400 "$work/lenet_int8.out")"
  fails=$((fails + 1))
fi
# A model with a plugin node (examples/plugins: kiln.examples FullyConnected): refused without its
# library, built and run with --plugin, and its plan names the library when run without it.
if [ -n "$plugin_lib" ]; then
  "$py" - "$work" <<'PY'
import sys, numpy as np, onnx
from onnx import helper, TensorProto, numpy_helper
work = sys.argv[1]
rng = np.random.default_rng(0)
fc = helper.make_node("FullyConnected", ["x", "W", "b"], ["h"], name="fc", domain="kiln.examples",
                      out_features=4)
g = helper.make_graph([fc, helper.make_node("Relu", ["h"], ["y"], name="relu")], "fcnet",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                      [numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "W"),
                       numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                               helper.make_opsetid("kiln.examples", 1)]),
          f"{work}/fcnet.onnx")
PY
  expect_error plugin_not_loaded "\[FullyConnected 'fc'\].*domain 'kiln.examples' \(version 1\) is no registered plugin.*--plugin" \
    "$kiln" build "$work/fcnet.onnx"
  expect_error plugin_no_file "--plugin: plugin library '$work/none.so' is no file" \
    "$kiln" run "$work/fcnet.onnx" --plugin "$work/none.so"
  expect_error plugin_not_a_library "--plugin: plugin library '$work/fcnet.onnx' could not be loaded" \
    "$kiln" run "$work/fcnet.onnx" --plugin "$work/fcnet.onnx"
  if "$kiln" build "$work/fcnet.onnx" --plugin "$plugin_lib" --save "$work/fcnet.plan" > "$work/fcnet.out" 2>&1 \
     && "$kiln" run --plan "$work/fcnet.plan" --plugin "$plugin_lib" > "$work/fcnet_run.out" 2>&1 \
     && grep -q "output y: f32\[3,4\]" "$work/fcnet_run.out"; then
    echo "ok   kiln build/run --plugin: a plan with a plugin step runs"
  else
    echo "FAIL kiln build/run --plugin: $(tail -c 400 "$work/fcnet.out" "$work/fcnet_run.out" 2>/dev/null)"
    fails=$((fails + 1))
  fi
  expect_error plugin_plan_without_library "FullyConnected@1' is not loaded \(it came from '.*libkiln_fc_plugin.so': load it with --plugin" \
    "$kiln" run --plan "$work/fcnet.plan"
fi
echo "$fails failed"
[ "$fails" -eq 0 ]
