// 8-bit integer kernels: QuantizeLinear and DequantizeLinear between floats and int8/uint8
// (per tensor or per channel), and the pieces of an INT8 convolution or matrix product around
// cuBLASLt's integer product: im2col of an int8 NCHW input, rows padded to a multiple of 4 bytes,
// and the epilogue that turns the int32 accumulator into the step's output (per-channel scale,
// bias, dequantized residual, ReLU, requantization). Rounding is half to even, saturating, as
// ONNX's QuantizeLinear says and as the CPU reference computes.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// Per-tensor or per-channel quantization parameters over a contiguous tensor: element i has
/// channel (i / inner) % channels; `scale` and `zero_point` (device arrays of `channels` floats;
/// zero_point may be null for 0) are indexed by it.
struct QuantParams {
  const float* scale = nullptr;
  const float* zero_point = nullptr;
  std::int64_t channels = 1, inner = 1;
};

/// The one-byte types QuantizeLinear writes and DequantizeLinear reads: int8, uint8, and FP8
/// E4M3 (ONNX FLOAT8E4M3FN) and E5M2 (FLOAT8E5M2), the two CUDA converts in hardware.
enum class Q8 : std::uint8_t { s8, u8, e4m3, e5m2 };

/// y[i] = saturate(round_half_even(x[i] / scale) + zero_point) as int8 or uint8; for FP8,
/// y[i] = x[i] / scale + zero_point rounded to nearest even, out of range the largest finite value
/// (`saturate`) or NaN (E4M3) / infinity (E5M2), as ONNX's saturate attribute says.
cudaError_t quantize(Elem x_elem, const void* x, const QuantParams& q, Q8 type, bool saturate,
                     void* y, std::int64_t n, cudaStream_t stream);
/// y[i] = (x[i] - zero_point) * scale.
cudaError_t dequantize(const void* x, Q8 type, const QuantParams& q, Elem y_elem, void* y,
                       std::int64_t n, cudaStream_t stream);

/// A 2-D convolution over an int8 NCHW input (1-D: h = 1), with the int8 patch rows it reads.
struct Im2col {
  std::int64_t batch = 1;
  int channels = 1, in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  int k_h = 1, k_w = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int pad_top = 0, pad_left = 0;
  int row = 4;  ///< bytes of one patch row: channels * k_h * k_w rounded up to a multiple of 4
  bool nhwc = false;  ///< x is NHWC; a patch row is then (kh, kw, c), C fastest
};
/// cols[(n * out_h + oh) * out_w + ow][(c * k_h + kh) * k_w + kw] = x[n][c][ih][iw] (NHWC:
/// [(kh * k_w + kw) * C + c] = x[n][ih][iw][c]), 0 in the padding and past the patch's length.
cudaError_t im2col_s8(const Im2col& p, const std::int8_t* x, std::int8_t* cols,
                      cudaStream_t stream);
/// y[r][0..row) = x[r][0..k) then zeros: rows of k bytes copied to rows of `row` bytes.
cudaError_t pad_rows_s8(const std::int8_t* x, std::int64_t rows, std::int64_t k, std::int64_t row,
                        std::int8_t* y, cudaStream_t stream);

/// The output of an 8-bit step from its accumulator acc[(n * pixels + p) * acc_ld + c] (c <
/// channels; int32 for INT8, f32 for FP8 `acc_f32`): v = acc * multiplier[c] (+ bias[c])
/// (+ (residual - rz) * rs) (ReLU), written at y[(n * channels + c) * pixels + p] (`nhwc`:
/// y[(n * pixels + p) * channels + c]) as floats (`y_elem`) or quantized again (`out_q` set, to
/// `out_type`). The residual is 8-bit in the output's shape and layout. A convolution has pixels =
/// H * W per image; a matrix product has batch = rows and pixels = 1.
struct Int8Epilogue {
  std::int64_t batch = 1, pixels = 1, channels = 1, acc_ld = 1;
  bool acc_f32 = false;  ///< the accumulator is f32 (an FP8 product), else int32
  const float* multiplier = nullptr;
  const float* bias = nullptr;     ///< may be null
  const void* residual = nullptr;  ///< may be null
  Q8 residual_type = Q8::s8;
  QuantParams residual_q;  ///< over the output's shape
  bool relu = false;
  bool nhwc = false;   ///< the output (and residual) is NHWC
  bool out_q = false;  ///< quantize (else float output)
  Q8 out_type = Q8::s8;
  bool out_saturate = true;  ///< FP8 outputs: QuantizeLinear's saturate
  QuantParams y_q;           ///< over the output's shape
  Elem y_elem = Elem::f32;   ///< float output's element type
};
cudaError_t int8_epilogue(const Int8Epilogue& e, const void* acc, void* y, cudaStream_t stream);

}  // namespace kiln::kernels
