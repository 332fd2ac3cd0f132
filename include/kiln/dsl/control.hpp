// Control flow in the typed DSL: if_else (ONNX If), loop (ONNX Loop) and scan (ONNX Scan). Each
// branch or body is a function of the tensors it reads, which follow it in the call: the node's
// captured values. A branch is built as a body of its own (its layers, constants and weights in
// the branch's subgraph) from tensors of the captured values' types; it may not read the
// network's other tensors (a GraphError names the mistake), so that what a branch reads is all in
// the call.
//
//   auto y = if_else(flag, [](auto x) { return relu(x); }, [](auto x) { return sigmoid(x); }, x);
//   auto [h] = loop(4, [](auto i, auto h, auto w) { return std::tuple{tanh(matmul(h, w))}; },
//                   carried(h0), w);   // h0 carried through 4 trips, w read by every trip
//   auto [acc, accs] = loop(m, [](auto i, auto acc, auto limit) {
//     auto next = acc + acc;
//     return std::tuple{continue_if(reduce_max(next) < limit), next, next};  // early exit; a
//   }, carried(x), limit);                        // scan output: each trip's next, stacked
//   auto [h, hs] = scan([](auto h, auto x_t) { return std::tuple{h + x_t, h}; },
//                       carried(h0), scanned(x));  // over x's dim 0; hs stacks each step's h
//
// The branches must return tensors of one element type and rank (a compile error otherwise);
// a dim where their fixed dims differ is dynamic in the result. The condition is a bool tensor of
// one element. Where it is a constant when the network is built, the builder inlines the branch
// it picks; otherwise the CPU reference runs the branch the value picks, and a GPU plan runs the
// If as a host step (docs/CONTROL_FLOW.md). A tensor is captured once per call.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {

namespace detail {
/// Two values' dims (a's rank; b at least as long) merged: a dim where they differ is dynamic,
/// as the IR's rules merge an If's branches and a loop's carried values.
template <std::size_t N, std::size_t M>
constexpr std::array<dim_t, N> merged_dims(const std::array<dim_t, N>& a,
                                           const std::array<dim_t, M>& b) {
  std::array<dim_t, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = i < M && a[i] == b[i] ? a[i] : kDynamic;
  return out;
}
}  // namespace detail

template <class R1, class R2>
struct if_else_layer {
  static constexpr std::string_view kind = "if_else";
  /// The branches' results -> their dims, dynamic where they differ.
  static constexpr std::array<dim_t, R1::rank> rule(std::array<dim_t, R1::rank> a,
                                                    std::array<dim_t, R2::rank> b) {
    return detail::merged_dims(a, b);
  }
};

