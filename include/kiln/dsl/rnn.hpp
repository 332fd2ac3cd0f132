// Recurrent layers: lstm, gru, rnn — several layers, bidirectional, initial states — as
// PyTorch defines them (input [T, N, I], states [layers * dirs, N, H]). Weights are PyTorch's
// `<name>.weight_ih_l<k>[_reverse]`, `weight_hh_l<k>`, `bias_ih_l<k>`, `bias_hh_l<k>`,
// converted to the IR's ONNX gate order (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h) with the
// two biases packed into ONNX's B [dirs, 2 * gates * H]. Each layer is one ONNX LSTM/GRU/RNN node.
#pragma once

#include <cstring>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {
namespace detail {

/// Shape rule of a recurrent layer with G gates and H hidden units.
template <dim_t G, dim_t H, class... Os>
struct recurrent_rule {
  static constexpr dim_t num_layers = pick<layers_tag, layers<1>, Os...>::type::v[0];
  static constexpr dim_t dirs = has_option<direction_tag, Os...> ? 2 : 1;
  static constexpr bool bias = !has_option<bias_tag, Os...>;
  static std::string name(const std::string& given) { return given_name<Os...>(given); }
  static constexpr void check_state(const std::array<dim_t, 3>& x, const std::array<dim_t, 3>& st) {
    rules::rnn_states(num_layers * dirs, st[0]);
    rules::equal_dims("batch in the initial state", x[1], st[1]);
    rules::rnn_hidden(H, st[2]);
  }
  template <class... States>
  static constexpr std::array<dim_t, 3> rule(std::array<dim_t, 3> x, States... states) {
    rules::positive("hidden size must be positive, got {}", H);
    rules::positive("layer count must be positive, got {}", num_layers);
    (check_state(x, states), ...);
    return {x[0], x[1], dirs * H};
  }
};

/// Reorders the gate blocks (rows of H) of a PyTorch weight [G*H, K] into ONNX order.
inline void copy_gates(std::byte* dst, const kiln::Tensor& src, dim_t g, dim_t h,
                       const std::array<int, 4>& order) {
  const std::size_t block = static_cast<std::size_t>(src.numel() / g) * dtype_size(src.dtype());
  for (dim_t i = 0; i < g; ++i)
    std::memcpy(dst + static_cast<std::size_t>(i) * block,
                src.raw() + static_cast<std::size_t>(order[static_cast<std::size_t>(i)]) * block,
                block);
  (void)h;
}

template <class Layer, class T, class... States>
auto recurrent(const T& x, const Weights& w, const std::string& given, const char* op,
               const std::array<int, 4>& order, const States&... states) {
  static_assert(T::rank == 3, "recurrent layer input must be [T, N, I]");
  static_assert(T::layout == Layout::tnc || T::layout == Layout::any,
                "recurrent layer input must be TNC (time, batch, features)");
  static_assert(((States::rank == 3) && ...),
                "recurrent layer initial states must be [layers*dirs, N, H]");
  static_assert(((States::dtype == T::dtype) && ...),
                "recurrent layer initial states must have the input's element type");
  constexpr bool states_ok =
      ((rule_check<Layer, rules::rnn_states, Layer::num_layers * Layer::dirs,
                   States::static_dims[0]>::ok &&
        rule_check<Layer, rules::rnn_hidden, Layer::hidden, States::static_dims[2]>::ok) &&
       ...);
  using Out = checked_output_t<states_ok, Layer, T::dtype, Layout::tnc, T, States...>;
  constexpr dim_t G = Layer::gates, H = Layer::hidden, L = Layer::num_layers, D = Layer::dirs;
  using StateT = Tensor<T::dtype, Layout::any, L * D, T::static_dims[1], H>;
  auto s = x.state();
  ((s = unify(s, states.state())), ...);
  const std::string name = node_name(*s, Layer::kind, Layer::name(given), w);
  const auto ydims = run_rule<Layer>(name, x, states...);
  require_known(Layer::kind, name, "input features", x.dim(2));
  const std::vector<std::string> init{states.value()...};

  std::string cur = x.value();
  std::vector<std::string> hs, cs;
  for (dim_t k = 0; k < L; ++k) {
    const dim_t in_size = k == 0 ? x.dim(2) : D * H;
    kiln::Tensor W(T::dtype, {D, G * H, in_size}), R(T::dtype, {D, G * H, H}),
        B(T::dtype, {D, 2 * G * H});
    for (dim_t d = 0; d < D; ++d) {
      const std::string sfx = "_l" + std::to_string(k) + (d ? "_reverse" : "");
      auto take = [&](const std::string& what, std::vector<dim_t> dims) {
        const std::string wn = name + "." + what + sfx;
        return s->take(w, name, wn, dims, T::dtype);
      };
      const std::size_t es = dtype_size(T::dtype);
      copy_gates(W.raw() + static_cast<std::size_t>(d * G * H * in_size) * es,
                 take("weight_ih", {G * H, in_size}), G, H, order);
      copy_gates(R.raw() + static_cast<std::size_t>(d * G * H * H) * es,
                 take("weight_hh", {G * H, H}), G, H, order);
      if (Layer::bias) {
        copy_gates(B.raw() + static_cast<std::size_t>(d * 2 * G * H) * es, take("bias_ih", {G * H}),
                   G, H, order);
        copy_gates(B.raw() + static_cast<std::size_t>((d * 2 + 1) * G * H) * es,
                   take("bias_hh", {G * H}), G, H, order);
      }
    }
    const std::string lname = L == 1 ? name + "/rnn" : name + "/l" + std::to_string(k);
    std::vector<std::string> in{cur, constant(*s, lname + ".W", W), constant(*s, lname + ".R", R),
                                constant(*s, lname + ".B", B), ""};
    for (std::size_t i = 0; i < init.size(); ++i) {
      std::string st = init[i];
      if (L > 1) {
        const std::string sn = s->fresh_name(lname + (i ? "/c0" : "/h0"));
        st = emit(
            *s, "Slice", sn,
            {st, constant_ints(*s, sn + ".starts", {k * D}),
             constant_ints(*s, sn + ".ends", {(k + 1) * D}), constant_ints(*s, sn + ".axes", {0})});
      }
      in.push_back(st);
    }
    std::map<std::string, Attribute> a{
        {"hidden_size", H}, {"direction", std::string(D == 2 ? "bidirectional" : "forward")}};
    if (G == 3) a["linear_before_reset"] = dim_t{1};
    const std::string node = s->claim_name(lname, Layer::kind);
    emit(*s, op, node, std::move(in), std::move(a), G == 4 ? 3 : 2);
    const Node& n = s->graph.nodes.back();
    hs.push_back(n.outputs[1]);
    if (G == 4) cs.push_back(n.outputs[2]);
    // Y [T, D, N, H] -> [T, N, D*H]
    const std::string yname = k + 1 == L ? name : s->fresh_name(lname + "/y");
    if (D == 1) {
      emit(*s, "Reshape", yname, {node, constant_ints(*s, yname + ".shape", {0, -1, H})});
    } else {
      const std::string tn = s->fresh_name(lname + "/t");
      emit(*s, "Transpose", tn, {node}, {{"perm", std::vector<dim_t>{0, 2, 1, 3}}});
      emit(*s, "Reshape", yname, {tn, constant_ints(*s, yname + ".shape", {0, 0, -1})});
    }
    cur = yname;
  }
  auto join = [&](const std::vector<std::string>& v, const char* what) {
    if (v.size() == 1) return v[0];
    return emit(*s, "Concat", s->fresh_name(name + what), v, {{"axis", dim_t{0}}});
  };
  const typename StateT::dims_type sd{L * D, x.dim(1), H};
  struct Result {
    Out y;
    StateT h;
    StateT c;
  };
  return Result{Out(s, cur, ydims), StateT(s, join(hs, "/h"), sd),
                StateT(s, G == 4 ? join(cs, "/c") : join(hs, "/h"), sd)};
}

}  // namespace detail

