// Running a DSL network on the CPU reference in one call. This header sits above the DSL and
// the reference executor (the DSL itself includes only the IR).
#pragma once

#include <string>

#include "kiln/dsl/network.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln {

/// Runs `net` on the CPU reference; `inputs` maps every network input name to a tensor.
/// Returns the outputs by name.
inline reference::TensorMap run(const dsl::Network& net, const reference::TensorMap& inputs) {
  return reference::Executor(net.graph()).run(inputs);
}

/// Runs a network of one input and one output.
inline Tensor run(const dsl::Network& net, const Tensor& input) {
  const auto& g = net.graph();
  if (g.inputs.size() != 1 || g.outputs.size() != 1)
    throw Error("run(net, tensor) needs a network of one input and one output; this one has " +
                std::to_string(g.inputs.size()) + " inputs and " +
                std::to_string(g.outputs.size()) + " outputs (pass a TensorMap)");
  auto out = reference::Executor(g).run({{g.inputs[0].name, input}});
  return out.at(g.outputs[0]);
}

}  // namespace kiln
