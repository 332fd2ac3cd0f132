// Reference kernels of the elementwise op family, part one: broadcasting binary arithmetic,
// comparison and logic, variadic Sum/Max/Min/Mean, and Where. Unary ops, activations and casts
// are in elementwise_unary.cpp.
#include <cmath>
#include <functional>
#include <limits>

#include "elementwise_loops.hpp"
#include "families.hpp"

namespace kiln::reference {

// ---- broadcasting plan -------------------------------------------------------------------------

BroadcastPlan plan_broadcast(const std::vector<std::vector<std::int64_t>>& dims) {
  BroadcastPlan p;
  p.out_dims = broadcast_dims(dims);
  const std::size_t r = p.out_dims.size();
  const std::size_t k = dims.size();
  std::vector<std::vector<std::int64_t>> padded(k);  // each input's dims, left-padded with 1s
  for (std::size_t j = 0; j < k; ++j) {
    padded[j].assign(r - dims[j].size(), 1);
    padded[j].insert(padded[j].end(), dims[j].begin(), dims[j].end());
  }
  // The longest suffix of axes along which each input is either whole (its dims equal the
  // output's) or broadcast (all 1): those axes form the contiguous runs.
  enum Kind { unknown, whole, broadcast };
  std::vector<Kind> kind(k, unknown);
  std::size_t split = r;
  for (; split > 0; --split) {
    const std::int64_t od = p.out_dims[split - 1];
    if (od == 1) continue;  // fits either kind
    bool ok = true;
    std::vector<Kind> next = kind;
    for (std::size_t j = 0; j < k && ok; ++j) {
      const Kind c = padded[j][split - 1] == od ? whole : broadcast;
      if (next[j] == unknown)
        next[j] = c;
      else
        ok = next[j] == c;
    }
    if (!ok) break;
    kind = std::move(next);
  }
  for (std::size_t a = split; a < r; ++a) p.inner *= p.out_dims[a];
  const std::vector<std::int64_t> out_prefix(p.out_dims.begin(), p.out_dims.begin() + split);
  p.outer = product(out_prefix);
  for (std::size_t j = 0; j < k; ++j) {
    const bool w = kind[j] == whole;
    p.step.push_back(w ? 1 : 0);
    const std::vector<std::int64_t> in_prefix(padded[j].begin(), padded[j].begin() + split);
    auto off = broadcast_offsets(in_prefix, out_prefix);
    if (w)
      for (auto& o : off) o *= p.inner;
    p.offsets.push_back(std::move(off));
  }
  return p;
}

namespace {

template <class T>
inline constexpr bool is_int_v = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// ---- arithmetic --------------------------------------------------------------------------------

/// Integer division truncating toward zero (C, and ONNX's reference); x/0 is 0 (numpy).
template <class T>
T int_div(T x, T y) {
  if (y == 0) return 0;
  if constexpr (std::is_signed_v<T>)
    if (y == T(-1)) return wrap_neg(x);
  return static_cast<T>(x / y);
}

/// Integer remainder: with fmod, the sign of the dividend (C); without, the sign of the divisor
/// (Python, numpy.mod). x mod 0 is 0 (numpy).
template <class T>
T int_mod(T x, T y, bool fmod) {
  if (y == 0) return 0;
  if constexpr (std::is_signed_v<T>) {
    if (y == T(-1)) return 0;
    T r = static_cast<T>(x % y);
    if (!fmod && r != 0 && ((r < 0) != (y < 0))) r = static_cast<T>(r + y);
    return r;
  } else {
    return static_cast<T>(x % y);
  }
}

template <class C>
C float_mod(C x, C y, bool fmod) {
  C r = std::fmod(x, y);
  if (fmod) return r;
  if (r != 0) {
    if ((r < 0) != (y < 0)) r += y;
  } else {
    r = std::copysign(C(0), y);
  }
  return r;
}

/// A binary op on two inputs of one dtype of the class K, applied to their compute values: the
/// arithmetic ops, bit operations, comparisons and logic. The output has the inputs' dtype, or Out
/// where one is given (bool for comparisons and logic).
template <Types K, class Out = void, class Op>
Kernel binary_kernel(Op op) {
  return [op](KernelContext& ctx) {
    require_same_dtype(ctx, 0, 1);
    visit_typed<K>(ctx, ctx.in(0).dtype(), [&](auto tag) {
      using T = decltype(tag);
      using O = std::conditional_t<std::is_void_v<Out>, T, Out>;
      ctx.set(0, binary_map<T, T, O>(ctx, [&](auto x, auto y) { return op(x, y); }));
    });
  };
}

/// An arithmetic op: `on_float` on floats, `on_int` on integers (the wrapping and truncating forms
/// above, never undefined behaviour).
template <class OnFloat, class OnInt>
Kernel arithmetic(OnFloat on_float, OnInt on_int) {
  return binary_kernel<Types::numeric>([=](auto x, auto y) {
    if constexpr (is_int_v<decltype(x)>)
      return on_int(x, y);
    else
      return on_float(x, y);
  });
}

void mod_kernel(KernelContext& ctx) {
  require_same_dtype(ctx, 0, 1);
  const std::int64_t fmod = ctx.node.attr_int("fmod", 0);
  if (fmod != 0 && fmod != 1) ctx.unsupported(fmt::format("attribute 'fmod' = {}", fmod));
  visit_typed<Types::numeric>(ctx, ctx.in(0).dtype(), [&](auto tag) {
    using T = decltype(tag);
    ctx.set(0, binary_map<T, T, T>(ctx, [&](auto x, auto y) {
              if constexpr (is_int_v<decltype(x)>)
                return int_mod(x, y, fmod == 1);
              else
                return float_mod(x, y, fmod == 1);
            }));
  });
}

/// Integer power by squaring, wrapping on overflow; negative exponents truncate 1/x^n.
template <class T>
T int_pow(T base, std::int64_t e) {
  if (e < 0) {
    if (base == 1) return 1;
    if constexpr (std::is_signed_v<T>)
      if (base == -1) return (e % 2 == 0) ? T(1) : T(-1);
    return 0;
  }
  T result = 1;
  while (e > 0) {
    if (e & 1) result = wrap_mul(result, base);
    base = wrap_mul(base, base);
    e >>= 1;
  }
  return result;
}

/// Float to integer as numpy's astype does for in-range values (truncation); out of range and
/// NaN saturate instead of being undefined.
template <class T>
T float_to_int(double d) {
  if (std::isnan(d)) return 0;
  if (d <= static_cast<double>(std::numeric_limits<T>::lowest()))
    return std::numeric_limits<T>::lowest();
  if (d >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(d);
}

/// Pow: the base's dtype gives the output's; the exponent may have any numeric dtype.
void pow_kernel(KernelContext& ctx) {
  const Tensor& e = ctx.in(1);
  if (e.dtype() == DType::boolean) ctx.unsupported("exponent of dtype bool");
  const bool int_exp = is_integer(e.dtype());
  const Tensor exps = e.cast(int_exp ? DType::i64 : DType::f64);
  const Tensor& base = ctx.in(0);
  const BroadcastPlan p = plan_broadcast({base.dims(), exps.dims()});
  visit_typed<Types::numeric>(ctx, base.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor out(base.dtype(), p.out_dims);
    if (out.numel() == 0) return ctx.set(0, out);
    auto run = [&](auto exp_tag, auto f) {
      using E = decltype(exp_tag);
      binary_loop(p, base.data<T>(), exps.data<E>(), out.data<T>(), f);
    };
    if constexpr (is_int_v<T>) {
      if (int_exp)
        run(std::int64_t{}, [](T x, std::int64_t y) { return int_pow<T>(x, y); });
      else
        run(double{},
            [](T x, double y) { return float_to_int<T>(std::pow(static_cast<double>(x), y)); });
    } else {
      auto f = [](T x, auto y) {
        return from_compute<T>(
            std::pow(static_cast<double>(to_compute(x)), static_cast<double>(y)));
      };
      if (int_exp)
        run(std::int64_t{}, f);
      else
        run(double{}, f);
    }
    ctx.set(0, out);
  });
}

// ---- bit operations ----------------------------------------------------------------------------

void bitshift_kernel(KernelContext& ctx) {
  require_same_dtype(ctx, 0, 1);
  const std::string dir = ctx.node.attr_string("direction", "");
  if (dir != "LEFT" && dir != "RIGHT")
    ctx.unsupported("attribute 'direction' = '" + dir + "' (expected 'LEFT' or 'RIGHT')");
  const bool left = dir == "LEFT";
  visit_typed<Types::unsigned_integer>(ctx, ctx.in(0).dtype(), [&](auto tag) {
    using T = decltype(tag);
    constexpr T bits = static_cast<T>(sizeof(T) * 8);
    ctx.set(0, binary_map<T, T, T>(ctx, [left](T x, T y) -> T {
              if (y >= bits) return 0;
              return left ? static_cast<T>(x << y) : static_cast<T>(x >> y);
            }));
  });
}

// ---- variadic ----------------------------------------------------------------------------------

enum class Fold { sum, mean, max, min };

/// max/min that propagate NaN, as numpy.maximum/minimum do.
template <class C>
C nan_max(C a, C b) {
  if constexpr (std::is_floating_point_v<C>)
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) ? a : b;
  return a < b ? b : a;
}
template <class C>
C nan_min(C a, C b) {
  if constexpr (std::is_floating_point_v<C>)
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) ? a : b;
  return b < a ? b : a;
}

