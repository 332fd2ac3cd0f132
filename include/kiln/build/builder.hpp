// Building: an IR graph in, a Plan out. Input dims are made concrete, the passes of
// kiln/build/passes.hpp run in order, and the memory of the result is planned.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/build/passes.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::build {

struct BuildOptions {
  const plan::Target* target = nullptr;          ///< nullptr: the CPU reference
  const ConstantEvaluator* evaluator = nullptr;  ///< for constant folding (required)
  /// Concrete dims of inputs by name; other dynamic dims become `dynamic_default`.
  std::map<std::string, std::vector<std::int64_t>> input_dims;
  std::int64_t dynamic_default = 1;
  /// Called after every pass with the graphs before and after it (equivalence checks).
  std::function<void(const std::string& pass, const Graph& before, const Graph& after)> after_pass;
};

struct BuildReport {
  int layers_before = 0;  ///< after import and constant folding
  int layers_after = 0;   ///< steps of the plan
  std::vector<std::pair<std::string, int>> pass_changes;
  Graph before_fusion;  ///< the graph when layers_before was counted
  Graph after_fusion;   ///< the graph the plan was made from
  /// "layers before fusion: N", "layers after fusion: M", the passes, each fused step with what
  /// it absorbed.
  std::string summary() const;
};

/// Gives every input static dims (see BuildOptions) and infers types again when any changed.
void make_static(Graph& g, const BuildOptions& o);

/// Builds a plan of `g`. Throws kiln errors naming the node for anything it cannot build.
plan::Plan build_plan(Graph g, const BuildOptions& o, BuildReport* report = nullptr);

}  // namespace kiln::build
