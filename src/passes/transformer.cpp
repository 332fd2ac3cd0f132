// The decomposed forms of transformer ops rewritten into the ops themselves, so that a back end
// runs each as one step with its own numerics: LayerNormalization from ReduceMean/Sub/Pow/
// ReduceMean/Add/Sqrt/Div (PyTorch's exports before opset 17, and ONNX's own function body with
// E[x^2] - E[x]^2), and Gelu from its Erf and tanh forms. Each rewrite replaces a matched set of
// nodes whose intermediates nothing else reads by one node at the place of the last of them.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <optional>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

using i64 = std::int64_t;
using Readers = std::map<std::string, std::vector<std::size_t>>;

/// The value of a one-element weight.
std::optional<double> scalar(const Graph& g, const std::string& v) {
  const Tensor* t = weight(g, v);
  if (!t || t->numel() != 1 || !is_float(t->dtype())) return std::nullopt;
  return t->get(0);
}

bool near(std::optional<double> v, double want, double rel = 1e-3) {
  return v && std::abs(*v - want) <= rel * std::abs(want);
}

/// The other input of a two-input node that reads `v` (itself when both are `v`).
std::optional<std::string> other(const Node& n, const std::string& v) {
  if (n.inputs.size() != 2) return std::nullopt;
  if (n.inputs[0] == v) return n.inputs[1];
  if (n.inputs[1] == v) return n.inputs[0];
  return std::nullopt;
}

/// What a pattern walk knows: the graph, who reads what, and the nodes matched so far.
struct Walk {
  const Graph& g;
  Readers r;
  std::set<std::size_t> nodes;

  /// The single reader of `v` with one of `ops` (and, given `pred`, for which it holds); any other
  /// readers are left to the caller's check.
  template <class Pred = bool (*)(const Node&)>
  std::optional<std::size_t> reader(
      const std::string& v, std::initializer_list<const char*> ops,
      Pred pred = [](const Node&) { return true; }) const {
    auto it = r.find(v);
    if (it == r.end()) return std::nullopt;
    std::optional<std::size_t> found;
    for (std::size_t i : it->second)
      for (const char* op : ops)
        if (g.nodes[i].op == op && g.nodes[i].outputs.size() == 1 && pred(g.nodes[i])) {
          if (found && *found != i) return std::nullopt;  // two candidates: ambiguous
          found = i;
        }
    return found;
  }
  /// The producer of `v` if its op is one of `ops`.
  std::optional<std::size_t> made_by(const std::string& v,
                                     std::initializer_list<const char*> ops) const {
    const auto p = g.producer(v);
    if (!p) return std::nullopt;
    for (const char* op : ops)
      if (g.nodes[*p].op == op && g.nodes[*p].outputs.size() == 1) return p;
    return std::nullopt;
  }
  const std::string& out(std::size_t i) const { return g.nodes[i].outputs[0]; }
  std::size_t take(std::size_t i) {
    nodes.insert(i);
    return i;
  }
  /// Whether `v` is read by nothing outside the matched nodes (and is no graph output).
  bool internal(const std::string& v) const {
    if (is_graph_output(g, v)) return false;
    auto it = r.find(v);
    if (it == r.end()) return true;
    return std::all_of(it->second.begin(), it->second.end(),
                       [&](std::size_t i) { return nodes.count(i) != 0; });
  }
  /// Whether every reader outside the matched nodes comes after `pos`.
  bool readers_after(const std::string& v, std::size_t pos) const {
    auto it = r.find(v);
    if (it == r.end()) return true;
    return std::all_of(it->second.begin(), it->second.end(),
                       [&](std::size_t i) { return nodes.count(i) != 0 || i > pos; });
  }
};

/// The reader squaring `v`: Pow(v, 2) or Mul(v, v).
std::optional<std::size_t> square_of(Walk& w, const std::string& v) {
  if (auto p = w.reader(v, {"Pow"}, [&](const Node& n) {
        return n.inputs[0] == v && near(scalar(w.g, n.inputs[1]), 2.0, 0);
      }))
    return p;
  return w.reader(v, {"Mul"}, [&](const Node& n) {
    return n.inputs.size() == 2 && n.inputs[0] == v && n.inputs[1] == v;
  });
}

