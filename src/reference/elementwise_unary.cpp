// Reference kernels of the elementwise op family, part two: unary math, activations, Clip, PRelu,
// Cast and CastLike. Transcendental functions are evaluated in double and rounded once to the
// output dtype.
#include <bit>
#include <cmath>
#include <limits>

#include "elementwise_loops.hpp"
#include "families.hpp"

namespace kiln::reference {

namespace {

template <class T>
inline constexpr bool is_int_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

/// The float nearest to d with round-to-odd; rounding that float to a 16-bit float then gives
/// the correctly rounded result (float keeps more than 2 * 11 + 2 bits), with no double
/// rounding.
float round_to_odd_float(double d) {
  float f = static_cast<float>(d);
  if (std::isnan(d) || static_cast<double>(f) == d) return f;
  if ((std::bit_cast<std::uint32_t>(f) & 1u) == 0)
    f = std::nextafter(f, static_cast<double>(f) > d ? -std::numeric_limits<float>::infinity()
                                                     : std::numeric_limits<float>::infinity());
  return f;
}

/// A double result stored as T, rounded once.
template <class T>
T to_storage(double v) {
  if constexpr (is_half_v<T>)
    return T(round_to_odd_float(v));
  else
    return static_cast<T>(v);
}

/// A float op (double -> double, applied to every float dtype) with attributes read from the node
/// when the kernel runs: make(ctx) gives the op.
template <class Make>
Kernel float_unary_attr(Make make) {
  return [make](KernelContext& ctx) {
    const auto f = make(ctx);
    const Tensor& x = ctx.in(0);
    visit_typed<Types::floating>(ctx, x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      ctx.set(0,
              unary_map<T, T>(x, [&](auto v) { return to_storage<T>(f(static_cast<double>(v))); }));
    });
  };
}

/// A float op without attributes.
template <class F>
Kernel float_unary(F f) {
  return float_unary_attr([f](const KernelContext&) { return f; });
}

/// An op over the compute type of each accepted dtype (generic f(auto)); the output has the
/// input's dtype, or Out where one is given.
template <Types K, class Out = void, class F>
Kernel typed_unary(F f) {
  return [f](KernelContext& ctx) {
    const Tensor& x = ctx.in(0);
    visit_typed<K>(ctx, x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      ctx.set(0, unary_map<T, std::conditional_t<std::is_void_v<Out>, T, Out>>(x, f));
    });
  };
}

/// A float predicate giving bool.
template <class F>
Kernel float_predicate(F f) {
  return typed_unary<Types::floating, bool>([f](auto v) { return f(static_cast<double>(v)); });
}

double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}
double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

// ---- unary math over integers too ------------------------------------------------------------

struct AbsOp {
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_unsigned_v<C>)
      return x;
    else if constexpr (is_int_v<C>)
      return x < 0 ? wrap_neg(x) : x;
    else
      return std::fabs(x);
  }
};
struct NegOp {
  template <class C>
  C operator()(C x) const {
    if constexpr (is_int_v<C>)
      return wrap_neg(x);
    else
      return -x;
  }
};
struct SignOp {
  template <class C>
  C operator()(C x) const {
    if constexpr (std::is_floating_point_v<C>)
      if (std::isnan(x)) return x;
    return x > C(0) ? C(1) : (x < C(0) ? C(-1) : C(0));
  }
};
struct ReluOp {
  template <class C>
  C operator()(C x) const {
    return x < C(0) ? C(0) : x;
  }
};

void erf_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  visit_typed<Types::numeric>(ctx, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    // Integers: erf rounded through float, then truncated (ONNX's reference does the same).
    ctx.set(0, unary_map<T, T>(x, [](auto v) {
              const double e = std::erf(static_cast<double>(v));
              if constexpr (is_int_v<T>)
                return static_cast<T>(static_cast<float>(e));
              else
                return e;
            }));
  });
}

void isinf_kernel(KernelContext& ctx) {
  const bool neg = ctx.node.attr_int("detect_negative", 1) != 0;
  const bool pos = ctx.node.attr_int("detect_positive", 1) != 0;
  float_predicate(
      [neg, pos](double v) { return std::isinf(v) && ((v > 0 && pos) || (v < 0 && neg)); })(ctx);
}

void shrink_kernel(KernelContext& ctx) {
  const double bias = ctx.node.attr_float("bias", 0.0);
  const double lambd = ctx.node.attr_float("lambd", 0.5);
  const Tensor& x = ctx.in(0);
  visit_typed<Types::numeric>(ctx, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    ctx.set(0, unary_map<T, T>(x, [&](auto v) {
              const double d = static_cast<double>(v);
              const double r = d < -lambd ? d + bias : (d > lambd ? d - bias : 0.0);
              if constexpr (is_int_v<T>)
                return static_cast<T>(r);
              else
                return r;
            }));
  });
}

// ---- Clip and PRelu --------------------------------------------------------------------------

