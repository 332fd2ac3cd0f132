// Shape rules of the reduce op family: Reduce*, ArgMax, ArgMin, TopK, CumSum, Einsum.
#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "einsum.hpp"
#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {

namespace {

using i64 = std::int64_t;

i64 rank_of(const TensorType& t) { return static_cast<i64>(t.shape.rank()); }

/// Reduce* (latest opset): data, optional axes input; keepdims, noop_with_empty_axes.
std::vector<TensorType> infer_reduce(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const i64 r = rank_of(x);
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  const bool noop = ctx.node.attr_int("noop_with_empty_axes", 0) != 0;
  std::optional<std::vector<i64>> axes;
  if (!ctx.has_input(1)) {
    axes = std::vector<i64>{};
  } else {
    const TensorType& a = ctx.input(1);
    if (a.dtype != DType::i64)
      ctx.fail(fmt::format("axes must be i64, got {}", dtype_name(a.dtype)));
    if (a.shape.rank() > 1) ctx.fail(fmt::format("axes must be 1-D, got {}", a.shape.to_string()));
    axes = constant_ints(ctx, 1);
    if (!axes && a.shape.rank() == 1 && a.shape[0].is_fixed() && a.shape[0].value() == 0)
      axes = std::vector<i64>{};
  }
  if (!axes) {
    // Axes known only at run time: the rank is still known with keepdims, or when the number of
    // axes is fixed (axes must be distinct; the kernel checks).
    if (keepdims) return {TensorType{x.dtype, dynamic_shape(x.shape.rank())}};
    // A scalar axes input (rank 0) names one axis.
    const Shape& as = ctx.input(1).shape;
    const Dim n = as.rank() == 0 ? Dim(1) : as[0];
    if (n.is_fixed() && n.value() <= r)
      return {TensorType{x.dtype, dynamic_shape(static_cast<std::size_t>(r - n.value()))}};
    throw UnsupportedError(ctx.node.where() +
                           "axes must be a constant (or of fixed length) when keepdims=0: the "
                           "output rank depends on them; fold the axes input into a constant");
  }
  if (axes->empty()) {
    if (noop) return {x};
    for (i64 a = 0; a < r; ++a) axes->push_back(a);
  }
  std::set<i64> reduced;
  for (i64 a : *axes) {
    const i64 na = checked(ctx, [&] { return rules::normalize_axis(a, r); });
    if (!reduced.insert(na).second)
      ctx.fail(fmt::format("axes {} repeat axis {}", fmt::join(*axes, ","), na));
  }
  Shape out;
  for (i64 d = 0; d < r; ++d) {
    if (!reduced.count(d))
      out.push_back(x.shape[d]);
    else if (keepdims)
      out.push_back(Dim(1));
  }
  return {TensorType{x.dtype, std::move(out)}};
}

/// ArgMax, ArgMin: axis, keepdims, select_last_index; i64 indices.
std::vector<TensorType> infer_arg(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const i64 r = rank_of(x);
  if (r == 0) ctx.fail("input must have rank >= 1, got a scalar");
  const i64 axis =
      checked(ctx, [&] { return rules::normalize_axis(ctx.node.attr_int("axis", 0), r); });
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  if (x.shape[axis].is_fixed() && x.shape[axis].value() == 0)
    ctx.fail(
        fmt::format("cannot take the arg of an empty axis {} of {}", axis, x.shape.to_string()));
  Shape out;
  for (i64 d = 0; d < r; ++d) {
    if (d != axis)
      out.push_back(x.shape[d]);
    else if (keepdims)
      out.push_back(Dim(1));
  }
  return {TensorType{DType::i64, std::move(out)}};
}

/// TopK: X, K (1-element i64); axis, largest, sorted. Outputs values and i64 indices.
std::vector<TensorType> infer_topk(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const i64 r = rank_of(x);
  if (r == 0) ctx.fail("input must have rank >= 1, got a scalar");
  const i64 axis =
      checked(ctx, [&] { return rules::normalize_axis(ctx.node.attr_int("axis", -1), r); });
  const TensorType& kt = ctx.input(1);
  if (kt.dtype != DType::i64) ctx.fail(fmt::format("K must be i64, got {}", dtype_name(kt.dtype)));
  Shape out = x.shape;
  if (auto k = constant_ints(ctx, 1)) {
    if (k->size() != 1) ctx.fail(fmt::format("K must hold one value, got {}", k->size()));
    const Dim& d = x.shape[axis];
    const i64 kv =
        checked(ctx, [&] { return rules::top_k((*k)[0], d.is_fixed() ? d.value() : kDynamic); });
    out[axis] = Dim(kv);
  } else {
    out[axis] = Dim::dynamic();
  }
  return {TensorType{x.dtype, out}, TensorType{DType::i64, out}};
}

/// CumSum: x, axis (0-d or 1-element i32/i64); exclusive, reverse.
std::vector<TensorType> infer_cumsum(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  const TensorType& a = ctx.input(1);
  if (a.dtype != DType::i32 && a.dtype != DType::i64)
    ctx.fail(fmt::format("axis must be i32 or i64, got {}", dtype_name(a.dtype)));
  if (a.shape.rank() > 1)
    ctx.fail(fmt::format("axis must be a scalar, got {}", a.shape.to_string()));
  if (auto v = constant_ints(ctx, 1)) {
    if (v->size() != 1) ctx.fail(fmt::format("axis must hold one value, got {}", v->size()));
    checked(ctx, [&] { return rules::normalize_axis((*v)[0], rank_of(x)); });
  }
  return {x};
}

/// Einsum: operands of one dtype, output shape from the equation.
std::vector<TensorType> infer_einsum(const InferContext& ctx) {
  const std::string eq = ctx.node.attr_string("equation", "");
  if (eq.empty()) ctx.fail("attribute 'equation' is required");
  std::vector<std::size_t> ranks;
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i) {
    const TensorType& t = ctx.input(i);
    if (t.dtype != ctx.input(0).dtype)
      ctx.fail(fmt::format("all operands must have one dtype; input 0 is {}, input {} is {}",
                           dtype_name(ctx.input(0).dtype), i, dtype_name(t.dtype)));
    ranks.push_back(t.shape.rank());
  }
  const EinsumSpec spec = checked(ctx, [&] { return parse_einsum(eq, ranks); });
  std::vector<Dim> size(spec.num_labels(), Dim(1));
  std::vector<bool> seen(spec.num_labels(), false);
  for (std::size_t i = 0; i < spec.inputs.size(); ++i) {
    const Shape& s = ctx.input(i).shape;
    for (std::size_t a = 0; a < spec.inputs[i].size(); ++a) {
      const int id = spec.inputs[i][a];
      const Dim& d = s[a];
      if (!seen[id]) {
        size[id] = d;
        seen[id] = true;
      } else if (id >= EinsumSpec::kEllipsisBase) {  // ellipsis dims broadcast
        const Dim cur = size[id];
        if (cur.is_fixed() && cur.value() == 1) {
          size[id] = d;
        } else if (!(d.is_fixed() && d.value() == 1)) {
          checked(ctx, [&] { return rules::broadcast_dim(cur.value(), d.value()); });
          if (!cur.is_fixed()) size[id] = d;
        }
      } else {
        checked(ctx, [&] {
          return rules::equal_dims("size of an einsum subscript", size[id].value(), d.value());
        });
        if (!size[id].is_fixed()) size[id] = d;
      }
    }
  }
  Shape out;
  for (int id : spec.output) out.push_back(size[id]);
  return {TensorType{ctx.input(0).dtype, std::move(out)}};
}

}  // namespace

void register_reduce(OpRegistry& r) {
  for (const char* op :
       {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
    r.add(schema(op, "reduce", 1, 2, 1, 1, infer_reduce));
  r.add(schema("ArgMax", "reduce", 1, 1, 1, 1, infer_arg));
  r.add(schema("ArgMin", "reduce", 1, 1, 1, 1, infer_arg));
  r.add(schema("TopK", "reduce", 2, 2, 2, 2, infer_topk));
  r.add(schema("CumSum", "reduce", 2, 2, 1, 1, infer_cumsum));
  r.add(schema("Einsum", "reduce", 1, -1, 1, 1, infer_einsum));
}

}  // namespace kiln::ops
