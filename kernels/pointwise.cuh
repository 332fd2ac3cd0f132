// Pointwise kernels: activations, binary elementwise ops with broadcasting on up to 8-D (through
// strides), and fused chains of both, all computed in float registers in one pass. Plain
// pointers, sizes and a stream (no kiln headers).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// Unary ops; alpha and beta are the op's attributes where it has any (ONNX names):
/// leaky_relu alpha; elu alpha; selu alpha, gamma=beta; celu alpha; hard_sigmoid alpha, beta;
/// clip min=alpha, max=beta; thresholded_relu alpha; swish alpha; shrink lambd=alpha, bias=beta.
enum class Activation : int {
  relu = 0, sigmoid = 1, tanh = 2, identity, leaky_relu, elu, selu, celu, gelu, gelu_tanh,
  softplus, softsign, hard_sigmoid, hard_swish, clip, thresholded_relu, mish, swish, abs, neg,
  exp, log, sqrt, reciprocal, erf, floor, ceil, round, sign, sin, cos, tan, shrink,
  count_
};

/// Binary ops: y = a op b. prelu: a < 0 ? a * b : a. mod: C fmod (ONNX fmod=1).
enum class Binary : int { add = 0, sub, mul, div, pow, max, min, prelu, mod, count_ };

inline constexpr int kMaxChainSteps = 8;

/// One step of a chain acting on the running value v.
struct PointwiseStep {
  enum Kind : int { unary = 0, binary = 1, binary_reversed = 2 };
  Kind kind = unary;
  int op = 0;  ///< an Activation (unary) or a Binary
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
cudaError_t binary(Elem elem, Binary op, const Dims& dims, const void* a, const Strides& a_strides,
                   const void* b, const Strides& b_strides, void* y, cudaStream_t stream);

}  // namespace kiln::kernels