/// Clip(x, min?, max?): min and max are optional scalar inputs; numpy.clip order (max of min
/// first, then min of max), so min > max gives max everywhere.
void clip_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  for (std::size_t i : {std::size_t{1}, std::size_t{2}}) {
    if (!ctx.has(i)) continue;
    require_same_dtype(ctx, 0, i);
    if (ctx.in(i).numel() != 1)
      ctx.fail(fmt::format("{} (input {}) must be a scalar, got dims {}", i == 1 ? "min" : "max", i,
                           dims_to_string(ctx.in(i).dims())));
  }
  visit_typed<Types::numeric>(ctx, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const bool has_lo = ctx.has(1), has_hi = ctx.has(2);
    const C lo = has_lo ? to_compute(ctx.in(1).data<T>()[0]) : C{};
    const C hi = has_hi ? to_compute(ctx.in(2).data<T>()[0]) : C{};
    ctx.set(0, unary_map<T, T>(x, [&](C v) {
              if (has_lo && v < lo) v = lo;
              if (has_hi && v > hi) v = hi;
              return v;
            }));
  });
}

/// PRelu(x, slope): slope broadcasts to x (unidirectionally); y = x < 0 ? slope * x : x.
void prelu_kernel(KernelContext& ctx) {
  require_same_dtype(ctx, 0, 1);
  const Tensor& x = ctx.in(0);
  const Tensor& s = ctx.in(1);
  visit_typed<Types::prelu>(ctx, x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor out = binary_map<T, T, T>(ctx, [](auto v, auto a) {
      if constexpr (is_int_v<decltype(v)>)
        return v < 0 ? wrap_mul(v, a) : v;
      else
        return v < 0 ? v * a : v;
    });
    if (out.dims() != x.dims())
      ctx.fail(fmt::format("slope {} cannot broadcast to input {}", dims_to_string(s.dims()),
                           dims_to_string(x.dims())));
    ctx.set(0, out);
  });
}

// ---- Cast --------------------------------------------------------------------------------------

/// Converts x to dtype `to` (ONNX Cast): float to integer truncates (NaN and out-of-range values
/// saturate); wide types go to 16-bit floats with a single rounding.
Tensor cast_to(const Tensor& x, DType to, bool saturate, E8m0Rounding rounding) {
  const DType from = x.dtype();
  if (is_storage_only(to)) {  // from the value as a double: one rounding (f8e8m0 rounds a float)
    // The sub-byte integers wrap as Cast says (`saturate` is float8's); f4e2m1 saturates.
    const bool sat = is_float8(to) ? saturate : to == DType::f4e2m1;
    Tensor out(to, x.dims());
    for (std::int64_t i = 0; i < x.numel(); ++i)
      out.raw()[i] = std::byte{narrow_from_double(to, x.get(i), sat, rounding)};
    return out;
  }
  const bool wide = from == DType::f64 || from == DType::i32 || from == DType::u32 ||
                    from == DType::i64 || from == DType::u64;
  if (!(wide && (to == DType::f16 || to == DType::bf16))) return x.cast(to);
  Tensor out(to, x.dims());
  const std::int64_t n = x.numel();
  visit_dtype(from, [&](auto tag) {
    using F = decltype(tag);
    if constexpr (std::is_same_v<F, double> || is_int_v<F>) {
      const F* p = x.data<F>();
      for (std::int64_t i = 0; i < n; ++i) {
        const float f = round_to_odd_float(static_cast<double>(p[i]));
        if (to == DType::f16)
          out.data<f16>()[i] = f16(f);
        else
          out.data<bf16>()[i] = bf16(f);
      }
    }
  });
  return out;
}

/// Cast's and CastLike's `saturate` (float8 targets) and `round_mode` (f8e8m0) attributes.
Tensor cast_node(KernelContext& ctx, DType to) {
  const bool saturate = ctx.node.attr_int("saturate", 1) != 0;
  const std::string mode = ctx.node.attr_string("round_mode", "up");
  E8m0Rounding rounding = E8m0Rounding::up;
  if (mode == "down")
    rounding = E8m0Rounding::down;
  else if (mode == "nearest")
    rounding = E8m0Rounding::nearest;
  else if (mode != "up")
    ctx.fail("attribute 'round_mode' is '" + mode + "'; expected up, down or nearest");
  return cast_to(ctx.in(0), to, saturate, rounding);
}

void cast_kernel(KernelContext& ctx) {
  const std::int64_t code = ctx.node.attr_int("to");
  DType to;
  try {
    to = dtype_from_onnx(static_cast<int>(code));
  } catch (const UnsupportedError& e) {
    ctx.unsupported(std::string("attribute 'to': ") + e.what());
  }
  ctx.set(0, cast_node(ctx, to));
}

void castlike_kernel(KernelContext& ctx) { ctx.set(0, cast_node(ctx, ctx.in(1).dtype())); }

}  // namespace

