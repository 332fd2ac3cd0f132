// Layout and precision conversions: batched 2-D transposes (NCHW <-> NHWC) and f32 <-> f16.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// y[b, c, r] = x[b, r, c] for x of [batch, rows, cols]; elements of 1, 2, 4 or 8 bytes.
cudaError_t transpose_batched(std::size_t elem_size, std::int64_t batch, std::int64_t rows,
                              std::int64_t cols, const void* x, void* y, cudaStream_t stream);

/// [N, C, spatial] -> [N, spatial, C].
inline cudaError_t nchw_to_nhwc(std::size_t elem_size, std::int64_t n, std::int64_t c,
                                std::int64_t spatial, const void* x, void* y, cudaStream_t s) {
  return transpose_batched(elem_size, n, c, spatial, x, y, s);
}
/// [N, spatial, C] -> [N, C, spatial].
inline cudaError_t nhwc_to_nchw(std::size_t elem_size, std::int64_t n, std::int64_t c,
                                std::int64_t spatial, const void* x, void* y, cudaStream_t s) {
  return transpose_batched(elem_size, n, spatial, c, x, y, s);
}

/// y = x converted to `to` (round to nearest even); n elements; x and y must not alias.
cudaError_t cast(Elem from, Elem to, const void* x, void* y, std::int64_t n, cudaStream_t stream);

/// 2-D convolution geometry for im2col (NCHW input; zero padding).
struct Im2col {
  std::int64_t n = 1;
  int c = 1, h = 1, w = 1, kh = 1, kw = 1, pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1;
  int dil_h = 1, dil_w = 1, out_h = 1, out_w = 1;
};

/// col[n][(c, ky, kx)][(oh, ow)] = x[n][c][oh*s - p + ky*d][ow*s - p + kx*d] (0 outside): each
/// image's columns form a (C*kh*kw) x (OH*OW) matrix, so a convolution is W (K x C*kh*kw) times it.
cudaError_t im2col(std::size_t elem_size, const Im2col& g, const void* x, void* col,
                   cudaStream_t stream);

}  // namespace kiln::kernels
