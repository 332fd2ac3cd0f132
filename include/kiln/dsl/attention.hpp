// Attention (ONNX Attention): scaled dot-product attention of queries over keys and values, with
// the head counts in the type.
//
//   auto q = input<"q", f32>(dyn, fix<16>, fix<512>);                    // [N,16,512]
//   auto k = input<"k", f32>(dyn, fix<16>, fix<128>);                    // [N,16,128]
//   auto v = input<"v", f32>(dyn, fix<16>, fix<128>);                    // [N,16,128]
//   auto y = attention<8, kv_heads<2>, causal>(q, k, v, {}, "attn");     // [N,16,512]
//
// 3-D inputs [N, S, heads * head_dim] (the form a projection gives): q [N,S,Hq*D],
// k [N,L,Hkv*D], v [N,L,Hkv*Dv] -> [N,S,Hq*Dv]. 4-D inputs [N, heads, S, head_dim]:
// q [N,Hq,S,D], k [N,Hkv,L,D], v [N,Hkv,L,Dv] -> [N,Hq,S,Dv]. Options: kv_heads<H> (grouped-query
// attention: H divides the query heads, default all of them; 1 is multi-query attention),
// head_dim<D> (declared and checked: heads x D = the width), causal, layer_name<"...">. A mask
// [.., S, <= L], boolean (true attends) or added to the scores, broadcasts over batch and heads.
//
// rotary_embedding<Heads, interleaved, rotary_dim<R>>(x, cos, sin[, positions]) (ONNX
// RotaryEmbedding): x [N,Heads,S,D] or [N,S,Heads*D]; cos and sin [max_position, R/2] with
// positions [N,S] (i64), else [N,S,R/2]; the first R dims of each head (default all) rotate.
#pragma once

#include <optional>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {
namespace detail {
struct kv_heads_tag {};
struct head_dim_tag {};
struct causal_tag {};
struct interleaved_tag {};
struct rotary_dim_tag {};
}  // namespace detail

/// Key/value heads of a grouped-query attention (they divide the query heads).
template <dim_t H>
struct kv_heads {
  using tag = detail::kv_heads_tag;
  static constexpr std::array<dim_t, 1> v{H};
};
/// The head size an attention layer declares: checked against heads x head_dim = width.
template <dim_t D>
struct head_dim {
  using tag = detail::head_dim_tag;
  static constexpr std::array<dim_t, 1> v{D};
};
/// Causal attention: query i attends keys 0..i.
struct causal {
  using tag = detail::causal_tag;
  static constexpr std::array<dim_t, 0> v{};
};

/// Rotary embedding of pairs (x0, x1), (x2, x3), ... rather than of the two halves of a head.
struct interleaved {
  using tag = detail::interleaved_tag;
  static constexpr std::array<dim_t, 0> v{};
};
/// Rotary embedding of the first R dims of each head only.
template <dim_t R>
struct rotary_dim {
  using tag = detail::rotary_dim_tag;
  static constexpr std::array<dim_t, 1> v{R};
};

/// Attention's real-valued settings.
struct AttentionParams {
  std::optional<double> scale;  ///< multiplies Q K^T; default 1 / sqrt(head_dim)
  double softcap = 0;           ///< > 0: scores become softcap * tanh(scores / softcap)
};

template <dim_t Heads, class... Os>
struct attention_layer {
  static constexpr std::string_view kind = "attention";
  static constexpr dim_t q_heads = Heads;
  static constexpr dim_t kv =
      detail::pick<detail::kv_heads_tag, kv_heads<Heads>, Os...>::type::v[0];
  static constexpr dim_t declared_head_dim =
      detail::pick<detail::head_dim_tag, head_dim<kDynamic>, Os...>::type::v[0];
  static constexpr bool is_causal = detail::has_option<detail::causal_tag, Os...>;

  /// The head size a 3-D query of `width` implies (kDynamic when it does not divide, so that
  /// only the rule that failed reports).
  static constexpr dim_t head_of(dim_t width) {
    if (rules::known(declared_head_dim)) return declared_head_dim;
    return rules::known(width) && Heads > 0 && width % Heads == 0 ? width / Heads : kDynamic;
  }

