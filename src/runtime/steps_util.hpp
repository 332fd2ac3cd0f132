// Helpers the step factories share: kernel argument conversions, attribute reading, the ONNX
// activation of a node as a kernel activation, and the pointwise chain every elementwise step and
// every epilogue the libraries cannot fuse runs through.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine_impl.hpp"
#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "pointwise.cuh"

namespace kiln::runtime::detail {

kernels::Dims to_dims(const std::vector<i64>& d);
kernels::Strides to_strides(const std::vector<i64>& s);

/// The host values of a weight input (ints or floats as doubles); nullopt when the input is
/// absent; throws naming the node when it is computed at run time.
std::optional<std::vector<double>> constant_input(const StepEnv& env, const Node& n, std::size_t i);
/// The device pointer of a value: the arena address, or the uploaded weight.
const void* pointer_of(const StepEnv& env, const DeviceValue& v);

[[noreturn]] void unsupported(const Node& n, const std::string& what);

/// A unary elementwise node as a kernel activation (Clip reads its bounds from constant
/// inputs); nullopt for ops that are not unary activations.
struct Unary {
  kernels::Activation act = kernels::Activation::identity;
  float alpha = 0.f, beta = 0.f;
};
std::optional<Unary> unary_of(const StepEnv& env, const Node& part);
/// A binary elementwise op as a kernel op (Sum/Max/Min of two included); nullopt otherwise.
std::optional<kernels::Binary> binary_of(const std::string& op);

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
kernels::Strides broadcast_strides(const DeviceValue& v, const std::vector<i64>& out_dims, const std::vector<int>& perm);

// Factories (each in its own file).
std::unique_ptr<Step> make_conv_step(const StepEnv& env, const FusedBody& body);
std::unique_ptr<Step> make_gemm_step(const StepEnv& env, const FusedBody& body);
std::unique_ptr<Step> make_pointwise_step(const StepEnv& env, const FusedBody& body);
std::unique_ptr<Step> make_data_step(const StepEnv& env);  // pools, softmax, copies, reductions, ...
std::unique_ptr<Step> make_rnn_step(const StepEnv& env);

}  // namespace kiln::runtime::detail
