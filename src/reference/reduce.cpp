// Reference kernels of the reduce op family: Reduce*, ArgMax, ArgMin, TopK, CumSum, Einsum.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "families.hpp"
#include "ir/ops/einsum.hpp"
#include "kernel_util.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln::reference {

namespace {

using i64 = std::int64_t;

enum class Reduction { sum, mean, max, min, prod, l1, l2, log_sum, log_sum_exp, sum_square };

i64 axis_of(const KernelContext& ctx, i64 axis, i64 rank) {
  if (axis < -rank || axis >= rank)
    ctx.fail(fmt::format("axis {} out of range for rank {}", axis, rank));
  return axis < 0 ? axis + rank : axis;
}

/// The reduced axes (sorted, unique) of a Reduce* node; empty with `noop` means no reduction.
std::vector<bool> reduced_axes(const KernelContext& ctx, i64 rank, bool& noop) {
  std::vector<i64> axes;
  if (ctx.has(1)) axes = ctx.in(1).to_int64s();
  noop = false;
  std::vector<bool> red(static_cast<std::size_t>(rank), false);
  if (axes.empty()) {
    if (ctx.node.attr_int("noop_with_empty_axes", 0) != 0)
      noop = true;
    else
      std::fill(red.begin(), red.end(), true);
    return red;
  }
  for (i64 a : axes) {
    const i64 na = axis_of(ctx, a, rank);
    if (red[na]) ctx.fail(fmt::format("axes {} repeat axis {}", fmt::join(axes, ","), na));
    red[na] = true;
  }
  return red;
}

template <class T>
void reduce_typed(KernelContext& ctx, Reduction kind) {
  const Tensor& x = ctx.in(0);
  const i64 rank = static_cast<i64>(x.rank());
  bool noop = false;
  const std::vector<bool> red = reduced_axes(ctx, rank, noop);
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  std::vector<i64> keep_dims, out_dims;
  for (i64 d = 0; d < rank; ++d) {
    if (red[d]) {
      keep_dims.push_back(1);
      if (keepdims) out_dims.push_back(1);
    } else {
      keep_dims.push_back(x.dim(d));
      out_dims.push_back(x.dim(d));
    }
  }
  const i64 n_out = product(keep_dims);
  const i64 n_in = x.numel();
  const i64 count = n_out == 0 ? 0 : n_in / n_out;  // elements reduced into each output
  const std::vector<i64> to_out = broadcast_offsets(keep_dims, x.dims());
  const T* in = x.data<T>();
  using C = compute_t<T>;
  using A = accum_t<T>;
  constexpr bool is_fp = std::is_floating_point_v<C>;
  Tensor out(x.dtype(), out_dims);
  T* o = out.data<T>();

  if (kind == Reduction::max || kind == Reduction::min) {
    const bool is_max = kind == Reduction::max;
    auto acc = std::make_unique<C[]>(static_cast<std::size_t>(n_out));  // not vector<bool>
    C init;
    if constexpr (std::is_same_v<T, bool>)
      init = !is_max;
    else if constexpr (is_fp)
      init = is_max ? -std::numeric_limits<C>::infinity() : std::numeric_limits<C>::infinity();
    else
      init = is_max ? std::numeric_limits<C>::lowest() : std::numeric_limits<C>::max();
    std::fill(acc.get(), acc.get() + n_out, init);
    for (i64 i = 0; i < n_in; ++i) {
      const C v = to_compute(in[i]);
      C& a = acc[to_out[i]];
      if constexpr (is_fp) {
        if (std::isnan(v) || std::isnan(a)) {
          a = std::numeric_limits<C>::quiet_NaN();
          continue;
        }
      }
      a = is_max ? std::max(a, v) : std::min(a, v);
    }
    for (i64 k = 0; k < n_out; ++k) o[k] = from_compute<T>(acc[k]);
    ctx.set(0, std::move(out));
    return;
  }

  if (kind == Reduction::log_sum_exp) {
    std::vector<double> mx(n_out, -std::numeric_limits<double>::infinity()), s(n_out, 0.0);
    for (i64 i = 0; i < n_in; ++i) {
      const double v = static_cast<double>(to_compute(in[i]));
      if (std::isfinite(v)) mx[to_out[i]] = std::max(mx[to_out[i]], v);
    }
    for (i64 k = 0; k < n_out; ++k)
      if (!std::isfinite(mx[k])) mx[k] = 0.0;
    for (i64 i = 0; i < n_in; ++i)
      s[to_out[i]] += std::exp(static_cast<double>(to_compute(in[i])) - mx[to_out[i]]);
    for (i64 k = 0; k < n_out; ++k) o[k] = from_compute<T>(std::log(s[k]) + mx[k]);
    ctx.set(0, std::move(out));
    return;
  }

  // Sums and products in the accumulation type (double for floats, 64-bit for integers).
  std::vector<A> acc(n_out, kind == Reduction::prod ? A(1) : A(0));
  for (i64 i = 0; i < n_in; ++i) {
    const A v = static_cast<A>(to_compute(in[i]));
    A& a = acc[to_out[i]];
    switch (kind) {
      case Reduction::prod: a *= v; break;
      case Reduction::l1:
        if constexpr (std::is_signed_v<A>)
          a += v < 0 ? -v : v;
        else
          a += v;
        break;
      case Reduction::l2:
      case Reduction::sum_square: a += v * v; break;
      default: a += v; break;
    }
  }
  for (i64 k = 0; k < n_out; ++k) {
    const A a = acc[k];
    switch (kind) {
      case Reduction::mean:
        if constexpr (is_fp)
          o[k] = from_compute<T>(a / static_cast<double>(count));
        else
          o[k] = count == 0 ? T(0) : from_compute<T>(a / static_cast<A>(count));
        break;
      case Reduction::l2: o[k] = from_compute<T>(std::sqrt(static_cast<double>(a))); break;
      case Reduction::log_sum: o[k] = from_compute<T>(std::log(static_cast<double>(a))); break;
      default:
        if constexpr (std::is_same_v<T, bool>)
          o[k] = a != 0;
        else
          o[k] = from_compute<T>(a);
        break;
    }
  }
  (void)noop;  // a reduction over no axes reduces one-element sets: each output is f(x)
  ctx.set(0, std::move(out));
}

void add_reduce(KernelRegistry& r, const char* op, Reduction kind) {
  r.add(op, [kind](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { reduce_typed<decltype(tag)>(ctx, kind); });
  });
}

