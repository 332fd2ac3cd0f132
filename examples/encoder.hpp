// A small Transformer encoder: token and learned position embeddings, then 2 layers of PyTorch's
// nn.TransformerEncoderLayer(64, 4, 128, dropout=0, batch_first=True) (post-norm, ReLU):
//   x = norm1(x + self_attn(x));  x = norm2(x + linear2(relu(linear1(x))))
// Ids [N,16] (int64, < 1000) -> hidden states [N,16,64]. Weight names are the state_dict names of
// the PyTorch module (tests/e2e/encoder_vs_torch.py builds it): tok.weight [1000,64],
// pos.weight [16,64], and for each layer i, layers.{i}.self_attn.in_proj_weight [192,64] (Q, K
// and V packed as PyTorch keeps them; the network takes their rows itself), .in_proj_bias [192],
// .out_proj.weight/bias, linear1, linear2, norm1, norm2 (.weight/.bias).
//   encoder [encoder.wts] [--input ids.bin] [--output hidden.bin]
// The network is defined here (not in encoder.cpp) so that `kiln build --example encoder` builds
// it too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

namespace encoder_shape {
inline constexpr dim_t vocab = 1000, width = 64, heads = 4, ffn = 128, seq = 16;
inline constexpr int layers = 2;
}  // namespace encoder_shape

/// PyTorch's nn.Linear over the last dim, [..., K] -> [..., Out]: x W^T + b with the weight
/// [Out, K] and the bias [Out] given as tensors (rows of a packed weight, say); the MatMul is
/// named `name`, the bias Add `name/bias`, W^T (a weight once the plan folds it) `name/weight_t`.
template <class X, class W, class B>
auto linear(const X& x, const W& weight, const B& bias, const std::string& name) {
  return add(matmul(x, transpose<1, 0>(weight, name + "/weight_t"), name), bias, name + "/bias");
}
/// The same with the weights `<name>.weight` [Out, K] and `<name>.bias` [Out] of the map.
template <dim_t Out, dim_t K, class X>
auto linear(const X& x, const Weights& w, const std::string& name) {
  return linear(x, weight<Out, K>(w, name + ".weight"), weight<Out>(w, name + ".bias"),
                w.scoped(name));
}

/// nn.TransformerEncoderLayer (post-norm, ReLU, batch_first) over [N,S,E]; `w` is scoped to the
/// layer ("layers.0"). Heads x head dim = E is checked by attention<> at compile time.
template <dim_t E, dim_t Heads, dim_t Ffn, class T>
T encoder_layer(const T& x, const Weights& w) {
  const std::string attn = w.scoped("self_attn");
  auto in_w = weight<3 * E, E>(w, "self_attn.in_proj_weight");  // [3E,E]: Q, K, V rows
  auto in_b = weight<3 * E>(w, "self_attn.in_proj_bias");       // [3E]
  // Rows [0,E) of the packed weight and bias project the queries, [E,2E) the keys, [2E,3E) the
  // values (PyTorch's F.multi_head_attention_forward); the plan folds the slices into weights.
  auto q = linear(x, slice<0, 0, E>(in_w, attn + ".q/weight"), slice<0, 0, E>(in_b, attn + ".q/b"),
                  attn + ".q");  // [N,S,E]
  auto k = linear(x, slice<0, E, 2 * E>(in_w, attn + ".k/weight"),
                  slice<0, E, 2 * E>(in_b, attn + ".k/b"), attn + ".k");  // [N,S,E]
  auto v = linear(x, slice<0, 2 * E, 3 * E>(in_w, attn + ".v/weight"),
                  slice<0, 2 * E, 3 * E>(in_b, attn + ".v/b"), attn + ".v");  // [N,S,E]
  auto a = attention<Heads, head_dim<E / Heads>>(q, k, v, {}, attn);          // [N,S,E]
  auto o = linear<E, E>(a, w, "self_attn.out_proj");                          // [N,S,E]
  auto x1 = layer_norm<E>(add(x, o, w.scoped("residual1")), w, "norm1");
  auto f = linear<E, Ffn>(relu(linear<Ffn, E>(x1, w, "linear1"), w.scoped("relu")), w,
                          "linear2");                                   // [N,S,E]
  return layer_norm<E>(add(x1, f, w.scoped("residual2")), w, "norm2");  // [N,S,E]
}

inline Network encoder(const Weights& w) {
  using namespace encoder_shape;
  auto ids = input<"ids", i64>(dyn, fix<seq>);  // [N,S]
  auto x = add(embedding<vocab, width>(ids, w, "tok"), weight<seq, width>(w, "pos.weight"),
               "embed");  // [N,S,E]
  x = repeat<layers>(x, [&](const auto& h, int i) {
    return encoder_layer<width, heads, ffn>(h, w.scope("layers." + std::to_string(i)));
  });
  return network(x.named("hidden"));  // [N,16,64]
}

}  // namespace examples
