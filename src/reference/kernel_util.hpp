// Helpers shared by the reference kernels: broadcasting index maps, strides, GEMM.
#pragma once

#include <cstdint>
#include <vector>

#include "kiln/ir/error.hpp"
#include "kiln/ir/tensor.hpp"

namespace kiln::reference {

/// Row-major strides of dims.
std::vector<std::int64_t> strides_of(const std::vector<std::int64_t>& dims);

/// numpy-broadcast output dims of several input dims; throws ShapeError on a mismatch.
std::vector<std::int64_t> broadcast_dims(const std::vector<std::vector<std::int64_t>>& dims);

/// Calls f(k, base + sum idx[a] * strides[a]) for every multi-index idx of dims, k counting them
/// in row-major order (an odometer over the offset; nothing when a dim is 0).
template <class F>
void for_each_offset(const std::vector<std::int64_t>& dims,
                     const std::vector<std::int64_t>& strides, std::int64_t base, F&& f) {
  const std::size_t r = dims.size();
  const std::int64_t n = product(dims);
  std::vector<std::int64_t> idx(r, 0);
  std::int64_t cur = base;
  for (std::int64_t k = 0; k < n; ++k) {
    f(k, cur);
    for (std::size_t a = r; a-- > 0;) {
      if (++idx[a] < dims[a]) {
        cur += strides[a];
        break;
      }
      cur -= strides[a] * (dims[a] - 1);
      idx[a] = 0;
    }
  }
}

/// For each input, the offset of every output element under broadcasting (size numel(out)).
std::vector<std::int64_t> broadcast_offsets(const std::vector<std::int64_t>& in_dims,
                                            const std::vector<std::int64_t>& out_dims);

/// C[M,N] = alpha * op(A) op(B) + beta * C in double precision (row-major, leading dims given).
/// Backed by BLAS dgemm.
void gemm_f64(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
              double alpha, const double* A, std::int64_t lda, const double* B, std::int64_t ldb,
              double beta, double* C, std::int64_t ldc);

/// Converts any tensor's values to a double buffer / writes doubles into a tensor's dtype.
std::vector<double> as_doubles(const Tensor& t);
Tensor from_doubles_like(DType dtype, const std::vector<std::int64_t>& dims,
                         const std::vector<double>& v);

}  // namespace kiln::reference