/// The first normalized axis of a ReduceMean over trailing axes with kept dims, or nullopt.
std::optional<i64> trailing_axis(const Graph& g, const Node& n) {
  if (n.op != "ReduceMean" || n.attr_int("keepdims", 1) != 1) return std::nullopt;
  const i64 rank = static_cast<i64>(g.type_of(n.inputs[0]).shape.rank());
  // The IR's Reduce ops take their axes as input 1 (the importer moves older opsets' attribute).
  std::vector<i64> axes;
  if (!n.has_input(1)) return std::nullopt;
  const Tensor* t = weight(g, n.inputs[1]);
  if (!t) return std::nullopt;
  for (double a : t->to_doubles()) axes.push_back(static_cast<i64>(a));
  if (axes.empty() || rank == 0) return std::nullopt;
  for (auto& a : axes) {
    if (a < -rank || a >= rank) return std::nullopt;
    if (a < 0) a += rank;
  }
  std::sort(axes.begin(), axes.end());
  for (std::size_t k = 0; k < axes.size(); ++k)
    if (axes[k] != rank - static_cast<i64>(axes.size()) + static_cast<i64>(k)) return std::nullopt;
  return axes.front();
}

/// Whether `v` (Scale or B) varies over the normalized dims of `x` only, and the product keeps
/// `x`'s type.
bool per_feature(const Graph& g, const std::string& v, const std::string& x, i64 axis) {
  const Shape& s = g.type_of(v).shape;
  const Shape& xs = g.type_of(x).shape;
  if (s.rank() > xs.rank() || g.type_of(v).dtype != g.type_of(x).dtype) return false;
  for (std::size_t k = 0; k < s.rank(); ++k) {
    const std::size_t d = xs.rank() - s.rank() + k;
    if (!s[k].is_fixed()) return false;
    if (static_cast<i64>(d) < axis && s[k].value() != 1) return false;
    if (static_cast<i64>(d) >= axis && s[k].value() != 1 &&
        !(xs[d].is_fixed() && xs[d].value() == s[k].value()))
      return false;
  }
  return true;
}

struct LayerNormMatch {
  std::string x, scale, bias, y, mean, invstd;
  double eps = 0;
  i64 axis = -1;
  std::size_t last = 0;
};

