// Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
// ConvInteger, QLinearMatMul, QLinearConv. Scales are per tensor, per axis or (opset 21) per
// block; zero points have the quantized type. kiln's 8- and 16-bit integer types are supported;
// the 2- and 4-bit and float8/float4 types are refused where they appear (kiln has no such dtype).
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "kiln/ir/shape_rules.hpp"
#include "tensor_common.hpp"

namespace kiln::ops {
namespace {

using i64 = std::int64_t;

/// The types QuantizeLinear makes and DequantizeLinear reads (besides DequantizeLinear's int32).
bool is_quantized(DType t) {
  return t == DType::i8 || t == DType::u8 || t == DType::i16 || t == DType::u16 ||
         (is_storage_only(t) && t != DType::f8e8m0);
}

void require_8bit(const InferContext& ctx, std::size_t i, const char* what) {
  const DType t = ctx.input(i).dtype;
  if (t != DType::i8 && t != DType::u8)
    ctx.fail(fmt::format("{} has dtype {}; expected int8 or uint8", what, dtype_name(t)));
}

void require_scalar_like(const InferContext& ctx, std::size_t i, const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& s = ctx.input(i).shape;
  if (s.rank() > 1 || (s.rank() == 1 && s[0].is_fixed() && s[0].value() != 1))
    ctx.fail(
        fmt::format("{} must be a scalar or hold one element, got shape {}", what, s.to_string()));
}

/// A scale (or zero point) of QuantizeLinear/DequantizeLinear against input x: per tensor
/// (one element), per axis (1-D of x's dim at `axis`) or per block (x's rank, dim at `axis`
/// ceil(x_dim / block_size), the others equal).
void check_scale_shape(const InferContext& ctx, std::size_t i, const char* what) {
  if (!ctx.has_input(i)) return;
  const Shape& x = ctx.input(0).shape;
  const Shape& s = ctx.input(i).shape;
  const i64 block = ctx.node.attr_int("block_size", 0);
  if (block < 0) ctx.fail(fmt::format("attribute 'block_size' must be >= 0, got {}", block));
  const bool one = s.rank() == 0 || (s.rank() == 1 && s[0].is_fixed() && s[0].value() == 1);
  if (block == 0 && one) return;
  const i64 rank = static_cast<i64>(x.rank());
  i64 axis = ctx.node.attr_int("axis", 1);
  if (axis < -rank || axis >= rank)
    ctx.fail(fmt::format("attribute 'axis' {} is out of range for input x of rank {}", axis, rank));
  if (axis < 0) axis += rank;
  const Dim& xd = x[static_cast<std::size_t>(axis)];
  if (block == 0) {
    if (s.rank() != 1)
      ctx.fail(
          fmt::format("{} must be a scalar or 1-D (per axis), got shape {}", what, s.to_string()));
    if (s[0].is_fixed() && xd.is_fixed() && s[0].value() != xd.value())
      ctx.fail(fmt::format("{} has {} elements; per axis {} it needs x's dim {}", what,
                           s[0].value(), axis, xd.value()));
    return;
  }
  if (s.rank() != x.rank())
    ctx.fail(fmt::format("{} {} must have the rank of x {} for block_size {}", what, s.to_string(),
                         x.to_string(), block));
  for (std::size_t d = 0; d < x.rank(); ++d) {
    if (!s[d].is_fixed() || !x[d].is_fixed()) continue;
    const i64 want =
        static_cast<i64>(d) == axis ? (x[d].value() + block - 1) / block : x[d].value();
    if (s[d].value() != want)
      ctx.fail(fmt::format("{} {} must be {} in dim {} for x {} and block_size {}", what,
                           s.to_string(), want, d, x.to_string(), block));
  }
}

std::vector<TensorType> infer_quantize(const InferContext& ctx) {
  const DType x = ctx.input(0).dtype;
  if (x != DType::f32 && x != DType::f16 && x != DType::bf16 && x != DType::i32)
    ctx.fail(fmt::format("input x has dtype {}; expected float32, float16, bfloat16 or int32",
                         dtype_name(x)));
  if (!is_float(ctx.input(1).dtype)) ctx.fail("y_scale must be a float tensor");
  check_scale_shape(ctx, 1, "y_scale");
  DType out = DType::u8;
  if (const i64 code = ctx.node.attr_int("output_dtype", 0); code != 0) {
    try {
      out = dtype_from_onnx(code);
    } catch (const UnsupportedError& e) {
      throw UnsupportedError(ctx.node.where() + "attribute 'output_dtype': " + e.what());
    }
  }
  if (ctx.has_input(2)) {
    check_scale_shape(ctx, 2, "y_zero_point");
    if (ctx.node.attr_int("output_dtype", 0) != 0 && ctx.input(2).dtype != out)
      ctx.fail(fmt::format("y_zero_point has dtype {} but attribute 'output_dtype' says {}",
                           dtype_name(ctx.input(2).dtype), dtype_name(out)));
    out = ctx.input(2).dtype;
  }
  if (!is_quantized(out))
    throw UnsupportedError(ctx.node.where() +
                           fmt::format("quantizing to {} (kiln quantizes to int8, uint8, int16, "
                                       "uint16, int4, uint4, int2, uint2, float8 e4m3fn, e4m3fnuz, "
                                       "e5m2, e5m2fnuz and float4 e2m1)",
                                       dtype_name(out)));
  return {{out, ctx.input(0).shape}};
}

std::vector<TensorType> infer_dequantize(const InferContext& ctx) {
  const DType x = ctx.input(0).dtype;
  if (!is_quantized(x) && x != DType::i32)
    ctx.fail(
        fmt::format("input x has dtype {}; expected int8, uint8, int16, uint16, int32, int4, "
                    "uint4, int2, uint2, float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz) or float4 e2m1",
                    dtype_name(x)));
  if (!is_float(ctx.input(1).dtype)) ctx.fail("x_scale must be a float tensor");
  check_scale_shape(ctx, 1, "x_scale");
  if (ctx.has_input(2)) {
    check_scale_shape(ctx, 2, "x_zero_point");
    if (ctx.input(2).dtype != x)
      ctx.fail(fmt::format("x_zero_point has dtype {}, x {}: they must agree",
                           dtype_name(ctx.input(2).dtype), dtype_name(x)));
  }
  DType out = ctx.input(1).dtype;
  if (const i64 code = ctx.node.attr_int("output_dtype", 0); code != 0) {
    out = dtype_from_onnx(code);
    if (out != ctx.input(1).dtype)
      ctx.fail(fmt::format("attribute 'output_dtype' {} differs from x_scale's dtype {}",
                           dtype_name(out), dtype_name(ctx.input(1).dtype)));
  }
  return {{out, ctx.input(0).shape}};
}

std::vector<TensorType> infer_dynamic_quantize(const InferContext& ctx) {
  if (ctx.input(0).dtype != DType::f32) ctx.fail("input x must be float32");
  return {{DType::u8, ctx.input(0).shape}, {DType::f32, Shape{}}, {DType::u8, Shape{}}};
}

/// A zero point of MatMulInteger's A (scalar, or one per row: [M]) or B (scalar, or one per
/// column: [N]), of its operand's type.
void check_matmul_zero_point(const InferContext& ctx, std::size_t zp, std::size_t of, bool rows,
                             const char* what) {
  if (!ctx.has_input(zp)) return;
  if (ctx.input(zp).dtype != ctx.input(of).dtype)
    ctx.fail(fmt::format("{} has dtype {}, its operand {}", what, dtype_name(ctx.input(zp).dtype),
                         dtype_name(ctx.input(of).dtype)));
  const Shape& z = ctx.input(zp).shape;
  const Shape& m = ctx.input(of).shape;
  if (z.rank() == 0 || (z.rank() == 1 && z[0].is_fixed() && z[0].value() == 1)) return;
  const Dim& want = rows ? m[m.rank() >= 2 ? m.rank() - 2 : 0] : m[m.rank() - 1];
  if (z.rank() != 1 || (z[0].is_fixed() && want.is_fixed() && z[0].value() != want.value()))
    ctx.fail(fmt::format("{} {} must be a scalar or hold one value per {} ({})", what,
                         z.to_string(), rows ? "row of A" : "column of B", want.to_string()));
}

std::vector<TensorType> infer_matmul_integer(const InferContext& ctx) {
  require_8bit(ctx, 0, "A");
  require_8bit(ctx, 1, "B");
  check_matmul_zero_point(ctx, 2, 0, true, "a_zero_point");
  check_matmul_zero_point(ctx, 3, 1, false, "b_zero_point");
  return {{DType::i32, float_matmul_shape(ctx.node, ctx.input(0), ctx.input(1))}};
}

std::vector<TensorType> infer_conv_integer(const InferContext& ctx) {
  require_8bit(ctx, 0, "x");
  require_8bit(ctx, 1, "w");
  if (ctx.has_input(2) && ctx.input(2).dtype != ctx.input(0).dtype)
    ctx.fail("x_zero_point must have x's dtype");
  if (ctx.has_input(3) && ctx.input(3).dtype != ctx.input(1).dtype)
    ctx.fail("w_zero_point must have w's dtype");
  require_scalar_like(ctx, 2, "x_zero_point");
  return {{DType::i32, float_conv_shape(ctx.node, ctx.input(0), ctx.input(1))}};
}

/// The inputs the QLinear ops share: the operands (0 and 3) and y_zero_point (7) are 8-bit, the
/// scales (1, 4 and 6) float.
void check_qlinear_operands(const InferContext& ctx, const char* a, const char* b) {
  require_8bit(ctx, 0, a);
  require_8bit(ctx, 3, b);
  require_8bit(ctx, 7, "y_zero_point");
  for (std::size_t i : {1, 4, 6})
    if (!is_float(ctx.input(i).dtype))
      ctx.fail(fmt::format("input {} (a scale) must be a float tensor", i));
}

std::vector<TensorType> infer_qlinear_matmul(const InferContext& ctx) {
  // a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point
  check_qlinear_operands(ctx, "a", "b");
  if (ctx.input(2).dtype != ctx.input(0).dtype) ctx.fail("a_zero_point must have a's dtype");
  if (ctx.input(5).dtype != ctx.input(3).dtype) ctx.fail("b_zero_point must have b's dtype");
  return {{ctx.input(7).dtype, float_matmul_shape(ctx.node, ctx.input(0), ctx.input(3))}};
}

std::vector<TensorType> infer_qlinear_conv(const InferContext& ctx) {
  // x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B
  check_qlinear_operands(ctx, "x", "w");
  require_scalar_like(ctx, 1, "x_scale");
  require_scalar_like(ctx, 2, "x_zero_point");
  require_scalar_like(ctx, 6, "y_scale");
  require_scalar_like(ctx, 7, "y_zero_point");
  if (ctx.has_input(8) && ctx.input(8).dtype != DType::i32) ctx.fail("bias B must be int32");
  return {{ctx.input(7).dtype, float_conv_shape(ctx.node, ctx.input(0), ctx.input(3))}};
}

}  // namespace

void register_quantize(OpRegistry& r) {
  const std::string fam = "quantization";
  r.add(schema("QuantizeLinear", fam, 2, 3, 1, 1, infer_quantize));
  r.add(schema("DequantizeLinear", fam, 2, 3, 1, 1, infer_dequantize));
  r.add(schema("DynamicQuantizeLinear", fam, 1, 1, 3, 3, infer_dynamic_quantize));
  r.add(schema("MatMulInteger", fam, 2, 4, 1, 1, infer_matmul_integer));
  r.add(schema("ConvInteger", fam, 2, 4, 1, 1, infer_conv_integer));
  r.add(schema("QLinearMatMul", fam, 8, 8, 1, 1, infer_qlinear_matmul));
  r.add(schema("QLinearConv", fam, 8, 9, 1, 1, infer_qlinear_conv));
}

}  // namespace kiln::ops
