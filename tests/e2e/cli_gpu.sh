#!/usr/bin/env bash
# The GPU side of the kiln command line, checked where there is no GPU as well: every command
# answers --help, a bad flag is an error naming it, `kiln build --fp16` writes a cuda-fp16 plan
# (and --bf16 a cuda-bf16 one)
# (GPU-free), .npy inputs/outputs and --expected comparisons work on the CPU path, and bench,
# profile and run --gpu either run (on a GPU: bench --json is checked) or fail with "no GPU: ...".
# usage: cli_gpu.sh KILN DATA_DIR WORK_DIR
set -u
kiln=$1 data=$2 work=$3
mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
checks=0
ok() { checks=$((checks + 1)); }

# --help of every command, and the usage listing them.
for cmd in build run bench profile inspect ops conformance wts; do
  "$kiln" $cmd --help > "$work/help.txt" 2>&1 || fail "kiln $cmd --help exited $?"
  grep -q "usage: kiln $cmd" "$work/help.txt" || fail "kiln $cmd --help prints no usage"
  ok
done
"$kiln" run --gpu --help | grep -q -- '--compare-reference' || fail "kiln run --gpu --help lacks --compare-reference"
"$kiln" bench --help | grep -q -- '--cuda-graph' || fail "kiln bench --help lacks --cuda-graph"
"$kiln" profile --help | grep -q -- '--trace' || fail "kiln profile --help lacks --trace"
"$kiln" help | grep -q '^  bench' || fail "kiln help does not list bench"
"$kiln" help | grep -q '^  profile' || fail "kiln help does not list profile"
ok

# A bad flag is an error naming it (exit 1, before any GPU or file is needed).
for cmd in bench profile build run; do
  if "$kiln" $cmd --no-such-flag model.onnx > /dev/null 2> "$work/err.txt"; then fail "kiln $cmd accepted --no-such-flag"; fi
  grep -q "'--no-such-flag'" "$work/err.txt" || fail "kiln $cmd: error does not name the flag: $(cat "$work/err.txt")"
  ok
done
if "$kiln" bench --iterations abc m.onnx > /dev/null 2> "$work/err.txt"; then fail "bench accepted --iterations abc"; fi
grep -q -- "--iterations" "$work/err.txt" || fail "bench --iterations abc: $(cat "$work/err.txt")"
ok

# The gpu column of kiln ops.
"$kiln" ops --json > "$work/ops.json" || fail "kiln ops --json"
grep -q '"gpu": true' "$work/ops.json" || fail "kiln ops lists no op as running on the GPU"
ok

relu="$data/node/test_relu"
resnet="$data/light/light_resnet50.onnx"
if [ ! -f "$relu/model.onnx" ] || [ ! -f "$resnet" ]; then
  echo "SKIP: ONNX backend data not found under $data ($checks checks passed)"
  exit 77
fi

# CPU path: --expected-dir (ONNX test folder), outputs as .npy read back as --input / --expected.
"$kiln" run "$relu/model.onnx" --expected-dir "$relu/test_data_set_0" > "$work/relu.txt" \
  || fail "kiln run --expected-dir: $(cat "$work/relu.txt")"
grep -q '^expected y: .* ok$' "$work/relu.txt" || fail "no ok line: $(cat "$work/relu.txt")"
"$kiln" run "$relu/model.onnx" --expected-dir "$relu/test_data_set_0" --output-dir "$work/relu_out" \
  --output-format npy > /dev/null || fail "kiln run --output-format npy"
[ -f "$work/relu_out/y.npy" ] || fail "no $work/relu_out/y.npy"
# relu(relu(x)) = relu(x): the written output as the input gives the same output again.
"$kiln" run "$relu/model.onnx" --input "x=$work/relu_out/y.npy" --expected "y=$work/relu_out/y.npy" \
  --tolerance 0 > "$work/relu2.txt" || fail "relu of its .npy output: $(cat "$work/relu2.txt")"
ok
# A wrong expectation: exit 1, the output named.
if "$kiln" run "$relu/model.onnx" --expected "y=$relu/test_data_set_0/input_0.pb" > "$work/over.txt" 2> "$work/over_err.txt"; then
  fail "an output far from the expected passed"
fi
grep -q '^expected y: .* OVER$' "$work/over.txt" || fail "no OVER line: $(cat "$work/over.txt")"
grep -q 'tolerance' "$work/over_err.txt" || fail "no tolerance line on stderr"
ok
if command -v python3 > /dev/null && python3 -c 'import numpy' 2> /dev/null; then
  python3 -c "