/// The LayerNorm pattern whose first mean is node `i`.
std::optional<LayerNormMatch> match_layer_norm(Walk& w, std::size_t i) {
  const Graph& g = w.g;
  const Node& m0 = g.nodes[i];
  const auto axis = trailing_axis(g, m0);
  if (!axis || !is_float(g.type_of(m0.inputs[0]).dtype)) return std::nullopt;
  LayerNormMatch m;
  m.x = m0.inputs[0];
  m.axis = *axis;
  const std::string& mean = w.out(w.take(i));
  // Deviation: Sub(x, mean).
  const auto sub = w.reader(
      mean, {"Sub"}, [&](const Node& n) { return n.inputs[0] == m.x && n.inputs[1] == mean; });
  if (!sub) return std::nullopt;
  const std::string& dev = w.out(w.take(*sub));
  // Variance: mean of the squared deviation, or E[x^2] - mean^2.
  std::optional<std::string> var;
  if (auto sq = square_of(w, dev)) {
    const auto rm = w.reader(w.out(*sq), {"ReduceMean"});
    if (rm && trailing_axis(g, g.nodes[*rm]) == axis) {
      w.take(*sq);
      var = w.out(w.take(*rm));
    }
  }
  if (!var) {
    const auto xx = square_of(w, m.x);
    const auto mm = square_of(w, mean);
    if (!xx || !mm) return std::nullopt;
    const auto rm = w.reader(w.out(*xx), {"ReduceMean"});
    if (!rm || trailing_axis(g, g.nodes[*rm]) != axis) return std::nullopt;
    const auto s =
        w.reader(w.out(*rm), {"Sub"}, [&](const Node& n) { return n.inputs[1] == w.out(*mm); });
    if (!s || g.nodes[*s].inputs[0] != w.out(*rm)) return std::nullopt;
    w.take(*xx);
    w.take(*mm);
    w.take(*rm);
    var = w.out(w.take(*s));
  }
  // std = Sqrt(var + eps).
  const auto add =
      w.reader(*var, {"Add"}, [&](const Node& n) { return other(n, *var).has_value(); });
  if (!add) return std::nullopt;
  const auto eps = scalar(g, *other(g.nodes[*add], *var));
  if (!eps || *eps < 0) return std::nullopt;
  m.eps = *eps;
  const auto sqrt = w.reader(w.out(w.take(*add)), {"Sqrt"});
  if (!sqrt) return std::nullopt;
  const std::string& stddev = w.out(w.take(*sqrt));
  // Normalized: Div(dev, std), or Mul(dev, Reciprocal(std)); a Reciprocal of std read elsewhere is
  // the InvStdDev output.
  std::optional<std::string> normalized;
  const auto recip = w.reader(stddev, {"Reciprocal"});
  if (auto div = w.reader(dev, {"Div"}, [&](const Node& n) {
        return n.inputs[0] == dev && n.inputs[1] == stddev;
      })) {
    normalized = w.out(w.take(*div));
    if (recip) m.invstd = w.out(w.take(*recip));
  } else if (recip) {
    m.invstd = w.out(w.take(*recip));
    const auto mul =
        w.reader(dev, {"Mul"}, [&](const Node& n) { return other(n, dev) == m.invstd; });
    if (!mul) return std::nullopt;
    normalized = w.out(w.take(*mul));
  } else {
    return std::nullopt;
  }
  // Optional affine: Mul by Scale, Add of B, each varying over the normalized dims only.
  m.y = *normalized;
  // affine(op): the other operand of an `op` that reads m.y with it, when that operand varies over
  // the normalized dims only; the op joins the match and its output becomes m.y.
  auto affine = [&](const char* op) -> std::optional<std::string> {
    const auto at = w.reader(m.y, {op}, [&](const Node& n) { return other(n, m.y).has_value(); });
    if (!at) return std::nullopt;
    const auto p = other(g.nodes[*at], m.y);
    if (!p || *p == m.y || !per_feature(g, *p, m.x, m.axis) ||
        g.type_of(w.out(*at)) != g.type_of(m.y))
      return std::nullopt;
    m.y = w.out(w.take(*at));
    return p;
  };
  if (auto s = affine("Mul")) {
    m.scale = *s;
    if (auto b = affine("Add")) m.bias = *b;
  }
  if (g.type_of(m.y) != g.type_of(m.x)) return std::nullopt;
  // The node goes where Y is made (its inputs are all made by then; readers of Y come later);
  // nothing outside reads an intermediate but the statistics, and those readers come later.
  m.last = *g.producer(m.y);
  for (std::size_t k : w.nodes) {
    const std::string& v = w.out(k);
    if (v == m.y) continue;
    if (v == mean || v == m.invstd) {
      if (!w.readers_after(v, m.last)) return std::nullopt;
      continue;
    }
    if (!w.internal(v)) return std::nullopt;
  }
  if (!w.internal(mean)) m.mean = mean;
  if (!m.invstd.empty() && w.internal(m.invstd)) m.invstd.clear();
  return m;
}

/// The Gelu pattern around the Erf or Tanh node `i`: returns the matched nodes' output, its input
/// x and whether it is the tanh form.
struct GeluMatch {
  std::string x, y;
  bool tanh = false;
  std::size_t last = 0;
};

