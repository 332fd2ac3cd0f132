// Reference kernels of Gemm and MatMul. Float products run in double through BLAS dgemm;
// integer products are plain loops in 64-bit integers (wrapping as the dtype does).
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

void check_dtype(KernelContext& ctx, const Tensor& a, const Tensor& b) {
  const DType t = a.dtype();
  if (!is_float(t) && t != DType::i32 && t != DType::i64 && t != DType::u32 && t != DType::u64)
    ctx.unsupported(fmt::format("dtype {} (expected f32, f64, f16, bf16, i32, i64, u32 or u64)",
                                dtype_name(t)));
  if (b.dtype() != t)
    ctx.fail(fmt::format("operands have dtypes {} and {}", dtype_name(t), dtype_name(b.dtype())));
}

/// C[M,N] = op(A) op(B) for one matrix pair, in the accumulation type of T.
template <class T>
void int_matmul(const T* a, const T* b, T* c, i64 M, i64 N, i64 K, bool ta, bool tb) {
  using Acc = accum_t<T>;
  for (i64 i = 0; i < M; ++i)
    for (i64 j = 0; j < N; ++j) {
      Acc s = 0;
      for (i64 k = 0; k < K; ++k)
        s += static_cast<Acc>(a[ta ? k * M + i : i * K + k]) *
             static_cast<Acc>(b[tb ? j * K + k : k * N + j]);
      c[i * N + j] = static_cast<T>(s);
    }
}

void gemm(KernelContext& ctx) {
  const Tensor& A = ctx.in(0);
  const Tensor& B = ctx.in(1);
  check_dtype(ctx, A, B);
  if (A.rank() != 2 || B.rank() != 2)
    ctx.fail(fmt::format("A and B must be 2-D, got {} and {}", dims_to_string(A.dims()),
                         dims_to_string(B.dims())));
  const bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  const double alpha = ctx.node.attr_float("alpha", 1.0), beta = ctx.node.attr_float("beta", 1.0);
  const i64 M = A.dim(ta ? 1 : 0), K = A.dim(ta ? 0 : 1), N = B.dim(tb ? 0 : 1);
  ops::window_rule(ctx.node, [&] { return rules::matmul_inner(K, B.dim(tb ? 1 : 0)); });
  const std::vector<i64> dims{M, N};
  std::vector<i64> c_offs;
  if (ctx.has(2)) {
    const Tensor& C = ctx.in(2);
    bool ok = C.rank() <= 2 && C.dtype() == A.dtype();
    for (std::size_t a = 0; ok && a < C.rank(); ++a) {
      const i64 d = C.dim(C.rank() - 1 - a), want = dims[1 - a];
      ok = d == 1 || d == want;
    }
    if (!ok)
      throw ShapeError(fmt::format("{}C {} does not broadcast to [{},{}]", ctx.node.where(),
                                   C.type_string(), M, N));
    c_offs = broadcast_offsets(C.dims(), dims);
  }
  if (is_float(A.dtype())) {
    const std::vector<double> a = to_f64(A), b = to_f64(B);
    std::vector<double> y(static_cast<std::size_t>(M * N), 0.0);
    if (ctx.has(2) && beta != 0.0) {
      const std::vector<double> c = to_f64(ctx.in(2));
      for (std::size_t i = 0; i < y.size(); ++i) y[i] = c[c_offs[i]];
    }
    gemm_f64(ta, tb, M, N, K, alpha, a.data(), ta ? M : K, b.data(), tb ? K : N,
             ctx.has(2) ? beta : 0.0, y.data(), N);
    ctx.set(0, from_f64(A.dtype(), dims, y));
    return;
  }
  Tensor Y(A.dtype(), dims);
  visit_dtype(A.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
      int_matmul<T>(A.data<T>(), B.data<T>(), Y.data<T>(), M, N, K, ta, tb);
      T* y = Y.data<T>();
      const auto ia = static_cast<accum_t<T>>(alpha), ib = static_cast<accum_t<T>>(beta);
      const T* c = ctx.has(2) ? ctx.in(2).data<T>() : nullptr;
      for (i64 i = 0; i < M * N; ++i)
        y[i] = static_cast<T>(ia * static_cast<accum_t<T>>(y[i]) +
                              (c ? ib * static_cast<accum_t<T>>(c[c_offs[i]]) : 0));
    }
  });
  ctx.set(0, std::move(Y));
}

void matmul(KernelContext& ctx) {
  const Tensor& A = ctx.in(0);
  const Tensor& B = ctx.in(1);
  check_dtype(ctx, A, B);
  if (A.rank() == 0 || B.rank() == 0)
    ctx.fail(fmt::format("operands must have rank >= 1, got {} and {}", dims_to_string(A.dims()),
                         dims_to_string(B.dims())));
  std::vector<i64> ad = A.dims(), bd = B.dims();
  const bool a1 = ad.size() == 1, b1 = bd.size() == 1;
  if (a1) ad.insert(ad.begin(), 1);
  if (b1) bd.push_back(1);
  const i64 M = ad[ad.size() - 2], K = ad.back(), N = bd.back();
  ops::window_rule(ctx.node, [&] { return rules::matmul_inner(K, bd[bd.size() - 2]); });
  const std::vector<i64> abatch(ad.begin(), ad.end() - 2), bbatch(bd.begin(), bd.end() - 2);
  const std::vector<i64> batch = ops::window_rule(ctx.node, [&] {
    return broadcast_dims({abatch, bbatch});
  });
  const auto aoff = broadcast_offsets(abatch, batch), boff = broadcast_offsets(bbatch, batch);
  std::vector<i64> dims = batch;
  if (!a1) dims.push_back(M);
  if (!b1) dims.push_back(N);
  const i64 nb = product(batch);
  if (is_float(A.dtype())) {
    const std::vector<double> a = to_f64(A), b = to_f64(B);
    std::vector<double> y(static_cast<std::size_t>(nb * M * N), 0.0);
    for (i64 i = 0; i < nb; ++i)
      gemm_f64(false, false, M, N, K, 1.0, a.data() + aoff[i] * M * K, K,
               b.data() + boff[i] * K * N, N, 0.0, y.data() + i * M * N, N);
    ctx.set(0, from_f64(A.dtype(), dims, y));
    return;
  }
  Tensor Y(A.dtype(), dims);
  visit_dtype(A.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
      for (i64 i = 0; i < nb; ++i)
        int_matmul<T>(A.data<T>() + aoff[i] * M * K, B.data<T>() + boff[i] * K * N,
                      Y.data<T>() + i * M * N, M, N, K, false, false);
  });
  ctx.set(0, std::move(Y));
}

}  // namespace

void register_matmul(KernelRegistry& r) {
  r.add("Gemm", gemm);
  r.add("MatMul", matmul);
}

}  // namespace kiln::reference
