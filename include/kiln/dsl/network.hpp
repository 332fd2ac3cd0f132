// Network: the finished IR graph of a DSL network, with its named inputs and outputs, the
// maximum batch and what weight binding found. `network(outs...)` finishes one; `repeat<N>`
// stacks a block whose output type equals its input type.
#pragma once

#include <string>
#include <vector>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {

class Network {
 public:
  Network() = default;
  Network(Graph g, std::vector<std::string> warnings, std::vector<WeightSpec> specs)
      : graph_(std::move(g)), warnings_(std::move(warnings)), specs_(std::move(specs)) {}

  const Graph& graph() const { return graph_; }
  Graph& graph() { return graph_; }
  std::vector<std::string> input_names() const {
    std::vector<std::string> v;
    for (const auto& i : graph_.inputs) v.push_back(i.name);
    return v;
  }
  const std::vector<std::string>& output_names() const { return graph_.outputs; }
  /// The largest batch the network is built for (plans size their memory by it).
  dim_t max_batch() const { return max_batch_; }
  Network& with_max_batch(dim_t n) {
    if (n <= 0) throw Error("max batch must be positive, got " + std::to_string(n));
    max_batch_ = n;
    return *this;
  }
  /// Weight entries no layer used (binding warnings; an error in strict mode).
  const std::vector<std::string>& weight_warnings() const { return warnings_; }
  /// Every weight the network asked for, with its name in the map and its shape.
  const std::vector<WeightSpec>& weight_specs() const { return specs_; }

 private:
  Graph graph_;
  dim_t max_batch_ = 1;
  std::vector<std::string> warnings_;
  std::vector<WeightSpec> specs_;
};

namespace detail {

/// Checks that the IR's shape inference agrees with the dims the DSL computed.
template <class T>
void check_agrees(const Graph& g, const T& t) {
  const TensorType& ir = g.type_of(t.value());
  bool same = ir.dtype == T::dtype && ir.shape.rank() == T::rank;
  for (std::size_t i = 0; same && i < T::rank; ++i)
    if (t.dim(i) >= 0 && ir.shape[i].is_fixed()) same = ir.shape[i].value() == t.dim(i);
  if (!same) {
    std::string dsl = std::string(dtype_name(T::dtype)) + "[";
    for (std::size_t i = 0; i < T::rank; ++i)
      dsl += (i ? "," : "") + (t.dim(i) >= 0 ? std::to_string(t.dim(i)) : std::string("?"));
    throw GraphError("output '" + t.value() + "': the DSL computed " + dsl + "], the IR inferred " +
                     ir.to_string());
  }
}

}  // namespace detail

/// Finishes a network whose outputs are `outs` (name them with `.named("prob")`): binds the
/// weights (one WeightError listing every problem), infers and verifies the IR graph, and checks
/// that the IR's inferred output types agree with the DSL's. The graph moves into the Network;
/// the tensors that built it are spent.
template <tensor_expr... Ts>
Network network(const Ts&... outs) {
  static_assert(sizeof...(Ts) > 0, "network(): give at least one output");
  std::shared_ptr<detail::NetState> s;
  ((s = s ? detail::unify(s, outs.state()) : outs.state()), ...);
  std::vector<std::string> warnings;
  std::vector<std::string> problems;
  for (auto& b : s->bindings) {
    if (b.dry_run) continue;
    try {
      auto w = b.binder->finish();
      warnings.insert(warnings.end(), w.begin(), w.end());
    } catch (const WeightError& e) {
      problems.push_back(e.what());
    }
  }
  if (!problems.empty()) {
    std::string msg = problems[0];
    for (std::size_t i = 1; i < problems.size(); ++i) msg += "\n" + problems[i];
    throw WeightError(msg);
  }
  Graph g = std::move(s->graph);
  g.outputs = {outs.value()...};
  g.infer();
  (detail::check_agrees(g, outs), ...);
  return Network(std::move(g), std::move(warnings), std::move(s->specs));
}

/// What compile errors name for repeat<N> (N = -1: repeat(n, x, block), a count known when the
/// network is built).
template <int N>
struct repeat_layer {
  static constexpr std::string_view kind = "repeat";
};

/// Applies `block(x, i)` for i = 0..N-1; the block must return the type it takes (a stack of
/// identical residual blocks, say): rules::block_keeps_type.
template <int N, tensor_expr T, class F>
T repeat(T x, F&& block) {
  static_assert(N >= 0, "repeat<N>: N must not be negative");
  using R = decltype(block(x, 0));
  if constexpr (detail::rule_check<repeat_layer<N>, rules::block_keeps_type<T, R>::check>::ok)
    for (int i = 0; i < N; ++i) x = block(x, i);
  return x;
}

/// The same with a count known when the network is built.
template <tensor_expr T, class F>
T repeat(int n, T x, F&& block) {
  using R = decltype(block(x, 0));
  if constexpr (detail::rule_check<repeat_layer<-1>, rules::block_keeps_type<T, R>::check>::ok)
    for (int i = 0; i < n; ++i) x = block(x, i);
  return x;
}

}  // namespace kiln::dsl