std::optional<GeluMatch> match_gelu(Walk& w, std::size_t i) {
  const Graph& g = w.g;
  const Node& core = g.nodes[i];
  GeluMatch m;
  m.tanh = core.op == "Tanh";
  w.take(i);
  const std::string& u = core.inputs[0];
  if (!m.tanh) {
    // u = x / sqrt(2) or x * (1 / sqrt(2)).
    const auto p = w.made_by(u, {"Div", "Mul"});
    if (!p) return std::nullopt;
    const Node& n = g.nodes[*p];
    if (n.op == "Div" && near(scalar(g, n.inputs[1]), std::numbers::sqrt2))
      m.x = n.inputs[0];
    else if (n.op == "Mul" && near(scalar(g, n.inputs[1]), 1 / std::numbers::sqrt2))
      m.x = n.inputs[0];
    else if (n.op == "Mul" && near(scalar(g, n.inputs[0]), 1 / std::numbers::sqrt2))
      m.x = n.inputs[1];
    else
      return std::nullopt;
    w.take(*p);
  } else {
    // u = sqrt(2/pi) * (x + 0.044715 * x^3).
    const auto p = w.made_by(u, {"Mul"});
    if (!p) return std::nullopt;
    const Node& n = g.nodes[*p];
    const double c = std::sqrt(2 / std::numbers::pi);
    std::string inner;
    if (near(scalar(g, n.inputs[1]), c))
      inner = n.inputs[0];
    else if (near(scalar(g, n.inputs[0]), c))
      inner = n.inputs[1];
    else
      return std::nullopt;
    w.take(*p);
    const auto a = w.made_by(inner, {"Add"});
    if (!a) return std::nullopt;
    w.take(*a);
    for (int side = 0; side < 2 && m.x.empty(); ++side) {
      const std::string& x = g.nodes[*a].inputs[static_cast<std::size_t>(side)];
      const std::string& k = g.nodes[*a].inputs[static_cast<std::size_t>(1 - side)];
      const auto km = w.made_by(k, {"Mul"});
      if (!km) continue;
      const Node& kn = g.nodes[*km];
      std::string cube;
      if (near(scalar(g, kn.inputs[1]), 0.044715))
        cube = kn.inputs[0];
      else if (near(scalar(g, kn.inputs[0]), 0.044715))
        cube = kn.inputs[1];
      else
        continue;
      const auto cp = w.made_by(cube, {"Pow", "Mul"});
      if (!cp) continue;
      const Node& cn = g.nodes[*cp];
      bool is_cube = false;
      if (cn.op == "Pow") {
        is_cube = cn.inputs[0] == x && near(scalar(g, cn.inputs[1]), 3.0, 0);
      } else if (auto sq = w.made_by(cn.inputs[0] == x ? cn.inputs[1] : cn.inputs[0], {"Mul"})) {
        const Node& sn = g.nodes[*sq];
        is_cube = (cn.inputs[0] == x || cn.inputs[1] == x) && sn.inputs.size() == 2 &&
                  sn.inputs[0] == x && sn.inputs[1] == x;
        if (is_cube) w.take(*sq);
      }
      if (!is_cube) continue;
      w.take(*km);
      w.take(*cp);
      m.x = x;
    }
    if (m.x.empty()) return std::nullopt;
  }
  // Tail: (1 + core) times x, times 0.5, in either order: 0.5 * x * (1 + core).
  auto two = [](const std::string& v) {
    return [&v](const Node& n) { return other(n, v).has_value(); };
  };
  const auto one = w.reader(w.out(i), {"Add"}, two(w.out(i)));
  if (!one || !near(scalar(g, *other(g.nodes[*one], w.out(i))), 1.0, 0)) return std::nullopt;
  const std::string& plus = w.out(w.take(*one));
  const auto mul = w.reader(plus, {"Mul"}, two(plus));
  if (!mul) return std::nullopt;
  const std::string f = *other(g.nodes[*mul], plus);
  if (f == m.x) {  // x * (1 + core), then * 0.5
    const auto half = w.reader(w.out(w.take(*mul)), {"Mul"}, two(w.out(*mul)));
    if (!half || !near(scalar(g, *other(g.nodes[*half], w.out(*mul))), 0.5, 0)) return std::nullopt;
    m.y = w.out(w.take(*half));
  } else {  // (0.5 * x) * (1 + core)
    const auto h = w.made_by(f, {"Mul"});
    if (!h) return std::nullopt;
    const Node& hn = g.nodes[*h];
    const bool ok = (hn.inputs[0] == m.x && near(scalar(g, hn.inputs[1]), 0.5, 0)) ||
                    (hn.inputs[1] == m.x && near(scalar(g, hn.inputs[0]), 0.5, 0));
    if (!ok) return std::nullopt;
    w.take(*h);
    m.y = w.out(w.take(*mul));
  }
  if (g.type_of(m.y) != g.type_of(m.x) || !is_float(g.type_of(m.x).dtype)) return std::nullopt;
  m.last = *std::max_element(w.nodes.begin(), w.nodes.end());
  for (std::size_t k : w.nodes)
    if (w.out(k) != m.y && !w.internal(w.out(k))) return std::nullopt;
  return m;
}

