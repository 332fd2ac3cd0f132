// Layers that move data: concat, reshape, flatten, transpose, slice, pad; and the reductions
// and matmul. Shapes, axes and pads go into the IR as constant inputs (the latest ONNX form).
#pragma once

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {

// ---- concat ----------------------------------------------------------------------------------

/// Inputs of one rank; every dim but the axis agrees; the axis dims add up.
template <dim_t Axis>
struct concat_layer {
  static constexpr std::string_view kind = "concat";
  template <std::size_t R, class... More>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> first, More... more) {
    const auto ax = static_cast<std::size_t>(rules::normalize_axis(Axis, static_cast<dim_t>(R)));
    std::array<dim_t, R> out = first;
    auto one = [&](std::array<dim_t, R> in) {
      for (std::size_t i = 0; i < R; ++i) {
        if (i == ax)
          out[i] = rules::known(out[i]) && rules::known(in[i]) ? out[i] + in[i] : kDynamic;
        else
          out[i] = rules::concat_dim(out[i], in[i]);
      }
    };
    (one(more), ...);
    return out;
  }
};

namespace detail {

/// concat_layer's rules on the fixed dims of inputs Ts (of one rank), for rules_check: the axis,
/// then rules::concat_dim on each dim off the axis, of each input after the first against the
/// first known one before it.
template <dim_t Axis, class... Ts>
struct concat_rules {
  static constexpr std::size_t R = std::tuple_element_t<0, std::tuple<Ts...>>::rank,
                               N = sizeof...(Ts);
  static constexpr auto pairs = [] {
    const std::array<std::array<dim_t, R>, N> in{Ts::static_dims...};
    const dim_t ax =
        Axis < 0 ? Axis + static_cast<dim_t>(R) : Axis;  // out of range: the axis rule fails first
    std::array<std::array<dim_t, 2>, (N - 1) * R> p{};
    std::array<dim_t, R> seen = in[0];
    for (std::size_t k = 1; k < N; ++k)
      for (std::size_t i = 0; i < R; ++i) {
        p[(k - 1) * R + i] = {seen[i], static_cast<dim_t>(i) == ax ? seen[i] : in[k][i]};
        if (!rules::known(seen[i])) seen[i] = in[k][i];
      }
    return p;
  }();
  template <std::size_t... J>
  static auto of(std::index_sequence<J...>)
      -> std::tuple<rule_on<rules::normalize_axis, Axis, R>,
                    rule_on<rules::concat_dim, pairs[J][0], pairs[J][1]>...>;
  using type = decltype(of(std::make_index_sequence<pairs.size()>{}));
};

template <dim_t Axis, tensor_expr T, tensor_expr... Ts>
auto concat_named(const std::string& given, const T& first, const Ts&... rest) {
  constexpr bool same_rank = ((Ts::rank == T::rank) && ...);
  constexpr bool ok =
      rules_check<concat_layer<Axis>, rule_on<rules::input_rank, T::rank, Ts::rank>...,
                  rule_on<rules::same_element_type<T::dtype, Ts::dtype>::check>...,
                  rule_on<rules::compatible_layouts<T::layout, Ts::layout>::check>...,
                  typename std::conditional_t<same_rank, concat_rules<Axis, T, Ts...>,
                                              std::type_identity<std::tuple<>>>::type>::ok;
  if constexpr (!ok) {
    return failed_layer{};  // rules_check has said why
  } else {
    using Out = output_t<concat_layer<Axis>, T::dtype, T::layout, T, Ts...>;
    auto s = first.state();
    ((s = unify(s, rest.state())), ...);
    const std::string name = node_name(*s, concat_layer<Axis>::kind, given);
    const auto dims = run_rule<concat_layer<Axis>>(name, first, rest...);
    emit(*s, "Concat", name, {first.value(), rest.value()...}, {{"axis", Axis}});
    return Out(s, name, dims);
  }
}

/// concat_named with the tensors args[I]... and the name args[N-1].
template <dim_t Axis, class Args, std::size_t... I>
auto concat_last_named(const Args& args, std::index_sequence<I...>) {
  return concat_named<Axis>(std::string(std::get<sizeof...(I)>(args)), std::get<I>(args)...);
}

}  // namespace detail

