// Quantization on the CPU reference, with exact integer semantics: x / scale rounded half to
// even in the scale's precision, zero point added, saturated to the output type; integer
// convolutions and matrix products accumulate exactly (in doubles, exact below 2^53, then int32).
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "families.hpp"
#include "kernel_util.hpp"
#include "kiln/ir/dtype.hpp"
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

using i64 = std::int64_t;

std::pair<double, double> range_of(DType t) {
  switch (t) {
    case DType::i8: return {-128, 127};
    case DType::u8: return {0, 255};
    case DType::i16: return {-32768, 32767};
    case DType::u16: return {0, 65535};
    case DType::i32: return {-2147483648.0, 2147483647.0};
    default: return subbyte_int_range(t);  // the sub-byte integers; {0, 0} for the rest
  }
}

/// A value rounded to the precision of `t` (what numpy computes in when the scale is of type t).
double in_precision(double v, DType t) {
  switch (t) {
    case DType::f32: return static_cast<float>(v);
    case DType::f16: return static_cast<float>(f16(static_cast<float>(v)));
    case DType::bf16: return static_cast<float>(bf16(static_cast<float>(v)));
    default: return v;
  }
}

/// For each element of x, the index of its scale (and zero point): per tensor, per axis or per
/// block (QuantizeLinear/DequantizeLinear's rules; the IR checked the shapes).
std::vector<i64> param_index(KernelContext& ctx, const Tensor& x, const Tensor& scale) {
  std::vector<i64> idx(static_cast<std::size_t>(x.numel()), 0);
  const i64 block = ctx.node.attr_int("block_size", 0);
  if (block == 0 && scale.numel() == 1) return idx;
  const i64 rank = static_cast<i64>(x.rank());
  i64 axis = ctx.node.attr_int("axis", 1);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    ctx.fail(fmt::format("attribute 'axis' is out of range for rank {}", rank));
  const auto xs = strides_of(x.dims());
  if (block == 0) {
    if (scale.numel() != x.dim(axis))
      ctx.fail(fmt::format("the scale has {} elements; per axis {} it needs {}", scale.numel(),
                           axis, x.dim(axis)));
    for (i64 i = 0; i < x.numel(); ++i)
      idx[static_cast<std::size_t>(i)] = (i / xs[static_cast<std::size_t>(axis)]) % x.dim(axis);
    return idx;
  }
  if (scale.rank() != x.rank()) ctx.fail("a blocked scale must have x's rank");
  const auto ss = strides_of(scale.dims());
  for (i64 i = 0; i < x.numel(); ++i) {
    i64 at = 0;
    for (i64 d = 0; d < rank; ++d) {
      i64 c = (i / xs[static_cast<std::size_t>(d)]) % x.dim(d);
      if (d == axis) c /= block;
      if (c >= scale.dim(d)) ctx.fail("the blocked scale is smaller than x / block_size");
      at += c * ss[static_cast<std::size_t>(d)];
    }
    idx[static_cast<std::size_t>(i)] = at;
  }
  return idx;
}

/// Input 2, the zero points of QuantizeLinear (`which` "y") or DequantizeLinear ("x"), one per
/// scale; zeros when absent.
std::vector<double> zero_points(KernelContext& ctx, std::size_t scales, const char* which) {
  if (!ctx.has(2)) return std::vector<double>(scales, 0.0);
  auto zp = as_doubles(ctx.in(2));
  if (zp.size() != scales)
    ctx.fail(fmt::format("{0}_zero_point must have {0}_scale's shape", which));
  return zp;
}

/// y[i] = f(x[i], scale, zero point) with the scale and zero point of element i of x (input 0):
/// QuantizeLinear's and DequantizeLinear's walk (`which` names their zero point, "y" or "x").
template <class F>
std::vector<double> per_element(KernelContext& ctx, const char* which, F f) {
  const Tensor& x = ctx.in(0);
  const Tensor& scale = ctx.in(1);
  const auto idx = param_index(ctx, x, scale);
  const auto xv = as_doubles(x), sv = as_doubles(scale);
  const auto zp = zero_points(ctx, sv.size(), which);
  std::vector<double> y(xv.size());
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const std::size_t p = static_cast<std::size_t>(idx[i]);
    y[i] = f(xv[i], sv[p], zp[p]);
  }
  return y;
}

