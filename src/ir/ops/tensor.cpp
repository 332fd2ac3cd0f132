// Shape rules of the tensor op family, part 1: constants, identity and layout (Reshape,
// Flatten, Transpose, Squeeze, Unsqueeze, Slice, Pad, Concat, Split, Expand, Tile, Shape, Size,
// DepthToSpace, SpaceToDepth). Indexing ops and Resize are in tensor_index.cpp.
#include <climits>

#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "tensor_common.hpp"

namespace kiln::ops {

void register_tensor_index(OpRegistry& r);  // tensor_index.cpp

namespace {

using i64 = std::int64_t;
namespace tr = tensor_rules;

[[noreturn]] void unsupported(const InferContext& ctx, const std::string& msg) {
  throw UnsupportedError(ctx.node.where() + msg);
}

/// Length of a 1-D input (shape, axes, pads, ...): from its constant, else its fixed dim.
std::optional<i64> vector_length(const InferContext& ctx, std::size_t i) {
  const auto& t = ctx.input(i);
  if (t.shape.rank() != 1)
    ctx.fail(fmt::format("input {} must be 1-D, got shape {}", i, t.shape.to_string()));
  if (t.shape[0].is_fixed()) return t.shape[0].value();
  return std::nullopt;
}

/// The length of 1-D input i that is no constant, from its fixed dim; UnsupportedError
/// "<what> is not a constant and its length is unknown<consequence>" when that dim is dynamic.
i64 fixed_length(const InferContext& ctx, std::size_t i, std::string_view what,
                 std::string_view consequence = ", so the output rank cannot be inferred") {
  const auto len = vector_length(ctx, i);
  if (!len)
    unsupported(ctx,
                fmt::format("{} is not a constant and its length is unknown{}", what, consequence));
  return *len;
}

i64 norm_axis(const InferContext& ctx, i64 axis, i64 rank) {
  return checked(ctx, [&] { return rules::normalize_axis(axis, rank); });
}

std::vector<TensorType> infer_reshape(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const bool allowzero = ctx.node.attr_int("allowzero", 0) != 0;
  auto shape = constant_ints(ctx, 1);
  if (!shape) {
    const i64 len = fixed_length(ctx, 1, "the target shape");
    return {{x.dtype, dynamic_shape(static_cast<std::size_t>(len))}};
  }
  auto dims = checked(ctx, [&] { return tr::reshape_dims(x.shape.values(), *shape, allowzero); });
  Shape out;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    // A copied dim keeps its symbol.
    if ((*shape)[i] == 0 && !allowzero)
      out.push_back(x.shape[i]);
    else
      out.push_back(Dim(dims[i]));
  }
  // An inferred -1 over symbolic dims: their product over the other dims' where those are fixed
  // ([N, S, 768] to [-1, 768]: N*S).
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if ((*shape)[i] != -1 || out[i].is_fixed()) continue;
    i64 others = 1;
    for (std::size_t j = 0; j < dims.size() && others > 0; ++j)
      if (j != i)
        others = out[j].is_fixed() && out[j].value() < (i64{1} << 31) && others < (i64{1} << 31)
                     ? others * out[j].value()
                     : 0;
    if (others > 0) out[i] = dim_div_exact(dim_product(x.shape.dims(), 0, x.shape.rank()), others);
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_flatten(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  const i64 axis =
      checked(ctx, [&] { return rules::flatten_axis(ctx.node.attr_int("axis", 1), r); });
  const auto a = static_cast<std::size_t>(axis);
  return {{x.dtype, Shape{dim_product(x.shape.dims(), 0, a),
                          dim_product(x.shape.dims(), a, x.shape.rank())}}};
}

std::vector<i64> transpose_perm(const InferContext& ctx, std::size_t rank) {
  std::vector<i64> perm = ctx.node.attr_ints("perm");
  if (perm.empty())
    for (std::size_t i = 0; i < rank; ++i) perm.push_back(static_cast<i64>(rank - 1 - i));
  checked(ctx, [&] { rules::check_permutation(perm, static_cast<i64>(rank)); });
  return perm;
}

std::vector<TensorType> infer_squeeze(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  std::vector<bool> drop(x.shape.rank(), false);
  if (!ctx.has_input(1)) {
    for (std::size_t i = 0; i < x.shape.rank(); ++i) {
      if (!x.shape[i].is_fixed())
        unsupported(ctx, fmt::format("Squeeze without axes on input {} with a dynamic dim: the "
                                     "output rank cannot be inferred",
                                     x.shape.to_string()));
      drop[i] = x.shape[i].value() == 1;
    }
  } else if (auto axes = constant_ints(ctx, 1)) {
    auto norm = checked(ctx, [&] { return tr::normalize_axes(*axes, r); });
    for (i64 a : norm) {
      if (x.shape[a].is_fixed() && x.shape[a].value() != 1)
        ctx.fail(fmt::format("cannot squeeze axis {} of size {} (input {})", a, x.shape[a].value(),
                             x.shape.to_string()));
      drop[a] = true;
    }
  } else {
    const i64 len = fixed_length(ctx, 1, "axes", "");
    if (len > r) ctx.fail(fmt::format("{} axes given for rank {}", len, r));
    return {{x.dtype, dynamic_shape(static_cast<std::size_t>(r - len))}};
  }
  Shape out;
  for (std::size_t i = 0; i < x.shape.rank(); ++i)
    if (!drop[i]) out.push_back(x.shape[i]);
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_unsqueeze(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  auto axes = constant_ints(ctx, 1);
  if (!axes) {
    const i64 len = fixed_length(ctx, 1, "axes", "");
    return {{x.dtype, dynamic_shape(x.shape.rank() + static_cast<std::size_t>(len))}};
  }
  const i64 out_rank = static_cast<i64>(x.shape.rank() + axes->size());
  auto norm = checked(ctx, [&] { return tr::normalize_axes(*axes, out_rank); });
  std::vector<bool> is_new(out_rank, false);
  for (i64 a : norm) is_new[a] = true;
  Shape out;
  std::size_t k = 0;
  for (i64 i = 0; i < out_rank; ++i) out.push_back(is_new[i] ? Dim(1) : x.shape[k++]);
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_slice(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  auto starts = constant_ints(ctx, 1);
  auto ends = constant_ints(ctx, 2);
  std::optional<std::vector<i64>> axes, steps;
  bool axes_known = true, steps_known = true;
  if (ctx.has_input(3)) {
    axes = constant_ints(ctx, 3);
    axes_known = axes.has_value();
  }
  if (ctx.has_input(4)) {
    steps = constant_ints(ctx, 4);
    steps_known = steps.has_value();
  }
  Shape out = x.shape;
  if (starts && ends && axes_known && steps_known) {
    auto spec = checked(ctx, [&] { return tr::slice_spec(r, *starts, *ends, axes, steps); });
    for (std::size_t i = 0; i < spec.axes.size(); ++i) {
      const i64 a = spec.axes[i];
      const i64 d = x.shape[a].value();
      if (d < 0 && spec.starts[i] == 0 && spec.steps[i] == 1 && spec.ends[i] >= (i64{1} << 31))
        continue;  // the whole axis: keeps its symbol
      out[a] = Dim(checked(
          ctx, [&] { return rules::slice_count(d, spec.starts[i], spec.ends[i], spec.steps[i]); }));
    }
    return {{x.dtype, out}};
  }
  if (axes_known && axes) {
    auto norm = checked(ctx, [&] { return tr::normalize_axes(*axes, r); });
    for (i64 a : norm) out[a] = Dim::dynamic();
  } else if (!axes_known) {
    out = dynamic_shape(x.shape.rank());
  } else {
    // Default axes 0..k-1 where k = len(starts).
    auto len = vector_length(ctx, 1);
    const i64 k = len ? std::min(*len, r) : r;
    for (i64 a = 0; a < k; ++a) out[a] = Dim::dynamic();
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_pad(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  const std::string mode = ctx.node.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    unsupported(ctx,
                "attribute 'mode' = '" + mode + "' (supported: constant, reflect, edge, wrap)");
  if (ctx.has_input(2) && ctx.input(2).dtype != x.dtype)
    ctx.fail(fmt::format("constant_value has dtype {}, data has {}", dtype_name(ctx.input(2).dtype),
                         dtype_name(x.dtype)));
  std::vector<i64> axes;
  if (ctx.has_input(3)) {
    auto a = constant_ints(ctx, 3);
    if (!a) return {{x.dtype, dynamic_shape(x.shape.rank())}};
    axes = checked(ctx, [&] { return tr::normalize_axes(*a, r); });
  } else {
    for (i64 i = 0; i < r; ++i) axes.push_back(i);
  }
  Shape out = x.shape;
  auto pads = constant_ints(ctx, 1);
  if (!pads) {
    for (i64 a : axes) out[a] = Dim::dynamic();
    return {{x.dtype, out}};
  }
  if (pads->size() != 2 * axes.size())
    ctx.fail(fmt::format("pads has {} entries, expected {} (2 per padded axis)", pads->size(),
                         2 * axes.size()));
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const i64 a = axes[i];
    const i64 b = (*pads)[i], e = (*pads)[i + axes.size()];
    if (b == 0 && e == 0) continue;
    if (!x.shape[a].is_fixed()) {
      out[a] = dim_affine(x.shape[a], 1, b + e, 1);  // "H+2", or dynamic
      continue;
    }
    const i64 d = x.shape[a].value() + b + e;
    if (d < 0)
      ctx.fail(fmt::format("pads {} / {} make axis {} of size {} negative", b, e, a,
                           x.shape[a].value()));
    if (mode != "constant" && x.shape[a].value() == 0 && d > 0)
      ctx.fail(fmt::format("cannot pad an empty axis {} in mode '{}'", a, mode));
    out[a] = Dim(d);
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_concat(const InferContext& ctx) {
  const auto& x0 = ctx.input(0);
  const i64 r = static_cast<i64>(x0.shape.rank());
  if (r == 0) ctx.fail("cannot concatenate scalars");
  const i64 axis = norm_axis(ctx, ctx.node.attr_int("axis"), r);
  Shape out = x0.shape;
  Dim total(0);
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) continue;
    const auto& t = ctx.input(i);
    if (t.dtype != x0.dtype)
      ctx.fail(fmt::format("input {} has dtype {}, input 0 has {}", i, dtype_name(t.dtype),
                           dtype_name(x0.dtype)));
    if (static_cast<i64>(t.shape.rank()) != r)
      ctx.fail(fmt::format("input {} has shape {}, input 0 has {}: ranks differ", i,
                           t.shape.to_string(), x0.shape.to_string()));
    for (i64 d = 0; d < r; ++d) {
      if (d == axis) continue;
      if (out[d].is_fixed() && t.shape[d].is_fixed() && out[d].value() != t.shape[d].value())
        ctx.fail(fmt::format("input {} has shape {}, input 0 has {}: dim {} differs", i,
                             t.shape.to_string(), x0.shape.to_string(), d));
      if (!out[d].is_fixed() && t.shape[d].is_fixed()) out[d] = t.shape[d];
    }
    total = dim_add(total, t.shape[axis]);  // "2*H" for two inputs of H
  }
  out[axis] = total;
  return {{x0.dtype, out}};
}

std::vector<TensorType> infer_split(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  const i64 r = static_cast<i64>(x.shape.rank());
  const i64 axis = norm_axis(ctx, ctx.node.attr_int("axis", 0), r);
  const std::size_t n = ctx.node.outputs.size();
  std::optional<std::vector<i64>> split;
  if (ctx.has_input(1)) {
    split = constant_ints(ctx, 1);
    if (!split) {
      std::vector<TensorType> outs;
      for (std::size_t i = 0; i < n; ++i) {
        Shape s = x.shape;
        s[axis] = Dim::dynamic();
        outs.push_back({x.dtype, s});
      }
      return outs;
    }
  }
  const i64 num_outputs = ctx.node.attr_int("num_outputs", 0);
  auto sizes =
      checked(ctx, [&] { return tr::split_sizes(x.shape[axis].value(), n, split, num_outputs); });
  std::vector<TensorType> outs;
  for (std::size_t i = 0; i < n; ++i) {
    Shape s = x.shape;
    s[axis] = Dim(sizes[i]);
    outs.push_back({x.dtype, s});
  }
  return outs;
}

std::vector<TensorType> infer_expand(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  auto shape = constant_ints(ctx, 1);
  if (!shape) {
    const i64 len = fixed_length(ctx, 1, "the target shape");
    return {{x.dtype, dynamic_shape(std::max<std::size_t>(x.shape.rank(), len))}};
  }
  for (i64 v : *shape)
    if (v < 0) ctx.fail(fmt::format("shape [{}] has a negative dim", fmt::join(*shape, ",")));
  try {
    return {{x.dtype, broadcast_shapes(x.shape, Shape::of(*shape))}};
  } catch (const ShapeError& e) {
    ctx.fail(e.what());
  }
}

std::vector<TensorType> infer_tile(const InferContext& ctx) {
  const auto& x = ctx.input(0);
  auto reps = constant_ints(ctx, 1);
  if (!reps) return {{x.dtype, dynamic_shape(x.shape.rank())}};
  if (reps->size() != x.shape.rank())
    ctx.fail(fmt::format("repeats has {} entries for an input of rank {}", reps->size(),
                         x.shape.rank()));
  Shape out = x.shape;
  for (std::size_t i = 0; i < reps->size(); ++i) {
    const i64 k = (*reps)[i];
    if (k < 0) ctx.fail(fmt::format("repeats entry {} is negative", k));
    if (k == 1) continue;
    out[i] = x.shape[i].is_fixed()
                 ? Dim(checked(ctx, [&] { return rules::count_mul(x.shape[i].value(), k); }))
                 : (k == 0 ? Dim(0) : Dim::dynamic());
  }
  return {{x.dtype, out}};
}

std::vector<TensorType> infer_depth_to_space(const InferContext& ctx, bool to_space) {
  const auto& x = ctx.input(0);
  if (x.shape.rank() != 4)
    ctx.fail(fmt::format("expected a 4-D input, got {}", x.shape.to_string()));
  const i64 b = ctx.node.attr_int("blocksize");
  if (b <= 0) ctx.fail(fmt::format("blocksize must be positive, got {}", b));
  const std::string mode = ctx.node.attr_string("mode", "DCR");
  if (mode != "DCR" && mode != "CRD")
    unsupported(ctx, "attribute 'mode' = '" + mode + "' (supported: DCR, CRD)");
  auto v = x.shape.values();
  Shape out = x.shape;
  if (to_space) {
    if (v[1] >= 0 && v[1] % (b * b) != 0)
      ctx.fail(fmt::format("channels {} not divisible by blocksize^2 = {}", v[1], b * b));
    out[1] = Dim(v[1] < 0 ? kDynamic : v[1] / (b * b));
    out[2] = Dim(v[2] < 0 ? kDynamic : v[2] * b);
    out[3] = Dim(v[3] < 0 ? kDynamic : v[3] * b);
  } else {
    for (int a : {2, 3})
      if (v[a] >= 0 && v[a] % b != 0)
        ctx.fail(fmt::format("spatial dim {} not divisible by blocksize {}", v[a], b));
    out[1] = Dim(v[1] < 0 ? kDynamic : v[1] * b * b);
    out[2] = Dim(v[2] < 0 ? kDynamic : v[2] / b);
    out[3] = Dim(v[3] < 0 ? kDynamic : v[3] / b);
  }
  return {{x.dtype, out}};
}

}  // namespace

void register_tensor(OpRegistry& r) {
  const std::string fam = "tensor";
  r.add(any_value_schema("Identity", fam, 1, 1, 1, 1, same_as_input0));
  r.add(schema("Constant", fam, 0, 0, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    const Tensor t = tr::constant_tensor(ctx.node);
    return {{t.dtype(), t.shape()}};
  }));
  r.add(schema(
      "ConstantOfShape", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
        DType dt = DType::f32;
        if (ctx.node.has_attr("value")) {
          const Tensor& v = ctx.node.attr_tensor("value");
          if (v.numel() != 1)
            ctx.fail(
                fmt::format("attribute 'value' must hold one element, got {}", v.type_string()));
          dt = v.dtype();
        }
        if (auto shape = constant_ints(ctx, 0)) {
          for (i64 d : *shape)
            if (d < 0)
              ctx.fail(fmt::format("shape [{}] has a negative dim", fmt::join(*shape, ",")));
          return {{dt, Shape::of(*shape)}};
        }
        const i64 len = fixed_length(ctx, 0, "the shape input");
        return {{dt, dynamic_shape(static_cast<std::size_t>(len))}};
      }));
  r.add(schema("Dropout", fam, 1, 3, 1, 2, [](const InferContext& ctx) -> std::vector<TensorType> {
    const auto& x = ctx.input(0);
    if (auto t = constant_ints(ctx, 2); t && !t->empty() && (*t)[0] != 0)
      if (auto ratio = ctx.constant(1); !ratio || ratio->get(0) != 0.0)
        unsupported(ctx, "training_mode = true (kiln runs inference only)");
    return {x, {DType::boolean, x.shape}};
  }));
  r.add(schema("Reshape", fam, 2, 2, 1, 1, infer_reshape));
  r.add(schema("Flatten", fam, 1, 1, 1, 1, infer_flatten));
  r.add(
      schema("Transpose", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
        const auto& x = ctx.input(0);
        auto perm = transpose_perm(ctx, x.shape.rank());
        Shape out;
        for (i64 p : perm) out.push_back(x.shape[p]);
        return {{x.dtype, out}};
      }));
  r.add(schema("Squeeze", fam, 1, 2, 1, 1, infer_squeeze));
  r.add(schema("Unsqueeze", fam, 2, 2, 1, 1, infer_unsqueeze));
  r.add(schema("Slice", fam, 3, 5, 1, 1, infer_slice));
  r.add(schema("Pad", fam, 2, 4, 1, 1, infer_pad));
  r.add(schema("Concat", fam, 1, -1, 1, 1, infer_concat));
  r.add(schema("Split", fam, 1, 2, 1, INT_MAX, infer_split));
  r.add(schema("Expand", fam, 2, 2, 1, 1, infer_expand));
  r.add(schema("Tile", fam, 2, 2, 1, 1, infer_tile));
  r.add(schema("Shape", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    auto [s, e] = tr::shape_range(static_cast<i64>(ctx.input(0).shape.rank()), ctx.node);
    return {{DType::i64, Shape{Dim(e - s)}}};
  }));
  r.add(schema("Size", fam, 1, 1, 1, 1, [](const InferContext& ctx) -> std::vector<TensorType> {
    (void)ctx.input(0);
    return {{DType::i64, Shape{}}};
  }));
  r.add(schema("DepthToSpace", fam, 1, 1, 1, 1,
               [](const InferContext& ctx) { return infer_depth_to_space(ctx, true); }));
  r.add(schema("SpaceToDepth", fam, 1, 1, 1, 1,
               [](const InferContext& ctx) { return infer_depth_to_space(ctx, false); }));
  register_tensor_index(r);
}

}  // namespace kiln::ops