  template <std::size_t R>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> q, std::array<dim_t, R> k,
                                             std::array<dim_t, R> v) {
    static_assert(R == 3 || R == 4,
                  "attention inputs must be [N,S,heads*head_dim] or [N,heads,S,head_dim]");
    rules::attention_kv_groups(Heads, kv);
    const dim_t n = rules::equal_dims("batch of k (= q's)", q[0], k[0]);
    rules::equal_dims("batch of v (= q's)", n, v[0]);
    if constexpr (R == 3) {
      rules::attention_width(Heads, declared_head_dim, q[2]);
      const dim_t d = rules::attention_head_dim(q[2], Heads);
      rules::attention_width(kv, d, k[2]);
      const dim_t dv = rules::attention_head_dim(v[2], kv);
      rules::equal_dims("key/value sequence length (dim 1 of v = dim 1 of k)", k[1], v[1]);
      return {n, q[1], rules::known(dv) ? Heads * dv : kDynamic};
    } else {
      rules::attention_heads(Heads, q[1]);
      rules::attention_kv_heads(kv, k[1]);
      rules::attention_kv_heads(kv, v[1]);
      rules::equal_dims("head size (dim 3 of q)", declared_head_dim, q[3]);
      rules::equal_dims("head size (dim 3 of k = dim 3 of q)", q[3], k[3]);
      rules::equal_dims("key/value sequence length (dim 2 of v = dim 2 of k)", k[2], v[2]);
      return {n, Heads, q[2], v[3]};
    }
  }

  /// The same with a mask broadcast to [N, Heads, S, L] (its last dim may be shorter).
  template <std::size_t R, std::size_t RM>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> q, std::array<dim_t, R> k,
                                             std::array<dim_t, R> v, std::array<dim_t, RM> m) {
    static_assert(RM >= 1 && RM <= 4,
                  "an attention mask has rank 1 to 4 ([N,heads,S,L] broadcast)");
    const auto out = rule(q, k, v);
    const dim_t s = R == 3 ? q[1] : q[2], l = R == 3 ? k[1] : k[2];
    const std::array<dim_t, 4> target{q[0], Heads, s, l};
    for (std::size_t i = 0; i + 1 < RM; ++i) {
      const dim_t md = m[i], want = target[4 - RM + i];
      if (rules::known(md) && md != 1 && rules::known(want) && md != want)
        rules::rule_violation_fmt("a mask dim of {} does not broadcast to {}", md, want);
    }
    rules::attention_mask_keys(m[RM - 1], l);
    return out;
  }
};