/// Iterates a tensor as [outer, axis, inner] lines.
struct Lines {
  i64 outer = 1, len = 1, inner = 1;
  Lines(const std::vector<i64>& dims, i64 axis) {
    for (i64 d = 0; d < axis; ++d) outer *= dims[d];
    len = dims[axis];
    for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
  }
};

/// NaN-aware "a before b" for descending order (NaN first, as numpy sorts it last ascending).
template <class C>
bool greater(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    if (std::isnan(a)) return !std::isnan(b);
    if (std::isnan(b)) return false;
  }
  return a > b;
}

template <class T>
void arg_typed(KernelContext& ctx, bool is_max) {
  const Tensor& x = ctx.in(0);
  const i64 rank = static_cast<i64>(x.rank());
  if (rank == 0) ctx.fail("input must have rank >= 1, got a scalar");
  const i64 axis = axis_of(ctx, ctx.node.attr_int("axis", 0), rank);
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  const bool last = ctx.node.attr_int("select_last_index", 0) != 0;
  if (x.dim(axis) == 0)
    ctx.fail(fmt::format("cannot take the arg of an empty axis {} of {}", axis,
                         dims_to_string(x.dims())));
  std::vector<i64> out_dims;
  for (i64 d = 0; d < rank; ++d) {
    if (d != axis)
      out_dims.push_back(x.dim(d));
    else if (keepdims)
      out_dims.push_back(1);
  }
  Tensor out(DType::i64, out_dims);
  i64* o = out.data<i64>();
  const T* in = x.data<T>();
  const Lines L(x.dims(), axis);
  for (i64 a = 0; a < L.outer; ++a)
    for (i64 b = 0; b < L.inner; ++b) {
      const T* p = in + a * L.len * L.inner + b;
      i64 best = 0;
      auto bv = to_compute(p[0]);
      for (i64 j = 1; j < L.len; ++j) {
        const auto v = to_compute(p[j * L.inner]);
        const bool better = is_max ? greater(v, bv) : greater(bv, v);
        const bool tie = !greater(v, bv) && !greater(bv, v);
        if (better || (last && tie)) {
          best = j;
          bv = v;
        }
      }
      o[a * L.inner + b] = best;
    }
  ctx.set(0, std::move(out));
}