/// Joins tensors along Axis: `concat<1>(a, b, c)`, or with the layer's name last, as every
/// layer takes it: `concat<1>(a, b, c, "inception3a")`.
template <dim_t Axis, tensor_expr T, class... Rest>
auto concat(const T& first, const Rest&... rest) {
  if constexpr (sizeof...(Rest) > 0 &&
                std::is_convertible_v<
                    std::tuple_element_t<sizeof...(Rest) - 1, std::tuple<Rest...>>, std::string>) {
    return detail::concat_last_named<Axis>(std::tie(first, rest...),
                                           std::make_index_sequence<sizeof...(Rest)>{});
  } else {
    static_assert((tensor_expr<Rest> && ...),
                  "concat: give tensors, then (optionally) the layer's name");
    return detail::concat_named<Axis>(std::string(), first, rest...);
  }
}

// ---- reshape and flatten ---------------------------------------------------------------------

/// ONNX Reshape: each target dim is positive, 0 (copy the input dim at that index) or -1
/// (inferred, at most one). Element counts are checked wherever the compiler can see them.
template <dim_t... Target>
struct reshape_layer {
  static constexpr std::string_view kind = "reshape";
  /// {elements of the input dims not copied by a 0, product of the positive target dims,
  /// whether a -1 is present}.
  template <std::size_t R>
  static constexpr std::array<dim_t, 3> counts(std::array<dim_t, R> in) {
    constexpr std::array<dim_t, sizeof...(Target)> t{Target...};
    dim_t in_count = 1, out_count = 1, inferred = 0;
    for (std::size_t i = 0; i < t.size(); ++i) {
      if (t[i] > 0) out_count *= t[i];
      inferred |= t[i] == -1;
    }
    for (std::size_t i = 0; i < R; ++i) {
      if (i < t.size() && t[i] == 0) continue;
      in_count = rules::known(in_count) && rules::known(in[i]) ? in_count * in[i] : kDynamic;
    }
    return {in_count, out_count, inferred};
  }
  template <std::size_t R>
  static constexpr std::array<dim_t, sizeof...(Target)> rule(std::array<dim_t, R> in) {
    constexpr std::array<dim_t, sizeof...(Target)> t{Target...};
    std::array<dim_t, sizeof...(Target)> out{};
    rules::reshape_dims(in, t, false, out);
    return out;
  }
};

/// `reshape<0, -1>(x)`: [N, C, H, W] -> [N, C*H*W]. The result's layout is L (default any).
template <dim_t... Target, tensor_expr T>
auto reshape(const T& x, const std::string& given = "") {
  using Layer = reshape_layer<Target...>;
  static constexpr auto counts = Layer::counts(T::static_dims);
  constexpr bool counts_ok = [] {
    if constexpr (counts[2] == 0)
      return detail::rule_check<Layer, rules::same_count, counts[0], counts[1]>::ok;
    else
      return true;  // a -1 target dim: the rule checks divisibility
  }();
  using Out = detail::checked_output_t<counts_ok, Layer, T::dtype, Layout::any, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  auto shape = detail::constant_ints(*s, name + ".shape", {Target...});
  detail::emit(*s, "Reshape", name, {x.value(), shape});
  return Out(s, name, dims);
}

template <dim_t Axis>
struct flatten_layer {
  static constexpr std::string_view kind = "flatten";
  template <std::size_t R>
  static constexpr std::array<dim_t, 2> rule(std::array<dim_t, R> in) {
    const auto ax = static_cast<std::size_t>(rules::flatten_axis(Axis, static_cast<dim_t>(R)));
    return {rules::dims_product(in, 0, ax), rules::dims_product(in, ax, R)};
  }
};

/// [d0..d(a-1), da..] -> [d0*..*d(a-1), da*..]; the default keeps the batch: [N, C*H*W].
template <dim_t Axis = 1, tensor_expr T>
auto flatten(const T& x, const std::string& given = "") {
  using Layer = flatten_layer<Axis>;
  using Out = detail::output_t<Layer, T::dtype, Layout::nc, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  detail::emit(*s, "Flatten", name, {x.value()}, {{"axis", Axis}});
  return Out(s, name, dims);
}

// ---- transpose -------------------------------------------------------------------------------

template <dim_t... Perm>
struct transpose_layer {
  static constexpr std::string_view kind = "transpose";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    constexpr std::array<dim_t, sizeof...(Perm)> p{Perm...};
    rules::permutation<Perm...>::check(static_cast<dim_t>(R));
    std::array<dim_t, R> out{};
    for (std::size_t i = 0; i < R; ++i) out[i] = in[static_cast<std::size_t>(p[i])];
    return out;
  }
};

