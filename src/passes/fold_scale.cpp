// BatchNormalization and Scale (Mul/Add by per-channel constants) folded into the weights and
// bias of the Conv or Gemm before them: y = s * layer(x) + t becomes layer'(x) with
// W'[c] = s[c] W[c] and b'[c] = s[c] b[c] + t[c]. Computed in double, stored in W's dtype.
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

using i64 = std::int64_t;

struct Affine {
  std::vector<double> scale, shift;  // per output channel
};

/// The per-channel values of constant `t` broadcast against an output of `rank` dims whose
/// channel axis is `axis` with `channels` entries; nullopt when it varies along another axis.
std::optional<std::vector<double>> per_channel(const Tensor& t, std::size_t rank, std::size_t axis,
                                               i64 channels) {
  if (t.rank() > rank) return std::nullopt;
  const std::size_t lead = rank - t.rank();
  i64 along = 1;
  for (std::size_t d = 0; d < t.rank(); ++d) {
    const i64 n = t.dim(d);
    if (lead + d == axis)
      along = n;
    else if (n != 1)
      return std::nullopt;
  }
  if (along != 1 && along != channels) return std::nullopt;
  const auto v = t.to_doubles();
  std::vector<double> out(static_cast<std::size_t>(channels));
  for (i64 c = 0; c < channels; ++c)
    out[static_cast<std::size_t>(c)] = v[along == 1 ? 0 : static_cast<std::size_t>(c)];
  return out;
}

/// The affine map a BN / Mul / Add node applies to its input `x` per channel, or nullopt.
std::optional<Affine> affine_of(const Graph& g, const Node& n, const std::string& x, i64 channels) {
  const TensorType& xt = g.type_of(x);
  const std::size_t rank = xt.shape.rank();
  if (rank < 2 || !is_float(xt.dtype) || g.type_of(n.outputs[0]) != xt) return std::nullopt;
  if (n.op == "BatchNormalization") {
    if (n.inputs.size() < 5 || n.inputs[0] != x) return std::nullopt;
    for (std::size_t o = 1; o < n.outputs.size(); ++o)
      if (!n.outputs[o].empty()) return std::nullopt;  // training outputs are read
    if (n.attr_int("training_mode", 0) != 0) return std::nullopt;
    const Tensor *s = weight(g, n.inputs[1]), *b = weight(g, n.inputs[2]),
                 *m = weight(g, n.inputs[3]), *v = weight(g, n.inputs[4]);
    if (!s || !b || !m || !v) return std::nullopt;
    for (const Tensor* t : {s, b, m, v})
      if (t->numel() != channels) return std::nullopt;
    const double eps = n.attr_float("epsilon", 1e-5);
    Affine a;
    for (i64 c = 0; c < channels; ++c) {
      const double k = s->get(c) / std::sqrt(v->get(c) + eps);
      a.scale.push_back(k);
      a.shift.push_back(b->get(c) - m->get(c) * k);
    }
    return a;
  }
  if (n.op != "Mul" && n.op != "Add") return std::nullopt;
  if (n.inputs.size() != 2) return std::nullopt;
  const std::string& other = n.inputs[0] == x ? n.inputs[1] : n.inputs[0];
  if (other == x) return std::nullopt;
  const Tensor* c = weight(g, other);
  if (!c) return std::nullopt;
  auto v = per_channel(*c, rank, 1, channels);
  if (!v) return std::nullopt;
  Affine a;
  if (n.op == "Mul") {
    a.scale = *v;
    a.shift.assign(v->size(), 0.0);
  } else {
    a.scale.assign(v->size(), 1.0);
    a.shift = *v;
  }
  return a;
}