/// The attention core: MatMul(Q, K^T) [scaled] [+ mask] -> Softmax(last axis) -> MatMul(., V),
/// ending at the MatMul `i`. Q, K and V are 3-D ([batch*heads, S, D], as PyTorch's
/// multi_head_attention_forward exports them: one head per batch entry) or 4-D ([B, H, S, D]) with
/// the same leading dims; K^T is a Transpose of the last two dims (composed with the one before
/// it, if any); the scale is a scalar Mul/Div of Q, of K^T or of the scores (their product).
struct AttentionMatch {
  std::string q, k, v, mask, y;
  std::vector<std::int64_t> k_perm;  // a Transpose of `k` to make K (empty: `k` is K)
  double scale = 1.0;
  bool unsqueeze_mask =
      false;  // a 3-D mask over [batch*heads, S, T] becomes [batch*heads, 1, S, T]
  std::size_t last = 0;
};

/// A scalar multiplier: Mul by c (either side) or Div by c of `v`; the other input and the factor.
std::optional<std::pair<std::string, double>> scaled(const Graph& g, const Node& n) {
  if (n.inputs.size() != 2 || n.outputs.size() != 1) return std::nullopt;
  if (n.op == "Div") {
    const auto c = scalar(g, n.inputs[1]);
    if (c && *c != 0) return std::pair{n.inputs[0], 1.0 / *c};
  } else if (n.op == "Mul") {
    if (const auto c = scalar(g, n.inputs[1])) return std::pair{n.inputs[0], *c};
    if (const auto c = scalar(g, n.inputs[0])) return std::pair{n.inputs[1], *c};
  }
  return std::nullopt;
}

