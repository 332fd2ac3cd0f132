// 2-D max and average pooling over NCHW (1-D pooling is H = 1). Output sizes are the caller's
// (ceil mode only changes them); windows that run past the padded input are clipped.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

enum class PoolMode : int { max = 0, average = 1 };

struct Pool2d {
  std::int64_t planes = 1;  ///< N * C
  int in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  int k_h = 1, k_w = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  /// average: divide by the window's size within the padded input (true) or by its valid
  /// elements only (false).
  bool count_include_pad = false;
};

cudaError_t pool2d(Elem elem, PoolMode mode, const Pool2d& p, const void* x, void* y,
                   cudaStream_t stream);

/// The same over NHWC data: `channels` is C (planes = N * C); threads run along C, so reads and
/// writes are coalesced.
cudaError_t pool2d_nhwc(Elem elem, PoolMode mode, const Pool2d& p, std::int64_t channels,
                        const void* x, void* y, cudaStream_t stream);

/// Max pooling of int8 values (a quantized network's MaxPool: exact, the max commutes with the
/// increasing dequantization), NCHW or NHWC (`channels` = C then).
cudaError_t max_pool2d_s8(const Pool2d& p, bool nhwc, std::int64_t channels, const void* x, void* y,
                          cudaStream_t stream);

}  // namespace kiln::kernels
