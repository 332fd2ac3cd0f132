// Control flow in the typed DSL: if_else (ONNX If). Each branch is a function of the tensors it
// reads, which follow the branches in the call: the If node's captured values. A branch is built
// as a body of its own (its layers, constants and weights in the branch's subgraph) from tensors
// of the captured values' types; it may not read the network's other tensors (a GraphError names
// the mistake), so that what a branch reads is all in the call.
//
//   auto y = if_else(
//       flag, [](auto x) { return relu(x); }, [](auto x) { return x * 0.5f; }, x);
//
// The branches must return tensors of one element type and rank (a compile error otherwise);
// a dim where their fixed dims differ is dynamic in the result. The condition is a bool tensor of
// one element. Where it is a constant when the network is built, the builder inlines the branch
// it picks; otherwise the CPU reference runs the branch the value picks, and a GPU plan runs the
// If as a host step (docs/CONTROL_FLOW.md).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {

template <class R1, class R2>
struct if_else_layer {
  static constexpr std::string_view kind = "if_else";
  /// The branches' results -> their dims, dynamic where they differ.
  static constexpr std::array<dim_t, R1::rank> rule(std::array<dim_t, R1::rank> a,
                                                    std::array<dim_t, R2::rank> b) {
    std::array<dim_t, R1::rank> out{};
    for (std::size_t i = 0; i < R1::rank; ++i) out[i] = a[i] == b[i] ? a[i] : kDynamic;
    return out;
  }
};

namespace detail {

inline std::uint64_t new_scope() {
  static std::atomic<std::uint64_t> next{0};
  return ++next;
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

/// One branch, built: its graph (inputs the captured values, one output) and its result tensor.
template <class R>
struct Body {
  std::shared_ptr<const Graph> graph;
  R result;
};

/// Builds branch `which` of node `node` in network state `net`: `f` applied to body inputs of the
/// captured tensors. The body's names stay clear of the network's (and the network then keeps
/// clear of the body's); its weight bindings and specs join the network's.
template <class F, tensor_expr... Xs>
auto build_body(NetState& net, const std::string& node, std::string_view which, F&& f,
                const Xs&... captured) {
  auto s = std::make_shared<NetState>();
  s->scope = new_scope();
  s->used_names = net.used_names;
  // Braced: the inputs are made (and declared in the body) in the captured values' order.
  std::tuple inputs{body_input(s, captured)...};
  auto result = std::apply(f, inputs);
  using R = decltype(result);
  static_assert(tensor_expr<R>, "if_else: a branch returns one tensor");
  auto body = result.state();
  if (body != root(s))
    throw GraphError(where("if_else", node) + std::string(which) +
                     " returns a tensor of the network: a branch returns what it computes from "
                     "its inputs");
  Graph g = std::move(body->graph);
  g.name = node + "." + std::string(which);
  g.outputs = {result.value()};
  net.used_names.insert(body->used_names.begin(), body->used_names.end());
  for (auto& spec : body->specs) net.specs.push_back(std::move(spec));
  net.adopt_bindings(*body);
  return Body<R>{std::make_shared<const Graph>(std::move(g)), std::move(result)};
}

}  // namespace detail

/// ONNX If: `then_branch(captured...)` where `cond` holds true when the network runs, else
/// `else_branch(captured...)`. Returns a tensor of the branches' element type and rank.
template <class... Os, tensor_expr C, class Then, class Else, tensor_expr... Xs>
auto if_else(const C& cond, Then&& then_branch, Else&& else_branch, const Xs&... captured) {
  static_assert(C::dtype == DType::boolean, "if_else: the condition is a bool tensor");
  static_assert(
      [] {
        for (dim_t d : C::static_dims)
          if (d != 1 && d != kDynamic) return false;
        return true;
      }(),
      "if_else: the condition holds one element");
  auto s = cond.state();
  ((s = detail::unify(s, captured.state())), ...);
  const std::string name = detail::node_name(*s, "if_else", detail::given_name<Os...>(""));
  for (dim_t d : cond.dims())
    if (d > 1)
      throw ShapeError(detail::where("if_else", name) +
                       "the condition holds one element, got a dim of " + std::to_string(d));
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

}  // namespace kiln::dsl