namespace detail {

inline std::uint64_t new_scope() {
  static std::atomic<std::uint64_t> next{0};
  return ++next;
}

/// Throws naming node `name` when a tensor is captured twice (a body's inputs have one name each).
inline void check_captured_once(std::string_view kind, const std::string& name,
                                const std::vector<std::string>& values) {
  for (std::size_t i = 0; i < values.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (values[i] == values[j])
        throw GraphError(where(kind, name) + "'" + values[i] +
                         "' is captured twice: give each tensor once");
}

/// Captured tensor `outer` as an input of body state `s`: its type, under its outer name.
template <tensor_expr T>
T body_input(const std::shared_ptr<NetState>& s, const T& outer) {
  std::vector<Dim> ir;
  for (dim_t d : outer.dims()) ir.push_back(d >= 0 ? Dim(d) : Dim::dynamic());
  const std::string name = outer.value();
  if (s->used_names.insert(name).second) s->generated.insert(name);
  s->graph.inputs.push_back({name, TensorType{T::dtype, Shape(std::move(ir))}});
  return T(s, name, outer.dims());
}

/// A formal body input of `outer`'s type under a new name (`base`, made unique in `s`).
template <tensor_expr T>
T formal_input(const std::shared_ptr<NetState>& s, const T& outer, const std::string& base) {
  std::vector<Dim> ir;
  for (dim_t d : outer.dims()) ir.push_back(d >= 0 ? Dim(d) : Dim::dynamic());
  const std::string name = s->fresh_name(base);
  s->graph.inputs.push_back({name, TensorType{T::dtype, Shape(std::move(ir))}});
  return T(s, name, outer.dims());
}

/// One branch, built: its graph (inputs the captured values, one output) and its result tensor.
template <class R>
struct Body {
  std::shared_ptr<const Graph> graph;
  R result;
};

/// A new body state: its own scope, its names clear of the network's.
inline std::shared_ptr<NetState> body_state(const NetState& net) {
  auto s = std::make_shared<NetState>();
  s->scope = new_scope();
  s->used_names = net.used_names;
  return s;
}

/// Ends body `body` of node `node`: the network keeps clear of its names and takes its weights.
/// Throws when `result_state` (a result's) is not the body's own.
inline Graph finish_body(NetState& net, const std::shared_ptr<NetState>& body,
                         const std::shared_ptr<NetState>& result_state, std::string_view kind,
                         const std::string& node, std::string_view which) {
  if (result_state != root(body))
    throw GraphError(where(kind, node) + std::string(which) +
                     " returns a tensor of the network: a body returns what it computes from "
                     "its inputs");
  auto b = root(body);
  Graph g = std::move(b->graph);
  g.name = node + "." + std::string(which);
  net.used_names.insert(b->used_names.begin(), b->used_names.end());
  for (auto& spec : b->specs) net.specs.push_back(std::move(spec));
  net.adopt_bindings(*b);
  return g;
}

/// Ends a loop or scan body whose results are the tuple `results`: its outputs are `first` (the
/// loop's cond) and then the results' values; throws when a result is not the body's own.
template <class Tuple>
Graph finish_tuple_body(NetState& net, const std::shared_ptr<NetState>& body, const Tuple& results,
                        std::vector<std::string> first, std::string_view kind,
                        const std::string& node) {
  std::shared_ptr<NetState> result_state = root(body);
  std::apply(
      [&](const auto&... r) {
        ((first.push_back(r.value()),
          result_state = r.state() == root(body) ? result_state : r.state()),
         ...);
      },
      results);
  Graph g = finish_body(net, body, result_state, kind, node, "body");
  g.outputs = std::move(first);
  return g;
}

/// Builds branch `which` of node `node` in network state `net`: `f` applied to body inputs of the
/// captured tensors.
template <class F, tensor_expr... Xs>
auto build_body(NetState& net, const std::string& node, std::string_view which, F&& f,
                const Xs&... captured) {
  auto s = body_state(net);
  // Braced: the inputs are made (and declared in the body) in the captured values' order.
  std::tuple inputs{body_input(s, captured)...};
  auto result = std::apply(f, inputs);
  using R = decltype(result);
  static_assert(tensor_expr<R>, "if_else: a branch returns one tensor");
  const std::string out = result.value();
  Graph g = finish_body(net, s, result.state(), "if_else", node, which);
  g.outputs = {out};
  return Body<R>{std::make_shared<const Graph>(std::move(g)), std::move(result)};
}

/// Whether a tensor of type C may hold one element: each of its fixed dims is 1.
template <class C>
constexpr bool may_hold_one_element() {
  for (dim_t d : C::static_dims)
    if (d != 1 && d != kDynamic) return false;
  return true;
}

/// A ShapeError naming layer `name` where `dims` (its `what`'s) hold a dim over 1.
template <class Dims>
void require_one_element(const Dims& dims, std::string_view kind, const std::string& name,
                         const std::string& what) {
  for (dim_t d : dims)
    if (d > 1)
      throw ShapeError(where(kind, name) + what + " holds one element, got a dim of " +
                       std::to_string(d));
}

}  // namespace detail

/// ONNX If: `then_branch(captured...)` where `cond` holds true when the network runs, else
/// `else_branch(captured...)`. Returns a tensor of the branches' element type and rank.
template <class... Os, tensor_expr C, class Then, class Else, tensor_expr... Xs>
auto if_else(const C& cond, Then&& then_branch, Else&& else_branch, const Xs&... captured) {
  static_assert(C::dtype == DType::boolean, "if_else: the condition is a bool tensor");
  static_assert(detail::may_hold_one_element<C>(), "if_else: the condition holds one element");
  auto s = cond.state();
  ((s = detail::unify(s, captured.state())), ...);
  const std::string name = detail::node_name(*s, "if_else", detail::given_name<Os...>(""));
  detail::require_one_element(cond.dims(), "if_else", name, "the condition");
  detail::check_captured_once("if_else", name, {captured.value()...});
  auto then_body = detail::build_body(*s, name, "then_branch", then_branch, captured...);
  auto else_body = detail::build_body(*s, name, "else_branch", else_branch, captured...);
  using R1 = decltype(then_body.result);
  using R2 = decltype(else_body.result);
  static_assert(R1::dtype == R2::dtype, "if_else: the branches return one element type");
  static_assert(R1::rank == R2::rank, "if_else: the branches return tensors of one rank");
  constexpr bool ok = R1::dtype == R2::dtype && R1::rank == R2::rank;
  using L = if_else_layer<R1, R2>;
  using Out = detail::checked_output_t<ok, L, R1::dtype,
                                       R1::layout == R2::layout ? R1::layout : Layout::any, R1, R2>;
  std::array<dim_t, R1::rank> dims{};
  if constexpr (ok) dims = detail::run_rule<L>(name, then_body.result, else_body.result);
  const std::size_t n = sizeof...(Xs);
  std::vector<std::string> in{cond.value(), captured.value()...};
  detail::emit(*s, "If", name, std::move(in),
               {{"then_branch", Subgraph{then_body.graph, n}},
                {"else_branch", Subgraph{else_body.graph, n}}});
  return Out(s, name, dims);
}

// ---- loop ---------------------------------------------------------------------------------------

/// The values a loop carries from trip to trip, their initial values given.
template <tensor_expr... Vs>
struct carried_values {
  std::tuple<Vs...> init;
};
template <tensor_expr... Vs>
carried_values<Vs...> carried(const Vs&... init) {
  return {std::tuple<Vs...>{init...}};
}

template <class V, class R>
struct loop_carried_layer {
  static constexpr std::string_view kind = "loop";
  /// A carried value's initial dims and the body's -> the loop's result, dynamic where they differ.
  static constexpr std::array<dim_t, V::rank> rule(std::array<dim_t, V::rank> init,
                                                   std::array<dim_t, R::rank> next) {
    return detail::merged_dims(init, next);
  }
};

/// A loop body's condition (ONNX Loop's cond): returned first in the body's tuple, the loop runs
/// another trip only while it holds (and trips remain).
template <tensor_expr C>
struct loop_condition {
  C cond;
};
template <tensor_expr C>
loop_condition<C> continue_if(const C& cond) {
  static_assert(C::dtype == DType::boolean, "continue_if: the condition is a bool tensor");
  static_assert(detail::may_hold_one_element<C>(), "continue_if: the condition holds one element");
  return {cond};
}

template <class E>
struct loop_scan_layer {
  static constexpr std::string_view kind = "loop";
  /// One trip's scan output -> the trips' stacked on a new dim 0 (its length known when the loop
  /// has run).
  static constexpr std::array<dim_t, E::rank + 1> rule(std::array<dim_t, E::rank> e) {
    std::array<dim_t, E::rank + 1> out{};
    out[0] = kDynamic;
    for (std::size_t i = 0; i < E::rank; ++i) out[i + 1] = e[i];
    return out;
  }
};

namespace detail {
template <class T>
struct is_loop_condition : std::false_type {};
template <class C>
struct is_loop_condition<loop_condition<C>> : std::true_type {};

/// The tuple `t` without its first element where `Drop`, else `t`.
template <bool Drop, class Tuple>
auto drop_first_if(const Tuple& t) {
  if constexpr (Drop)
    return [&]<std::size_t... K>(std::index_sequence<K...>) {
      return std::tuple{std::get<K + 1>(t)...};
    }(std::make_index_sequence<std::tuple_size_v<Tuple> - 1>{});
  else
    return t;
}
}  // namespace detail

/// ONNX Loop: `body(i, v..., captured...)` runs `trips` times (a count known when the network is
/// built, or an i64 tensor of one element read when it runs), `i` the trip's number (an i64
/// scalar), `v...` the carried values (their initial values in `init`); it returns a std::tuple of
/// the carried values' next values, each of its value's element type and rank, then its scan
/// outputs, if any; a `continue_if(c)` first in the tuple ends the loop after the trip where `c`
/// is false. Returns a std::tuple of the carried values after the last trip, then each scan
/// output's trips stacked on a new dim 0.
template <class... Os, class Trips, class Body, tensor_expr... Vs, tensor_expr... Xs>
auto loop(const Trips& trips, Body&& body, const carried_values<Vs...>& init,
          const Xs&... captured) {
  static_assert(sizeof...(Vs) > 0, "loop: carry at least one value (carried(...))");
  constexpr bool counted = std::is_integral_v<Trips>;
  static_assert(counted || tensor_expr<Trips>,
                "loop: the trip count is a number or an i64 tensor of one element");
  std::shared_ptr<detail::NetState> s;
  if constexpr (counted) {
    s = std::get<0>(init.init).state();
  } else {
    static_assert(Trips::dtype == DType::i64, "loop: a trip count tensor is i64");
    s = trips.state();
  }
  std::apply([&](const auto&... v) { ((s = detail::unify(s, v.state())), ...); }, init.init);
  ((s = detail::unify(s, captured.state())), ...);
  const std::string name = detail::node_name(*s, "loop", detail::given_name<Os...>(""));
  std::string m;
  if constexpr (counted) {
    if (trips < 0)
      throw ShapeError(detail::where("loop", name) + "the trip count is " + std::to_string(trips) +
                       ": expected 0 or more");
    m = detail::constant(*s, name + ".trips", kiln::Tensor::scalar(std::int64_t{trips}));
  } else {
    detail::require_one_element(trips.dims(), "loop", name, "the trip count");
    m = trips.value();
  }

  detail::check_captured_once("loop", name, {captured.value()...});
  // The body: (i, cond, v..., captured...) -> (cond, v'...); cond passes through.
  auto b = detail::body_state(*s);
  const std::string iter = b->fresh_name(name + ".i"), cond = b->fresh_name(name + ".cond");
  b->graph.inputs.push_back({iter, TensorType{DType::i64, Shape{}}});
  b->graph.inputs.push_back({cond, TensorType{DType::boolean, Shape{}}});
  Tensor<DType::i64, Layout::any> i(b, iter, {});
  auto args = std::apply(
      [&](const auto&... v) {
        // Braced: the formal inputs are declared in the carried values' order, then the captured.
        return std::tuple{i, detail::formal_input(b, v, v.value() + ".carried")...,
                          detail::body_input(b, captured)...};
      },
      init.init);
  auto returned = std::apply(body, args);
  using Returned = decltype(returned);
  static_assert(std::tuple_size_v<Returned> > 0,
                "loop: the body returns a std::tuple of one next value per carried value");
  constexpr bool has_cond =
      detail::is_loop_condition<std::remove_cvref_t<std::tuple_element_t<0, Returned>>>::value;
  // The body's outputs: its condition (the one it was given, or the one it returns), the carried
  // values' next values, the scan outputs.
  const auto next = detail::drop_first_if<has_cond>(returned);
  using Next = std::remove_cvref_t<decltype(next)>;
  constexpr std::size_t nv = sizeof...(Vs), nr = std::tuple_size_v<Next>;
  static_assert(nr >= nv,
                "loop: the body returns a std::tuple of one next value per carried value, then its "
                "scan outputs");
  std::string cond_out = cond;
  if constexpr (has_cond) {
    const auto& c = std::get<0>(returned).cond;
    if (c.state() != detail::root(b))
      throw GraphError(detail::where("loop", name) +
                       "continue_if is given a tensor of the network: a body returns what it "
                       "computes from its inputs");
    detail::require_one_element(c.dims(), "loop", name, "continue_if's condition");
    cond_out = c.value();
  }
  Graph g = detail::finish_tuple_body(*s, b, next, {cond_out}, "loop", name);

  std::vector<std::string> in{m, ""};
  std::apply([&](const auto&... v) { (in.push_back(v.value()), ...); }, init.init);
  (in.push_back(captured.value()), ...);
  detail::emit(*s, "Loop", name, std::move(in),
               {{"body", Subgraph{std::make_shared<const Graph>(std::move(g)), sizeof...(Xs)}}},
               nr);
  const std::vector<std::string> names = s->graph.nodes.back().outputs;  // emit()'s

  // Each carried result: its carried value's type, dynamic where the body changes a fixed dim;
  // each scan output: the trips' elements stacked on a new dim 0. (`nx` is `next`, passed: GCC
  // cannot name the type of a captured `auto` local in a generic lambda.)
  return [&]<std::size_t... K>(std::index_sequence<K...>, const auto& nx) {
    using Nx = std::remove_cvref_t<decltype(nx)>;
    auto one = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
      using R = std::remove_cvref_t<std::tuple_element_t<J, Nx>>;
      if constexpr (J < sizeof...(Vs)) {
        using V = std::tuple_element_t<J, std::tuple<Vs...>>;
        constexpr bool ok = R::dtype == V::dtype && R::rank == V::rank;
        static_assert(ok,
                      "loop: the body returns each carried value with its element type and rank");
        using L = loop_carried_layer<V, R>;
        using Out =
            detail::checked_output_t<ok, L, V::dtype,
                                     V::layout == R::layout ? V::layout : Layout::any, V, R>;
        std::array<dim_t, V::rank> dims{};
        if constexpr (ok) dims = detail::run_rule<L>(name, std::get<J>(init.init), std::get<J>(nx));
        return Out(s, names[J], dims);
      } else {
        using L = loop_scan_layer<R>;
        using Out = detail::output_t<L, R::dtype, Layout::any, R>;
        return Out(s, names[J], detail::run_rule<L>(name, std::get<J>(nx)));
      }
    };
    return std::tuple{one(std::integral_constant<std::size_t, K>{})...};
  }(std::make_index_sequence<nr>{}, next);
}

