// Passes that decide where data lives rather than what is computed: reshape-like views, concat
// elision, and the layout of each step.
#include <algorithm>
#include <cstdint>

#include <fmt/format.h>

#include "kiln/plan/plan.hpp"
#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {
bool is_view_op(const std::string& op) {
  return op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze";
}
bool marked(const Node& n, const char* attr) { return n.attr_int(attr, 0) != 0; }
}  // namespace

int mark_views(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().view_ops) return 0;
  int n = 0;
  for (auto& node : g.nodes) {
    if (!is_view_op(node.op) || marked(node, plan::kViewAttr) || !node.has_input(0)) continue;
    if (weight(g, node.inputs[0])) continue;
    node.attrs[plan::kViewAttr] = std::int64_t{1};
    ++n;
  }
  return n;
}

int elide_concat(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  if (!t.concat_in_place) return 0;
  int n = 0;
  std::set<std::string> taken;  // a value can be a slice of one concat only
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    Node& c = g.nodes[i];
    if (c.op != "Concat" || marked(c, plan::kConcatInPlaceAttr)) continue;
    const TensorType& out = g.type_of(c.outputs[0]);
    if (!out.shape.is_static()) continue;
    std::int64_t axis = c.attr_int("axis", 0);
    if (axis < 0) axis += static_cast<std::int64_t>(out.shape.rank());
    if (axis < 0 || axis >= static_cast<std::int64_t>(out.shape.rank())) continue;
    std::int64_t outer = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer *= out.shape[static_cast<std::size_t>(d)].value();
    if (outer != 1 && !t.strided_output) continue;  // the slices are not contiguous
    bool ok = true;
    std::set<std::string> seen;
    for (const auto& in : c.inputs) {
      const auto p = g.producer(in);
      if (in.empty() || !p || !seen.insert(in).second || taken.count(in) ||
          is_graph_output(g, in) || marked(g.nodes[*p], plan::kViewAttr)) {
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    for (const auto& in : c.inputs) taken.insert(in);
    c.attrs[plan::kConcatInPlaceAttr] = std::int64_t{1};
    ++n;
  }
  return n;
}

int elide_split(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  if (!t.split_in_place) return 0;
  const auto rd = readers(g);
  int n = 0;
  for (Node& s : g.nodes) {
    if (s.op != "Split" || marked(s, plan::kSplitInPlaceAttr) || !s.has_input(0)) continue;
    if (s.attr_string(plan::kLayoutAttr, "NCHW") == "NHWC") continue;  // slices not row-major
    const TensorType& in = g.type_of(s.inputs[0]);
    if (!in.shape.is_static() || weight(g, s.inputs[0])) continue;
    std::int64_t axis = s.attr_int("axis", 0);
    if (axis < 0) axis += static_cast<std::int64_t>(in.shape.rank());
    if (axis < 0 || axis >= static_cast<std::int64_t>(in.shape.rank())) continue;
    std::int64_t outer = 1;
    for (std::int64_t d = 0; d < axis; ++d) outer *= in.shape[static_cast<std::size_t>(d)].value();
    bool ok = true;
    for (const auto& o : s.outputs) {
      if (o.empty() || is_graph_output(g, o) || !g.type_of(o).shape.is_static()) {
        ok = false;
        break;
      }
      auto r = rd.find(o);
      if (r == rd.end()) continue;
      for (std::size_t j : r->second) {
        const Node& reader = g.nodes[j];
        // A view of a slice is not a view of its buffer; a strided slice needs a reader that
        // takes strides.
        if (marked(reader, plan::kConcatInPlaceAttr) ||
            (outer != 1 && (marked(reader, plan::kViewAttr) || !t.reads_strided(reader.op))))
          ok = false;
      }
      if (!ok) break;
    }
    if (!ok) continue;
    s.attrs[plan::kSplitInPlaceAttr] = std::int64_t{1};
    ++n;
  }
  return n;
}

namespace {

using plan::Layout;

bool is_4d(const Graph& g, const std::string& v) {
  return !v.empty() && g.has_type(v) && g.type_of(v).shape.rank() == 4;
}

bool has_4d_output(const Graph& g, const Node& n) {
  for (const auto& o : n.outputs)
    if (is_4d(g, o)) return true;
  return false;
}

/// NCHW and NHWC are the same bytes for a 4-D value of C == 1 or H*W == 1.
bool same_bytes_in_both(const Graph& g, const std::string& v) {
  const Shape& s = g.type_of(v).shape;
  if (s[1].is_fixed() && s[1].value() == 1) return true;
  return s[2].is_fixed() && s[3].is_fixed() && s[2].value() * s[3].value() == 1;
}

/// Parts of a fused INT8 step that work element by element in whatever layout its product
/// writes: the accumulator's Cast, and the residual's DequantizeLinear and the output's
/// QuantizeLinear (per tensor, or per channel along C, which every layout keeps).
bool follows_anchor(const std::string& op) {
  return op == "Cast" || op == "DequantizeLinear" || op == "QuantizeLinear";
}

/// Whether part `op` of `n` leaves the layout to the node's other parts: elementwise ops, the Split
/// of a horizontal product, and an INT8 step's parts after its product.
bool layout_free(const Node& n, const std::string& op, const plan::Target& t) {
  return t.is_pointwise(op) || (is_fused(n) && (op == "Split" || follows_anchor(op)));
}

/// The layouts a node can take: those of its layout-sensitive parts (intersected), or nullopt when
/// it does not care (elementwise ops follow their input). The Split of a horizontal convolution
/// splits the convolution's output in its layout; a Split of its own takes the target's layouts.
std::optional<std::vector<Layout>> layouts_for(const Node& n, const plan::Target& t) {
  std::optional<std::vector<Layout>> out;
  for (const auto& op : part_ops(n)) {
    if (layout_free(n, op, t)) continue;
    auto ls = t.layouts_of(op);
    if (!out) {
      out = ls;
      continue;
    }
    std::vector<Layout> both;
    for (auto l : *out)
      if (std::find(ls.begin(), ls.end(), l) != ls.end()) both.push_back(l);
    out = both;
  }
  return out;
}

/// How a node reads 4-D values (see choose_layout in passes.hpp).
enum class Reads {
  Own,         // a step whose layout the target decides: every computed input in its layout
  Any,         // elementwise: any mix; its output takes the layout of its first 4-D input
  Nchw,        // everything else: NCHW, unless both layouts are the same bytes
  Conversion,  // kiln.ToLayout: anything
  Nothing,     // Shape and Size read dims only
};

Reads reads_of(const Graph& g, const Node& n, const plan::Target& t) {
  if (n.op == plan::kToLayoutOp) return Reads::Conversion;
  if (n.op == "Shape" || n.op == "Size") return Reads::Nothing;
  if (!has_4d_output(g, n)) return Reads::Nchw;
  if (!layouts_for(n, t)) return Reads::Any;
  for (const auto& op : part_ops(n))
    if (!layout_free(n, op, t) && t.layouts.count(op)) return Reads::Own;
  return Reads::Nchw;
}

/// One kiln.ToLayout to insert: `value` converted to `to`, read by `readers` (node, input index)
/// and, when `output`, a graph output (then it makes the value's name).
struct Conversion {
  std::string value;
  Layout to = Layout::NCHW;
  std::vector<std::pair<std::size_t, std::size_t>> readers;
  bool output = false;
};

struct Assignment {
  std::vector<Layout> node;             // of each node (meaningful where it has a 4-D output)
  std::vector<Conversion> conversions;  // in order of first need
  int off_preference = 0;               // steps not in their target's preferred layout

  /// Conversions and steps in a less preferred layout, counted alike; ties go to fewer
  /// conversions.
  int cost() const { return static_cast<int>(conversions.size()) + off_preference; }
};

/// Assigns layouts: sensitive steps take the first of theirs (`prefer_first`) or NCHW where they
/// allow it, elementwise steps follow their first 4-D input, all else is NCHW; then lists the
/// conversions that assignment needs. Graph inputs and weights are NCHW.
Assignment assign(const Graph& g, const plan::Target& t, bool prefer_first) {
  Assignment a;
  std::map<std::string, Layout> phys;  // physical layout of each computed 4-D value
  for (const auto& i : g.inputs) phys[i.name] = Layout::NCHW;
  auto layout_of = [&](const std::string& v) {
    auto it = phys.find(v);
    return it == phys.end() ? Layout::NCHW : it->second;
  };
  std::map<std::pair<std::string, Layout>, std::size_t> index;
  auto need = [&](const std::string& v, Layout to, std::size_t node, std::size_t input) {
    auto [it, fresh] = index.try_emplace({v, to}, a.conversions.size());
    if (fresh) a.conversions.push_back({v, to, {}, false});
    if (node != SIZE_MAX)
      a.conversions[it->second].readers.push_back({node, input});
    else
      a.conversions[it->second].output = true;
  };
  auto computed_4d = [&](const std::string& v) { return is_4d(g, v) && !weight(g, v); };

  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const Reads how = reads_of(g, n, t);
    Layout l = Layout::NCHW;
    switch (how) {
      case Reads::Conversion:
        l = n.attr_string(plan::kToLayoutAttr, "") == "NHWC" ? Layout::NHWC : Layout::NCHW;
        break;
      case Reads::Any:
        for (const auto& in : n.inputs)
          if (computed_4d(in)) {
            l = layout_of(in);
            break;
          }
        break;
      case Reads::Own: {
        const auto allowed = *layouts_for(n, t);
        if (!allowed.empty()) {
          l = prefer_first ? allowed.front() : Layout::NCHW;
          if (std::find(allowed.begin(), allowed.end(), l) == allowed.end()) l = allowed.front();
          if (l != allowed.front()) ++a.off_preference;
        }
        for (std::size_t k = 0; k < n.inputs.size(); ++k)
          if (computed_4d(n.inputs[k]) && layout_of(n.inputs[k]) != l) need(n.inputs[k], l, i, k);
        break;
      }
      case Reads::Nchw:
        for (std::size_t k = 0; k < n.inputs.size(); ++k) {
          const std::string& in = n.inputs[k];
          if (computed_4d(in) && layout_of(in) == Layout::NHWC && !same_bytes_in_both(g, in))
            need(in, Layout::NCHW, i, k);
        }
        break;
      case Reads::Nothing: break;
    }
    for (const auto& o : n.outputs)
      if (is_4d(g, o)) phys[o] = l;
    a.node.push_back(l);
  }
  std::set<std::string> seen;
  for (const auto& o : g.outputs)
    if (seen.insert(o).second && is_4d(g, o) && layout_of(o) == Layout::NHWC)
      need(o, Layout::NCHW, SIZE_MAX, 0);
  return a;
}

/// Inserts the conversions of `a` into `g`: each just before its first reader (a graph output's
/// just after its producer, which then writes a renamed value).
void insert_conversions(Graph& g, const Assignment& a) {
  std::set<std::string> used;
  for (const auto& i : g.inputs) used.insert(i.name);
  for (const auto& [k, _] : g.weights) used.insert(k);
  for (const auto& n : g.nodes) {
    used.insert(n.name);
    for (const auto& o : n.outputs) used.insert(o);
  }
  auto fresh = [&](const std::string& base) {
    std::string c = base;
    for (int i = 1; used.count(c); ++i) c = fmt::format("{}_{}", base, i);
    used.insert(c);
    return c;
  };
  std::multimap<std::size_t, Node> before;  // conversions to place before node i
  for (const Conversion& c : a.conversions) {
    const std::string to = plan::layout_name(c.to);
    const std::string suffix = c.to == Layout::NHWC ? ".nhwc" : ".nchw";
    Node n;
    n.op = plan::kToLayoutOp;
    n.attrs[plan::kToLayoutAttr] = to;
    n.attrs[plan::kLayoutAttr] = to;
    std::size_t at = g.nodes.size();
    for (const auto& [r, _] : c.readers) at = std::min(at, r);
    if (c.output) {
      // The producer writes "<v>.nhwc"; the conversion makes the graph output's own name.
      const std::size_t p = *g.producer(c.value);
      const std::string renamed = fresh(c.value + ".nhwc");
      rename_value(g, c.value, renamed);
      n.name = fresh(c.value + suffix);
      n.inputs = {renamed};
      n.outputs = {c.value};
      at = std::min(at, p + 1);
    } else {
      n.name = fresh(c.value + suffix);
      n.inputs = {c.value};
      n.outputs = {n.name};
    }
    for (const auto& [r, k] : c.readers) g.nodes[r].inputs[k] = n.outputs[0];
    before.emplace(at, std::move(n));
  }
  std::vector<Node> nodes;
  nodes.reserve(g.nodes.size() + a.conversions.size());
  for (std::size_t i = 0; i <= g.nodes.size(); ++i) {
    for (auto [it, end] = before.equal_range(i); it != end; ++it) nodes.push_back(it->second);
    if (i < g.nodes.size()) nodes.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(nodes);
}

}  // namespace

int choose_layout(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  Assignment pref = assign(g, t, true);
  Assignment nchw = assign(g, t, false);
  const bool use_pref = pref.cost() != nchw.cost()
                            ? pref.cost() < nchw.cost()
                            : pref.conversions.size() < nchw.conversions.size();
  const Assignment& chosen = use_pref ? pref : nchw;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (!has_4d_output(g, n)) continue;
    n.attrs[plan::kLayoutAttr] = plan::layout_name(chosen.node[i]);
    // The planner places a concat's inputs as row-major slices of its output: not so in NHWC.
    if (chosen.node[i] == Layout::NHWC && n.op == "Concat") n.attrs.erase(plan::kConcatInPlaceAttr);
  }
  if (chosen.conversions.empty()) return 0;
  insert_conversions(g, chosen);
  reinfer(g);
  return static_cast<int>(chosen.conversions.size());
}

}  // namespace kiln::build