template <Fold F>
void variadic_kernel(KernelContext& ctx) {
  const std::size_t n = ctx.node.input_count();
  if (n == 0) ctx.fail("expected at least one input");
  std::vector<std::vector<std::int64_t>> all;
  for (std::size_t i = 0; i < n; ++i) {
    require_same_dtype(ctx, 0, i);
    all.push_back(ctx.in(i).dims());
  }
  const std::vector<std::int64_t> out_dims = broadcast_dims(all);
  constexpr Types K = (F == Fold::sum || F == Fold::mean) ? Types::floating : Types::numeric;
  visit_typed<K>(ctx, ctx.in(0).dtype(), [&](auto tag) {
    using T = decltype(tag);
    // Sums accumulate in double (floats); max and min are exact in the compute type.
    using A = std::conditional_t<F == Fold::sum || F == Fold::mean, accum_t<T>, compute_t<T>>;
    const std::int64_t count = product(out_dims);
    std::vector<A> acc(static_cast<std::size_t>(count));
    for (std::size_t i = 0; i < n && count > 0; ++i) {
      const Tensor& x = ctx.in(i);
      const BroadcastPlan p = plan_broadcast({out_dims, x.dims()});
      binary_loop(p, acc.data(), x.data<T>(), acc.data(), [&](A a, T v) -> A {
        const A b = static_cast<A>(to_compute(v));
        if (i == 0) return b;
        if constexpr (F == Fold::sum || F == Fold::mean)
          return a + b;
        else if constexpr (F == Fold::max)
          return nan_max(a, b);
        else
          return nan_min(a, b);
      });
    }
    Tensor out(dtype_v<T>, out_dims);
    T* po = out.data<T>();
    for (std::int64_t j = 0; j < count; ++j) {
      if constexpr (F == Fold::mean)
        po[j] = from_compute<T>(acc[j] / static_cast<A>(n));
      else
        po[j] = from_compute<T>(acc[j]);
    }
    ctx.set(0, out);
  });
}

