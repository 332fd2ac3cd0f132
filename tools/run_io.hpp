// Inputs and outputs of `kiln run` (on a model or on a plan): --input files or random tensors,
// and the printed and saved outputs.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::tools {

/// A random tensor of type t (uniform in [-1, 1]; small integers for integer types; dynamic dims
/// taken as 1).
Tensor random_tensor(const TensorType& t, std::mt19937_64& rng);

/// The tensors named by --input NAME=FILE.pb, plus a random tensor (uniform in [-1, 1], small
/// integers for integer inputs, dynamic dims taken as 1, seeded by --seed) for every other input.
reference::TensorMap run_inputs(const Args& args, const std::vector<ValueInfo>& inputs);

/// Prints each output's type, checksum (sum of values) and first values; with --output-dir,
/// writes each as NAME.pb (TensorProto).
void report_outputs(const Args& args, const std::vector<std::string>& names,
                    const reference::TensorMap& outputs);

}  // namespace kiln::tools
