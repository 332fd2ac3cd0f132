// Device-side math of the pointwise ops (never included by host C++): one definition shared
// by the chain kernel and the kernels that fuse an activation (norm.cu).
#pragma once

#include "device_util.cuh"
#include "pointwise.cuh"

namespace kiln::kernels::detail {

__host__ __device__ __forceinline__ float sigmoidf(float v) { return 1.f / (1.f + expf(-v)); }

/// The device functor of every pointwise op: v op y for the binary ones, op(v) with the op's alpha
/// (a) and beta (b) for the unary ones (y unused). A switch without a default: a row of the table
/// (include/kiln/ir/pointwise_ops.def) without its case here is a -Wswitch warning. __host__ too,
/// so that the host compiler checks the switch.
__host__ __device__ __forceinline__ float apply(PointwiseOp op, float v, float y, float a,
                                                float b) {
  switch (op) {
    case PointwiseOp::relu: return v > 0.f ? v : 0.f;
    case PointwiseOp::sigmoid: return sigmoidf(v);
    case PointwiseOp::tanh: return tanhf(v);
    case PointwiseOp::identity: return v;
    case PointwiseOp::leaky_relu: return v >= 0.f ? v : a * v;
    case PointwiseOp::elu: return v >= 0.f ? v : a * (expf(v) - 1.f);
    case PointwiseOp::selu: return v > 0.f ? b * v : b * (a * expf(v) - a);
    case PointwiseOp::celu: return fmaxf(0.f, v) + fminf(0.f, a * (expf(v / a) - 1.f));
    case PointwiseOp::gelu: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case PointwiseOp::gelu_tanh:
      return 0.5f * v * (1.f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case PointwiseOp::softplus: return v > 20.f ? v : log1pf(expf(v));
    case PointwiseOp::softsign: return v / (1.f + fabsf(v));
    case PointwiseOp::hard_sigmoid: return fmaxf(0.f, fminf(1.f, a * v + b));
    case PointwiseOp::hard_swish: return v * fmaxf(0.f, fminf(1.f, v / 6.f + 0.5f));
    case PointwiseOp::clip: return fminf(fmaxf(v, a), b);
    case PointwiseOp::thresholded_relu: return v > a ? v : 0.f;
    case PointwiseOp::mish: return v * tanhf(v > 20.f ? v : log1pf(expf(v)));
    case PointwiseOp::swish: return v * sigmoidf(a * v);
    case PointwiseOp::abs: return fabsf(v);
    case PointwiseOp::neg: return -v;
    case PointwiseOp::exp: return expf(v);
    case PointwiseOp::log: return logf(v);
    case PointwiseOp::sqrt: return sqrtf(v);
    case PointwiseOp::reciprocal: return 1.f / v;
    case PointwiseOp::erf: return erff(v);
    case PointwiseOp::floor: return floorf(v);
    case PointwiseOp::ceil: return ceilf(v);
    case PointwiseOp::round: return rintf(v);
    case PointwiseOp::sign: return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f);
    case PointwiseOp::sin: return sinf(v);
    case PointwiseOp::cos: return cosf(v);
    case PointwiseOp::tan: return tanf(v);
    case PointwiseOp::shrink: return v < -a ? v + b : (v > a ? v - b : 0.f);
    case PointwiseOp::atan: return atanf(v);
    case PointwiseOp::add: return v + y;
    case PointwiseOp::sub: return v - y;
    case PointwiseOp::mul: return v * y;
    case PointwiseOp::div: return v / y;
    case PointwiseOp::pow: return powf(v, y);
    case PointwiseOp::max: return fmaxf(v, y);
    case PointwiseOp::min: return fminf(v, y);
    case PointwiseOp::prelu: return v < 0.f ? v * y : v;
    case PointwiseOp::mod: return fmodf(v, y);
    case PointwiseOp::count_: break;
  }
  return __builtin_nanf("");
}

}  // namespace kiln::kernels::detail