/// Output channels of a Conv or Gemm whose weights are constants, or nullopt.
std::optional<i64> layer_channels(const Graph& g, const Node& n) {
  if (n.op == "Conv") {
    const Tensor* w = weight(g, n.inputs[1]);
    if (!w || w->rank() < 3 || !is_float(w->dtype())) return std::nullopt;
    if (n.has_input(2) && !weight(g, n.inputs[2])) return std::nullopt;
    return w->dim(0);
  }
  if (n.op == "Gemm") {
    const Tensor* w = weight(g, n.inputs[1]);
    if (!w || w->rank() != 2 || !is_float(w->dtype())) return std::nullopt;
    const TensorType& y = g.type_of(n.outputs[0]);
    if (!y.shape[1].is_fixed()) return std::nullopt;
    const i64 channels = y.shape[1].value();
    if (n.has_input(2)) {
      const Tensor* c = weight(g, n.inputs[2]);
      if (!c || !per_channel(*c, 2, 1, channels)) return std::nullopt;
    }
    return channels;
  }
  return std::nullopt;
}

/// Rewrites layer `n`'s weights for y' = scale * y + shift.
void apply(Graph& g, Node& n, const Affine& a) {
  const i64 channels = static_cast<i64>(a.scale.size());
  const Tensor& w = g.weights.at(n.inputs[1]);
  Tensor w2(w.dtype(), w.dims());
  const bool gemm = n.op == "Gemm";
  const bool trans_b = gemm && n.attr_int("transB", 0) != 0;
  const double alpha = gemm ? n.attr_float("alpha", 1.0) : 1.0;
  const double beta = gemm ? n.attr_float("beta", 1.0) : 1.0;
  const i64 inner = w.numel() / w.dim(0);
  for (i64 i = 0; i < w.numel(); ++i) {
    // Conv: [M, C/g, k...] scaled along M. Gemm: B[K,N] along N, or B[N,K] with transB.
    const i64 c = !gemm || trans_b ? i / inner : i % w.dim(1);
    w2.set(i, w.get(i) * a.scale[static_cast<std::size_t>(c)]);
  }
  std::vector<double> bias(static_cast<std::size_t>(channels), 0.0);
  if (n.has_input(2)) {
    auto b = per_channel(g.weights.at(n.inputs[2]), gemm ? 2 : 1, gemm ? 1 : 0, channels);
    for (i64 c = 0; c < channels; ++c)
      bias[static_cast<std::size_t>(c)] = (*b)[static_cast<std::size_t>(c)] * beta;
  }
  Tensor b2(w.dtype(), {channels});
  for (i64 c = 0; c < channels; ++c) {
    const auto k = static_cast<std::size_t>(c);
    b2.set(c, bias[k] * a.scale[k] + a.shift[k]);
  }
  const std::string wn = g.unique_name(n.name + "_w");
  g.weights[wn] = std::move(w2);
  const std::string bn = g.unique_name(n.name + "_b");
  g.weights[bn] = std::move(b2);
  n.inputs.resize(3);
  n.inputs[1] = wn;
  n.inputs[2] = bn;
  if (gemm) {
    n.attrs["beta"] = 1.0;
    n.attrs["alpha"] = alpha;
  }
}

}  // namespace

int fold_batchnorm(Graph& g, const PassContext&) {
  int folded = 0;
  for (bool changed = true; changed;) {
    changed = false;
    const auto r = readers(g);
    for (std::size_t i = 0; i < g.nodes.size() && !changed; ++i) {
      Node& layer = g.nodes[i];
      if (layer.outputs.size() != 1) continue;
      const auto channels = layer_channels(g, layer);
      if (!channels) continue;
      const auto j = only_reader(g, r, layer.outputs[0]);
      if (!j) continue;
      const Node& next = g.nodes[*j];
      const auto a = affine_of(g, next, layer.outputs[0], *channels);
      if (!a) continue;
      apply(g, layer, *a);
      layer.outputs[0] = next.outputs[0];
      drop_nodes(g, {*j});
      g.infer();
      ++folded;
      changed = true;
    }
  }
  return folded;
}

}  // namespace kiln::build
