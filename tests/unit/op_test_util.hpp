// Helpers for tests that run one op on the CPU reference.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::test {

/// A node of `op` reading in0..in{n_in-1} and writing out0..out{n_out-1}.
inline Node node(std::string op, std::size_t n_in, std::map<std::string, Attribute> attrs = {},
                 std::size_t n_out = 1, std::string name = "n") {
  Node n;
  n.op = std::move(op);
  n.name = std::move(name);
  for (std::size_t i = 0; i < n_in; ++i) n.inputs.push_back("in" + std::to_string(i));
  for (std::size_t i = 0; i < n_out; ++i) n.outputs.push_back("out" + std::to_string(i));
  n.attrs = std::move(attrs);
  return n;
}

/// Runs `n` on the reference; an undefined tensor stands for an omitted optional input.
inline std::vector<Tensor> run(const Node& n, const std::vector<Tensor>& ins) {
  std::vector<const Tensor*> p;
  for (const auto& t : ins) p.push_back(t.defined() ? &t : nullptr);
  return reference::run_node(n, p);
}

}  // namespace kiln::test
