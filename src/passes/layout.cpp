// Passes that decide where data lives rather than what is computed: reshape-like views, concat
// elision, and the layout of each step.
#include <algorithm>

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
      if (in.empty() || !p || !seen.insert(in).second || taken.count(in) || is_graph_output(g, in) ||
          marked(g.nodes[*p], plan::kViewAttr)) {
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

namespace {

/// The layouts a node can take: those of its layout-sensitive parts (intersected), or empty when
/// it does not care (elementwise ops follow their input).
std::optional<std::vector<plan::Layout>> layouts_for(const Node& n, const plan::Target& t) {
  std::optional<std::vector<plan::Layout>> out;
  for (const auto& op : part_ops(n)) {
    if (t.is_pointwise(op) || op == "Split") continue;
    auto ls = t.layouts_of(op);
    if (!out) {
      out = ls;
      continue;
    }
    std::vector<plan::Layout> both;
    for (auto l : *out)
      if (std::find(ls.begin(), ls.end(), l) != ls.end()) both.push_back(l);
    out = both;
  }
  return out;
}

/// Assigns layouts: sensitive steps take the first of theirs that `prefer` allows, elementwise
/// steps follow their first input; returns the conversions needed (edges between steps of
/// different layouts, 4-D values only; graph inputs and outputs are NCHW).
int assign(const Graph& g, const plan::Target& t, bool prefer_first,
           std::map<std::string, plan::Layout>* value_layout, std::vector<plan::Layout>* node_layout) {
  int conversions = 0;
  std::map<std::string, plan::Layout>& vl = *value_layout;
  for (const auto& i : g.inputs) vl[i.name] = plan::Layout::NCHW;
  node_layout->clear();
  for (const auto& n : g.nodes) {
    plan::Layout l = plan::Layout::NCHW;
    const auto allowed = layouts_for(n, t);
    if (!allowed) {
      if (n.has_input(0) && vl.count(n.inputs[0])) l = vl[n.inputs[0]];
    } else if (!allowed->empty()) {
      l = prefer_first ? allowed->front() : plan::Layout::NCHW;
      if (std::find(allowed->begin(), allowed->end(), l) == allowed->end()) l = allowed->front();
    }
    for (const auto& in : n.inputs)
      if (!in.empty() && g.has_type(in) && g.type_of(in).shape.rank() == 4 && vl.count(in) && vl[in] != l)
        ++conversions;
    for (const auto& o : n.outputs)
      if (!o.empty()) vl[o] = l;
    node_layout->push_back(l);
  }
  for (const auto& o : g.outputs)
    if (vl.count(o) && g.type_of(o).shape.rank() == 4 && vl[o] != plan::Layout::NCHW) ++conversions;
  return conversions;
}

}  // namespace

int choose_layout(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  std::map<std::string, plan::Layout> vl_pref, vl_nchw;
  std::vector<plan::Layout> pref, nchw;
  const int c_pref = assign(g, t, true, &vl_pref, &pref);
  const int c_nchw = assign(g, t, false, &vl_nchw, &nchw);
  const bool use_pref = c_pref <= c_nchw;
  const auto& chosen = use_pref ? pref : nchw;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    bool four_d = false;
    for (const auto& o : n.outputs)
      four_d |= !o.empty() && g.type_of(o).shape.rank() == 4;
    if (four_d) n.attrs[plan::kLayoutAttr] = plan::layout_name(chosen[i]);
  }
  return use_pref ? c_pref : c_nchw;
}

}  // namespace kiln::build
