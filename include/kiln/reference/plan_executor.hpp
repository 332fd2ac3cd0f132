// The CPU reference executing a Plan: every activation lives in one arena at the offset the
// memory planner gave it (views and concat slices included, outputs written in place over dying
// inputs), so liveness and aliasing mistakes of the builder show up as wrong outputs on machines
// without a GPU. A fused step runs by composing its parts' kernels.
#pragma once

#include <cstddef>
#include <vector>

#include "kiln/ir/memory.hpp"
#include "kiln/plan/plan.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::reference {

class PlanExecutor {
 public:
  /// Checks that every step has a reference kernel (UnsupportedError otherwise).
  explicit PlanExecutor(const plan::Plan& plan);
  /// Runs the plan; `inputs` must hold every plan input with its dtype and dims.
  /// The arena starts filled with a NaN pattern, so a read of an unwritten byte shows.
  TensorMap run(const TensorMap& inputs);
  /// The arena of the last run (tests look at it).
  const std::vector<std::byte>& arena() const { return arena_; }

 private:
  Tensor read(const plan::PlannedValue& v) const;
  void write(const plan::PlannedValue& v, const Tensor& t, const std::string& who);
  const plan::Plan& plan_;
  HostReservation arena_reservation_;  // counted against the host memory limit
  std::vector<std::byte> arena_;
  TensorMap sized_;  // the values sized at run time (plan::PlannedValue::sized_at_run_time)
};

}  // namespace kiln::reference
