// Loops shared by the elementwise reference kernels: numpy broadcasting split into contiguous runs,
// dtype dispatch restricted to the types an op accepts, and the binary / unary element maps.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "ir/ops/type_classes.hpp"
#include "kernel_util.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::reference {

void register_elementwise_unary(KernelRegistry& r);  // elementwise_unary.cpp

// ---- broadcasting ------------------------------------------------------------------------------

/// Broadcasting of several inputs to one output, as `outer` runs of `inner` contiguous output
/// elements. Along a run every input either advances by one element (step 1) or stays on one
/// element (step 0), so the innermost loop has no index arithmetic; equal shapes give one run.
struct BroadcastPlan {
  std::vector<std::int64_t> out_dims;
  std::int64_t inner = 1;
  std::int64_t outer = 1;
  std::vector<std::vector<std::int64_t>> offsets;  ///< per input: its offset at each run's start
  std::vector<std::int64_t> step;                  ///< per input: 0 or 1
};

/// Plans the broadcast of `dims` (numpy rules); throws ShapeError on a mismatch.
BroadcastPlan plan_broadcast(const std::vector<std::vector<std::int64_t>>& dims);

/// o[i] = f(a[.], b[.]) over a two-input plan. f takes and returns storage types.
template <class A, class B, class O, class F>
void binary_loop(const BroadcastPlan& p, const A* a, const B* b, O* o, F&& f) {
  const std::int64_t n = p.inner;
  for (std::int64_t r = 0; r < p.outer; ++r) {
    const A* pa = a + p.offsets[0][r];
    const B* pb = b + p.offsets[1][r];
    O* po = o + r * n;
    if (p.step[0] && p.step[1]) {
      for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    } else if (p.step[0]) {
      const B vb = *pb;
      for (std::int64_t i = 0; i < n; ++i) po[i] = f(pa[i], vb);
    } else if (p.step[1]) {
      const A va = *pa;
      for (std::int64_t i = 0; i < n; ++i) po[i] = f(va, pb[i]);
    } else {
      const O v = f(*pa, *pb);
      for (std::int64_t i = 0; i < n; ++i) po[i] = v;
    }
  }
}

// ---- dtype dispatch ----------------------------------------------------------------------------

using ops::Types;

/// Whether an op that accepts the class K takes the C++ type T (as the shape rules check dtypes).
template <Types K, class T>
constexpr bool accepts() {
  return ops::accepts(K, dtype_v<T>);
}

/// Calls f(T{}) for the C++ type of `d` when the op accepts it; UnsupportedError otherwise.
template <Types K, class F>
void visit_typed(const KernelContext& ctx, DType d, F&& f) {
  visit_dtype(d, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (accepts<K, T>())
      f(tag);
    else
      ctx.unsupported(fmt::format("dtype {} is not supported by {}", dtype_name(d), ctx.node.op));
  });
}

/// Throws unless inputs i and j share a dtype.
inline void require_same_dtype(const KernelContext& ctx, std::size_t i, std::size_t j) {
  if (ctx.in(i).dtype() != ctx.in(j).dtype())
    ctx.fail(fmt::format("inputs {} and {} must have the same dtype, got {} and {}", i, j,
                         dtype_name(ctx.in(i).dtype()), dtype_name(ctx.in(j).dtype())));
}

// ---- element maps ------------------------------------------------------------------------------

/// Broadcasts inputs 0 and 1 (of storage types A and B) into a new tensor of dtype O;
/// f maps compute values (compute_t) to a value converted to O.
template <class A, class B, class O, class F>
Tensor binary_map(const KernelContext& ctx, F&& f) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  const BroadcastPlan p = plan_broadcast({a.dims(), b.dims()});
  Tensor out(dtype_v<O>, p.out_dims);
  if (out.numel() == 0) return out;
  binary_loop(p, a.data<A>(), b.data<B>(), out.data<O>(),
              [&](A x, B y) { return from_compute<O>(f(to_compute(x), to_compute(y))); });
  return out;
}

/// A new tensor of dtype O and x's dims with o[i] = f(compute value of x[i]).
template <class T, class O, class F>
Tensor unary_map(const Tensor& x, F&& f) {
  Tensor out(dtype_v<O>, x.dims());
  const T* px = x.data<T>();
  O* po = out.data<O>();
  const std::int64_t n = x.numel();
  for (std::int64_t i = 0; i < n; ++i) po[i] = from_compute<O>(f(to_compute(px[i])));
  return out;
}

// ---- integer arithmetic that wraps as numpy does (never undefined behaviour) -------------------

template <class T>
using wide_unsigned_t =
    std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;

template <class T>
T wrap_add(T a, T b) {
  using U = wide_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
}
template <class T>
T wrap_sub(T a, T b) {
  using U = wide_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
}
template <class T>
T wrap_mul(T a, T b) {
  using U = wide_unsigned_t<T>;
  return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
}
template <class T>
T wrap_neg(T a) {
  using U = wide_unsigned_t<T>;
  return static_cast<T>(U(0) - static_cast<U>(a));
}

}  // namespace kiln::reference
