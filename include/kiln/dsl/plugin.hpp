// Plugins in the DSL (kiln/plugin.hpp): custom<P, attributes>(inputs...) is plugin P as a layer,
// whose output type comes from P::rule, evaluated on the inputs' fixed dims when the program
// compiles (a violation is a compile error naming the rule, as for built-in layers) and on the
// dims known when the network is built; weight<Dims...>(like, weights, name) makes a weight a
// tensor expression, for a plugin's weight inputs.
#pragma once

#include <memory>
#include <string>

#include "kiln/dsl/core.hpp"
#include "kiln/ir/plugin.hpp"

namespace kiln::dsl {

template <class P, typename P::Attrs A>
struct custom_layer {
  static constexpr std::string_view kind = P::op;
  template <std::size_t... R>
  static constexpr auto rule(std::array<dim_t, R>... in) {
    return P::rule(A, in...);
  }
};

/// Plugin P as a layer with attributes A, a constant of P::Attrs:
/// `custom<FullyConnected, FullyConnected::Attrs{.out_features = 10}>(x, w, b)`. The output has
/// the first input's element type; P must declare `rule` (and be registered, by KILN_PLUGIN in
/// the program or a library loaded before the network runs).
template <class P, typename P::Attrs A, tensor_expr T, tensor_expr... More>
auto custom(const T& first, const More&... more) {
  static_assert(1 + sizeof...(More) >= P::min_inputs && 1 + sizeof...(More) <= P::max_inputs,
                "custom<P>: the plugin takes another number of inputs");
  using Layer = custom_layer<P, A>;
  using Out = detail::output_t<Layer, T::dtype, Layout::any, T, More...>;
  std::shared_ptr<detail::NetState> s = first.state();
  ((s = detail::unify(s, more.state())), ...);
  const std::string name = detail::node_name(*s, Layer::kind, "");
  const auto dims = detail::run_rule<Layer>(name, first, more...);
  s->graph.nodes.push_back(plugin::node_of<P>(A, name, {first.value(), more.value()...}, {name}));
  return Out(s, name, dims);
}

/// Weight `name` of `w` (a WTS entry, or random weights) as a tensor of `like`'s element type and
/// dims Ds, in `like`'s network.
template <dim_t... Ds, tensor_expr T>
auto weight(const T& like, const Weights& w, const std::string& name) {
  auto s = like.state();
  const std::string v = detail::take_weight(*s, w, name, name, {Ds...}, T::dtype);
  return Tensor<T::dtype, Layout::any, Ds...>(s, v, {Ds...});
}

}  // namespace kiln::dsl