void register_elementwise_unary(KernelRegistry& r) {
  // Over integers too.
  r.add("Abs", typed_unary<Types::numeric>(AbsOp{}));
  r.add("Neg", typed_unary<Types::signed_numeric>(NegOp{}));
  r.add("Sign", typed_unary<Types::numeric>(SignOp{}));
  r.add("Relu", typed_unary<Types::signed_numeric>(ReluOp{}));
  r.add("Not", typed_unary<Types::boolean>([](bool v) { return !v; }));
  r.add("BitwiseNot",
        typed_unary<Types::integer>([](auto v) { return static_cast<decltype(v)>(~v); }));
  r.add("Erf", erf_kernel);
  r.add("Shrink", shrink_kernel);
  r.add("Clip", clip_kernel);
  r.add("PRelu", prelu_kernel);

  // Float math.
  r.add("Exp", float_unary([](double x) { return std::exp(x); }));
  r.add("Log", float_unary([](double x) { return std::log(x); }));
  r.add("Sqrt", float_unary([](double x) { return std::sqrt(x); }));
  r.add("Reciprocal", float_unary([](double x) { return 1.0 / x; }));
  r.add("Floor", float_unary([](double x) { return std::floor(x); }));
  r.add("Ceil", float_unary([](double x) { return std::ceil(x); }));
  r.add("Round", float_unary([](double x) { return std::nearbyint(x); }));  // half to even
  r.add("Sin", float_unary([](double x) { return std::sin(x); }));
  r.add("Cos", float_unary([](double x) { return std::cos(x); }));
  r.add("Tan", float_unary([](double x) { return std::tan(x); }));
  r.add("Asin", float_unary([](double x) { return std::asin(x); }));
  r.add("Acos", float_unary([](double x) { return std::acos(x); }));
  r.add("Atan", float_unary([](double x) { return std::atan(x); }));
  r.add("Sinh", float_unary([](double x) { return std::sinh(x); }));
  r.add("Cosh", float_unary([](double x) { return std::cosh(x); }));
  r.add("Asinh", float_unary([](double x) { return std::asinh(x); }));
  r.add("Acosh", float_unary([](double x) { return std::acosh(x); }));
  r.add("Atanh", float_unary([](double x) { return std::atanh(x); }));
  r.add("IsNaN", float_predicate([](double x) { return std::isnan(x); }));
  r.add("IsInf", isinf_kernel);

  // Activations.
  r.add("Sigmoid", float_unary(sigmoid));
  r.add("Tanh", float_unary([](double x) { return std::tanh(x); }));
  r.add("Softsign", float_unary([](double x) { return x / (1.0 + std::fabs(x)); }));
  r.add("Softplus", float_unary(softplus));
  r.add("HardSwish",
        float_unary([](double x) { return x * std::max(0.0, std::min(1.0, x / 6.0 + 0.5)); }));
  r.add("Mish", float_unary([](double x) { return x * std::tanh(softplus(x)); }));
  r.add("LeakyRelu", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 0.01);
          return [alpha](double x) { return x < 0 ? alpha * x : x; };
        }));
  r.add("Elu", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 1.0);
          return [alpha](double x) { return x > 0 ? x : alpha * std::expm1(x); };
        }));
  r.add("Selu", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 1.67326319217681884765625);
          const double gamma = ctx.node.attr_float("gamma", 1.05070102214813232421875);
          return [alpha, gamma](double x) { return gamma * (x > 0 ? x : alpha * std::expm1(x)); };
        }));
  r.add("Celu", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 1.0);
          if (alpha == 0) ctx.fail("attribute 'alpha' must not be 0");
          return [alpha](double x) {
            return std::max(0.0, x) + std::min(0.0, alpha * std::expm1(x / alpha));
          };
        }));
  r.add("ThresholdedRelu", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 1.0);
          return [alpha](double x) { return x > alpha ? x : 0.0; };
        }));
  r.add("HardSigmoid", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 0.2);
          const double beta = ctx.node.attr_float("beta", 0.5);
          return [alpha, beta](double x) { return std::max(0.0, std::min(1.0, alpha * x + beta)); };
        }));
  r.add("Swish", float_unary_attr([](const KernelContext& ctx) {
          const double alpha = ctx.node.attr_float("alpha", 1.0);
          return [alpha](double x) { return x * sigmoid(alpha * x); };
        }));
  r.add("Gelu", float_unary_attr([](const KernelContext& ctx) {
          const std::string a = ctx.node.attr_string("approximate", "none");
          if (a != "none" && a != "tanh")
            ctx.unsupported("attribute 'approximate' = '" + a + "' (expected 'none' or 'tanh')");
          const bool tanh_approx = a == "tanh";
          return [tanh_approx](double x) {
            if (tanh_approx) {
              const double k = std::sqrt(2.0 / M_PI);
              return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
            }
            return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
          };
        }));

  r.add("Cast", cast_kernel);
  r.add("CastLike", castlike_kernel);
}

}  // namespace kiln::reference
