// Shape rules of the elementwise op family: broadcasting arithmetic, comparison and logic, variadic
// Sum/Max/Min/Mean, Where, unary math, activations, Clip, PRelu, Cast and CastLike.
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "type_classes.hpp"

namespace kiln::ops {

namespace {

void check_type(const InferContext& ctx, std::size_t i, Types t) {
  const DType d = ctx.input(i).dtype;
  if (!accepts(t, d))
    ctx.fail(
        fmt::format("input {} has dtype {}; this op accepts {}", i, dtype_name(d), describe(t)));
}

void check_same_dtype(const InferContext& ctx, std::size_t i, std::size_t j) {
  const DType a = ctx.input(i).dtype, b = ctx.input(j).dtype;
  if (a != b)
    ctx.fail(fmt::format("inputs {} and {} must have the same dtype, got {} and {}", i, j,
                         dtype_name(a), dtype_name(b)));
}

Shape broadcast_inputs(const InferContext& ctx, std::size_t first, std::size_t count) {
  Shape s = ctx.input(first).shape;
  for (std::size_t i = first + 1; i < first + count; ++i)
    s = checked(ctx, [&] { return broadcast_shapes(s, ctx.input(i).shape); });
  return s;
}

/// A binary op whose inputs share a dtype; the output has dtype `out` (or the inputs' dtype).
InferFn binary(Types t, std::optional<DType> out = std::nullopt) {
  return [t, out](const InferContext& ctx) -> std::vector<TensorType> {
    check_type(ctx, 0, t);
    check_same_dtype(ctx, 0, 1);
    return {{out.value_or(ctx.input(0).dtype), broadcast_inputs(ctx, 0, 2)}};
  };
}

/// Variadic Sum, Max, Min, Mean: one or more inputs of one dtype, broadcast together.
InferFn variadic(Types t) {
  return [t](const InferContext& ctx) -> std::vector<TensorType> {
    const std::size_t n = ctx.node.input_count();
    for (std::size_t i = 0; i < n; ++i) {
      if (!ctx.has_input(i)) ctx.fail(fmt::format("input {} is absent", i));
      check_type(ctx, i, t);
      check_same_dtype(ctx, 0, i);
    }
    return {{ctx.input(0).dtype, broadcast_inputs(ctx, 0, n)}};
  };
}

InferFn unary(Types t, std::optional<DType> out = std::nullopt) {
  return [t, out](const InferContext& ctx) -> std::vector<TensorType> {
    check_type(ctx, 0, t);
    return {{out.value_or(ctx.input(0).dtype), ctx.input(0).shape}};
  };
}

/// An input that ONNX requires to be a scalar (Clip's min and max); [1] is accepted too.
void check_scalar(const InferContext& ctx, std::size_t i, const char* what) {
  const Shape& s = ctx.input(i).shape;
  const std::int64_t n = s.numel();
  if (s.rank() > 1 || (n != kDynamic && n != 1))
    ctx.fail(fmt::format("{} (input {}) must be a scalar, got shape {}", what, i, s.to_string()));
}

std::vector<TensorType> infer_where(const InferContext& ctx) {
  if (ctx.input(0).dtype != DType::boolean)
    ctx.fail(
        fmt::format("condition (input 0) must be bool, got {}", dtype_name(ctx.input(0).dtype)));
  check_same_dtype(ctx, 1, 2);
  return {{ctx.input(1).dtype, broadcast_inputs(ctx, 0, 3)}};
}

std::vector<TensorType> infer_clip(const InferContext& ctx) {
  check_type(ctx, 0, Types::numeric);
  if (ctx.has_input(1)) {
    check_same_dtype(ctx, 0, 1);
    check_scalar(ctx, 1, "min");
  }
  if (ctx.has_input(2)) {
    check_same_dtype(ctx, 0, 2);
    check_scalar(ctx, 2, "max");
  }
  return {ctx.input(0)};
}

std::vector<TensorType> infer_prelu(const InferContext& ctx) {
  check_type(ctx, 0, Types::prelu);
  check_same_dtype(ctx, 0, 1);
  const Shape& x = ctx.input(0).shape;
  const Shape& slope = ctx.input(1).shape;
  // The slope broadcasts to X (unidirectionally): the output has X's shape.
  if (slope.rank() > x.rank())
    ctx.fail(
        fmt::format("slope {} cannot broadcast to input {}", slope.to_string(), x.to_string()));
  const Shape b = checked(ctx, [&] { return broadcast_shapes(x, slope); });
  for (std::size_t i = 0; i < x.rank(); ++i)
    if (x[i].is_fixed() && b[i].is_fixed() && x[i].value() != b[i].value())
      ctx.fail(
          fmt::format("slope {} cannot broadcast to input {}", slope.to_string(), x.to_string()));
  return {ctx.input(0)};
}

std::vector<TensorType> infer_cast(const InferContext& ctx) {
  DType to;
  try {
    to = dtype_from_onnx(static_cast<int>(ctx.node.attr_int("to")));
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(ctx.node.where() + "attribute 'to': " + e.what());
  }
  return {{to, ctx.input(0).shape}};
}

std::vector<TensorType> infer_castlike(const InferContext& ctx) {
  return {{ctx.input(1).dtype, ctx.input(0).shape}};
}

std::vector<TensorType> infer_bitshift(const InferContext& ctx) {
  const std::string dir = ctx.node.attr_string("direction", "");
  if (dir != "LEFT" && dir != "RIGHT")
    ctx.fail("attribute 'direction' must be 'LEFT' or 'RIGHT', got '" + dir + "'");
  return binary(Types::unsigned_integer)(ctx);
}

std::vector<TensorType> infer_pow(const InferContext& ctx) {
  check_type(ctx, 0, Types::numeric);
  check_type(ctx, 1, Types::numeric);
  return {{ctx.input(0).dtype, broadcast_inputs(ctx, 0, 2)}};
}

std::vector<TensorType> infer_mod(const InferContext& ctx) {
  const std::int64_t fmod = ctx.node.attr_int("fmod", 0);
  if (fmod != 0 && fmod != 1)
    ctx.fail(fmt::format("attribute 'fmod' must be 0 or 1, got {}", fmod));
  return binary(Types::numeric)(ctx);
}

std::vector<TensorType> infer_gelu(const InferContext& ctx) {
  const std::string a = ctx.node.attr_string("approximate", "none");
  if (a != "none" && a != "tanh")
    ctx.fail("attribute 'approximate' must be 'none' or 'tanh', got '" + a + "'");
  return unary(Types::floating)(ctx);
}

}  // namespace

void register_elementwise(OpRegistry& r) {
  const std::string fam = "elementwise";
  auto add = [&](const char* name, int min_in, int max_in, InferFn f) {
    r.add(schema(name, fam, min_in, max_in, 1, 1, std::move(f)));
  };
  // Binary arithmetic with numpy broadcasting.
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) add(op, 2, 2, binary(Types::numeric));
  add("Pow", 2, 2, infer_pow);
  add("Mod", 2, 2, infer_mod);
  add("BitShift", 2, 2, infer_bitshift);
  for (const char* op : {"BitwiseAnd", "BitwiseOr", "BitwiseXor"})
    add(op, 2, 2, binary(Types::integer));
  add("BitwiseNot", 1, 1, unary(Types::integer));
  // Variadic.
  add("Sum", 1, -1, variadic(Types::floating));
  add("Mean", 1, -1, variadic(Types::floating));
  add("Max", 1, -1, variadic(Types::numeric));
  add("Min", 1, -1, variadic(Types::numeric));
  // Comparison and logic.
  add("Equal", 2, 2, binary(Types::any, DType::boolean));
  for (const char* op : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"})
    add(op, 2, 2, binary(Types::numeric, DType::boolean));
  for (const char* op : {"And", "Or", "Xor"}) add(op, 2, 2, binary(Types::boolean));
  add("Not", 1, 1, unary(Types::boolean));
  add("Where", 3, 3, infer_where);
  // Unary math.
  add("Abs", 1, 1, unary(Types::numeric));
  add("Neg", 1, 1, unary(Types::signed_numeric));
  add("Sign", 1, 1, unary(Types::numeric));
  add("Erf", 1, 1, unary(Types::numeric));
  for (const char* op : {"Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos",
                         "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"})
    add(op, 1, 1, unary(Types::floating));
  add("IsNaN", 1, 1, unary(Types::floating, DType::boolean));
  add("IsInf", 1, 1, unary(Types::floating, DType::boolean));
  // Activations.
  add("Relu", 1, 1, unary(Types::signed_numeric));
  for (const char* op : {"Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "Softsign", "Softplus",
                         "HardSigmoid", "HardSwish", "Mish", "Celu", "ThresholdedRelu", "Swish"})
    add(op, 1, 1, unary(Types::floating));
  add("Shrink", 1, 1, unary(Types::numeric));
  add("Gelu", 1, 1, infer_gelu);
  add("Clip", 1, 3, infer_clip);
  add("PRelu", 2, 2, infer_prelu);
  // Conversion.
  add("Cast", 1, 1, infer_cast);
  add("CastLike", 2, 2, infer_castlike);
}

}  // namespace kiln::ops