namespace detail {
template <Layout L, dim_t... P>
constexpr Layout transposed_layout() {
  constexpr std::array<dim_t, sizeof...(P)> p{P...};
  if constexpr (sizeof...(P) == 4) {
    if (L == Layout::nchw && p == std::array<dim_t, 4>{0, 2, 3, 1}) return Layout::nhwc;
    if (L == Layout::nhwc && p == std::array<dim_t, 4>{0, 3, 1, 2}) return Layout::nchw;
  }
  bool same = true;
  for (std::size_t i = 0; i < p.size(); ++i) same &= p[i] == static_cast<dim_t>(i);
  return same ? L : Layout::any;
}
}  // namespace detail

/// Permutes the dims: `transpose<0, 2, 3, 1>(x)` turns NCHW into NHWC.
template <dim_t... Perm, tensor_expr T>
auto transpose(const T& x, const std::string& given = "") {
  using Layer = transpose_layer<Perm...>;
  constexpr bool ok = detail::rule_check<Layer, rules::permutation<Perm...>::check, T::rank>::ok;
  using Out = detail::checked_output_t<ok, Layer, T::dtype,
                                       detail::transposed_layout<T::layout, Perm...>(), T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  detail::emit(*s, "Transpose", name, {x.value()}, {{"perm", std::vector<dim_t>{Perm...}}});
  return Out(s, name, dims);
}

// ---- slice and pad ---------------------------------------------------------------------------

template <dim_t Axis, dim_t Start, dim_t End, dim_t Step>
struct slice_layer {
  static constexpr std::string_view kind = "slice";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    const auto a = static_cast<std::size_t>(rules::normalize_axis(Axis, static_cast<dim_t>(R)));
    std::array<dim_t, R> out = in;
    out[a] = rules::slice_count(in[a], Start, End, Step);
    return out;
  }
};

/// Elements Start, Start+Step, ... before End along Axis (ONNX Slice, negative indices count
/// from the end, bounds clamped).
template <dim_t Axis, dim_t Start, dim_t End, dim_t Step = 1, tensor_expr T>
auto slice(const T& x, const std::string& given = "") {
  using Layer = slice_layer<Axis, Start, End, Step>;
  constexpr dim_t a = Axis < 0 ? Axis + static_cast<dim_t>(T::rank)
                               : Axis;  // out of range: normalize_axis fails first
  constexpr bool ok = detail::rules_check<
      Layer, detail::rule_on<rules::normalize_axis, Axis, T::rank>,
      detail::rule_on<rules::slice_count, detail::static_dim<T>(static_cast<std::size_t>(a)), Start,
                      End, Step>>::ok;
  using Out = detail::checked_output_t<ok, Layer, T::dtype, T::layout, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  std::vector<std::string> in{x.value(), detail::constant_ints(*s, name + ".starts", {Start}),
                              detail::constant_ints(*s, name + ".ends", {End}),
                              detail::constant_ints(*s, name + ".axes", {Axis}),
                              detail::constant_ints(*s, name + ".steps", {Step})};
  detail::emit(*s, "Slice", name, std::move(in));
  return Out(s, name, dims);
}

template <dim_t... Pads>
struct pad_layer {
  static constexpr std::string_view kind = "pad";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    constexpr std::array<dim_t, sizeof...(Pads)> p{Pads...};
    rules::pad_count(static_cast<dim_t>(R), static_cast<dim_t>(p.size()));
    std::array<dim_t, R> out{};
    for (std::size_t i = 0; i < R; ++i) {
      out[i] = rules::known(in[i]) ? in[i] + p[i] + p[R + i] : kDynamic;
      if (rules::known(in[i]) && out[i] < 0)
        rules::rule_violation_fmt("padding makes dim {} negative ({})", static_cast<dim_t>(i),
                                  out[i]);
    }
    return out;
  }
};

