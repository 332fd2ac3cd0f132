// Elementwise layers: activations and unary math (same type out as in), and binary arithmetic and
// comparisons (less, greater, equal, ...: bool tensors) with numpy broadcasting checked on the
// fixed dims and on the layouts.
#pragma once

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {
namespace detail {

template <tensor_expr T>
T unary(const T& x, const char* op, std::string_view kind, const std::string& given,
        std::map<std::string, Attribute> attrs = {}, std::vector<std::string> extra = {}) {
  auto s = x.state();
  const std::string name = node_name(*s, kind, given);
  std::vector<std::string> in{x.value()};
  in.insert(in.end(), extra.begin(), extra.end());
  emit(*s, op, name, std::move(in), std::move(attrs));
  return T(s, name, x.dims());
}

/// A scalar constant of dtype D (Clip bounds).
inline kiln::Tensor scalar_of(DType d, double v) { return kiln::Tensor::from_doubles(d, {}, {v}); }

}  // namespace detail

// ---- activations and unary math --------------------------------------------------------------

template <tensor_expr T>
T relu(const T& x, const std::string& n = "") {
  return detail::unary(x, "Relu", "relu", n);
}
template <tensor_expr T>
T sigmoid(const T& x, const std::string& n = "") {
  return detail::unary(x, "Sigmoid", "sigmoid", n);
}
template <tensor_expr T>
T tanh(const T& x, const std::string& n = "") {
  return detail::unary(x, "Tanh", "tanh", n);
}
template <tensor_expr T>
T softplus(const T& x, const std::string& n = "") {
  return detail::unary(x, "Softplus", "softplus", n);
}
template <tensor_expr T>
T softsign(const T& x, const std::string& n = "") {
  return detail::unary(x, "Softsign", "softsign", n);
}
template <tensor_expr T>
T abs(const T& x, const std::string& n = "") {
  return detail::unary(x, "Abs", "abs", n);
}
template <tensor_expr T>
T neg(const T& x, const std::string& n = "") {
  return detail::unary(x, "Neg", "neg", n);
}
template <tensor_expr T>
T exp(const T& x, const std::string& n = "") {
  return detail::unary(x, "Exp", "exp", n);
}
template <tensor_expr T>
T log(const T& x, const std::string& n = "") {
  return detail::unary(x, "Log", "log", n);
}
template <tensor_expr T>
T sqrt(const T& x, const std::string& n = "") {
  return detail::unary(x, "Sqrt", "sqrt", n);
}
template <tensor_expr T>
T reciprocal(const T& x, const std::string& n = "") {
  return detail::unary(x, "Reciprocal", "reciprocal", n);
}
template <tensor_expr T>
T erf(const T& x, const std::string& n = "") {
  return detail::unary(x, "Erf", "erf", n);
}
template <tensor_expr T>
T atan(const T& x, const std::string& n = "") {
  return detail::unary(x, "Atan", "atan", n);
}
template <tensor_expr T>
T identity(const T& x, const std::string& n = "") {
  return detail::unary(x, "Identity", "identity", n);
}

/// GELU, PyTorch's exact form x * Phi(x) (ONNX Gelu).
template <tensor_expr T>
T gelu(const T& x, const std::string& n = "") {
  return detail::unary(x, "Gelu", "gelu", n);
}
/// GELU's tanh approximation, PyTorch's GELU(approximate="tanh") (ONNX Gelu, approximate="tanh").
template <tensor_expr T>
T gelu_tanh(const T& x, const std::string& n = "") {
  return detail::unary(x, "Gelu", "gelu", n, {{"approximate", std::string("tanh")}});
}

template <tensor_expr T>
T leaky_relu(const T& x, double alpha = 0.01, const std::string& n = "") {
  return detail::unary(x, "LeakyRelu", "leaky_relu", n, {{"alpha", alpha}});
}
template <tensor_expr T>
T elu(const T& x, double alpha = 1.0, const std::string& n = "") {
  return detail::unary(x, "Elu", "elu", n, {{"alpha", alpha}});
}
template <tensor_expr T>
T selu(const T& x, const std::string& n = "") {
  return detail::unary(x, "Selu", "selu", n);
}
template <tensor_expr T>
T hard_sigmoid(const T& x, double alpha = 0.2, double beta = 0.5, const std::string& n = "") {
  return detail::unary(x, "HardSigmoid", "hard_sigmoid", n, {{"alpha", alpha}, {"beta", beta}});
}
/// min(max(x, lo), hi): ONNX Clip with its bounds as constant inputs.
template <tensor_expr T>
T clip(const T& x, double lo, double hi, const std::string& given = "") {
  auto s = x.state();
  const std::string name = detail::node_name(*s, "clip", given);
  auto mn = detail::constant(*s, name + ".min", detail::scalar_of(T::dtype, lo));
  auto mx = detail::constant(*s, name + ".max", detail::scalar_of(T::dtype, hi));
  detail::emit(*s, "Clip", name, {x.value(), mn, mx});
  return T(s, name, x.dims());
}
/// PyTorch's ReLU6.
template <tensor_expr T>
T relu6(const T& x, const std::string& n = "") {
  return clip(x, 0.0, 6.0, n);
}

/// Element type conversion (ONNX Cast).
template <DType To, tensor_expr T>
auto cast(const T& x, const std::string& given = "") {
  constexpr int code = dtype_to_onnx(To);
  auto s = x.state();
  const std::string name = detail::node_name(*s, "cast", given);
  detail::emit(*s, "Cast", name, {x.value()}, {{"to", dim_t{code}}});
  return typename detail::tensor_of<To, T::layout, T::static_dims>::type(s, name, x.dims());
}

/// Per-tensor linear quantization (ONNX QuantizeLinear): round(x / scale) + zero_point, rounded
/// half to even and saturated to Q (int8, uint8, int16 or uint16). `quantize<DType::i8>(x, 0.05,
/// 0)`
template <DType Q, tensor_expr T>
auto quantize(const T& x, float scale, std::int64_t zero_point = 0, const std::string& given = "") {
  static_assert(Q == DType::i8 || Q == DType::u8 || Q == DType::i16 || Q == DType::u16,
                "quantize<Q>: Q must be int8, uint8, int16 or uint16");
  static_assert(T::dtype == DType::f32 || T::dtype == DType::f16,
                "quantize: the input must be float");
  auto s = x.state();
  const std::string name = detail::node_name(*s, "quantize", given);
  kiln::Tensor zp(Q, {});
  zp.set(0, static_cast<double>(zero_point));
  const std::string sc =
      detail::constant(*s, name + ".scale", kiln::Tensor::from<float>({}, {scale}));
  const std::string z = detail::constant(*s, name + ".zero_point", std::move(zp));
  detail::emit(*s, "QuantizeLinear", name, {x.value(), sc, z}, {});
  return typename detail::tensor_of<Q, T::layout, T::static_dims>::type(s, name, x.dims());
}

/// Per-tensor dequantization (ONNX DequantizeLinear): (q - zero_point) * scale in float32.
template <tensor_expr T>
auto dequantize(const T& q, float scale, std::int64_t zero_point = 0,
                const std::string& given = "") {
  static_assert(T::dtype == DType::i8 || T::dtype == DType::u8 || T::dtype == DType::i16 ||
                    T::dtype == DType::u16 || T::dtype == DType::i32,
                "dequantize: the input must be a quantized integer tensor");
  auto s = q.state();
  const std::string name = detail::node_name(*s, "dequantize", given);
  kiln::Tensor zp(T::dtype, {});
  zp.set(0, static_cast<double>(zero_point));
  const std::string sc =
      detail::constant(*s, name + ".scale", kiln::Tensor::from<float>({}, {scale}));
  const std::string z = detail::constant(*s, name + ".zero_point", std::move(zp));
  detail::emit(*s, "DequantizeLinear", name, {q.value(), sc, z}, {});
  return typename detail::tensor_of<DType::f32, T::layout, T::static_dims>::type(s, name, q.dims());
}

// ---- binary arithmetic -----------------------------------------------------------------------

/// The layout of an elementwise op's result: its operands' (one of them may be `any`).
constexpr Layout joined_layout(Layout a, Layout b) { return a == Layout::any ? b : a; }

/// numpy broadcasting of two shapes, right-aligned (the ResNet mistake — a residual add whose
/// shortcut was not downsampled — fails here).
struct broadcast_rule {
  template <std::size_t RA, std::size_t RB>
  static constexpr auto rule(std::array<dim_t, RA> a, std::array<dim_t, RB> b) {
    constexpr std::size_t R = RA > RB ? RA : RB;
    std::array<dim_t, R> out{};
    for (std::size_t i = 0; i < R; ++i) {
      const dim_t da = i < R - RA ? 1 : a[i - (R - RA)];
      const dim_t db = i < R - RB ? 1 : b[i - (R - RB)];
      out[i] = rules::broadcast_dim(da, db);
    }
    return out;
  }
};
struct add_layer : broadcast_rule {
  static constexpr std::string_view kind = "add";
};
struct sub_layer : broadcast_rule {
  static constexpr std::string_view kind = "sub";
};
struct mul_layer : broadcast_rule {
  static constexpr std::string_view kind = "mul";
};
struct div_layer : broadcast_rule {
  static constexpr std::string_view kind = "div";
};
struct pow_layer : broadcast_rule {
  static constexpr std::string_view kind = "pow";
};
struct max_layer : broadcast_rule {
  static constexpr std::string_view kind = "max";
};
struct min_layer : broadcast_rule {
  static constexpr std::string_view kind = "min";
};

// Comparisons: bool tensors of the broadcast shape.
struct less_layer : broadcast_rule {
  static constexpr std::string_view kind = "less";
};
struct less_equal_layer : broadcast_rule {
  static constexpr std::string_view kind = "less_equal";
};
struct greater_layer : broadcast_rule {
  static constexpr std::string_view kind = "greater";
};
struct greater_equal_layer : broadcast_rule {
  static constexpr std::string_view kind = "greater_equal";
};
struct equal_layer : broadcast_rule {
  static constexpr std::string_view kind = "equal";
};

namespace detail {
/// An elementwise op of two operands of one element type, broadcast; its result is of that type,
/// or bool where `Compare`.
template <class Layer, tensor_expr A, tensor_expr B, bool Compare = false>
auto binary(const A& a, const B& b, const char* op, const std::string& given) {
  constexpr bool ok =
      rules_check<Layer, rule_on<rules::same_element_type<A::dtype, B::dtype>::check>,
                  rule_on<rules::compatible_layouts<A::layout, B::layout>::check>,
                  broadcast_rules<A, B>>::ok;
  constexpr Layout L = joined_layout(A::layout, B::layout);
  using Out = checked_output_t<ok, Layer, Compare ? DType::boolean : A::dtype, L, A, B>;
  auto s = unify(a.state(), b.state());
  const std::string name = node_name(*s, Layer::kind, given);
  const auto dims = run_rule<Layer>(name, a, b);
  emit(*s, op, name, {a.value(), b.value()});
  return Out(s, name, dims);
}
}  // namespace detail

template <tensor_expr A, tensor_expr B>
auto add(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<add_layer>(a, b, "Add", name);
}
template <tensor_expr A, tensor_expr B>
auto sub(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<sub_layer>(a, b, "Sub", name);
}
template <tensor_expr A, tensor_expr B>
auto mul(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<mul_layer>(a, b, "Mul", name);
}
template <tensor_expr A, tensor_expr B>
auto div(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<div_layer>(a, b, "Div", name);
}
template <tensor_expr A, tensor_expr B>
auto pow(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<pow_layer>(a, b, "Pow", name);
}
template <tensor_expr A, tensor_expr B>
auto maximum(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<max_layer>(a, b, "Max", name);
}
template <tensor_expr A, tensor_expr B>
auto minimum(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<min_layer>(a, b, "Min", name);
}

template <tensor_expr A, tensor_expr B>
auto less(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<less_layer, A, B, true>(a, b, "Less", name);
}
template <tensor_expr A, tensor_expr B>
auto less_equal(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<less_equal_layer, A, B, true>(a, b, "LessOrEqual", name);
}
template <tensor_expr A, tensor_expr B>
auto greater(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<greater_layer, A, B, true>(a, b, "Greater", name);
}
template <tensor_expr A, tensor_expr B>
auto greater_equal(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<greater_equal_layer, A, B, true>(a, b, "GreaterOrEqual", name);
}
template <tensor_expr A, tensor_expr B>
auto equal(const A& a, const B& b, const std::string& name = "") {
  return detail::binary<equal_layer, A, B, true>(a, b, "Equal", name);
}

// The operators call detail::binary themselves, not add() and the others: a compile error then
// shows one call less.
template <tensor_expr A, tensor_expr B>
auto operator+(const A& a, const B& b) {
  return detail::binary<add_layer>(a, b, "Add", "");
}
template <tensor_expr A, tensor_expr B>
auto operator-(const A& a, const B& b) {
  return detail::binary<sub_layer>(a, b, "Sub", "");
}
template <tensor_expr A, tensor_expr B>
auto operator*(const A& a, const B& b) {
  return detail::binary<mul_layer>(a, b, "Mul", "");
}
template <tensor_expr A, tensor_expr B>
auto operator/(const A& a, const B& b) {
  return detail::binary<div_layer>(a, b, "Div", "");
}

}  // namespace kiln::dsl
