// Shape rules of the nn op family: convolution, pooling, normalization, matrix products,
// softmax, and kiln's Scale.
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "kiln/ir/window.hpp"

namespace kiln::ops {
namespace {

void require_float(const InferContext& ctx, std::size_t i, const char* what) {
  const DType t = ctx.input(i).dtype;
  if (!is_float(t))
    throw UnsupportedError(fmt::format("{}{} has dtype {}; this op takes f32, f64, f16 or bf16",
                                       ctx.node.where(), what, dtype_name(t)));
}

void require_same_dtype(const InferContext& ctx, std::size_t i, const char* what) {
  if (!ctx.has_input(i)) return;
  const DType want = ctx.input(0).dtype, got = ctx.input(i).dtype;
  if (want != got)
    ctx.fail(fmt::format("{} has dtype {}, expected {} (the dtype of input 0)", what,
                         dtype_name(got), dtype_name(want)));
}

void require_rank_at_least(const InferContext& ctx, std::size_t i, std::size_t rank,
                           const char* what) {
  const Shape& s = ctx.input(i).shape;
  if (s.rank() < rank)
    ctx.fail(fmt::format("{} must have rank >= {} ([N,C,spatial...]), got {}", what, rank,
                         s.to_string()));
}

/// A per-channel parameter input: a 1-D tensor of `channels` elements.
void require_vector(const InferContext& ctx, std::size_t i, const Dim& channels, const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& s = ctx.input(i).shape;
  if (s.rank() != 1)
    ctx.fail(fmt::format("{} must be 1-D with {} elements, got {}", what, channels.to_string(),
                         s.to_string()));
  checked(ctx, [&] { return rules::equal_dims(what, channels.value(), s[0].value()); });
}

std::vector<i64> spatial_of(const Shape& s) {
  std::vector<i64> v;
  for (std::size_t i = 2; i < s.rank(); ++i) v.push_back(s[i].value());
  return v;
}

// ---- convolution --------------------------------------------------------------------------

std::vector<i64> conv_kernel(const InferContext& ctx, const Shape& w) {
  std::vector<i64> k = spatial_of(w);
  const auto attr = ctx.node.attr_ints("kernel_shape", {});
  if (attr.empty()) return k;
  if (attr.size() != k.size())
    ctx.fail(fmt::format("attribute 'kernel_shape' has {} values, the weight has {} spatial axes",
                         attr.size(), k.size()));
  for (std::size_t a = 0; a < k.size(); ++a) {
    if (rules::known(k[a]) && k[a] != attr[a])
      ctx.fail(fmt::format("attribute 'kernel_shape' {} differs from the weight's spatial dims {}",
                           dims_to_string(attr), w.to_string()));
    k[a] = attr[a];
  }
  return k;
}

/// What Conv and ConvTranspose ask of X, W and B: X float of rank 3 or more, W and B of X's dtype,
/// W of X's rank.
void check_conv_inputs(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_same_dtype(ctx, 1, "weight W");
  require_same_dtype(ctx, 2, "bias B");
  require_rank_at_least(ctx, 0, 3, "input X");
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;
  if (w.rank() != x.rank())
    ctx.fail(
        fmt::format("weight W {} must have the rank of input X {}", w.to_string(), x.to_string()));
}

/// The output of Conv or ConvTranspose: [N, channels, the window's output dims] in X's dtype.
std::vector<TensorType> conv_output(const InferContext& ctx, const Dim& channels, WindowKind kind) {
  const Shape& x = ctx.input(0).shape;
  const Window win =
      resolve_window(ctx.node, spatial_of(x), conv_kernel(ctx, ctx.input(1).shape), kind);
  Shape out{x[0], channels};
  for (std::size_t a = 0; a < win.rank(); ++a)
    out.push_back(window_out_dim(ctx.node, win, a, x[2 + a], kind));
  return {TensorType{ctx.input(0).dtype, out}};
}

std::vector<TensorType> infer_conv(const InferContext& ctx) {
  check_conv_inputs(ctx);
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;
  const i64 group = ctx.node.attr_int("group", 1);
  checked(ctx, [&] { rules::conv_channels(x[1].value(), w[1].value(), group, w[0].value()); });
  require_vector(ctx, 2, w[0], "bias elements");
  return conv_output(ctx, w[0], WindowKind::conv);
}

std::vector<TensorType> infer_conv_transpose(const InferContext& ctx) {
  check_conv_inputs(ctx);
  const Shape& x = ctx.input(0).shape;
  const Shape& w = ctx.input(1).shape;  // [C, M/group, k...]
  const i64 group = checked(ctx, [&] {
    return rules::positive("group must be positive, got {}", ctx.node.attr_int("group", 1));
  });
  checked(ctx,
          [&] { rules::equal_dims("input channels (weight dim 0)", w[0].value(), x[1].value()); });
  if (x[1].is_fixed() && x[1].value() % group != 0)
    ctx.fail(fmt::format("input channels {} not divisible by group {}", x[1].value(), group));
  const Dim m = w[1].is_fixed() ? Dim(w[1].value() * group) : Dim::dynamic();
  require_vector(ctx, 2, m, "bias elements");
  return conv_output(ctx, m, WindowKind::deconv);
}

// ---- pooling ------------------------------------------------------------------------------

std::vector<TensorType> infer_pool(const InferContext& ctx) {
  if (ctx.node.op != "MaxPool") require_float(ctx, 0, "input X");
  require_rank_at_least(ctx, 0, 3, "input X");
  const Shape& x = ctx.input(0).shape;
  if (!ctx.node.has_attr("kernel_shape")) ctx.fail("missing required attribute 'kernel_shape'");
  const auto kernel = ctx.node.attr_ints("kernel_shape");
  const Window win = resolve_window(ctx.node, spatial_of(x), kernel, WindowKind::pool);
  if (ctx.node.op == "MaxPool") {
    const i64 so = ctx.node.attr_int("storage_order", 0);
    if (so != 0 && so != 1)
      throw UnsupportedError(
          fmt::format("{}attribute 'storage_order' = {} (expected 0 or 1)", ctx.node.where(), so));
  }
  Shape out{x[0], x[1]};
  for (std::size_t a = 0; a < win.rank(); ++a)
    out.push_back(window_out_dim(ctx.node, win, a, x[2 + a], WindowKind::pool));
  std::vector<TensorType> res{TensorType{ctx.input(0).dtype, out}};
  if (ctx.node.op == "MaxPool") res.push_back(TensorType{DType::i64, out});
  return res;
}

std::vector<TensorType> infer_global_pool(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_rank_at_least(ctx, 0, 3, "input X");
  const Shape& x = ctx.input(0).shape;
  Shape out{x[0], x[1]};
  for (std::size_t i = 2; i < x.rank(); ++i) out.push_back(Dim(1));
  return {TensorType{ctx.input(0).dtype, out}};
}

// ---- normalization ------------------------------------------------------------------------

std::vector<TensorType> infer_lrn(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_rank_at_least(ctx, 0, 3, "input X");
  checked(ctx, [&] { return rules::lrn_size(ctx.node.attr_int("size")); });
  return {ctx.input(0)};
}

std::vector<TensorType> infer_batch_norm(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_rank_at_least(ctx, 0, 2, "input X");
  const Shape& x = ctx.input(0).shape;
  const char* names[] = {"", "scale elements", "bias elements", "mean elements",
                         "variance elements"};
  for (std::size_t i = 1; i < 5; ++i) {
    if (!is_float(ctx.input(i).dtype))
      ctx.fail(fmt::format("input {} has dtype {}, expected a float type", i,
                           dtype_name(ctx.input(i).dtype)));
    require_vector(ctx, i, x[1], names[i]);
  }
  // Outside training mode, running_mean and running_var (if asked for) are the inputs' values.
  std::vector<TensorType> out{ctx.input(0)};
  out.push_back(ctx.input(3));
  out.push_back(ctx.input(4));
  return out;
}

std::vector<TensorType> infer_instance_norm(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_same_dtype(ctx, 1, "scale");
  require_same_dtype(ctx, 2, "bias");
  require_rank_at_least(ctx, 0, 3, "input X");
  const Shape& x = ctx.input(0).shape;
  require_vector(ctx, 1, x[1], "scale elements");
  require_vector(ctx, 2, x[1], "bias elements");
  return {ctx.input(0)};
}

std::vector<TensorType> infer_group_norm(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  require_rank_at_least(ctx, 0, 2, "input X");
  const Shape& x = ctx.input(0).shape;
  const i64 groups = checked(ctx, [&] {
    return rules::positive("num_groups must be positive, got {}", ctx.node.attr_int("num_groups"));
  });
  if (x[1].is_fixed() && x[1].value() % groups != 0)
    ctx.fail(fmt::format("channels {} not divisible by num_groups {}", x[1].value(), groups));
  require_vector(ctx, 1, x[1], "scale elements");
  require_vector(ctx, 2, x[1], "bias elements");
  return {ctx.input(0)};
}

/// Scale/B of LayerNormalization: unidirectionally broadcastable to X.
void require_unidirectional(const InferContext& ctx, std::size_t i, const Shape& target,
                            const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& s = ctx.input(i).shape;
  bool ok = s.rank() <= target.rank();
  for (std::size_t a = 0; ok && a < s.rank(); ++a) {
    const Dim& d = s[s.rank() - 1 - a];
    const Dim& t = target[target.rank() - 1 - a];
    ok = !d.is_fixed() || d.value() == 1 || !t.is_fixed() || d.value() == t.value();
  }
  if (!ok)
    ctx.fail(
        fmt::format("{} {} does not broadcast to {}", what, s.to_string(), target.to_string()));
}

std::vector<TensorType> infer_layer_norm(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  const TensorType& x = ctx.input(0);
  const i64 rank = static_cast<i64>(x.shape.rank());
  const i64 axis =
      checked(ctx, [&] { return rules::normalize_axis(ctx.node.attr_int("axis", -1), rank); });
  const i64 stash = ctx.node.attr_int("stash_type", 1);
  if (stash != 1 && stash != 11 && stash != 10 && stash != 16)
    throw UnsupportedError(fmt::format(
        "{}attribute 'stash_type' = {} (expected a float dtype code)", ctx.node.where(), stash));
  require_unidirectional(ctx, 1, x.shape, "Scale");
  require_unidirectional(ctx, 2, x.shape, "B");
  Shape stat;
  for (i64 a = 0; a < rank; ++a) stat.push_back(a < axis ? x.shape[a] : Dim(1));
  return {x, TensorType{x.dtype, stat}, TensorType{x.dtype, stat}};
}

std::vector<TensorType> infer_rms_norm(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  const TensorType& x = ctx.input(0);
  checked(ctx, [&] {
    return rules::normalize_axis(ctx.node.attr_int("axis", -1), static_cast<i64>(x.shape.rank()));
  });
  require_unidirectional(ctx, 1, x.shape, "scale");
  return {x};
}

std::vector<TensorType> infer_axis_op(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  const i64 rank = static_cast<i64>(ctx.input(0).shape.rank());
  if (rank == 0) ctx.fail("input must have rank >= 1");
  checked(ctx, [&] { return rules::normalize_axis(ctx.node.attr_int("axis", -1), rank); });
  if (ctx.node.op == "LpNormalization") {
    const i64 p = ctx.node.attr_int("p", 2);
    if (p != 1 && p != 2)
      throw UnsupportedError(
          fmt::format("{}attribute 'p' = {} (expected 1 or 2)", ctx.node.where(), p));
  }
  return {ctx.input(0)};
}

std::vector<TensorType> infer_mvn(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  const i64 rank = static_cast<i64>(ctx.input(0).shape.rank());
  for (i64 a : ctx.node.attr_ints("axes", {0, 2, 3}))
    checked(ctx, [&] { return rules::normalize_axis(a, rank); });
  return {ctx.input(0)};
}

// ---- matrix products ----------------------------------------------------------------------

void require_matmul_dtype(const InferContext& ctx) {
  const DType t = ctx.input(0).dtype;
  if (!is_float(t) && t != DType::i32 && t != DType::i64 && t != DType::u32 && t != DType::u64)
    throw UnsupportedError(
        fmt::format("{}dtype {} (expected f32, f64, f16, bf16, i32, i64, u32 or u64)",
                    ctx.node.where(), dtype_name(t)));
}

std::vector<TensorType> infer_gemm(const InferContext& ctx) {
  require_matmul_dtype(ctx);
  require_same_dtype(ctx, 1, "B");
  require_same_dtype(ctx, 2, "C");
  const Shape& a = ctx.input(0).shape;
  const Shape& b = ctx.input(1).shape;
  if (a.rank() != 2 || b.rank() != 2)
    ctx.fail(fmt::format("A and B must be 2-D, got {} and {}", a.to_string(), b.to_string()));
  const bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  const Dim m = a[ta ? 1 : 0], ka = a[ta ? 0 : 1], kb = b[tb ? 1 : 0], n = b[tb ? 0 : 1];
  checked(ctx, [&] { return rules::matmul_inner(ka.value(), kb.value()); });
  const Shape out{m, n};
  if (ctx.has_input(2)) {
    const Shape& c = ctx.input(2).shape;
    if (c.rank() > 2) ctx.fail(fmt::format("C must have rank <= 2, got {}", c.to_string()));
    require_unidirectional(ctx, 2, out, "C");
  }
  return {TensorType{ctx.input(0).dtype, out}};
}

std::vector<TensorType> infer_matmul(const InferContext& ctx) {
  require_matmul_dtype(ctx);
  require_same_dtype(ctx, 1, "B");
  Shape a = ctx.input(0).shape, b = ctx.input(1).shape;
  if (a.rank() == 0 || b.rank() == 0)
    ctx.fail(
        fmt::format("operands must have rank >= 1, got {} and {}", a.to_string(), b.to_string()));
  const bool a1 = a.rank() == 1, b1 = b.rank() == 1;
  if (a1) a = Shape{Dim(1), a[0]};
  if (b1) b = Shape{b[0], Dim(1)};
  checked(ctx,
          [&] { return rules::matmul_inner(a[a.rank() - 1].value(), b[b.rank() - 2].value()); });
  Shape ab(std::vector<Dim>(a.dims().begin(), a.dims().end() - 2));
  Shape bb(std::vector<Dim>(b.dims().begin(), b.dims().end() - 2));
  Shape out = checked(ctx, [&] { return broadcast_shapes(ab, bb); });
  if (!a1) out.push_back(a[a.rank() - 2]);
  if (!b1) out.push_back(b[b.rank() - 1]);
  return {TensorType{ctx.input(0).dtype, out}};
}

// ---- Scale (TensorRT's scale layer) -------------------------------------------------------

std::vector<TensorType> infer_scale(const InferContext& ctx) {
  require_float(ctx, 0, "input X");
  const std::string mode = ctx.node.attr_string("mode", "uniform");
  if (mode != "uniform" && mode != "channel" && mode != "elementwise")
    throw UnsupportedError(
        fmt::format("{}attribute 'mode' = '{}' (expected 'uniform', 'channel' or 'elementwise')",
                    ctx.node.where(), mode));
  const Shape& x = ctx.input(0).shape;
  const char* names[] = {"", "scale", "shift", "power"};
  for (std::size_t i = 1; i < 4; ++i) {
    if (!ctx.has_input(i)) continue;
    require_same_dtype(ctx, i, names[i]);
    const i64 n = ctx.input(i).shape.numel();
    i64 want = kDynamic;
    if (mode == "uniform")
      want = 1;
    else if (mode == "channel") {
      if (x.rank() < 2)
        ctx.fail(fmt::format("mode 'channel' needs rank >= 2, got {}", x.to_string()));
      want = x[1].value();
    } else {  // elementwise
      if (x.rank() < 2)
        ctx.fail(fmt::format("mode 'elementwise' needs rank >= 2, got {}", x.to_string()));
      Shape chw(std::vector<Dim>(x.dims().begin() + 1, x.dims().end()));
      want = chw.numel();
    }
    if (rules::known(want) && rules::known(n) && want != n)
      ctx.fail(fmt::format("expected {} {} values for mode '{}', got {}", want, names[i], mode, n));
  }
  return {ctx.input(0)};
}

}  // namespace

void register_nn(OpRegistry& r) {
  r.add(schema("Conv", "convolution", 2, 3, 1, 1, infer_conv));
  r.add(schema("ConvTranspose", "convolution", 2, 3, 1, 1, infer_conv_transpose));
  r.add(schema("MaxPool", "pooling", 1, 1, 1, 2, infer_pool));
  r.add(schema("AveragePool", "pooling", 1, 1, 1, 1, infer_pool));
  r.add(schema("LpPool", "pooling", 1, 1, 1, 1, infer_pool));
  r.add(schema("GlobalAveragePool", "pooling", 1, 1, 1, 1, infer_global_pool));
  r.add(schema("GlobalMaxPool", "pooling", 1, 1, 1, 1, infer_global_pool));
  r.add(schema("GlobalLpPool", "pooling", 1, 1, 1, 1, infer_global_pool));
  r.add(schema("LRN", "normalization", 1, 1, 1, 1, infer_lrn));
  r.add(schema("BatchNormalization", "normalization", 5, 5, 1, 3, infer_batch_norm));
  r.add(schema("InstanceNormalization", "normalization", 3, 3, 1, 1, infer_instance_norm));
  r.add(schema("LayerNormalization", "normalization", 2, 3, 1, 3, infer_layer_norm));
  r.add(schema("GroupNormalization", "normalization", 3, 3, 1, 1, infer_group_norm));
  r.add(schema("RMSNormalization", "normalization", 2, 2, 1, 1, infer_rms_norm));
  r.add(schema("LpNormalization", "normalization", 1, 1, 1, 1, infer_axis_op));
  r.add(schema("MeanVarianceNormalization", "normalization", 1, 1, 1, 1, infer_mvn));
  r.add(schema("Gemm", "matrix", 2, 3, 1, 1, infer_gemm));
  r.add(schema("MatMul", "matrix", 2, 2, 1, 1, infer_matmul));
  r.add(schema("Softmax", "softmax", 1, 1, 1, 1, infer_axis_op));
  r.add(schema("LogSoftmax", "softmax", 1, 1, 1, 1, infer_axis_op));
  r.add(schema("Hardmax", "softmax", 1, 1, 1, 1, infer_axis_op));
  r.add(schema("Scale", "scale", 1, 4, 1, 1, infer_scale));
}

}  // namespace kiln::ops

namespace kiln::ops {

// The integer and quantized convolutions and matrix products (quantize.cpp) take the shape of
// the float op they compute.
Shape float_conv_shape(const Node& node, const TensorType& x, const TensorType& w) {
  const TensorType fx{DType::f32, x.shape}, fw{DType::f32, w.shape};
  return infer_conv(InferContext(node, {&fx, &fw}, {nullptr, nullptr}))[0].shape;
}

Shape float_matmul_shape(const Node& node, const TensorType& a, const TensorType& b) {
  const TensorType fa{DType::f32, a.shape}, fb{DType::f32, b.shape};
  return infer_matmul(InferContext(node, {&fa, &fb}, {nullptr, nullptr}))[0].shape;
}

}  // namespace kiln::ops