std::optional<AttentionMatch> match_attention(Walk& w, std::size_t i) {
  const Graph& g = w.g;
  const Node& out = g.nodes[i];
  if (out.op != "MatMul" || out.outputs.size() != 1) return std::nullopt;
  AttentionMatch m;
  m.y = out.outputs[0];
  m.v = out.inputs[1];
  w.take(i);
  const auto sm = w.made_by(out.inputs[0], {"Softmax"});
  if (!sm) return std::nullopt;
  const std::size_t rank = g.type_of(m.v).shape.rank();
  if (rank != 3 && rank != 4) return std::nullopt;
  const std::int64_t axis = g.nodes[*sm].attr_int("axis", -1);
  if (axis != -1 && axis != static_cast<std::int64_t>(rank) - 1) return std::nullopt;
  w.take(*sm);
  std::string x = g.nodes[*sm].inputs[0];
  // Optional additive mask.
  if (auto add = w.made_by(x, {"Add"})) {
    const Node& a = g.nodes[*add];
    // The scores are the side that comes from the MatMul (maybe through a scale).
    for (int side = 0; side < 2; ++side) {
      const std::string& s = a.inputs[static_cast<std::size_t>(side)];
      const auto p = g.producer(s);
      if (!p) continue;
      const Node& pn = g.nodes[*p];
      const bool scores =
          pn.op == "MatMul" || (scaled(g, pn) && w.made_by(scaled(g, pn)->first, {"MatMul"}));
      if (!scores) continue;
      m.mask = a.inputs[static_cast<std::size_t>(1 - side)];
      x = s;
      break;
    }
    if (m.mask.empty()) return std::nullopt;
    w.take(*add);
  }
  // Optional scale of the scores.
  if (auto sc = w.made_by(x, {"Mul", "Div"})) {
    const auto f = scaled(g, g.nodes[*sc]);
    if (!f) return std::nullopt;
    m.scale = f->second;
    x = f->first;
    w.take(*sc);
  }
  const auto qk = w.made_by(x, {"MatMul"});
  if (!qk) return std::nullopt;
  w.take(*qk);
  m.q = g.nodes[*qk].inputs[0];
  const std::string& kt = g.nodes[*qk].inputs[1];
  // Optional scale of Q (PyTorch: q / sqrt(E) before the product).
  if (auto sq = w.made_by(m.q, {"Mul", "Div"}); sq && w.internal(m.q)) {
    if (const auto f = scaled(g, g.nodes[*sq])) {
      m.scale *= f->second;
      m.q = f->first;
      w.take(*sq);
    }
  }
  // Optional scale of K^T: PyTorch 2's scaled_dot_product_attention exports Q * sqrt(scale) and
  // K^T * sqrt(scale) (the scale split over both sides for range), so both factors multiply in.
  std::string kt_in = kt;
  if (auto sk = w.made_by(kt, {"Mul", "Div"}); sk && w.internal(kt)) {
    if (const auto f = scaled(g, g.nodes[*sk])) {
      m.scale *= f->second;
      kt_in = f->first;
      w.take(*sk);
    }
  }
  // K^T: a Transpose swapping the last two dims of whatever came before.
  const auto tr = w.made_by(kt_in, {"Transpose"});
  if (!tr) return std::nullopt;
  std::vector<std::int64_t> perm = g.nodes[*tr].attr_ints("perm");
  if (perm.size() != rank) return std::nullopt;
  std::swap(perm[rank - 1], perm[rank - 2]);
  w.take(*tr);
  m.k = g.nodes[*tr].inputs[0];
  bool identity = true;
  for (std::size_t d = 0; d < rank; ++d)
    identity = identity && perm[d] == static_cast<std::int64_t>(d);
  if (!identity) m.k_perm = perm;
  // Shapes: Q [.., S, D], K (after k_perm) [.., T, D], V [.., T, Dv], the leading dims equal.
  const Shape& qs = g.type_of(m.q).shape;
  const Shape& ks0 = g.type_of(m.k).shape;
  const Shape& vs = g.type_of(m.v).shape;
  if (qs.rank() != rank || ks0.rank() != rank || !is_float(g.type_of(m.q).dtype))
    return std::nullopt;
  Shape ks;
  for (std::size_t d = 0; d < rank; ++d)
    ks.push_back(ks0[m.k_perm.empty() ? d : static_cast<std::size_t>(m.k_perm[d])]);
  for (std::size_t d = 0; d < rank; ++d)
    if (!qs[d].is_fixed() || !ks[d].is_fixed() || !vs[d].is_fixed()) return std::nullopt;
  for (std::size_t d = 0; d + 2 < rank; ++d)
    if (qs[d].value() != ks[d].value() || qs[d].value() != vs[d].value()) return std::nullopt;
  if (qs[rank - 1].value() != ks[rank - 1].value() || ks[rank - 2].value() != vs[rank - 2].value())
    return std::nullopt;
  if (g.type_of(m.k).dtype != g.type_of(m.q).dtype || g.type_of(m.v).dtype != g.type_of(m.q).dtype)
    return std::nullopt;
  if (!m.mask.empty()) {
    // The mask must broadcast to the scores without growing them, in the Attention op's terms.
    const Shape& ms = g.type_of(m.mask).shape;
    if (ms.rank() == 0 || ms.rank() > rank || !is_float(g.type_of(m.mask).dtype))
      return std::nullopt;  // op: rank 1..4
    for (std::size_t d = 0; d < ms.rank(); ++d) {
      const Dim& md = ms[d];
      const std::size_t sd = rank - ms.rank() + d;
      const std::int64_t want = sd == rank - 1 ? ks[rank - 2].value() : qs[sd].value();
      if (!md.is_fixed() || (md.value() != 1 && md.value() != want)) return std::nullopt;
    }
    m.unsqueeze_mask = rank == 3 && ms.rank() == 3 && ms[0].value() != 1;
  }
  m.last = *std::max_element(w.nodes.begin(), w.nodes.end());
  for (std::size_t k : w.nodes)
    if (w.out(k) != m.y && !w.internal(w.out(k))) return std::nullopt;
  return m;
}