// ---- scan ---------------------------------------------------------------------------------------

/// The tensors a scan walks along their dim 0, one slice per step.
template <tensor_expr... Xs>
struct scanned_values {
  std::tuple<Xs...> inputs;
};
template <tensor_expr... Xs>
scanned_values<Xs...> scanned(const Xs&... inputs) {
  return {std::tuple<Xs...>{inputs...}};
}

template <class X>
struct scan_slice_layer {
  static constexpr std::string_view kind = "scan";
  /// A scanned input -> one step's slice: its dims past dim 0.
  static constexpr std::array<dim_t, X::rank - 1> rule(std::array<dim_t, X::rank> x) {
    std::array<dim_t, X::rank - 1> out{};
    for (std::size_t i = 1; i < X::rank; ++i) out[i - 1] = x[i];
    return out;
  }
};

template <class X, class E>
struct scan_output_layer {
  static constexpr std::string_view kind = "scan";
  /// The first scanned input and one step's element -> the elements stacked on a new dim 0.
  static constexpr std::array<dim_t, E::rank + 1> rule(std::array<dim_t, X::rank> x,
                                                       std::array<dim_t, E::rank> e) {
    std::array<dim_t, E::rank + 1> out{};
    out[0] = x[0];
    for (std::size_t i = 0; i < E::rank; ++i) out[i + 1] = e[i];
    return out;
  }
};