import numpy as np, sys
y = np.load(sys.argv[1])
assert y.dtype == np.float32 and y.shape == (3, 4, 5), (y.dtype, y.shape)
assert (y >= 0).all()
" "$work/relu_out/y.npy" || fail "NumPy cannot read kiln's .npy output"
  ok
fi

# Sequences on the CPU path: a Loop that appends to a sequence (test_loop13_seq), its inputs and
# expected SequenceProto from the ONNX folder; its output written as a SequenceProto and read back
# as the expectation; a plan of it refused, naming the value, and nothing written.
loopseq="$data/node/test_loop13_seq"
if [ -f "$loopseq/model.onnx" ]; then
  "$kiln" run "$loopseq/model.onnx" --expected-dir "$loopseq/test_data_set_0" --output-dir "$work/seq_out" \
    > "$work/seq.txt" || fail "kiln run of a sequence model: $(cat "$work/seq.txt")"
  grep -q '^output seq_res: seq(f32) of 5$' "$work/seq.txt" || fail "no sequence line: $(cat "$work/seq.txt")"
  grep -q '^  seq_res\[4\]: f32\[5\] checksum 15 ' "$work/seq.txt" || fail "no line for its last tensor: $(cat "$work/seq.txt")"
  grep -q '^expected seq_res: .* ok$' "$work/seq.txt" || fail "no ok line: $(cat "$work/seq.txt")"
  "$kiln" run "$loopseq/model.onnx" --expected-dir "$loopseq/test_data_set_0" \
    --expected "seq_res=$work/seq_out/seq_res.pb" --tolerance 0 > "$work/seq2.txt" \
    || fail "its written SequenceProto as the expectation: $(cat "$work/seq2.txt")"
  rm -f "$work/seq.plan"
  if "$kiln" build "$loopseq/model.onnx" --save "$work/seq.plan" > "$work/seq3.txt" 2>&1; then
    fail "kiln build accepted a graph of sequences"
  fi
  grep -q "is seq(f32.*plans hold tensors" "$work/seq3.txt" || fail "the refusal does not name the sequence: $(tail -2 "$work/seq3.txt")"
  [ ! -e "$work/seq.plan" ] || fail "a refused plan was written"
  ok
fi

# A plan for the GPU with an op the runtime lacks is refused when built (no GPU needed), naming
# the op, and nothing is written.
argmax="$data/node/test_argmax_default_axis_example/model.onnx"
if [ -f "$argmax" ]; then
  rm -f "$work/argmax.plan"
  if "$kiln" build --gpu "$argmax" --save "$work/argmax.plan" > "$work/argmax.txt" 2>&1; then
    fail "kiln build --gpu accepted ArgMax"
  fi
  grep -q "no kernel for op 'ArgMax'" "$work/argmax.txt" || fail "the refusal does not name ArgMax: $(tail -2 "$work/argmax.txt")"
  [ ! -e "$work/argmax.plan" ] || fail "a refused plan was written"
  grep -q -- "--host-fallback" "$work/argmax.txt" || fail "the refusal does not point to --host-fallback"
  ok
  # With --host-fallback the plan is written, ArgMax named as a step the host runs.
  "$kiln" build --gpu "$argmax" --host-fallback --save "$work/argmax.plan" > "$work/argmax2.txt" 2>&1 ||
    fail "kiln build --gpu --host-fallback: $(tail -2 "$work/argmax2.txt")"
  grep -q "host steps: 1 of 1 steps run on the host .*ArgMax" "$work/argmax2.txt" ||
    fail "no host-steps line naming ArgMax: $(grep -i host "$work/argmax2.txt")"
  [ -f "$work/argmax.plan" ] || fail "no plan written with --host-fallback"
  ok
fi

# kiln build --fp16 writes a cuda-fp16 plan, on a machine with or without a GPU.
plan="$work/resnet50_fp16.plan"
"$kiln" build --fp16 "$resnet" --save "$plan" > "$work/build.txt" 2>&1 || fail "kiln build --fp16: $(tail -5 "$work/build.txt")"
[ -f "$plan" ] || fail "no plan written"
"$kiln" inspect "$plan" | head -1 | grep -q 'for target cuda-fp16$' || fail "plan target: $("$kiln" inspect "$plan" | head -1)"
grep -q 'plan written to .*target cuda-fp16' "$work/build.txt" || fail "build did not report the plan"
if grep -q '^no GPU' "$work/build.txt"; then
  grep -q 'tactics were not timed' "$work/build.txt" || fail "no GPU, but no word on tactics"
  gpu=0
else
  grep -q 'device memory: weights' "$work/build.txt" || fail "GPU build printed no engine memory"
  gpu=1
