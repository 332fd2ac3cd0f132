// Reference kernels of the tensor op family, part 1: constants, identity and layout. Data moves
// copy elements as bytes, so every dtype is handled alike. Indexing ops are in
// tensor_index.cpp, Resize and Upsample in resize.cpp.
#include <fmt/format.h>

#include "families.hpp"
#include "ir/ops/tensor_common.hpp"
#include "kiln/ir/window.hpp"
#include "tensor_util.hpp"

namespace kiln::reference {

void register_tensor_index(KernelRegistry& r);  // tensor_index.cpp
void register_resize(KernelRegistry& r);        // resize.cpp

namespace {

using namespace tensor_detail;
namespace tr = ops::tensor_rules;

void reshape(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto dims =
      tr::reshape_dims(x.dims(), ctx.in(1).to_int64s(), ctx.node.attr_int("allowzero", 0) != 0);
  ctx.set(0, x.reshaped(dims));
}

void flatten(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  const i64 axis = ops::window_rule(
      ctx.node, [&] { return rules::flatten_axis(ctx.node.attr_int("axis", 1), r); });
  i64 outer = 1;
  for (i64 i = 0; i < axis; ++i) outer *= x.dim(i);
  const i64 inner = outer == 0 ? [&] {
    i64 p = 1;
    for (i64 i = axis; i < r; ++i) p *= x.dim(i);
    return p;
  }()
                               : x.numel() / outer;
  ctx.set(0, x.reshaped({outer, inner}));
}

void transpose(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const std::size_t r = x.rank();
  std::vector<i64> perm = ctx.node.attr_ints("perm");
  if (perm.empty())
    for (std::size_t i = 0; i < r; ++i) perm.push_back(static_cast<i64>(r - 1 - i));
  ops::window_rule(ctx.node, [&] { rules::check_permutation(perm, static_cast<i64>(r)); });
  const auto st = strides_of(x.dims());
  std::vector<i64> dims, strides;
  for (i64 p : perm) {
    dims.push_back(x.dim(p));
    strides.push_back(st[p]);
  }
  ctx.set(0, strided_copy(x, dims, strides, 0));
}

void squeeze(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  std::vector<bool> drop(x.rank(), false);
  if (auto axes = optional_ints(ctx, 1)) {
    for (i64 a : tr::normalize_axes(*axes, r)) {
      if (x.dim(a) != 1)
        ctx.fail(fmt::format("cannot squeeze axis {} of size {} (input {})", a, x.dim(a),
                             dims_to_string(x.dims())));
      drop[a] = true;
    }
  } else {
    for (i64 a = 0; a < r; ++a) drop[a] = x.dim(a) == 1;
  }
  std::vector<i64> dims;
  for (i64 a = 0; a < r; ++a)
    if (!drop[a]) dims.push_back(x.dim(a));
  ctx.set(0, x.reshaped(dims));
}

void unsqueeze(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto axes = ctx.in(1).to_int64s();
  const i64 out_rank = static_cast<i64>(x.rank() + axes.size());
  std::vector<bool> is_new(out_rank, false);
  for (i64 a : tr::normalize_axes(axes, out_rank)) is_new[a] = true;
  std::vector<i64> dims;
  std::size_t k = 0;
  for (i64 i = 0; i < out_rank; ++i) dims.push_back(is_new[i] ? 1 : x.dim(k++));
  ctx.set(0, x.reshaped(dims));
}

void slice(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  auto spec = tr::slice_spec(r, ctx.in(1).to_int64s(), ctx.in(2).to_int64s(), optional_ints(ctx, 3),
                             optional_ints(ctx, 4));
  const auto st = strides_of(x.dims());
  std::vector<i64> dims = x.dims(), strides = st;
  i64 base = 0;
  for (std::size_t i = 0; i < spec.axes.size(); ++i) {
    const i64 a = spec.axes[i];
    const auto s = tr::slice_axis(x.dim(a), spec.starts[i], spec.ends[i], spec.steps[i]);
    dims[a] = s.count;
    strides[a] = st[a] * s.step;
    if (s.count > 0) base += s.start * st[a];
  }
  ctx.set(0, strided_copy(x, dims, strides, base));
}

void pad(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  const std::string mode = ctx.node.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    ctx.unsupported("attribute 'mode' = '" + mode + "' (supported: constant, reflect, edge, wrap)");
  std::vector<i64> axes;
  if (auto a = optional_ints(ctx, 3))
    axes = tr::normalize_axes(*a, r);
  else
    for (i64 i = 0; i < r; ++i) axes.push_back(i);
  const auto pads = ctx.in(1).to_int64s();
  if (pads.size() != 2 * axes.size())
    ctx.fail(fmt::format("pads has {} entries, expected {} (2 per padded axis)", pads.size(),
                         2 * axes.size()));
  std::vector<i64> begin(r, 0), dims = x.dims();
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const i64 a = axes[i];
    begin[a] = pads[i];
    dims[a] = x.dim(a) + pads[i] + pads[i + axes.size()];
    if (dims[a] < 0)
      ctx.fail(fmt::format("pads {} / {} make axis {} of size {} negative", pads[i],
                           pads[i + axes.size()], a, x.dim(a)));
    if (mode != "constant" && x.dim(a) == 0 && dims[a] > 0)
      ctx.fail(fmt::format("cannot pad an empty axis {} in mode '{}'", a, mode));
  }
  Tensor value(x.dtype(), {});  // zero
  if (ctx.has(2)) {
    const Tensor& cv = ctx.in(2);
    if (cv.numel() != 1) ctx.fail("constant_value must hold one value");
    if (cv.dtype() != x.dtype())
      ctx.fail(fmt::format("constant_value has dtype {}, data has {}", dtype_name(cv.dtype()),
                           dtype_name(x.dtype())));
    value = cv;
  }
  Tensor out(x.dtype(), dims);
  const auto st = strides_of(x.dims());
  i64 k = 0;
  const int m = mode == "constant" ? 0 : mode == "edge" ? 1 : mode == "reflect" ? 2 : 3;
  for_each_index(dims, [&](const std::vector<i64>& idx) {
    i64 off = 0;
    bool inside = true;
    for (i64 a = 0; a < r && inside; ++a) {
      i64 i = idx[a] - begin[a];
      const i64 n = x.dim(a);
      if (i < 0 || i >= n) {
        switch (m) {
          case 0: inside = false; break;
          case 1: i = i < 0 ? 0 : n - 1; break;
          case 2: {
            if (n == 1) {
              i = 0;
              break;
            }
            const i64 period = 2 * (n - 1);
            i = ((i % period) + period) % period;
            if (i >= n) i = period - i;
            break;
          }
          default: i = ((i % n) + n) % n; break;
        }
      }
      off += i * st[a];
    }
    if (inside)
      copy_element(x, off, out, k);
    else
      copy_element(value, 0, out, k);
    ++k;
  });
  ctx.set(0, out);
}

void concat(KernelContext& ctx) {
  std::vector<const Tensor*> ins;
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has(i)) ins.push_back(&ctx.in(i));
  if (ins.empty()) ctx.fail("Concat needs at least one input");
  const Tensor& x0 = *ins[0];
  const i64 r = static_cast<i64>(x0.rank());
  if (r == 0) ctx.fail("cannot concatenate scalars");
  const i64 axis = rules::normalize_axis(ctx.node.attr_int("axis"), r);
  for (std::size_t i = 0; i < ins.size(); ++i) {
    const Tensor& t = *ins[i];
    if (t.dtype() != x0.dtype() || static_cast<i64>(t.rank()) != r)
      ctx.fail(fmt::format("input {} is {}, input 0 is {}", i, t.type_string(), x0.type_string()));
    for (i64 d = 0; d < r; ++d)
      if (d != axis && t.dim(d) != x0.dim(d))
        ctx.fail(fmt::format("input {} has dims {}, input 0 has {}: dim {} differs", i,
                             dims_to_string(t.dims()), dims_to_string(x0.dims()), d));
  }
  ctx.set(0, concat_along(ins, static_cast<std::size_t>(axis)));
}