/// Constant padding, ONNX order: all begins then all ends, one per dim:
/// `pad<0, 0, 1, 1, 0, 0, 1, 1>(x)` pads H and W of [N,C,H,W] by one on each side.
template <dim_t... Pads, tensor_expr T>
auto pad(const T& x, double value = 0.0, const std::string& given = "") {
  using Layer = pad_layer<Pads...>;
  constexpr bool ok = detail::rule_check<Layer, rules::pad_count, T::rank, sizeof...(Pads)>::ok;
  using Out = detail::checked_output_t<ok, Layer, T::dtype, T::layout, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  std::vector<std::string> in{
      x.value(), detail::constant_ints(*s, name + ".pads", {Pads...}),
      detail::constant(*s, name + ".value", kiln::Tensor::from_doubles(T::dtype, {}, {value}))};
  detail::emit(*s, "Pad", name, std::move(in), {{"mode", std::string("constant")}});
  return Out(s, name, dims);
}

// ---- reductions ------------------------------------------------------------------------------

template <class... Os>
struct reduce_layer {
  static constexpr std::string_view kind = "reduce";
  using A = typename detail::pick<detail::axes_tag, axes<>, Os...>::type;
  static constexpr bool keep = detail::pick<detail::keep_tag, keep_dims<true>, Os...>::type::value;
  template <std::size_t R>
  static constexpr std::array<bool, R> reduced() {
    std::array<bool, R> r{};
    for (std::size_t i = 0; i < R; ++i) r[i] = A::v.size() == 0;
    for (auto a : A::v) {
      const auto n = static_cast<std::size_t>(rules::normalize_axis(a, static_cast<dim_t>(R)));
      if (r[n])
        rules::rule_violation_fmt("axis {} is reduced twice (rank {})", a, static_cast<dim_t>(R));
      r[n] = true;
    }
    return r;
  }
  template <std::size_t R>
  static constexpr std::size_t out_rank() {
    if (keep) return R;
    std::size_t n = 0;
    for (bool b : reduced<R>()) n += !b;
    return n;
  }
  /// The axes' rules on an input of rank R, for rules_check.
  template <std::size_t R, std::size_t... I>
  static auto rules_of(std::index_sequence<I...>)
      -> std::tuple<detail::rule_on<rules::normalize_axis, A::v[I], R>...>;
  template <std::size_t R>
  using checks = decltype(rules_of<R>(std::make_index_sequence<A::v.size()>{}));
  template <std::size_t R>
  static constexpr std::array<dim_t, out_rank<R>()> rule(std::array<dim_t, R> in) {
    constexpr auto r = reduced<R>();
    std::array<dim_t, out_rank<R>()> out{};
    std::size_t j = 0;
    for (std::size_t i = 0; i < R; ++i) {
      if (!r[i])
        out[j++] = in[i];
      else if (keep)
        out[j++] = 1;
    }
    return out;
  }
};

namespace detail {
template <class... Os, tensor_expr T>
auto reduce(const T& x, const char* op, const std::string& given) {
  using Layer = reduce_layer<Os...>;
  constexpr bool ok = rules_check<Layer, typename Layer::template checks<T::rank>>::ok;
  if constexpr (!ok) {
    return failed_layer{};  // rules_check has said why
  } else {
    using Out = output_t<Layer, T::dtype, Layer::keep ? T::layout : Layout::any, T>;
    auto s = x.state();
    const std::string name = node_name(*s, Layer::kind, given);
    const auto dims = run_rule<Layer>(name, x);
    std::vector<dim_t> ax;
    constexpr auto r = Layer::template reduced<T::rank>();
    for (std::size_t i = 0; i < T::rank; ++i)
      if (r[i]) ax.push_back(static_cast<dim_t>(i));
    emit(*s, op, name, {x.value(), constant_ints(*s, name + ".axes", ax)},
         {{"keepdims", dim_t{Layer::keep}}});
    return Out(s, name, dims);
  }
}
}  // namespace detail

/// Reductions over axes<...> (default: all), keeping the reduced dims as 1 unless
/// keep_dims<false>: `reduce_mean<axes<2, 3>>(x)`.
template <class... Os, tensor_expr T>
auto reduce_sum(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceSum", n);
}
template <class... Os, tensor_expr T>
auto reduce_mean(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceMean", n);
}
template <class... Os, tensor_expr T>
auto reduce_max(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceMax", n);
}
template <class... Os, tensor_expr T>
auto reduce_min(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceMin", n);
}
template <class... Os, tensor_expr T>
auto reduce_prod(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceProd", n);
}
template <class... Os, tensor_expr T>
auto reduce_l2(const T& x, const std::string& n = "") {
  return detail::reduce<Os...>(x, "ReduceL2", n);
}