template <class T>
void topk_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 rank = static_cast<i64>(x.rank());
  if (rank == 0) ctx.fail("input must have rank >= 1, got a scalar");
  const i64 axis = axis_of(ctx, ctx.node.attr_int("axis", -1), rank);
  const bool largest = ctx.node.attr_int("largest", 1) != 0;
  const auto kv = ctx.in(1).to_int64s();
  if (kv.size() != 1) ctx.fail(fmt::format("K must hold one value, got {}", kv.size()));
  const i64 k = kv[0];
  if (k < 0 || k > x.dim(axis))
    ctx.fail(fmt::format("K = {} must be in [0, {}] (axis {} of {})", k, x.dim(axis), axis,
                         dims_to_string(x.dims())));
  std::vector<i64> out_dims = x.dims();
  out_dims[axis] = k;
  Tensor values(x.dtype(), out_dims), indices(DType::i64, out_dims);
  T* ov = values.data<T>();
  i64* oi = indices.data<i64>();
  const T* in = x.data<T>();
  const Lines L(x.dims(), axis);
  std::vector<i64> idx(L.len);
  for (i64 a = 0; a < L.outer; ++a)
    for (i64 b = 0; b < L.inner; ++b) {
      const T* p = in + a * L.len * L.inner + b;
      std::iota(idx.begin(), idx.end(), i64{0});
      // Stable: equal values keep the lower index first, as the ONNX reference does.
      std::stable_sort(idx.begin(), idx.end(), [&](i64 u, i64 v) {
        const auto pu = to_compute(p[u * L.inner]), pv = to_compute(p[v * L.inner]);
        return largest ? greater(pu, pv) : greater(pv, pu);
      });
      for (i64 j = 0; j < k; ++j) {
        const i64 dst = (a * k + j) * L.inner + b;
        ov[dst] = p[idx[j] * L.inner];
        oi[dst] = idx[j];
      }
    }
  ctx.set(0, std::move(values));
  ctx.set(1, std::move(indices));
}

template <class T>
void cumsum_typed(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 rank = static_cast<i64>(x.rank());
  const auto av = ctx.in(1).to_int64s();
  if (av.size() != 1) ctx.fail(fmt::format("axis must hold one value, got {}", av.size()));
  if (rank == 0) ctx.fail("input must have rank >= 1, got a scalar");
  const i64 axis = axis_of(ctx, av[0], rank);
  const bool exclusive = ctx.node.attr_int("exclusive", 0) != 0;
  const bool reverse = ctx.node.attr_int("reverse", 0) != 0;
  Tensor out(x.dtype(), x.dims());
  const T* in = x.data<T>();
  T* o = out.data<T>();
  const Lines L(x.dims(), axis);
  for (i64 a = 0; a < L.outer; ++a)
    for (i64 b = 0; b < L.inner; ++b) {
      const i64 base = a * L.len * L.inner + b;
      accum_t<T> s = 0;
      for (i64 step = 0; step < L.len; ++step) {
        const i64 j = reverse ? L.len - 1 - step : step;
        const i64 at = base + j * L.inner;
        const auto v = static_cast<accum_t<T>>(to_compute(in[at]));
        if (!exclusive) s += v;
        if constexpr (std::is_same_v<T, bool>)
          o[at] = s != 0;
        else
          o[at] = from_compute<T>(s);
        if (exclusive) s += v;
      }
    }
  ctx.set(0, std::move(out));
}

