// Per-channel affine (BatchNorm folded into scale and shift, TensorRT's scale layer), the fold
// itself, local response normalization across channels, and the row normalizations of
// transformers (LayerNorm, RMSNorm).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"
#include "pointwise.cuh"

namespace kiln::kernels {

/// Over [outer, C, inner]: y = act((x * scale[c] + shift[c]) ^ power[c]). scale, shift and power
/// are f32 of C entries, each nullable (1, 0 and 1 then). NHWC is outer = N*H*W, inner = 1.
cudaError_t channel_affine(Elem elem, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                           const void* x, const float* scale, const float* shift,
                           const float* power, Activation act, float act_alpha, float act_beta,
                           void* y, cudaStream_t stream);

/// BatchNorm to affine: scale = gamma / sqrt(var + eps), shift = beta - mean * scale (f32).
cudaError_t batchnorm_fold(std::int64_t channels, const float* gamma, const float* beta,
                           const float* mean, const float* var, float eps, float* scale,
                           float* shift, cudaStream_t stream);

/// ONNX LRN over [N, C, inner]: y = x / (bias + alpha / size * sum of x^2 over the window of
/// `size` channels around c) ^ beta.
cudaError_t lrn(Elem elem, std::int64_t n, std::int64_t channels, std::int64_t inner, int size,
                float alpha, float beta, float bias, const void* x, void* y, cudaStream_t stream);

/// LayerNormalization (rms = false) or RMSNormalization (rms = true) over rows of `n` elements:
/// v = x (+ residual), y = (v - mean) * invstd * scale + bias, invstd = 1 / sqrt(var + eps) (RMS:
/// no mean, var = mean of v^2). Statistics are computed in f32 whatever the element type (the
/// ONNX stash type), mean first and then the centred variance (no E[x^2] - mean^2 cancellation).
/// scale and bias have `n` entries (or 1, broadcast) in the element type; each of residual,
/// scale, bias, mean_out, invstd_out and sum_out may be null. mean_out/invstd_out get one entry
/// per row; sum_out gets v (the residual sum, for the readers of a fused residual + norm).
struct RowNormArgs {
  std::int64_t rows = 0, n = 0;
  const void* x = nullptr;
  const void* residual = nullptr;
  const void* scale = nullptr;
  std::int64_t scale_len = 0;
  const void* bias = nullptr;
  std::int64_t bias_len = 0;
  float eps = 1e-5f;
  bool rms = false;
  void* y = nullptr;
  void* mean_out = nullptr;
  void* invstd_out = nullptr;
  void* sum_out = nullptr;
};
cudaError_t row_norm(Elem elem, const RowNormArgs& a, cudaStream_t stream);

}  // namespace kiln::kernels
