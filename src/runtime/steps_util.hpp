// Helpers the step factories share: kernel argument conversions, attribute reading, the ONNX
// activation of a node as a kernel activation, and the pointwise chain every elementwise step and
// every epilogue the libraries cannot fuse runs through.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include "engine_impl.hpp"

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/runtime/matmul.hpp"
#include "pointwise.cuh"

namespace kiln::runtime::detail {

/// rules::normalize_axis, its violation prefixed with the node.
i64 norm_axis(const Node& n, i64 axis, std::size_t rank);
/// Requires a row-major value (what kernels without strides take); GraphError naming the node.
void need_contiguous(const Node& n, const DeviceValue& v);
kernels::Dims to_dims(const std::vector<i64>& d);
kernels::Strides to_strides(const std::vector<i64>& s);

/// The host values of a weight input (ints or floats as doubles); nullopt when the input is
/// absent; throws naming the node when it is computed at run time.
std::optional<std::vector<double>> constant_input(const StepEnv& env, const Node& n, std::size_t i);
/// The device pointer of a value: the arena address, or the uploaded weight.
const void* pointer_of(const StepEnv& env, const DeviceValue& v);
/// A device buffer of `total_bytes` (at least 16) holding `block` (`block_bytes` long) repeated:
/// the inputs that tactics are checked and timed on, without a host copy of their whole size.
DeviceBuffer tiled_buffer(const void* block, std::size_t block_bytes, std::size_t total_bytes);

[[noreturn]] void unsupported(const Node& n, const std::string& what);

/// A unary elementwise node as its kernel op with alpha and beta, as the pointwise table
/// (include/kiln/ir/pointwise_ops.def) says (Clip reads its bounds from constant inputs);
/// nullopt for ops that are no unary op of the table.
struct Unary {
  kernels::Activation act = kernels::Activation::identity;
  float alpha = 0.f, beta = 0.f;
};
std::optional<Unary> unary_of(const StepEnv& env, const Node& part);
/// A binary elementwise node (two-input or variadic) as its kernel op; nullopt otherwise.
std::optional<kernels::PointwiseOp> binary_of(const Node& part);

/// Elementwise parts applied one after another to a running value, run as pointwise-chain
/// kernels of at most kMaxChainSteps steps. Operands are other values (any strides, broadcast
/// over the output) or weights. The walk is done in the output's physical order.
class Chain {
 public:
  /// `parts` read the running value by the name `running` (the first part may read it, or, when
  /// `running` is empty, takes its first input as the running value). Names "$k" stand for
  /// `inputs[k]`. `out` is where the result goes; `x` is the first running value.
  Chain(const StepEnv& env, const std::vector<Node>& parts, std::string running,
        const std::vector<std::string>& inputs, const DeviceValue& out);
  /// Runs over x (the first running value; nullptr: the chain starts from `out` in place).
  void run(const void* x, Stream s) const;
  bool empty() const { return steps_.empty(); }
  const DeviceValue& x() const { return x_; }

 private:
  DeviceValue out_, x_;
  std::vector<int> perm_;  // logical dim of each physical dim
  kernels::Dims dims_;
  kernels::Strides x_strides_;
  std::vector<kernels::PointwiseStep> steps_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

/// The running value's physical walk: the permutation that lists logical dims in memory order
/// (identity, or 0,2,3,1 for NHWC).
std::vector<int> physical_order(const DeviceValue& v);
/// Strides of `v` (broadcast to `out_dims`, 0 where broadcast), permuted by `perm`.
kernels::Strides broadcast_strides(const DeviceValue& v, const std::vector<i64>& out_dims,
                                   const std::vector<int>& perm);

/// A step whose algorithm choice is its cuBLASLt product's: Step::tune(), set_tactic() (a tactic
/// of another back end keeps the heuristic's) and tactic() through the Matmul.
Tactic tune_matmul(Matmul& mm);
void set_matmul_tactic(Matmul& mm, const Tactic& t);
std::string matmul_tactic_text(const Matmul& mm);

/// Makes the step of a plan step from its body (the step itself when it is not fused).
using StepFactory = std::unique_ptr<Step> (*)(const StepEnv& env, const FusedBody& body);
/// Checks, without a GPU, that a step of a plan can run (check_gpu_plan()); throws
/// UnsupportedError naming the node for what the GPU refuses beyond its op.
using StepCheck = void (*)(const plan::Plan& plan, const Node& step, const FusedBody& body);

/// The factory of a step class S, made from the step's node (S(env)) or, where S takes it, from
/// its fused body as well (S(env, body)).
template <class S>
std::unique_ptr<Step> step_factory(const StepEnv& env, [[maybe_unused]] const FusedBody& body) {
  if constexpr (std::is_constructible_v<S, const StepEnv&, const FusedBody&>)
    return std::make_unique<S>(env, body);
  else
    return std::make_unique<S>(env);
}

/// Which step runs which op: each steps file registers the ops it runs (by the op of a step's
/// first part) with the factory that makes them. gpu_ops(), check_gpu_plan() and make_step()
/// read it; nothing else lists what the GPU runs.
class StepRegistry {
 public:
  /// `fused`: the factory also takes fused steps whose first part is `op`.
  void add(const std::string& op, StepFactory make, bool fused = false);
  struct Entry {
    StepFactory make = nullptr;
    bool fused = false;
    StepCheck check = nullptr;
  };
  /// A check of the steps of `op` (registered before) that check_gpu_plan() runs.
  void add_check(const std::string& op, StepCheck check);
  const Entry* find(const std::string& op) const;
  /// A factory for the fused steps of exactly `pattern` ("Add+LayerNormalization"), tried before
  /// the anchor's own factory.
  void add_pattern(const std::string& pattern, StepFactory make);
  const Entry* find_pattern(const std::string& pattern) const;
  /// Every registered op, sorted (plugins' ops are found by find() but not listed).
  std::vector<std::string> ops() const;

 private:
  std::map<std::string, Entry> by_op_, by_pattern_;
};

/// The entry of a registered plugin's op (steps_plugin.cpp), or nullptr: StepRegistry::find's
/// answer for ops no steps file registers.
const StepRegistry::Entry* plugin_step_entry(const std::string& op);

/// The registry, filled once by the register_* functions below.
const StepRegistry& step_registry();

// Each steps file registers its ops.
void register_conv_steps(StepRegistry& r);  // steps_conv.cpp: convolutions, matrix products
void register_pointwise_steps(
    StepRegistry& r);  // steps_pointwise.cpp: the pointwise table, BatchNorm
void register_data_steps(
    StepRegistry& r);  // steps_data.cpp: pools, softmax, copies, reductions, ...
void register_rnn_steps(StepRegistry& r);        // steps_rnn.cpp: LSTM, GRU, RNN
void register_attention_steps(StepRegistry& r);  // steps_attention.cpp: Attention
void register_detection_steps(StepRegistry& r);  // steps_detection.cpp: RoiAlign, MaxRoiPool
void register_int8_steps(StepRegistry& r);       // steps_int8.cpp: Q/DQ, the fused INT8 products

}  // namespace kiln::runtime::detail