template <class T>
void einsum_typed(KernelContext& ctx) {
  const std::size_t n = ctx.num_inputs();
  std::vector<std::size_t> ranks;
  for (std::size_t i = 0; i < n; ++i) {
    const Tensor& t = ctx.in(i);
    if (t.dtype() != ctx.in(0).dtype())
      ctx.fail(fmt::format("all operands must have one dtype; input 0 is {}, input {} is {}",
                           dtype_name(ctx.in(0).dtype()), i, dtype_name(t.dtype())));
    ranks.push_back(t.rank());
  }
  const ops::EinsumSpec spec = ops::parse_einsum(ctx.node.attr_string("equation", ""), ranks);
  const int nl = spec.num_labels();
  std::vector<i64> size(nl, 1);
  std::vector<bool> seen(nl, false);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t a = 0; a < spec.inputs[i].size(); ++a) {
      const int id = spec.inputs[i][a];
      const i64 d = ctx.in(i).dim(a);
      if (!seen[id] || size[id] == d) {
        size[id] = d;
        seen[id] = true;
      } else if (id >= ops::EinsumSpec::kEllipsisBase && (size[id] == 1 || d == 1)) {
        size[id] = std::max(size[id], d);
      } else {
        ctx.fail(
            fmt::format("einsum operands disagree on a subscript's size: {} vs {}", size[id], d));
      }
    }
  // Loop order: output labels, then the summed labels.
  std::vector<int> order = spec.output;
  std::vector<bool> in_out(nl, false);
  for (int id : spec.output) in_out[id] = true;
  for (int id = 0; id < nl; ++id)
    if (seen[id] && !in_out[id]) order.push_back(id);
  // Per operand, its stride along each loop label (repeated subscripts add up: diagonals; a
  // broadcast ellipsis dim of size 1 has stride 0).
  std::vector<std::vector<i64>> stride(n, std::vector<i64>(order.size(), 0));
  for (std::size_t i = 0; i < n; ++i) {
    const auto st = strides_of(ctx.in(i).dims());
    for (std::size_t a = 0; a < spec.inputs[i].size(); ++a) {
      const int id = spec.inputs[i][a];
      if (ctx.in(i).dim(a) == 1 && size[id] != 1) continue;
      const auto pos = std::find(order.begin(), order.end(), id) - order.begin();
      stride[i][pos] += st[a];
    }
  }
  std::vector<i64> out_dims, loop(order.size());
  for (int id : spec.output) out_dims.push_back(size[id]);
  for (std::size_t l = 0; l < order.size(); ++l) loop[l] = size[order[l]];
  const i64 n_out = product(out_dims);
  const i64 n_sum = product(loop) / std::max<i64>(n_out, 1);
  std::vector<const T*> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = ctx.in(i).template data<T>();
  Tensor out(ctx.in(0).dtype(), out_dims);
  T* o = out.data<T>();
  std::vector<i64> idx(order.size(), 0), off(n, 0);
  const i64 total = product(loop);
  accum_t<T> acc = 0;
  for (i64 it = 0; it < total; ++it) {
    accum_t<T> term = 1;
    for (std::size_t i = 0; i < n; ++i)
      term *= static_cast<accum_t<T>>(to_compute(data[i][off[i]]));
    acc += term;
    if ((it + 1) % n_sum == 0) {
      if constexpr (std::is_same_v<T, bool>)
        o[it / n_sum] = acc != 0;
      else
        o[it / n_sum] = from_compute<T>(acc);
      acc = 0;
    }
    for (std::size_t l = order.size(); l-- > 0;) {  // odometer
      if (++idx[l] < loop[l]) {
        for (std::size_t i = 0; i < n; ++i) off[i] += stride[i][l];
        break;
      }
      for (std::size_t i = 0; i < n; ++i) off[i] -= stride[i][l] * (loop[l] - 1);
      idx[l] = 0;
    }
  }
  ctx.set(0, std::move(out));  // an empty summation range leaves zeros
}

}  // namespace

void register_reduce(KernelRegistry& r) {
  add_reduce(r, "ReduceSum", Reduction::sum);
  add_reduce(r, "ReduceMean", Reduction::mean);
  add_reduce(r, "ReduceMax", Reduction::max);
  add_reduce(r, "ReduceMin", Reduction::min);
  add_reduce(r, "ReduceProd", Reduction::prod);
  add_reduce(r, "ReduceL1", Reduction::l1);
  add_reduce(r, "ReduceL2", Reduction::l2);
  add_reduce(r, "ReduceLogSum", Reduction::log_sum);
  add_reduce(r, "ReduceLogSumExp", Reduction::log_sum_exp);
  add_reduce(r, "ReduceSumSquare", Reduction::sum_square);
  r.add("ArgMax", [](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { arg_typed<decltype(tag)>(ctx, true); });
  });
  r.add("ArgMin", [](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { arg_typed<decltype(tag)>(ctx, false); });
  });
  r.add("TopK", [](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { topk_typed<decltype(tag)>(ctx); });
  });
  r.add("CumSum", [](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { cumsum_typed<decltype(tag)>(ctx); });
  });
  r.add("Einsum", [](KernelContext& ctx) {
    visit_dtype(ctx.in(0).dtype(), [&](auto tag) { einsum_typed<decltype(tag)>(ctx); });
  });
}

}  // namespace kiln::reference
