// Shape rules of the tensor op family, part 2: indexing (Gather*, Scatter*, OneHot, NonZero,
// Compress, ReverseSequence, Trilu, EyeLike, Range) and resampling (Resize, Upsample).
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "tensor_common.hpp"

namespace kiln::ops {

namespace {

using i64 = std::int64_t;
namespace tr = tensor_rules;

[[noreturn]] void unsupported(const InferContext& ctx, const std::string& msg) {
  throw UnsupportedError(ctx.node.where() + msg);
}

i64 norm_axis(const InferContext& ctx, i64 axis, i64 rank) {
  return checked(ctx, [&] { return rules::normalize_axis(axis, rank); });
}

void require_integer(const InferContext& ctx, std::size_t i, const char* what) {
  const DType t = ctx.input(i).dtype;
  if (t != DType::i32 && t != DType::i64)
    ctx.fail(fmt::format("{} must be int32 or int64, got {}", what, dtype_name(t)));
}

std::vector<TensorType> infer_gather(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& idx = ctx.input(1);
  require_integer(ctx, 1, "indices");
  const i64 r = static_cast<i64>(x.shape.rank());
  if (r == 0) ctx.fail("cannot gather from a scalar");
  const i64 axis = norm_axis(ctx, ctx.node.attr_int("axis", 0), r);
  Shape out;
  for (i64 i = 0; i < axis; ++i) out.push_back(x.shape[i]);
  for (const auto& d : idx.shape) out.push_back(d);
  for (i64 i = axis + 1; i < r; ++i) out.push_back(x.shape[i]);
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_gather_elements(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& idx = ctx.input(1);
  require_integer(ctx, 1, "indices");
  if (idx.shape.rank() != x.shape.rank() || x.shape.rank() == 0)
    ctx.fail(fmt::format("indices {} must have the rank of data {} (at least 1)",
                         idx.shape.to_string(), x.shape.to_string()));
  norm_axis(ctx, ctx.node.attr_int("axis", 0), static_cast<i64>(x.shape.rank()));
  return {{x.dtype, idx.shape}};
}

std::vector<TensorType> infer_gather_nd(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& idx = ctx.input(1);
  require_integer(ctx, 1, "indices");
  const i64 r = static_cast<i64>(x.shape.rank()), q = static_cast<i64>(idx.shape.rank());
  const i64 b = ctx.node.attr_int("batch_dims", 0);
  if (r < 1 || q < 1) ctx.fail("data and indices must have rank >= 1");
  if (b < 0 || b >= std::min(r, q))
    ctx.fail(fmt::format("batch_dims {} must be in [0, min(rank(data), rank(indices)) = {})", b,
                         std::min(r, q)));
  const Dim& last = idx.shape[q - 1];
  if (!last.is_fixed())
    unsupported(ctx, "the last dim of indices is dynamic, so the output rank cannot be inferred");
  checked(ctx, [&] { return rules::gather_nd_tuple(last.value(), r - b); });
  auto value = [](const Dim& d) { return d.is_fixed() ? d.value() : kDynamic; };
  for (i64 i = 0; i < b; ++i)
    checked(ctx, [&] { return rules::gather_nd_batch(value(x.shape[i]), value(idx.shape[i])); });
  Shape out;
  for (i64 i = 0; i < q - 1; ++i) out.push_back(idx.shape[i]);
  for (i64 i = b + last.value(); i < r; ++i) out.push_back(x.shape[i]);
  return {{x.dtype, out}};
}

/// What ScatterElements and ScatterND ask of their inputs (data, indices, updates) and of their
/// reduction, before their own shape rules.
void check_scatter(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& upd = ctx.input(2);
  require_integer(ctx, 1, "indices");
  const std::string red = ctx.node.attr_string("reduction", "none");
  if (red != "none" && red != "add" && red != "mul" && red != "max" && red != "min")
    unsupported(ctx, "attribute 'reduction' = '" + red + "' (supported: none, add, mul, max, min)");
  if (upd.dtype != x.dtype)
    ctx.fail(fmt::format("updates has dtype {}, data has {}", dtype_name(upd.dtype),
                         dtype_name(x.dtype)));
}

std::vector<TensorType> infer_scatter_elements(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& idx = ctx.input(1);
  const auto& upd = ctx.input(2);
  check_scatter(ctx);
  if (idx.shape.rank() != x.shape.rank() || upd.shape.rank() != x.shape.rank() ||
      x.shape.rank() == 0)
    ctx.fail(fmt::format("data {}, indices {} and updates {} must have one rank (at least 1)",
                         x.shape.to_string(), idx.shape.to_string(), upd.shape.to_string()));
  auto value = [](const Dim& d) { return d.is_fixed() ? d.value() : kDynamic; };
  for (std::size_t i = 0; i < idx.shape.rank(); ++i)
    checked(ctx, [&] { return rules::scatter_updates(value(idx.shape[i]), value(upd.shape[i])); });
  norm_axis(ctx, ctx.node.attr_int("axis", 0), static_cast<i64>(x.shape.rank()));
  return {x};
}

std::vector<TensorType> infer_scatter_nd(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& idx = ctx.input(1);
  const auto& upd = ctx.input(2);
  check_scatter(ctx);
  const i64 r = static_cast<i64>(x.shape.rank()), q = static_cast<i64>(idx.shape.rank());
  if (r < 1 || q < 1) ctx.fail("data and indices must have rank >= 1");
  const Dim& last = idx.shape[q - 1];
  if (last.is_fixed()) {
    const i64 k = last.value();
    if (k > r) ctx.fail(fmt::format("index tuples of length {} for data of rank {}", k, r));
    const i64 want = q - 1 + r - k;
    if (static_cast<i64>(upd.shape.rank()) != want)
      ctx.fail(fmt::format("updates {} must have rank {} (indices {}, data {})",
                           upd.shape.to_string(), want, idx.shape.to_string(),
                           x.shape.to_string()));
  }
  return {x};
}

std::vector<TensorType> infer_range(const InferContext& ctx) {
  const DType t = ctx.input(0).dtype;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto& in = ctx.input(i);
    if (in.dtype != t) ctx.fail("start, limit and delta must have one dtype");
    if (in.shape.rank() != 0 &&
        !(in.shape.rank() == 1 && in.shape[0].is_fixed() && in.shape[0].value() == 1))
      ctx.fail(fmt::format("input {} must be a scalar, got {}", i, in.shape.to_string()));
  }
  if (t == DType::boolean) ctx.fail("Range does not accept bool");
  const Tensor* s = ctx.constant(0);
  const Tensor* l = ctx.constant(1);
  const Tensor* d = ctx.constant(2);
  if (s && l && d)
    return {{t, Shape{Dim(checked(
                    ctx, [&] { return tr::range_count(s->get(0), l->get(0), d->get(0)); }))}}};
  return {{t, Shape{Dim::dynamic()}}};
}

std::vector<TensorType> infer_onehot(const InferContext& ctx) {
  const auto& idx = ctx.input(0);
  const auto& vals = ctx.input(2);
  if (vals.shape.rank() != 1 || (vals.shape[0].is_fixed() && vals.shape[0].value() != 2))
    ctx.fail(fmt::format("values must be [off, on] of shape [2], got {}", vals.shape.to_string()));
  const i64 r = static_cast<i64>(idx.shape.rank());
  const i64 axis = norm_axis(ctx, ctx.node.attr_int("axis", -1), r + 1);
  Dim depth = Dim::dynamic();
  if (const Tensor* d = ctx.constant(1)) {
    if (d->numel() != 1) ctx.fail("depth must hold one value");
    const i64 v = static_cast<i64>(d->get(0));
    if (v < 1) ctx.fail(fmt::format("depth must be positive, got {}", v));
    depth = Dim(v);
  }
  Shape out;
  for (i64 i = 0; i < r; ++i) {
    if (i == axis) out.push_back(depth);
    out.push_back(idx.shape[i]);
  }
  if (axis == r) out.push_back(depth);
  return {{vals.dtype, out}};
}

std::vector<TensorType> infer_compress(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const auto& c = ctx.input(1);
  if (c.shape.rank() != 1)
    ctx.fail(fmt::format("condition must be 1-D, got {}", c.shape.to_string()));
  Dim count = Dim::dynamic();
  std::optional<i64> axis;
  if (ctx.node.has_attr("axis"))
    axis = norm_axis(ctx, ctx.node.attr_int("axis"), static_cast<i64>(x.shape.rank()));
  if (const Tensor* ct = ctx.constant(1)) {
    const Dim len = axis ? x.shape[*axis] : Dim(x.shape.numel());
    if (len.is_fixed()) {
      if (ct->numel() > len.value())
        ctx.fail(
            fmt::format("condition has {} entries, the axis only {}", ct->numel(), len.value()));
      i64 n = 0;
      for (i64 i = 0; i < ct->numel(); ++i) n += ct->get(i) != 0.0;
      count = Dim(n);
    }
  }
  if (!axis) return {{x.dtype, Shape{count}}};
  Shape out = x.shape;
  out[*axis] = count;
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_resize(const InferContext& ctx, bool upsample) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  const std::string mode = ctx.node.attr_string("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "cubic" &&
      !(upsample && (mode == "bilinear" || mode == "trilinear")))
    unsupported(ctx, "attribute 'mode' = '" + mode + "' (supported: nearest, linear, cubic)");
  if (!is_float(x.dtype) && !is_integer(x.dtype))
    ctx.fail(fmt::format("input dtype {} cannot be resized", dtype_name(x.dtype)));
  std::size_t scales_at = upsample ? 1 : 2, sizes_at = 3;
  std::vector<i64> axes;
  if (!upsample && ctx.node.has_attr("axes"))
    axes = checked(ctx, [&] { return tr::normalize_axes(ctx.node.attr_ints("axes"), r); });
  const std::size_t naxes = axes.empty() ? static_cast<std::size_t>(r) : axes.size();
  const Tensor* sc = ctx.constant(scales_at);
  const Tensor* sz = upsample ? nullptr : ctx.constant(sizes_at);
  auto empty_input = [&](std::size_t i) {
    if (!ctx.has_input(i)) return true;
    const auto& t = ctx.input(i);
    return t.shape.rank() == 1 && t.shape[0].is_fixed() && t.shape[0].value() == 0;
  };
  const bool has_scales = !empty_input(scales_at), has_sizes = !upsample && !empty_input(sizes_at);
  if (has_scales && has_sizes) ctx.fail("only one of scales and sizes may be given");
  if (!has_scales && !has_sizes) ctx.fail("one of scales and sizes must be given");
  Shape out = x.shape;
  std::vector<i64> full_axes = axes;
  if (full_axes.empty())
    for (i64 i = 0; i < r; ++i) full_axes.push_back(i);
  if ((has_scales && !sc) || (has_sizes && !sz)) {
    for (i64 a : full_axes) out[a] = Dim::dynamic();
    return {{x.dtype, out}};
  }
  std::vector<double> scales;
  std::vector<i64> sizes;
  if (has_scales)
    scales = sc->to_doubles();
  else
    sizes = sz->to_int64s();
  if ((has_scales ? scales.size() : sizes.size()) != naxes)
    ctx.fail(fmt::format("{} has {} entries, expected {}", has_scales ? "scales" : "sizes",
                         has_scales ? scales.size() : sizes.size(), naxes));
  auto plan = checked(ctx, [&] {
    return tr::resize_plan(x.shape.values(), has_scales ? &scales : nullptr,
                           has_sizes ? &sizes : nullptr, axes,
                           ctx.node.attr_string("keep_aspect_ratio_policy", "stretch"));
  });
  for (i64 a : full_axes)
    if (!(plan.scales[a] == 1.0 && plan.sizes[a] == x.shape[a].value()))
      out[a] = Dim(plan.sizes[a]);
  return {{x.dtype, out}};
}

}  // namespace

void register_tensor_index(OpRegistry& r) {
  const std::string fam = "tensor";
  r.add(schema("Gather", fam, 2, 2, 1, 1, infer_gather));
  r.add(schema("GatherElements", fam, 2, 2, 1, 1, infer_gather_elements));
  r.add(schema("GatherND", fam, 2, 2, 1, 1, infer_gather_nd));
  r.add(schema("ScatterElements", fam, 3, 3, 1, 1, infer_scatter_elements));
  r.add(schema("ScatterND", fam, 3, 3, 1, 1, infer_scatter_nd));
  r.add(schema("Range", fam, 3, 3, 1, 1, infer_range));
  r.add(schema("Trilu", fam, 1, 2, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    const auto& x = ctx.input(0);
    if (x.shape.rank() < 2)
      ctx.fail(fmt::format("input must have rank >= 2, got {}", x.shape.to_string()));
    return {x};
  }));
  r.add(schema("OneHot", fam, 3, 3, 1, 1, infer_onehot));
  r.add(schema("EyeLike", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    const auto& x = ctx.input(0);
    if (x.shape.rank() != 2)
      ctx.fail(fmt::format("input must be 2-D, got {}", x.shape.to_string()));
    DType t = x.dtype;
    if (ctx.node.has_attr("dtype")) {
      try {
        t = tensor_rules::dtype_from_onnx(ctx.node.attr_int("dtype"));
      } catch (const UnsupportedError& e) {
        unsupported(ctx, std::string("attribute 'dtype': ") + e.what());
      }
    }
    return {{t, x.shape}};
  }));
  r.add(schema("NonZero", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    const auto& x = ctx.input(0);
    const i64 r = static_cast<i64>(x.shape.rank());
    return {{DType::i64, Shape{Dim(r == 0 ? 1 : r), Dim::dynamic()}}};
  }));
  r.add(schema("Compress", fam, 2, 2, 1, 1, infer_compress));
  r.add(schema("ReverseSequence", fam, 2, 2, 1, 1,
               [](const InferContext& ctx) -> std::vector<TensorType> {
                 const auto& x = ctx.input(0);
                 const i64 r = static_cast<i64>(x.shape.rank());
                 if (r < 2)
                   ctx.fail(fmt::format("input must have rank >= 2, got {}", x.shape.to_string()));
                 const i64 b = norm_axis(ctx, ctx.node.attr_int("batch_axis", 1), r);
                 const i64 t = norm_axis(ctx, ctx.node.attr_int("time_axis", 0), r);
                 if (b == t) ctx.fail("batch_axis and time_axis must differ");
                 const auto& lens = ctx.input(1);
                 if (lens.shape.rank() != 1) ctx.fail("sequence_lens must be 1-D");
                 if (lens.shape[0].is_fixed() && x.shape[b].is_fixed() &&
                     lens.shape[0].value() != x.shape[b].value())
                   ctx.fail(fmt::format("sequence_lens has {} entries, the batch axis {}",
                                        lens.shape[0].value(), x.shape[b].value()));
                 return {x};
               }));
  r.add(schema("Resize", fam, 1, 4, 1, 1,
               [](const InferContext& ctx) { return infer_resize(ctx, false); }));
  r.add(schema("Upsample", fam, 2, 2, 1, 1,
               [](const InferContext& ctx) { return infer_resize(ctx, true); }));
}

}  // namespace kiln::ops
