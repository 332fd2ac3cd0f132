// Pointwise kernels: activations, binary elementwise ops with broadcasting on up to 8-D (through
// strides), and fused chains of both, all computed in float registers in one pass. Plain
// pointers, sizes and a stream (no kiln headers).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// Every pointwise op, one value per row of include/kiln/ir/pointwise_ops.def (which names the
/// ONNX op and the attributes each reads as alpha and beta): the unary rows, then the binary ones
/// (y = a op b; prelu: a < 0 ? a * b : a; mod: C fmod, ONNX fmod=1). The table includes nothing;
/// the build copies it next to the kernels (kernels/meson.build), so no kiln header is on their
/// include path.
enum class PointwiseOp : int {
#define KILN_POINTWISE_UNARY(op, ...) op,
#define KILN_POINTWISE_BINARY(op, ...) op,
#include "pointwise_ops.def"
  count_
};

/// A unary PointwiseOp (the activation a convolution, matrix product or affine step applies).
using Activation = PointwiseOp;

/// True for the unary rows of the table.
constexpr bool is_unary(PointwiseOp op) {
  switch (op) {
#define KILN_POINTWISE_UNARY(o, ...) \
  case PointwiseOp::o: return true;
#define KILN_POINTWISE_BINARY(o, ...) \
  case PointwiseOp::o: return false;
#include "pointwise_ops.def"
    case PointwiseOp::count_: return false;
  }
  return false;
}
/// True for the ops of the table (not count_ or a value out of range).
constexpr bool is_op(PointwiseOp op) {
  return static_cast<int>(op) >= 0 && static_cast<int>(op) < static_cast<int>(PointwiseOp::count_);
}

inline constexpr int kMaxChainSteps = 8;

/// One step of a chain acting on the running value v.
struct PointwiseStep {
  enum Kind : int { unary = 0, binary = 1, binary_reversed = 2 };
  Kind kind = unary;
  PointwiseOp op = PointwiseOp::identity;  ///< unary for kind unary, binary otherwise
  float alpha = 0.f, beta = 0.f;
  /// binary: v = v op operand[...]; binary_reversed: v = operand[...] op v. Same Elem as x.
  const void* operand = nullptr;
  Strides strides;  ///< operand strides over the output dims (0 broadcasts)
};

/// y = step_k(... step_1(x) ...), y contiguous over `dims`, x read through `x_strides`.
struct PointwiseChain {
  Dims dims;
  Strides x_strides;
  int steps = 0;
  PointwiseStep step[kMaxChainSteps];
};

/// Runs a chain (x and y may alias when x is contiguous). Returns the launch's error;
/// cudaErrorInvalidValue for a bad op or step count.
cudaError_t pointwise_chain(Elem elem, const PointwiseChain& chain, const void* x, void* y,
                            cudaStream_t stream);

/// y[i] = act(x[i]) for i < n (x and y may alias).
cudaError_t activation(Elem elem, Activation act, float alpha, float beta, const void* x, void* y,
                       std::int64_t n, cudaStream_t stream);

/// f32 shorthand kept for existing callers.
cudaError_t activation_f32(Activation act, const float* x, float* y, std::int64_t n,
                           cudaStream_t stream);

/// y = a op b with broadcasting: y contiguous over `dims`; a and b read through their strides.
cudaError_t binary(Elem elem, PointwiseOp op, const Dims& dims, const void* a,
                   const Strides& a_strides, const void* b, const Strides& b_strides, void* y,
                   cudaStream_t stream);

}  // namespace kiln::kernels