namespace detail {

template <class L, class Q, class K, class V, class... M>
auto attention_node(const Q& q, const K& k, const V& v, const AttentionParams& p,
                    const std::string& given, const M&... mask) {
  static_assert(Q::dtype == K::dtype && Q::dtype == V::dtype,
                "attention: q, k and v have different element types");
  static_assert(Q::rank == K::rank && Q::rank == V::rank,
                "attention: q, k and v have different ranks");
  static_assert(((M::dtype == DType::boolean || M::dtype == Q::dtype) && ...),
                "attention: a mask is boolean or of the inputs' element type");
  constexpr std::size_t R = Q::rank;
  static_assert(R == 3 || R == 4,
                "attention inputs must be [N,S,heads*head_dim] or [N,heads,S,head_dim]");
  // The rules a user's numbers may break, in the order the layer's rule checks them; the first
  // that fails is the compile error. A later rule gets numbers that pass where an earlier one
  // failed, and the rules of the other input form (3-D or 4-D) numbers that pass.
  constexpr bool three = R == 3;
  constexpr dim_t wq = three ? Q::static_dims[R - 1] : kDynamic;
  constexpr bool ok =
      rules_check<L, rule_on<rules::attention_kv_groups, L::q_heads, L::kv>,
                  rule_on<rules::attention_width, L::q_heads, L::declared_head_dim, wq>,
                  rule_on<rules::attention_head_dim,
                          rules::known(L::declared_head_dim) ? kDynamic : wq, L::q_heads>,
                  rule_on<rules::attention_width, L::kv, three ? L::head_of(wq) : kDynamic,
                          three ? K::static_dims[R - 1] : kDynamic>,
                  // 4-D inputs: the heads are dims; a mask covers at most the keys (dim 1 of 3-D k,
                  // dim 2 of 4-D k).
                  rule_on<rules::attention_heads, three ? kDynamic : L::q_heads, Q::static_dims[1]>,
                  rule_on<rules::attention_kv_heads, three ? kDynamic : L::kv, K::static_dims[1]>,
                  rule_on<rules::attention_kv_heads, three ? kDynamic : L::kv, V::static_dims[1]>,
                  rule_on<rules::attention_mask_keys, M::static_dims[M::rank - 1],
                          K::static_dims[three ? 1 : 2]>...>::ok;
  using Out = checked_output_t<ok, L, Q::dtype, Layout::any, Q, K, V, M...>;
  auto s = unify(unify(q.state(), k.state()), v.state());
  ((s = unify(s, mask.state())), ...);
  const std::string name = node_name(*s, L::kind, given);
  const auto dims = run_rule<L>(name, q, k, v, mask...);
  std::map<std::string, Attribute> a;
  if (R == 3) {
    a["q_num_heads"] = L::q_heads;
    a["kv_num_heads"] = L::kv;
  }
  if (L::is_causal) a["is_causal"] = dim_t{1};
  if (p.scale) a["scale"] = *p.scale;
  if (p.softcap != 0) a["softcap"] = p.softcap;
  std::vector<std::string> in{q.value(), k.value(), v.value()};
  (in.push_back(mask.value()), ...);
  emit(*s, "Attention", name, std::move(in), std::move(a));
  return Out(s, name, dims);
}

}  // namespace detail

/// Attention of q over k and v with Heads query heads: `attention<8, kv_heads<2>, causal>(q, k,
/// v)`.
template <dim_t Heads, class... Os, tensor_expr Q, tensor_expr K, tensor_expr V>
auto attention(const Q& q, const K& k, const V& v, const AttentionParams& p = {},
               const std::string& name = "") {
  return detail::attention_node<attention_layer<Heads, Os...>>(q, k, v, p,
                                                               detail::given_name<Os...>(name));
}
/// The same with an attention mask: boolean (true attends) or added to the scores.
template <dim_t Heads, class... Os, tensor_expr Q, tensor_expr K, tensor_expr V, tensor_expr M>
auto attention(const Q& q, const K& k, const V& v, const M& mask, const AttentionParams& p = {},
               const std::string& name = "") {
  return detail::attention_node<attention_layer<Heads, Os...>>(
      q, k, v, p, detail::given_name<Os...>(name), mask);
}

// ---- rotary embedding --------------------------------------------------------------------------

template <dim_t Heads, class... Os>
struct rotary_embedding_layer {
  static constexpr std::string_view kind = "rotary_embedding";
  static constexpr dim_t heads = Heads;
  static constexpr dim_t declared =
      detail::pick<detail::rotary_dim_tag, rotary_dim<0>, Os...>::type::v[0];
  static constexpr bool is_interleaved = detail::has_option<detail::interleaved_tag, Os...>;

