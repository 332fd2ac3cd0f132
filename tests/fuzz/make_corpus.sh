#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets into OUT/TARGET/ (nothing here is committed):
#   make_corpus.sh BUILD OUT [DATA]
# BUILD: the sanitizer build (tools/build_sanitize.sh) holding tests/fuzz/fuzz_seeds;
# DATA: the ONNX backend test data (default ../shared/onnx-backend-data beside the checkout).
#   onnx/          every model.onnx of DATA up to 64 KiB (node, simple, pytorch-* suites)
#   tensor_pb/     input_0.pb and output_0.pb of each node test up to 16 KiB
#   wts/ npy/ timing_cache/ calib_cache/   written by fuzz_seeds with the library's own writers
#   plan/          a few node tests' models built for the CPU reference by fuzz_seeds (as
#                  `kiln build --save` writes them)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build=$1
out=$2
data=${3:-$here/../../../shared/onnx-backend-data}
[ -d "$data/node" ] || { echo "make_corpus: no ONNX test data at $data" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/onnx" "$out/tensor_pb"
for suite in node simple pytorch-converted pytorch-operator; do
  for m in "$data/$suite"/*/model.onnx; do
    [ "$(stat -c %s "$m")" -le 65536 ] || continue
    cp "$m" "$out/onnx/$suite-$(basename "$(dirname "$m")").onnx"
  done
done
for d in "$data"/node/*/test_data_set_0; do
  t=$(basename "$(dirname "$d")")
  for f in input_0 output_0; do
    [ -f "$d/$f.pb" ] && [ "$(stat -c %s "$d/$f.pb")" -le 16384 ] && cp "$d/$f.pb" "$out/tensor_pb/$t-$f.pb"
  done
done
# Plans: one model per family of step (conv, pooling, matmul, recurrent, data movement, fused
# chains), so the loader sees every kind of step, fused bodies, weights and views.
models=()
for t in test_conv_with_strides_padding test_convtranspose test_maxpool_2d_pads \
         test_averagepool_2d_default test_matmul_2d test_gemm_default_single_elem_vector_bias \
         test_lstm_defaults test_gru_defaults test_rnn_seq_length test_concat_2d_axis_0 \
         test_reshape_reordered_all_dims test_transpose_default test_slice test_gather_0 \
         test_softmax_axis_1 test_batchnorm_example test_relu test_add_bcast test_resize_upsample_scales_nearest \
         test_split_equal_parts_1d_opset18 test_reduce_mean_default_axes_keepdims_example test_sigmoid \
         test_instancenorm_example test_pad; do
  [ -f "$data/node/$t/model.onnx" ] && models+=("$data/node/$t/model.onnx")
done
for m in "$data"/simple/*/model.onnx; do models+=("$m"); done
"$build/tests/fuzz/fuzz_seeds" "$out" "${models[@]}"
for t in "$out"/*/; do echo "make_corpus: $(basename "$t"): $(ls "$t" | wc -l) seeds"; done