// ---- Where -------------------------------------------------------------------------------------

void where_kernel(KernelContext& ctx) {
  const Tensor& c = ctx.in(0);
  const Tensor& x = ctx.in(1);
  const Tensor& y = ctx.in(2);
  if (c.dtype() != DType::boolean)
    ctx.fail(fmt::format("condition (input 0) must be bool, got {}", dtype_name(c.dtype())));
  require_same_dtype(ctx, 1, 2);
  const BroadcastPlan p = plan_broadcast({c.dims(), x.dims(), y.dims()});
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    Tensor out(x.dtype(), p.out_dims);
    const bool* pc = c.data<bool>();
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    T* po = out.data<T>();
    const std::int64_t sc = p.step[0], sx = p.step[1], sy = p.step[2];
    for (std::int64_t r = 0; r < p.outer && out.numel() > 0; ++r) {
      const bool* rc = pc + p.offsets[0][r];
      const T* rx = px + p.offsets[1][r];
      const T* ry = py + p.offsets[2][r];
      T* ro = po + r * p.inner;
      for (std::int64_t i = 0; i < p.inner; ++i) ro[i] = rc[i * sc] ? rx[i * sx] : ry[i * sy];
    }
    ctx.set(0, out);
  });
}

}  // namespace

void register_elementwise(KernelRegistry& r) {
  r.add("Add", arithmetic(std::plus<>{}, [](auto x, auto y) { return wrap_add(x, y); }));
  r.add("Sub", arithmetic(std::minus<>{}, [](auto x, auto y) { return wrap_sub(x, y); }));
  r.add("Mul", arithmetic(std::multiplies<>{}, [](auto x, auto y) { return wrap_mul(x, y); }));
  r.add("Div", arithmetic(std::divides<>{}, [](auto x, auto y) { return int_div(x, y); }));
  r.add("Mod", mod_kernel);
  r.add("Pow", pow_kernel);
  r.add("BitShift", bitshift_kernel);
  r.add("BitwiseAnd", binary_kernel<Types::integer>([](auto x, auto y) { return x & y; }));
  r.add("BitwiseOr", binary_kernel<Types::integer>([](auto x, auto y) { return x | y; }));
  r.add("BitwiseXor", binary_kernel<Types::integer>([](auto x, auto y) { return x ^ y; }));

  r.add("Sum", variadic_kernel<Fold::sum>);
  r.add("Mean", variadic_kernel<Fold::mean>);
  r.add("Max", variadic_kernel<Fold::max>);
  r.add("Min", variadic_kernel<Fold::min>);

  r.add("Equal", binary_kernel<Types::any, bool>([](auto x, auto y) { return x == y; }));
  r.add("Less", binary_kernel<Types::numeric, bool>([](auto x, auto y) { return x < y; }));
  r.add("Greater", binary_kernel<Types::numeric, bool>([](auto x, auto y) { return x > y; }));
  r.add("LessOrEqual", binary_kernel<Types::numeric, bool>([](auto x, auto y) { return x <= y; }));
  r.add("GreaterOrEqual",
        binary_kernel<Types::numeric, bool>([](auto x, auto y) { return x >= y; }));
  r.add("And", binary_kernel<Types::boolean, bool>([](bool x, bool y) { return x && y; }));
  r.add("Or", binary_kernel<Types::boolean, bool>([](bool x, bool y) { return x || y; }));
  r.add("Xor", binary_kernel<Types::boolean, bool>([](bool x, bool y) { return x != y; }));
  r.add("Where", where_kernel);

  register_elementwise_unary(r);
}

}  // namespace kiln::reference