void quantize_linear(KernelContext& ctx) {
  const DType s = ctx.in(1).dtype();
  DType out = DType::u8;
  if (const i64 code = ctx.node.attr_int("output_dtype", 0); code != 0)
    out = dtype_from_onnx(static_cast<int>(code));
  if (ctx.has(2)) out = ctx.in(2).dtype();
  if ((is_float8(out) && out != DType::f8e8m0) ||
      out == DType::f4e2m1) {  // x / scale in the scale's precision, then cast
    const bool saturate = ctx.node.attr_int("saturate", 1) != 0;
    const auto y = per_element(ctx, "y", [&](double x, double scale, double zp) {
      return in_precision(x / scale, s) + zp;
    });
    Tensor q(out, ctx.in(0).dims());
    for (std::size_t i = 0; i < y.size(); ++i)
      q.raw()[i] = std::byte{narrow_from_double(out, y[i], saturate)};
    ctx.set(0, std::move(q));
    return;
  }
  const auto [lo, hi] = range_of(out);
  if (lo == hi) ctx.unsupported(fmt::format("quantizing to {}", dtype_name(out)));
  const auto y = per_element(ctx, "y", [&](double x, double scale, double zp) {
    const double q = std::nearbyint(in_precision(x / scale, s)) + zp;
    return std::isnan(q) ? 0 : std::clamp(q, lo, hi);
  });
  ctx.set(0, from_doubles_like(out, ctx.in(0).dims(), y));
}

void dequantize_linear(KernelContext& ctx) {
  const DType s = ctx.in(1).dtype();
  const auto y = per_element(ctx, "x", [&](double x, double scale, double zp) {
    return in_precision(in_precision(x - zp, s) * scale, s);
  });
  ctx.set(0, from_doubles_like(s, ctx.in(0).dims(), y));
}

void dynamic_quantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const auto xv = as_doubles(x);
  float mn = 0, mx = 0;  // the range always holds 0
  for (double v : xv) {
    mn = std::min(mn, static_cast<float>(v));
    mx = std::max(mx, static_cast<float>(v));
  }
  const float scale = (mx - mn) / 255.0f;
  const double zp =
      scale == 0 ? 0.0
                 : std::clamp(std::nearbyint(static_cast<double>(static_cast<float>(-mn / scale))),
                              0.0, 255.0);
  std::vector<double> y(xv.size(), zp);
  if (scale != 0)
    for (std::size_t i = 0; i < xv.size(); ++i)
      y[i] = std::clamp(std::nearbyint(static_cast<double>(static_cast<float>(xv[i] / scale))) + zp,
                        0.0, 255.0);
  ctx.set(0, from_doubles_like(DType::u8, x.dims(), y));
  ctx.set(1, Tensor::from<float>({}, {scale}));
  ctx.set(2, from_doubles_like(DType::u8, {}, {zp}));
}

/// `param` for every element of `t`: a scalar, or one value per slice along `axis` of t (per
/// row of A, per column of B, per channel).
std::vector<double> per_element(KernelContext& ctx, const Tensor& param, const Tensor& t, i64 axis,
                                const char* what) {
  const auto p = as_doubles(param);
  if (p.size() == 1) return std::vector<double>(static_cast<std::size_t>(t.numel()), p[0]);
  const i64 rank = static_cast<i64>(t.rank());
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank || static_cast<i64>(p.size()) != t.dim(axis))
    ctx.fail(fmt::format("{} has {} values; expected 1 or {}", what, p.size(),
                         axis >= 0 && axis < rank ? t.dim(axis) : 1));
  const i64 stride = strides_of(t.dims())[static_cast<std::size_t>(axis)];
  std::vector<double> out(static_cast<std::size_t>(t.numel()));
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = p[static_cast<std::size_t>((static_cast<i64>(i) / stride) % t.dim(axis))];
  return out;
}

/// t - zero point (absent: t) as a double tensor.
Tensor shifted(KernelContext& ctx, const Tensor& t, const Tensor* zp, i64 axis, const char* what) {
  auto v = as_doubles(t);
  if (zp) {
    const auto z = per_element(ctx, *zp, t, axis, what);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] -= z[i];
  }
  return from_doubles_like(DType::f64, t.dims(), v);
}

/// Runs the float op `op` (Conv or MatMul, the node's attributes) on double tensors.
Tensor run_float(const KernelContext& ctx, const char* op, std::vector<const Tensor*> in) {
  Node n = ctx.node;
  n.op = op;
  n.inputs.resize(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) n.inputs[i] = "in" + std::to_string(i);
  n.outputs = {"out"};
  return run_node(n, in)[0];
}

