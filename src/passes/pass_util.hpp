// Helpers shared by the passes: who reads a value, renaming, fusing two nodes into one.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kiln/build/passes.hpp"
#include "kiln/ir/fused.hpp"

namespace kiln::build::detail {

/// Indices of the nodes reading each value.
std::map<std::string, std::vector<std::size_t>> readers(const Graph& g);
bool is_graph_output(const Graph& g, const std::string& v);
bool is_graph_input(const Graph& g, const std::string& v);
/// A weight's tensor, or nullptr.
const Tensor* weight(const Graph& g, const std::string& v);

/// Renames value `from` to `to` everywhere it is read (node inputs and graph outputs).
void rename_uses(Graph& g, const std::string& from, const std::string& to);
/// Renames value `from` to `to` where it is made and read.
void rename_value(Graph& g, const std::string& from, const std::string& to);
/// Keeps the nodes whose index is not in `drop`, in order.
void drop_nodes(Graph& g, const std::set<std::size_t>& drop);

/// The value `v`'s only reader, if it has exactly one and is not a graph output.
std::optional<std::size_t> only_reader(const Graph& g,
                                       const std::map<std::string, std::vector<std::size_t>>& r,
                                       const std::string& v);

/// A fused node doing `a` then `b`, where `b` reads `a`'s single output `link`; named after `a`,
/// with `b`'s outputs. Inputs are `a`'s, then `b`'s others (each once).
Node fuse_pair(const Node& a, const Node& b);

/// The parts of a node (its own op for an ordinary one).
std::vector<std::string> part_ops(const Node& n);
/// Two attribute maps equal (compared as text; tensors by type and values).
bool same_attrs(const std::map<std::string, Attribute>& a,
                const std::map<std::string, Attribute>& b);

/// Runs `try_at(i)` over the nodes, from the first again after each rewrite (indices move), until
/// it rewrites nothing; types are inferred after each rewrite. Returns the rewrites.
template <class F>
int until_fixed(Graph& g, F&& try_at) {
  int n = 0;
  for (bool changed = true; changed;) {
    changed = false;
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
      if (try_at(i)) {
        ++n;
        changed = true;
        g.infer();
        break;
      }
  }
  return n;
}

/// Infers types again after a rewrite.
inline void reinfer(Graph& g) { g.infer(); }

}  // namespace kiln::build::detail
