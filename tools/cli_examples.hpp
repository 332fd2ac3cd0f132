// The example networks of examples/ (written in the typed DSL) for `kiln build --example NAME`.
#pragma once

#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::tools {

/// Names of the example networks ("lenet", "resnet50", ...).
const std::vector<std::string>& example_names();

/// The graph of example network `name` with the weights of `wts_path` (a WTS file, adapted as
/// the example adapts it: TensorRT names for LeNet, TensorFlow's LSTM layout for char-RNN), or
/// random weights (seed 42, as the examples make them) when `wts_path` is empty. Throws Error
/// listing the names for an unknown one.
Graph example_graph(const std::string& name, const std::string& wts_path);

}  // namespace kiln::tools