namespace detail {

/// Scan output J of node `name` (value `out`): a carried value (J < NV) keeps its type, dynamic
/// where the body changes it; a scan output stacks one step's element on a new dim 0 of the
/// scanned length.
template <std::size_t J, std::size_t NV, class Init, class X0, class Results>
auto scan_result(const std::shared_ptr<NetState>& s, const std::string& name,
                 const std::string& out, const Init& init, const X0& x0, const Results& results) {
  using R = std::remove_cvref_t<std::tuple_element_t<J, Results>>;
  if constexpr (J < NV) {
    using V = std::tuple_element_t<J, Init>;
    constexpr bool ok = R::dtype == V::dtype && R::rank == V::rank;
    static_assert(ok, "scan: the body returns each carried value with its element type and rank");
    using L = loop_carried_layer<V, R>;
    using Out = checked_output_t<ok, L, V::dtype, Layout::any, V, R>;
    std::array<dim_t, V::rank> dims{};
    if constexpr (ok) dims = run_rule<L>(name, std::get<J>(init), std::get<J>(results));
    return Out(s, out, dims);
  } else {
    using L = scan_output_layer<X0, R>;
    using Out = output_t<L, R::dtype, Layout::any, X0, R>;
    return Out(s, out, run_rule<L>(name, x0, std::get<J>(results)));
  }
}

}  // namespace detail

