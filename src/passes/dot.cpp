// Graphviz pictures of graphs, for `kiln inspect`.
#include <fmt/format.h>

#include "kiln/plan/plan.hpp"
#include "pass_util.hpp"

namespace kiln::build {

namespace {
std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}
}  // namespace

std::string to_dot(const Graph& g, const std::string& title) {
  std::string s = fmt::format(
      "digraph \"{}\" {{\n  label=\"{}\";\n  rankdir=TB;\n"
      "  node [shape=box, fontname=\"Helvetica\", fontsize=10];\n"
      "  edge [fontname=\"Helvetica\", fontsize=8];\n",
      escape(title), escape(title));
  std::map<std::string, std::string> made_by;
  for (std::size_t i = 0; i < g.inputs.size(); ++i) {
    const std::string id = fmt::format("in{}", i);
    made_by[g.inputs[i].name] = id;
    s += fmt::format("  {} [shape=ellipse, label=\"{}\\n{}\"];\n", id, escape(g.inputs[i].name),
                     escape(g.inputs[i].type.to_string()));
  }
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const std::string id = fmt::format("n{}", i);
    std::string label = fmt::format("{}\\n{}", escape(n.op), escape(n.name));
    std::string style;
    if (is_fused(n)) {
      label = fmt::format("{}\\n{}", escape(n.attr_string("pattern", "?")), escape(n.name));
      style = ", style=filled, fillcolor=\"#ffe8b0\"";
    }
    if (plan::marked_elided(n)) style = ", style=dashed";
    s += fmt::format("  {} [label=\"{}\"{}];\n", id, label, style);
    for (const auto& in : n.inputs) {
      auto it = made_by.find(in);
      if (in.empty() || it == made_by.end()) continue;  // weights are not drawn
      const std::string type = g.has_type(in) ? g.type_of(in).to_string() : "";
      s += fmt::format("  {} -> {} [label=\"{}\"];\n", it->second, id, escape(type));
    }
    for (const auto& o : n.outputs)
      if (!o.empty()) made_by[o] = id;
  }
  for (std::size_t i = 0; i < g.outputs.size(); ++i) {
    s += fmt::format("  out{} [shape=ellipse, label=\"{}\"];\n", i, escape(g.outputs[i]));
    if (auto it = made_by.find(g.outputs[i]); it != made_by.end())
      s += fmt::format("  {} -> out{};\n", it->second, i);
  }
  s += "}\n";
  return s;
}

}  // namespace kiln::build
