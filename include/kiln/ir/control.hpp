// Control-flow ops (If, Loop, Scan): what their shape rules and their reference kernels share
// about bodies (kiln::Subgraph, graph.hpp). The rules live in src/ir/ops/control.cpp, the
// kernels in src/reference/control.cpp.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::control {

/// The node's captured-value count: the `captures` of its bodies, which must all agree and fit in
/// its inputs (GraphError naming the node otherwise; 0 for a node without bodies).
std::size_t captured_inputs(const Node& node);
/// The node's inputs less the captured ones: the op's own (ONNX) inputs.
std::size_t formal_inputs(const Node& node);

/// The output types of body `attr` of `node` when its formal inputs have types `formal` and its
/// captured inputs the types `captured` (and values `captured_constants`, nullptr where unknown):
/// a copy of the body is inferred, with `evaluator` when given. The formal input count must be
/// the body's; errors inside the body name the node and the attribute first.
std::vector<TensorType> body_output_types(const Node& node, const std::string& attr,
                                          const std::vector<TensorType>& formal,
                                          const std::vector<const TensorType*>& captured,
                                          const std::vector<const Tensor*>& captured_constants,
                                          const ConstantEvaluator* evaluator);

/// The most iterations a Loop runs (its trip count and condition allowing more is an error naming
/// the node, not a hang).
constexpr std::int64_t kMaxLoopIterations = std::int64_t{1} << 20;

}  // namespace kiln::control
