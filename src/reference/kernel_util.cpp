#include "kernel_util.hpp"

#include <cblas.h>

#include "kiln/ir/shape_rules.hpp"

namespace kiln::reference {

std::vector<std::int64_t> strides_of(const std::vector<std::int64_t>& dims) {
  std::vector<std::int64_t> s(dims.size());
  std::int64_t acc = 1;
  for (std::size_t i = dims.size(); i-- > 0;) {
    s[i] = acc;
    acc *= dims[i];
  }
  return s;
}

std::vector<std::int64_t> broadcast_dims(const std::vector<std::vector<std::int64_t>>& all) {
  std::size_t r = 0;
  for (const auto& d : all) r = std::max(r, d.size());
  std::vector<std::int64_t> out(r, 1);
  for (const auto& d : all)
    for (std::size_t i = 0; i < d.size(); ++i) {
      auto& o = out[r - d.size() + i];
      o = rules::broadcast_dim(o, d[i]);
    }
  return out;
}

std::vector<std::int64_t> broadcast_offsets(const std::vector<std::int64_t>& in_dims,
                                            const std::vector<std::int64_t>& out_dims) {
  const std::size_t r = out_dims.size();
  const std::size_t off = r - in_dims.size();
  const auto in_strides = strides_of(in_dims);
  std::vector<std::int64_t> eff(r, 0);  // stride of the input along each output axis
  for (std::size_t i = 0; i < in_dims.size(); ++i)
    eff[off + i] = in_dims[i] == 1 ? 0 : in_strides[i];
  std::vector<std::int64_t> result(static_cast<std::size_t>(product(out_dims)));
  for_each_offset(out_dims, eff, 0, [&](std::int64_t k, std::int64_t at) { result[k] = at; });
  return result;
}

void gemm_f64(bool trans_a, bool trans_b, std::int64_t M, std::int64_t N, std::int64_t K,
              double alpha, const double* A, std::int64_t lda, const double* B, std::int64_t ldb,
              double beta, double* C, std::int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < N; ++j)
        C[i * ldc + j] = beta == 0.0 ? 0.0 : beta * C[i * ldc + j];
    return;
  }
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

std::vector<double> as_doubles(const Tensor& t) { return t.to_doubles(); }

Tensor from_doubles_like(DType dtype, const std::vector<std::int64_t>& dims,
                         const std::vector<double>& v) {
  return Tensor::from_doubles(dtype, dims, v);
}

}  // namespace kiln::reference
