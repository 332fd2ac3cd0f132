// Per-channel affine (BatchNorm folded into scale and shift, TensorRT's scale layer), the fold
// itself, and local response normalization across channels.
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

}  // namespace kiln::kernels