/// Replaces the nodes `drop` by `n` at the place of one of them (`at`), after the nodes `before`
/// (which make some of `n`'s inputs). Types are not inferred again (until_fixed does that).
void replace(Graph& g, const std::set<std::size_t>& drop, std::size_t at, Node n,
             std::vector<Node> before = {}) {
  g.nodes[at] = std::move(n);
  g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(at),
                 std::make_move_iterator(before.begin()), std::make_move_iterator(before.end()));
  std::set<std::size_t> rest;
  for (std::size_t k : drop)
    if (k != at) rest.insert(k < at ? k : k + before.size());  // the insert moved those after `at`
  drop_nodes(g, rest);
}

/// A new node `op` named after node i (its name and `suffix`, made unique).
Node new_node(Graph& g, std::size_t i, const char* op, const char* suffix) {
  Node n;
  n.op = op;
  n.name = g.unique_name(g.nodes[i].name + suffix);
  return n;
}

/// The loop of each fusion here: when the target fuses `fusion`, and until none is left, tries
/// match(walk, i) at the nodes i that `anchor` accepts and lets rewrite(walk, i, match) replace
/// what matched (it says whether it did).
template <class Anchor, class Match, class Rewrite>
int fuse_matches(Graph& g, const PassContext& ctx, const char* fusion, Anchor anchor, Match match,
                 Rewrite rewrite) {
  if (!ctx.tgt().can_fuse(fusion)) return 0;
  return until_fixed(g, [&](std::size_t i) {
    if (!anchor(g.nodes[i])) return false;
    Walk w{g, readers(g), {}};
    const auto m = match(w, i);
    return m && rewrite(w, i, m);
  });
}

}  // namespace

int fuse_layer_norm(Graph& g, const PassContext& ctx) {
  auto anchor = [](const Node& a) { return a.op == "ReduceMean"; };
  auto rewrite = [&](Walk& w, std::size_t i, const auto& m) {
    Node n = new_node(g, i, "LayerNormalization", "_layernorm");
    std::string scale = m->scale;
    if (scale.empty()) {  // LayerNormalization's Scale is required: ones over the normalized dims
      const Shape& xs = g.type_of(m->x).shape;
      std::vector<i64> dims;
      for (std::size_t d = static_cast<std::size_t>(m->axis); d < xs.rank(); ++d)
        dims.push_back(xs[d].value());
      i64 count = 1;
      for (i64 d : dims) count *= d;
      scale = g.unique_name(n.name + "_scale");
      g.weights[scale] = Tensor::from_doubles(
          g.type_of(m->x).dtype, dims, std::vector<double>(static_cast<std::size_t>(count), 1.0));
    }
    n.inputs = {m->x, scale};
    if (!m->bias.empty()) n.inputs.push_back(m->bias);
    n.outputs = {m->y, m->mean, m->invstd};
    while (n.outputs.back().empty()) n.outputs.pop_back();
    n.attrs["axis"] = m->axis;
    n.attrs["epsilon"] = m->eps;
    replace(g, w.nodes, m->last, std::move(n));
    return true;
  };
  return fuse_matches(g, ctx, plan::fusion::kLayerNorm, anchor, match_layer_norm, rewrite);
}

int fuse_gelu(Graph& g, const PassContext& ctx) {
  auto anchor = [](const Node& core) {
    return (core.op == "Erf" || core.op == "Tanh") && core.outputs.size() == 1;
  };
  auto rewrite = [&](Walk& w, std::size_t i, const auto& m) {
    Node n = new_node(g, i, "Gelu", "_gelu");
    n.inputs = {m->x};
    n.outputs = {m->y};
    if (m->tanh) n.attrs["approximate"] = std::string("tanh");
    replace(g, w.nodes, m->last, std::move(n));
    return true;
  };
  return fuse_matches(g, ctx, plan::fusion::kGelu, anchor, match_gelu, rewrite);
}