Tensor to_i32(KernelContext& ctx, const Tensor& acc) {
  const auto v = as_doubles(acc);
  for (double x : v)
    if (x < -2147483648.0 || x > 2147483647.0)
      ctx.fail(fmt::format("the int32 accumulator overflows ({})", x));
  return from_doubles_like(DType::i32, acc.dims(), v);
}

void matmul_integer(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  const Tensor A =
      shifted(ctx, a, ctx.has(2) ? &ctx.in(2) : nullptr, a.rank() >= 2 ? -2 : 0, "a_zero_point");
  const Tensor B = shifted(ctx, b, ctx.has(3) ? &ctx.in(3) : nullptr, -1, "b_zero_point");
  ctx.set(0, to_i32(ctx, run_float(ctx, "MatMul", {&A, &B})));
}

void conv_integer(KernelContext& ctx) {
  const Tensor X = shifted(ctx, ctx.in(0), ctx.has(2) ? &ctx.in(2) : nullptr, 1, "x_zero_point");
  const Tensor W = shifted(ctx, ctx.in(1), ctx.has(3) ? &ctx.in(3) : nullptr, 0, "w_zero_point");
  ctx.set(0, to_i32(ctx, run_float(ctx, "Conv", {&X, &W})));
}

/// (t - zero point) * scale as a double tensor.
Tensor dequantized(KernelContext& ctx, const Tensor& t, const Tensor& scale, const Tensor& zp,
                   i64 axis, const char* what) {
  auto v = as_doubles(t);
  const auto z = per_element(ctx, zp, t, axis, what), k = per_element(ctx, scale, t, axis, what);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = (v[i] - z[i]) * k[i];
  return from_doubles_like(DType::f64, t.dims(), v);
}

/// y / y_scale rounded half to even, plus y_zero_point, saturated to y_zero_point's type.
Tensor requantized(KernelContext& ctx, const Tensor& y, const Tensor& y_scale, const Tensor& y_zp,
                   i64 axis) {
  const auto [lo, hi] = range_of(y_zp.dtype());
  auto v = as_doubles(y);
  const auto s = per_element(ctx, y_scale, y, axis, "y_scale"),
             z = per_element(ctx, y_zp, y, axis, "y_zero_point");
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = std::clamp(std::nearbyint(v[i] / s[i]) + z[i], lo, hi);
  return from_doubles_like(y_zp.dtype(), y.dims(), v);
}

void qlinear_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(3);
  const Tensor A =
      dequantized(ctx, a, ctx.in(1), ctx.in(2), a.rank() >= 2 ? -2 : 0, "a_scale/a_zero_point");
  const Tensor B = dequantized(ctx, b, ctx.in(4), ctx.in(5), -1, "b_scale/b_zero_point");
  const Tensor y = run_float(ctx, "MatMul", {&A, &B});
  ctx.set(0, requantized(ctx, y, ctx.in(6), ctx.in(7), -1));
}

void qlinear_conv(KernelContext& ctx) {
  const Tensor X = dequantized(ctx, ctx.in(0), ctx.in(1), ctx.in(2), 1, "x_scale/x_zero_point");
  const Tensor W = dequantized(ctx, ctx.in(3), ctx.in(4), ctx.in(5), 0, "w_scale/w_zero_point");
  std::vector<const Tensor*> in{&X, &W};
  Tensor bias;
  if (ctx.has(8)) {
    // B is int32 in units of x_scale * w_scale (per output channel when w_scale is).
    const auto bv = as_doubles(ctx.in(8));
    const auto xs = as_doubles(ctx.in(1)), ws = as_doubles(ctx.in(4));
    std::vector<double> b(bv.size());
    for (std::size_t m = 0; m < bv.size(); ++m) b[m] = bv[m] * xs[0] * ws[ws.size() == 1 ? 0 : m];
    bias = from_doubles_like(DType::f64, ctx.in(8).dims(), b);
    in.push_back(&bias);
  }
  const Tensor y = run_float(ctx, "Conv", in);
  ctx.set(0, requantized(ctx, y, ctx.in(6), ctx.in(7), 1));
}

}  // namespace

void register_quantize(KernelRegistry& r) {
  r.add("QuantizeLinear", quantize_linear);
  r.add("DequantizeLinear", dequantize_linear);
  r.add("DynamicQuantizeLinear", dynamic_quantize_linear);
  r.add("MatMulInteger", matmul_integer);
  r.add("ConvInteger", conv_integer);
  r.add("QLinearMatMul", qlinear_matmul);
  r.add("QLinearConv", qlinear_conv);
}

}  // namespace kiln::reference