void split(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  const i64 axis = rules::normalize_axis(ctx.node.attr_int("axis", 0), r);
  const auto sizes = tr::split_sizes(x.dim(axis), ctx.node.outputs.size(), optional_ints(ctx, 1),
                                     ctx.node.attr_int("num_outputs", 0));
  const auto st = strides_of(x.dims());
  i64 start = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::vector<i64> dims = x.dims();
    dims[axis] = sizes[i];
    ctx.set(i, strided_copy(x, dims, st, start * st[axis]));
    start += sizes[i];
  }
}

void expand(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto shape = ctx.in(1).to_int64s();
  for (i64 v : shape)
    if (v < 0) ctx.fail(fmt::format("shape {} has a negative dim", dims_to_string(shape)));
  const auto dims = broadcast_dims({x.dims(), shape});
  const std::size_t r = dims.size(), off = r - x.rank();
  const auto st = strides_of(x.dims());
  std::vector<i64> strides(r, 0);
  for (std::size_t i = 0; i < x.rank(); ++i) strides[off + i] = x.dim(i) == 1 ? 0 : st[i];
  ctx.set(0, strided_copy(x, dims, strides, 0));
}

void tile(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto reps = ctx.in(1).to_int64s();
  if (reps.size() != x.rank())
    ctx.fail(fmt::format("repeats has {} entries for an input of rank {}", reps.size(), x.rank()));
  std::vector<i64> dims = x.dims();
  for (std::size_t i = 0; i < reps.size(); ++i) {
    if (reps[i] < 0) ctx.fail(fmt::format("repeats entry {} is negative", reps[i]));
    dims[i] *= reps[i];
  }
  Tensor out(x.dtype(), dims);
  const auto st = strides_of(x.dims());
  i64 k = 0;
  for_each_index(dims, [&](const std::vector<i64>& idx) {
    i64 off = 0;
    for (std::size_t a = 0; a < idx.size(); ++a) off += (idx[a] % x.dim(a)) * st[a];
    copy_element(x, off, out, k++);
  });
  ctx.set(0, out);
}