int fuse_residual_norm(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kResidualNorm)) return 0;
  return until_fixed(g, [&](std::size_t j) {
    const Node& norm = g.nodes[j];
    if ((norm.op != "LayerNormalization" && norm.op != "RMSNormalization") || norm.inputs.empty() ||
        norm.inputs[0].empty())
      return false;
    const auto i = g.producer(norm.inputs[0]);
    if (!i) return false;
    const Node& add = g.nodes[*i];
    if (add.op != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1 ||
        add.inputs[0].empty() || add.inputs[1].empty())
      return false;
    // Two activations of the sum's own type: no broadcast, and not a constant (a bias).
    const std::string& sum = add.outputs[0];
    const TensorType& st = g.type_of(sum);
    for (const auto& in : add.inputs)
      if (weight(g, in) || g.type_of(in) != st) return false;
    // The norm reads the sum as X only; other readers come after the norm (the fused step makes
    // the sum where the norm was).
    const auto r = readers(g);
    bool shared = is_graph_output(g, sum);
    for (std::size_t k : r.at(sum)) {
      if (k == j) continue;
      if (k < j) return false;
      shared = true;
    }
    for (std::size_t k = 1; k < norm.inputs.size(); ++k)
      if (norm.inputs[k] == sum) return false;
    Node fused = fuse_pair(add, norm);
    if (shared) {
      FusedBody body = fused_body(fused);
      body.results.push_back(body.parts[0].outputs[0]);
      std::vector<std::string> outputs = fused.outputs;
      outputs.push_back(sum);
      fused = make_fused_node(fused.name, fused.inputs, outputs, body);
    }
    g.nodes[j] = std::move(fused);
    drop_nodes(g, {*i});
    return true;
  });
}

int fuse_attention(Graph& g, const PassContext& ctx) {
  auto anchor = [](const Node& a) { return a.op == "MatMul"; };
  auto rewrite = [&](Walk& w, std::size_t i, const auto& m) {
    const TensorType before_type = g.type_of(m->y);
    const std::size_t rank = g.type_of(m->q).shape.rank();
    Node n = new_node(g, i, "Attention", "_attention");
    std::vector<Node> extra;
    std::string k = m->k, mask = m->mask;
    if (!m->k_perm.empty()) {
      Node t;
      t.op = "Transpose";
      t.name = g.unique_name(n.name + "_k");
      t.inputs = {m->k};
      t.outputs = {t.name};
      t.attrs["perm"] = m->k_perm;
      k = t.name;
      extra.push_back(std::move(t));
    }
    if (m->unsqueeze_mask) {
      Node u;
      u.op = "Unsqueeze";
      u.name = g.unique_name(n.name + "_mask");
      const std::string axes = g.unique_name(u.name + "_axes");
      g.weights[axes] = Tensor::from<std::int64_t>({1}, {1});
      u.inputs = {mask, axes};
      u.outputs = {u.name};
      mask = u.name;
      extra.push_back(std::move(u));
    }
    n.inputs = {m->q, k, m->v};
    if (!mask.empty()) n.inputs.push_back(mask);
    n.outputs = {m->y};
    n.attrs["scale"] = m->scale;
    if (rank == 3) {  // one head per leading entry
      n.attrs["q_num_heads"] = std::int64_t{1};
      n.attrs["kv_num_heads"] = std::int64_t{1};
    }
    Graph saved = g;
    replace(g, w.nodes, m->last, std::move(n), std::move(extra));
    g.infer();
    if (g.type_of(m->y) != before_type) {  // cannot happen when the checks above hold; stay safe
      g = std::move(saved);
      return false;
    }
    return true;
  };
  return fuse_matches(g, ctx, plan::fusion::kAttention, anchor, match_attention, rewrite);
}

}  // namespace kiln::build