  /// The head size of x (kDynamic when a 3-D width does not divide, so that only that rule
  /// reports).
  template <std::size_t R>
  static constexpr dim_t head_of(std::array<dim_t, R> x) {
    if constexpr (R == 4)
      return x[3];
    else
      return rules::known(x[2]) && Heads > 0 && x[2] % Heads == 0 ? x[2] / Heads : kDynamic;
  }
  /// x [N,Heads,S,D] or [N,S,Heads*D]; the caches [P, R/2] (with positions [N,S]) or [N,S,R/2].
  template <std::size_t R, std::size_t RC, std::size_t... RP>
  static constexpr std::array<dim_t, R> rule(std::array<dim_t, R> x, std::array<dim_t, RC> cos,
                                             std::array<dim_t, RC> sin,
                                             std::array<dim_t, RP>... positions) {
    static_assert(R == 3 || R == 4,
                  "rotary_embedding input must be [N,heads,S,head_dim] or [N,S,heads*head_dim]");
    static_assert(RC == (sizeof...(RP) ? 2 : 3),
                  "rotary_embedding caches are [max_position, rotated/2] with positions, else "
                  "[N,S,rotated/2]");
    const dim_t n = x[0], s = R == 4 ? x[2] : x[1];
    const dim_t head = R == 4 ? x[3] : rules::attention_head_dim(x[2], Heads);
    if constexpr (R == 4) rules::equal_dims("heads (dim 1 of x)", Heads, x[1]);
    const dim_t rot = rules::rotary_dim(declared, head);
    const dim_t half = rules::known(rot) ? rot / 2 : kDynamic;
    for (std::size_t i = 0; i < RC; ++i) rules::equal_dims("dim of sin (= cos's)", cos[i], sin[i]);
    rules::rotary_cache_width(half, cos[RC - 1]);
    if constexpr (RC == 3) {
      rules::equal_dims("batch of cos", n, cos[0]);
      rules::equal_dims("sequence length of cos", s, cos[1]);
    }
    (rules::equal_dims("batch of positions", n, positions[0]), ...);
    (rules::equal_dims("sequence length of positions", s, positions[1]), ...);
    return x;
  }
};

namespace detail {

template <class L, class X, class C, class S, class... P>
auto rotary_node(const X& x, const C& cos, const S& sin, const std::string& given,
                 const P&... positions) {
  static_assert(C::dtype == X::dtype && S::dtype == X::dtype,
                "rotary_embedding: cos and sin have the input's element type");
  static_assert(((P::dtype == DType::i64 && P::rank == 2) && ...),
                "rotary_embedding: positions are i64 [N,S]");
  static_assert(X::rank == 3 || X::rank == 4,
                "rotary_embedding input must be [N,heads,S,head_dim] or [N,S,heads*head_dim]");
  constexpr dim_t w = X::rank == 3 ? X::static_dims[2] : kDynamic;
  constexpr dim_t rot = L::declared == 0 ? L::head_of(X::static_dims) : L::declared;
  constexpr bool ok =
      rules_check<L, rule_on<rules::attention_head_dim, w, L::heads>,
                  rule_on<rules::rotary_dim, L::declared, L::head_of(X::static_dims)>,
                  rule_on<rules::rotary_cache_width, rules::known(rot) ? rot / 2 : kDynamic,
                          C::static_dims[C::rank - 1]>>::ok;
  using Out = checked_output_t<ok, L, X::dtype, X::layout, X, C, S, P...>;
  auto s = unify(unify(x.state(), cos.state()), sin.state());
  ((s = unify(s, positions.state())), ...);
  const std::string name = node_name(*s, L::kind, given);
  run_rule<L>(name, x, cos, sin, positions...);
  std::map<std::string, Attribute> a;
  if (X::rank == 3) a["num_heads"] = L::heads;
  if (L::is_interleaved) a["interleaved"] = dim_t{1};
  if (L::declared != 0) a["rotary_embedding_dim"] = L::declared;
  std::vector<std::string> in{x.value(), cos.value(), sin.value()};
  (in.push_back(positions.value()), ...);
  emit(*s, "RotaryEmbedding", name, std::move(in), std::move(a));
  return Out(s, name, x.dims());
}

}  // namespace detail

/// Rotary position embedding with the angles of each position's row of cos and sin:
/// `rotary_embedding<8>(x, cos, sin, positions)`.
template <dim_t Heads, class... Os, tensor_expr X, tensor_expr C, tensor_expr S, tensor_expr P>
auto rotary_embedding(const X& x, const C& cos, const S& sin, const P& positions,
                      const std::string& name = "") {
  return detail::rotary_node<rotary_embedding_layer<Heads, Os...>>(
      x, cos, sin, detail::given_name<Os...>(name), positions);
}
/// The same with the caches given per batch and position ([N,S,R/2]).
template <dim_t Heads, class... Os, tensor_expr X, tensor_expr C, tensor_expr S>
auto rotary_embedding(const X& x, const C& cos, const S& sin, const std::string& name = "") {
  return detail::rotary_node<rotary_embedding_layer<Heads, Os...>>(x, cos, sin,
                                                                   detail::given_name<Os...>(name));
}

}  // namespace kiln::dsl