/// ONNX Scan over dim 0 of each scanned tensor (all of one length): `body(v..., slices...,
/// captured...)` runs once per slice and returns a std::tuple of the carried values' next values
/// (each of its value's type) followed by this step's scan outputs. Returns a std::tuple of the
/// carried values after the last step, then each scan output stacked on a new dim 0.
template <class... Os, class Body, tensor_expr... Vs, tensor_expr... Xs, tensor_expr... Cs>
auto scan(Body&& body, const carried_values<Vs...>& init, const scanned_values<Xs...>& scans,
          const Cs&... captured) {
  static_assert(sizeof...(Xs) > 0, "scan: scan at least one tensor (scanned(...))");
  static_assert(((Xs::rank >= 1) && ...), "scan: a scanned tensor has a dim to scan");
  using X0 = std::tuple_element_t<0, std::tuple<Xs...>>;
  static_assert(((X0::static_dims[0] < 0 || Xs::static_dims[0] < 0 ||
                  Xs::static_dims[0] == X0::static_dims[0]) &&
                 ...),
                "scan: the scanned tensors have one length (dim 0)");
  auto s = std::get<0>(scans.inputs).state();
  std::apply([&](const auto&... v) { ((s = detail::unify(s, v.state())), ...); }, init.init);
  std::apply([&](const auto&... x) { ((s = detail::unify(s, x.state())), ...); }, scans.inputs);
  ((s = detail::unify(s, captured.state())), ...);
  const std::string name = detail::node_name(*s, "scan", detail::given_name<Os...>(""));
  const dim_t length = std::get<0>(scans.inputs).dims()[0];
  std::apply(
      [&](const auto&... x) {
        for (dim_t l : {x.dims()[0]...})
          if (l >= 0 && length >= 0 && l != length)
            throw ShapeError(detail::where("scan", name) +
                             "the scanned tensors have one length, got " + std::to_string(length) +
                             " and " + std::to_string(l));
      },
      scans.inputs);

  detail::check_captured_once("scan", name, {captured.value()...});
  // The body: (v..., slices..., captured...) -> (v'..., elements...).
  auto b = detail::body_state(*s);
  auto args = std::apply(
      [&](const auto&... x) {
        auto slice = [&](const auto& t) {
          using X = std::remove_cvref_t<decltype(t)>;
          using L = scan_slice_layer<X>;
          using T = detail::output_t<L, X::dtype, Layout::any, X>;
          const auto dims = L::rule(t.dims());
          std::vector<Dim> ir;
          for (dim_t d : dims) ir.push_back(d >= 0 ? Dim(d) : Dim::dynamic());
          const std::string n = b->fresh_name(t.value() + ".slice");
          b->graph.inputs.push_back({n, TensorType{X::dtype, Shape(std::move(ir))}});
          return T(b, n, dims);
        };
        return std::apply(
            [&](const auto&... v) {
              // Braced: declared in order (carried, then slices, then captured).
              return std::tuple{detail::formal_input(b, v, v.value() + ".carried")..., slice(x)...,
                                detail::body_input(b, captured)...};
            },
            init.init);
      },
      scans.inputs);
  auto step_out = std::apply(body, args);
  using Next = decltype(step_out);
  constexpr std::size_t nv = sizeof...(Vs), nr = std::tuple_size_v<Next>;
  static_assert(nr >= nv,
                "scan: the body returns a std::tuple of the carried values' next values, then "
                "its scan outputs");
  Graph g = detail::finish_tuple_body(*s, b, step_out, {}, "scan", name);

  std::vector<std::string> in;
  std::apply([&](const auto&... v) { (in.push_back(v.value()), ...); }, init.init);
  std::apply([&](const auto&... x) { (in.push_back(x.value()), ...); }, scans.inputs);
  (in.push_back(captured.value()), ...);
  detail::emit(*s, "Scan", name, std::move(in),
               {{"body", Subgraph{std::make_shared<const Graph>(std::move(g)), sizeof...(Cs)}},
                {"num_scan_inputs", std::int64_t{sizeof...(Xs)}}},
               nr);
  const std::vector<std::string> names = s->graph.nodes.back().outputs;  // emit()'s

  return [&]<std::size_t... K>(std::index_sequence<K...>) {
    return std::tuple{detail::scan_result<K, nv>(s, name, names[K], init.init,
                                                 std::get<0>(scans.inputs), step_out)...};
  }(std::make_index_sequence<nr>{});
}

}  // namespace kiln::dsl