// DepthToSpace and SpaceToDepth as one reshape-transpose-reshape each.
void depth_space(KernelContext& ctx, bool to_space) {
  const Tensor& x = ctx.in(0);
  if (x.rank() != 4) ctx.fail(fmt::format("expected a 4-D input, got {}", x.type_string()));
  const i64 b = ctx.node.attr_int("blocksize");
  if (b <= 0) ctx.fail(fmt::format("blocksize must be positive, got {}", b));
  const std::string mode = ctx.node.attr_string("mode", "DCR");
  if (mode != "DCR" && mode != "CRD") ctx.unsupported("attribute 'mode' = '" + mode + "'");
  const i64 n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  std::vector<i64> tmp, perm, final_dims;
  if (to_space) {
    if (c % (b * b) != 0)
      ctx.fail(fmt::format("channels {} not divisible by blocksize^2 = {}", c, b * b));
    if (mode == "DCR") {
      tmp = {n, b, b, c / (b * b), h, w};
      perm = {0, 3, 4, 1, 5, 2};
    } else {
      tmp = {n, c / (b * b), b, b, h, w};
      perm = {0, 1, 4, 2, 5, 3};
    }
    final_dims = {n, c / (b * b), h * b, w * b};
  } else {
    if (h % b != 0 || w % b != 0)
      ctx.fail(fmt::format("spatial dims {}x{} not divisible by blocksize {}", h, w, b));
    tmp = {n, c, h / b, b, w / b, b};
    perm = mode == "DCR" ? std::vector<i64>{0, 3, 5, 1, 2, 4} : std::vector<i64>{0, 1, 3, 5, 2, 4};
    final_dims = {n, c * b * b, h / b, w / b};
  }
  const auto st = strides_of(tmp);
  std::vector<i64> dims, strides;
  for (i64 p : perm) {
    dims.push_back(tmp[p]);
    strides.push_back(st[p]);
  }
  ctx.set(0, strided_copy(x, dims, strides, 0).reshaped(final_dims));
}

}  // namespace

void register_tensor(KernelRegistry& r) {
  r.add("Identity", [](KernelContext& ctx) { ctx.set(0, ctx.in(0)); });
  r.add("Constant", [](KernelContext& ctx) { ctx.set(0, tr::constant_tensor(ctx.node)); });
  r.add("ConstantOfShape", [](KernelContext& ctx) {
    const auto dims = ctx.in(0).to_int64s();
    for (i64 d : dims)
      if (d < 0) ctx.fail(fmt::format("shape {} has a negative dim", dims_to_string(dims)));
    Tensor value(DType::f32, {});
    if (ctx.node.has_attr("value")) value = ctx.node.attr_tensor("value");
    if (value.numel() != 1) ctx.fail("attribute 'value' must hold one element");
    Tensor out(value.dtype(), dims);
    for (i64 i = 0; i < out.numel(); ++i) copy_element(value, 0, out, i);
    ctx.set(0, out);
  });
  r.add("Dropout", [](KernelContext& ctx) {
    const Tensor& x = ctx.in(0);
    if (ctx.has(2) && ctx.in(2).numel() > 0 && ctx.in(2).get(0) != 0.0 &&
        !(ctx.has(1) && ctx.in(1).get(0) == 0.0))
      ctx.unsupported("training_mode = true (kiln runs inference only)");
    ctx.set(0, x);
    if (ctx.wants(1)) {
      Tensor mask(DType::boolean, x.dims());
      for (i64 i = 0; i < mask.numel(); ++i) mask.data<bool>()[i] = true;
      ctx.set(1, mask);
    }
  });
  r.add("Reshape", reshape);
  r.add("Flatten", flatten);
  r.add("Transpose", transpose);
  r.add("Squeeze", squeeze);
  r.add("Unsqueeze", unsqueeze);
  r.add("Slice", slice);
  r.add("Pad", pad);
  r.add("Concat", concat);
  r.add("Split", split);
  r.add("Expand", expand);
  r.add("Tile", tile);
  r.add("Shape", [](KernelContext& ctx) {
    const Tensor& x = ctx.in(0);
    auto [s, e] = tr::shape_range(static_cast<i64>(x.rank()), ctx.node);
    std::vector<i64> v(x.dims().begin() + s, x.dims().begin() + e);
    ctx.set(0, Tensor::from<i64>({static_cast<i64>(v.size())}, v));
  });
  r.add("Size", [](KernelContext& ctx) { ctx.set(0, Tensor::scalar<i64>(ctx.in(0).numel())); });
  r.add("DepthToSpace", [](KernelContext& ctx) { depth_space(ctx, true); });
  r.add("SpaceToDepth", [](KernelContext& ctx) { depth_space(ctx, false); });
  register_tensor_index(r);
  register_resize(r);
}

}  // namespace kiln::reference