fi
# An example network of examples/ (random weights), dim 0 of its input set by --max-batch.
"$kiln" build --example lenet --gpu --max-batch 4 --save "$work/lenet.plan" > "$work/lenet.txt" 2>&1 \
  || fail "kiln build --example lenet: $(tail -5 "$work/lenet.txt")"
"$kiln" inspect "$work/lenet.plan" > "$work/lenet_plan.txt"
head -1 "$work/lenet_plan.txt" | grep -q 'for target cuda$' || fail "lenet plan target: $(head -1 "$work/lenet_plan.txt")"
grep -q 'f32\[4,1,28,28\]' "$work/lenet_plan.txt" || fail "lenet plan input is not f32[4,1,28,28]"
# --bf16: the same plan as --fp16 (NHWC convolutions) for an engine that stores BF16.
"$kiln" build --example lenet --bf16 --max-batch 4 --save "$work/lenet_bf16.plan" > "$work/lenet_bf16.txt" 2>&1 \
  || fail "kiln build --example lenet --bf16: $(tail -5 "$work/lenet_bf16.txt")"
head -1 <("$kiln" inspect "$work/lenet_bf16.plan") | grep -q 'for target cuda-bf16$' || fail "lenet bf16 plan target"
"$kiln" inspect "$work/lenet_bf16.plan" | grep -q 'NHWC' || fail "the bf16 plan has no NHWC step"
if "$kiln" build --example lenet --fp16 --bf16 > /dev/null 2> "$work/err.txt"; then fail "--fp16 --bf16 accepted"; fi
grep -q -- '--fp16 and --bf16 ask for different precisions' "$work/err.txt" || fail "--fp16 --bf16: $(cat "$work/err.txt")"
if [ $gpu = 1 ]; then
  # The plan decides the precision: --fp16 on a BF16 plan is an error naming both.
  if "$kiln" bench "$work/lenet_bf16.plan" --fp16 > /dev/null 2> "$work/err.txt"; then fail "--fp16 on a bf16 plan accepted"; fi
  grep -q "target 'cuda-bf16' (BF16)" "$work/err.txt" || fail "--fp16 on a bf16 plan: $(cat "$work/err.txt")"
fi
ok
if "$kiln" build --example nosuch > /dev/null 2> "$work/err.txt"; then fail "--example nosuch accepted"; fi
grep -q 'resnet50' "$work/err.txt" || fail "--example nosuch does not list the examples: $(cat "$work/err.txt")"
if "$kiln" build --gpu --target cpu-reference "$resnet" > /dev/null 2> "$work/err.txt"; then fail "--gpu with --target cpu-reference accepted"; fi
grep -q 'disagrees' "$work/err.txt" || fail "--gpu/--target: $(cat "$work/err.txt")"
ok

# bench / profile / run --gpu: a clear "no GPU" (exit 1) or, on a GPU, a run.
if [ $gpu = 0 ]; then
  for c in "bench $plan" "profile $plan" "run --gpu $relu/model.onnx"; do
    if "$kiln" $c > /dev/null 2> "$work/err.txt"; then fail "kiln $c succeeded without a GPU"; fi
    grep -q 'no GPU: ' "$work/err.txt" || fail "kiln $c: $(cat "$work/err.txt")"
    ok
  done
  echo "no GPU: $(cat "$work/err.txt")"
else
  "$kiln" bench "$plan" --iterations 20 --warmup 5 --json "$work/bench.json" --output-dir "$work/bench_out" \
    > "$work/bench.txt" || fail "kiln bench: $(cat "$work/bench.txt")"
  for key in model target batch cuda_graph iterations latency_ms throughput_per_s enqueue_ms h2d_ms d2h_ms \
             gpu_ms memory_bytes device versions p99 peak; do
    grep -q "\"$key\"" "$work/bench.json" || fail "bench JSON lacks $key"
  done
  "$kiln" bench "$plan" --iterations 20 --cuda-graph > /dev/null || fail "kiln bench --cuda-graph"
  "$kiln" profile "$plan" --iterations 3 --trace "$work/trace.json" > "$work/profile.txt" || fail "kiln profile"
  grep -q traceEvents "$work/trace.json" || fail "no trace events"
  "$kiln" run --gpu "$relu/model.onnx" --expected-dir "$relu/test_data_set_0" --compare-reference > "$work/gpu_relu.txt" \
    || fail "kiln run --gpu relu: $(cat "$work/gpu_relu.txt")"
  ok
fi
echo "kiln CLI (GPU side): $checks checks passed (GPU: $gpu)"