template <dim_t H, class... Os>
struct lstm_layer : detail::recurrent_rule<4, H, Os...> {
  static constexpr std::string_view kind = "lstm";
  static constexpr dim_t gates = 4, hidden = H;
};
template <dim_t H, class... Os>
struct gru_layer : detail::recurrent_rule<3, H, Os...> {
  static constexpr std::string_view kind = "gru";
  static constexpr dim_t gates = 3, hidden = H;
};
template <dim_t H, class... Os>
struct rnn_layer : detail::recurrent_rule<1, H, Os...> {
  static constexpr std::string_view kind = "rnn";
  static constexpr dim_t gates = 1, hidden = H;
};

/// PyTorch's LSTM(I, H, num_layers, bidirectional): `lstm<512, layers<2>>(x, w, "rnn")`.
/// Returns {y [T, N, dirs*H], h [layers*dirs, N, H], c [layers*dirs, N, H]}.
template <dim_t H, class... Os, tensor_expr T>
auto lstm(const T& x, const Weights& w, const std::string& name = "") {
  return detail::recurrent<lstm_layer<H, Os...>>(x, w, name, "LSTM", {0, 3, 1, 2});
}
/// The same with initial states h0, c0 [layers*dirs, N, H].
template <dim_t H, class... Os, tensor_expr T, tensor_expr S0, tensor_expr S1>
auto lstm(const T& x, const S0& h0, const S1& c0, const Weights& w, const std::string& name = "") {
  return detail::recurrent<lstm_layer<H, Os...>>(x, w, name, "LSTM", {0, 3, 1, 2}, h0, c0);
}
/// PyTorch's GRU (linear_before_reset, as PyTorch computes it). Returns {y, h, h}.
template <dim_t H, class... Os, tensor_expr T>
auto gru(const T& x, const Weights& w, const std::string& name = "") {
  return detail::recurrent<gru_layer<H, Os...>>(x, w, name, "GRU", {1, 0, 2, 3});
}
template <dim_t H, class... Os, tensor_expr T, tensor_expr S0>
auto gru(const T& x, const S0& h0, const Weights& w, const std::string& name = "") {
  return detail::recurrent<gru_layer<H, Os...>>(x, w, name, "GRU", {1, 0, 2, 3}, h0);
}
/// PyTorch's RNN with tanh. Returns {y, h, h}.
template <dim_t H, class... Os, tensor_expr T>
auto rnn(const T& x, const Weights& w, const std::string& name = "") {
  return detail::recurrent<rnn_layer<H, Os...>>(x, w, name, "RNN", {0, 1, 2, 3});
}
template <dim_t H, class... Os, tensor_expr T, tensor_expr S0>
auto rnn(const T& x, const S0& h0, const Weights& w, const std::string& name = "") {
  return detail::recurrent<rnn_layer<H, Os...>>(x, w, name, "RNN", {0, 1, 2, 3}, h0);
}

}  // namespace kiln::dsl