// ---- matmul ----------------------------------------------------------------------------------

/// [..., M, K] x [..., K, N] -> [..., M, N], leading dims broadcast.
struct matmul_layer {
  static constexpr std::string_view kind = "matmul";
  template <std::size_t RA, std::size_t RB>
  static constexpr auto rule(std::array<dim_t, RA> a, std::array<dim_t, RB> b) {
    static_assert(RA >= 2 && RB >= 2, "matmul operands must have rank >= 2");
    rules::matmul_inner(a[RA - 1], b[RB - 2]);
    constexpr std::size_t R = RA > RB ? RA : RB;
    std::array<dim_t, R> out{};
    for (std::size_t i = 0; i + 2 < R; ++i) {
      const dim_t da = i < R - RA ? 1 : a[i - (R - RA)];
      const dim_t db = i < R - RB ? 1 : b[i - (R - RB)];
      out[i] = rules::broadcast_dim(da, db);
    }
    out[R - 2] = a[RA - 2];
    out[R - 1] = b[RB - 1];
    return out;
  }
};

template <tensor_expr A, tensor_expr B>
auto matmul(const A& a, const B& b, const std::string& given = "") {
  static_assert(A::rank >= 2 && B::rank >= 2, "matmul operands must have rank >= 2");
  constexpr bool ok =
      detail::rules_check<matmul_layer,
                          detail::rule_on<rules::same_element_type<A::dtype, B::dtype>::check>,
                          detail::rule_on<rules::matmul_inner, A::static_dims[A::rank - 1],
                                          B::static_dims[B::rank - 2]>,
                          detail::broadcast_rules<A, B, 2>>::ok;
  using Out = detail::checked_output_t<ok, matmul_layer, A::dtype, Layout::any, A, B>;
  auto s = detail::unify(a.state(), b.state());
  const std::string name = detail::node_name(*s, matmul_layer::kind, given);
  const auto dims = detail::run_rule<matmul_layer>(name, a, b);
  detail::emit(*s, "MatMul", name, {a.value(), b.value()});
  return Out(s, name, dims);
}

// ---- top_k, gather_nd, scatter_elements ------------------------------------------------------

template <dim_t K, dim_t Axis>
struct top_k_layer {
  static constexpr std::string_view kind = "top_k";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> in) {
    const auto a = static_cast<std::size_t>(rules::normalize_axis(Axis, static_cast<dim_t>(R)));
    std::array<dim_t, R> out = in;
    out[a] = rules::top_k(K, in[a]);
    return out;
  }
};

struct TopKOptions {
  bool largest = true;  ///< the K largest (false: the K smallest)
  bool sorted = true;   ///< in order (kiln always sorts them)
};

/// The K largest (or smallest) values along Axis, ties by the lower index first, and their i64
/// indices (ONNX TopK): `auto [scores, which] = top_k<100>(x);`
template <dim_t K, dim_t Axis = -1, tensor_expr T>
auto top_k(const T& x, const TopKOptions& o = {}, const std::string& given = "") {
  using Layer = top_k_layer<K, Axis>;
  constexpr dim_t a = Axis < 0 ? Axis + static_cast<dim_t>(T::rank) : Axis;
  constexpr bool ok = detail::rules_check<
      Layer, detail::rule_on<rules::normalize_axis, Axis, T::rank>,
      detail::rule_on<rules::top_k, K, detail::static_dim<T>(static_cast<std::size_t>(a))>>::ok;
  using Values = detail::checked_output_t<ok, Layer, T::dtype, Layout::any, T>;
  using Indices = detail::checked_output_t<ok, Layer, DType::i64, Layout::any, T>;
  auto s = x.state();
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, x);
  detail::emit(*s, "TopK", name, {x.value(), detail::constant_ints(*s, name + ".k", {K})},
               {{"axis", Axis}, {"largest", dim_t{o.largest}}, {"sorted", dim_t{o.sorted}}}, 2);
  const std::string indices = s->graph.nodes.back().outputs[1];
  return std::pair{Values(s, name, dims), Indices(s, indices, dims)};
}

