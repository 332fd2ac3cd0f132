// Targets: what a back end can run, described as data so that the builder's passes can ask
// instead of assuming. A plan is built for one target; its name is recorded in the plan file.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace kiln::plan {

enum class Layout { NCHW, NHWC };
std::string layout_name(Layout l);

/// The fusions a back end may run as one step (the names appear in `kiln inspect`).
namespace fusion {
inline constexpr const char* kConvActivation = "conv+bias+activation";  // Conv/ConvTranspose + act
inline constexpr const char* kGemmActivation = "gemm+bias+activation";  // Gemm/MatMul + act
inline constexpr const char* kConvResidual = "conv+residual+activation";  // Conv + Add (+ act)
inline constexpr const char* kPointwiseChain = "pointwise-chain";         // elementwise ops as one
inline constexpr const char* kHorizontalConv = "horizontal-conv";         // convs sharing an input
/// Matrix products of one input by constant weights (a transformer's Q, K and V projections),
/// each with the same bias/activation tail -> one product over the concatenated weights, then a
/// Split (whose outputs are slices of the product where the target allows: Target::split_in_place).
inline constexpr const char* kHorizontalMatMul = "horizontal-matmul";
inline constexpr const char* kLayerNorm =
    "layernorm";                              // decomposed LayerNorm -> LayerNormalization
inline constexpr const char* kGelu = "gelu";  // Erf/tanh GELU forms -> Gelu
inline constexpr const char* kAttention =
    "attention";  // MatMul, scale, mask, Softmax, MatMul -> Attention
/// Add of two activations of one shape + the LayerNormalization/RMSNormalization reading it
/// (a transformer's residual connection) -> one step that may also write the sum.
inline constexpr const char* kResidualNorm = "residual+norm";
/// Per-tensor DequantizeLinear moved forward through data movement and MaxPool, and Q(DQ(x))
/// pairs of one scale cancelled (exact; build::propagate_qdq).
inline constexpr const char* kQdqPropagation = "qdq-propagation";
/// DQ(x) -> Conv/Gemm/MatMul with an exactly-INT8 weight (+ bias, + DQ residual, Relu) -> Q:
/// one step with INT8 semantics (int32 accumulation, requantized; build::fuse_int8).
inline constexpr const char* kInt8 = "int8";
}  // namespace fusion

struct Target {
  std::string name;               ///< "cpu-reference", "cuda-sm90", ...
  std::set<std::string> fusions;  ///< which of fusion::* it runs as one step
  /// Elementwise ops it can run as an epilogue or inside a pointwise chain.
  std::set<std::string> pointwise_ops;
  std::size_t max_pointwise_chain = 8;  ///< most elementwise parts in one step
  /// Layouts each layout-sensitive op takes, preferred first; an op absent here takes NCHW only.
  std::map<std::string, std::vector<Layout>> layouts;
  /// A step can write its output into a strided slice of a larger buffer (concat elision when
  /// the slice is not contiguous) / read its input from one.
  bool strided_output = false;
  bool strided_input = false;
  /// Producers of a Concat's inputs can write straight into its output (at the planned offset;
  /// a strided slice needs strided_output as well).
  bool concat_in_place = false;
  /// A Split's outputs can be slices of its input instead of copies (no step): where each slice
  /// is contiguous, or every reader of a strided one reads strided inputs (strided_input, or its
  /// op is in strided_input_ops).
  bool split_in_place = false;
  /// Ops whose steps read strided inputs even where strided_input is false (the GPU's Attention
  /// takes any row stride).
  std::set<std::string> strided_input_ops;
  /// Elementwise steps (and conv + residual add) may write over an input that dies there.
  bool in_place = false;
  /// Reshape, Flatten, Squeeze and Unsqueeze of a contiguous tensor cost nothing (a view).
  bool view_ops = false;
  std::size_t alignment = 64;  ///< byte alignment of every arena offset
  /// The float format its steps compute in ("fp32", "fp16", "bf16"); steps on 8-bit integers
  /// compute in INT8 whatever it is (Plan::step_precision).
  std::string precision = "fp32";

  bool can_fuse(const std::string& f) const { return fusions.count(f) != 0; }
  /// Whether a step of `op` may read a strided input.
  bool reads_strided(const std::string& op) const {
    return strided_input || strided_input_ops.count(op) != 0;
  }
  bool is_pointwise(const std::string& op) const { return pointwise_ops.count(op) != 0; }
  /// Layouts `op` takes (NCHW when not listed).
  std::vector<Layout> layouts_of(const std::string& op) const;
  /// One line per capability, for `kiln inspect` and golden dumps.
  std::string describe() const;
};

/// Unary elementwise ops that every back end of kiln knows as activations.
const std::set<std::string>& activation_ops();
/// Every elementwise op (unary and binary with broadcasting) the builder may fuse.
const std::set<std::string>& elementwise_ops();

/// The CPU reference: runs every fusion, strided outputs and inputs, in place, views; NCHW.
const Target& cpu_reference_target();
/// A target that fuses nothing and aliases nothing (each layer one step): for tests and
/// comparisons.
const Target& plain_target();
/// The CUDA runtime's targets by name (the one place they are spelled; kiln/runtime/engine.hpp
/// names them too, as these).
inline constexpr const char* kCudaTarget = "cuda";
inline constexpr const char* kCudaFp16Target = "cuda-fp16";
inline constexpr const char* kCudaBf16Target = "cuda-bf16";
/// The CUDA runtime's targets: "cuda" (FP32, NCHW) and "cuda-fp16" (FP16, NHWC where it pays);
/// "cuda-bf16" (by name) is cuda-fp16's plan for an engine that stores BF16.
const Target& cuda_target(bool fp16);
/// The target of a name ("cpu-reference", "plain", "cuda", "cuda-fp16", "cuda-bf16"); throws
/// UnsupportedError listing the known.
const Target& target_by_name(const std::string& name);
/// Registers a target (the CUDA runtime describes its GPUs this way); replaces one of the same
/// name.
void register_target(Target t);

}  // namespace kiln::plan
