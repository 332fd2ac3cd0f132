#include "pass_util.hpp"

#include <fmt/format.h>

#include "kiln/ir/error.hpp"

namespace kiln::build {

const plan::Target& PassContext::tgt() const {
  return target ? *target : plan::cpu_reference_target();
}

namespace detail {

std::map<std::string, std::vector<std::size_t>> readers(const Graph& g) {
  std::map<std::string, std::vector<std::size_t>> r;
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    for (const auto& in : g.nodes[i].inputs)
      if (!in.empty()) r[in].push_back(i);
  return r;
}

bool is_graph_output(const Graph& g, const std::string& v) {
  for (const auto& o : g.outputs)
    if (o == v) return true;
  return false;
}
bool is_graph_input(const Graph& g, const std::string& v) {
  for (const auto& i : g.inputs)
    if (i.name == v) return true;
  return false;
}
const Tensor* weight(const Graph& g, const std::string& v) {
  auto it = g.weights.find(v);
  return it == g.weights.end() ? nullptr : &it->second;
}

void rename_uses(Graph& g, const std::string& from, const std::string& to) {
  for (auto& n : g.nodes)
    for (auto& in : n.inputs)
      if (in == from) in = to;
  for (auto& o : g.outputs)
    if (o == from) o = to;
}

void rename_value(Graph& g, const std::string& from, const std::string& to) {
  for (auto& n : g.nodes)
    for (auto& o : n.outputs)
      if (o == from) o = to;
  for (auto& n : g.nodes)
    for (auto& in : n.inputs)
      if (in == from) in = to;
}

void drop_nodes(Graph& g, const std::set<std::size_t>& drop) {
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (std::size_t i = 0; i < g.nodes.size(); ++i)
    if (!drop.count(i)) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

std::optional<std::size_t> only_reader(const Graph& g,
                                       const std::map<std::string, std::vector<std::size_t>>& r,
                                       const std::string& v) {
  if (is_graph_output(g, v)) return std::nullopt;
  auto it = r.find(v);
  if (it == r.end() || it->second.size() != 1) return std::nullopt;
  return it->second[0];
}

Node fuse_pair(const Node& a, const Node& b) {
  if (a.outputs.size() != 1)
    throw GraphError(
        fmt::format("{}cannot fuse a node of {} outputs", a.where(), a.outputs.size()));
  const std::string& link = a.outputs[0];
  FusedBody body = as_body(a);
  std::vector<std::string> inputs = a.inputs;
  const FusedBody tail = as_body(b);
  // Where each input of b goes: a's result, or an input of the fused node.
  std::vector<std::string> map_b(b.inputs.size());
  for (std::size_t k = 0; k < b.inputs.size(); ++k) {
    const std::string& v = b.inputs[k];
    if (v.empty()) continue;
    if (v == link) {
      map_b[k] = body.results[0];
      continue;
    }
    std::size_t j = 0;
    while (j < inputs.size() && inputs[j] != v) ++j;
    if (j == inputs.size()) inputs.push_back(v);
    map_b[k] = fused_input_ref(j);
  }
  for (Node p : tail.parts) {
    for (auto& in : p.inputs)
      if (const auto k = fused_input_index(in)) in = map_b[*k];
    body.parts.push_back(std::move(p));
  }
  body.results = tail.results;
  return make_fused_node(a.name, std::move(inputs), b.outputs, body);
}

std::vector<std::string> part_ops(const Node& n) {
  std::vector<std::string> ops;
  for (const auto& p : as_body(n).parts) ops.push_back(p.op);
  return ops;
}

bool same_attrs(const std::map<std::string, Attribute>& a,
                const std::map<std::string, Attribute>& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first || ia->second.index() != ib->second.index()) return false;
    if (const Tensor* ta = std::get_if<Tensor>(&ia->second)) {
      const Tensor& tb = std::get<Tensor>(ib->second);
      if (ta->dtype() != tb.dtype() || ta->dims() != tb.dims() ||
          ta->to_doubles() != tb.to_doubles())
        return false;
    } else if (attribute_to_string(ia->second) != attribute_to_string(ib->second)) {
      return false;
    }
  }
  return true;
}

}  // namespace detail
}  // namespace kiln::build