template <dim_t B, dim_t M>
struct gather_nd_layer {
  static constexpr std::string_view kind = "gather_nd";
  /// data [d0..], indices [i0..i(q-2), M] -> [i0..i(q-2), d(B+M)..]
  template <std::size_t R, std::size_t Q>
  static constexpr auto rule(std::array<dim_t, R> data, std::array<dim_t, Q> indices) {
    rules::gather_nd_tuple(M, static_cast<dim_t>(R) - B);
    constexpr std::size_t tail = R >= static_cast<std::size_t>(B + M) ? R - B - M : 0;
    std::array<dim_t, Q - 1 + tail> out{};
    for (std::size_t i = 0; i < static_cast<std::size_t>(B); ++i)
      rules::gather_nd_batch(data[i], indices[i]);
    for (std::size_t i = 0; i + 1 < Q; ++i) out[i] = indices[i];
    for (std::size_t i = 0; i < tail; ++i) out[Q - 1 + i] = data[B + M + i];
    return out;
  }
};

/// ONNX GatherND: each index tuple (indices' last dim, which must be fixed) picks a slice of
/// data past its first BatchDims dims.
template <dim_t BatchDims = 0, tensor_expr X, tensor_expr I>
auto gather_nd(const X& data, const I& indices, const std::string& given = "") {
  static_assert(X::rank >= 1 && I::rank >= 1, "gather_nd: data and indices have rank >= 1");
  static_assert(I::dtype == DType::i64, "gather_nd: indices are i64");
  constexpr dim_t M = detail::static_dim<I>(I::rank - 1);
  static_assert(M >= 0,
                "gather_nd: the last dim of indices (the tuple length) must be fixed, fix<M>, so "
                "that the output's rank is known");
  using Layer = gather_nd_layer<BatchDims, M>;
  constexpr bool ok =
      detail::rules_check<Layer, detail::rule_on<rules::gather_nd_tuple, M,
                                                 static_cast<dim_t>(X::rank) - BatchDims>>::ok;
  using Out = detail::checked_output_t<ok, Layer, X::dtype, Layout::any, X, I>;
  auto s = detail::unify(data.state(), indices.state());
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, data, indices);
  detail::emit(*s, "GatherND", name, {data.value(), indices.value()}, {{"batch_dims", BatchDims}});
  return Out(s, name, dims);
}

template <dim_t Axis>
struct scatter_elements_layer {
  static constexpr std::string_view kind = "scatter_elements";
  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> data,
                                             std::array<dim_t, R> indices,
                                             std::array<dim_t, R> updates) {
    rules::normalize_axis(Axis, static_cast<dim_t>(R));
    for (std::size_t i = 0; i < R; ++i) rules::scatter_updates(indices[i], updates[i]);
    return data;
  }
};

enum class ScatterReduction { none, add, mul, max, min };

/// ONNX ScatterElements: data with updates[p] written (or combined by `reduction`) where p's
/// Axis coordinate is replaced by indices[p].
template <dim_t Axis = 0, tensor_expr X, tensor_expr I, tensor_expr U>
auto scatter_elements(const X& data, const I& indices, const U& updates,
                      ScatterReduction reduction = ScatterReduction::none,
                      const std::string& given = "") {
  static_assert(X::rank == I::rank && X::rank == U::rank && X::rank >= 1,
                "scatter_elements: data, indices and updates have one rank");
  static_assert(I::dtype == DType::i64 || I::dtype == DType::i32,
                "scatter_elements: indices are i64 or i32");
  static_assert(U::dtype == X::dtype, "scatter_elements: updates have data's element type");
  using Layer = scatter_elements_layer<Axis>;
  constexpr bool ok =
      detail::rules_check<Layer, detail::rule_on<rules::normalize_axis, Axis, X::rank>>::ok;
  using Out = detail::checked_output_t<ok, Layer, X::dtype, X::layout, X, I, U>;
  auto s = detail::unify(detail::unify(data.state(), indices.state()), updates.state());
  const std::string name = detail::node_name(*s, Layer::kind, given);
  const auto dims = detail::run_rule<Layer>(name, data, indices, updates);
  constexpr const char* names[] = {"none", "add", "mul", "max", "min"};
  detail::emit(*s, "ScatterElements", name, {data.value(), indices.value(), updates.value()},
               {{"axis", Axis}, {"reduction", std::string(names[static_cast<int>(reduction)])}});
  return Out(s, name, dims);
}

}  // namespace kiln::dsl
