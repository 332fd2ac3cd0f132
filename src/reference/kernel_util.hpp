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
