// Device-side math of the pointwise ops (never included by host C++): one definition shared
// by the chain kernel and the kernels that fuse an activation (norm.cu).
#pragma once

#include "device_util.cuh"
#include "pointwise.cuh"

namespace kiln::kernels::detail {

__device__ __forceinline__ float sigmoidf(float v) { return 1.f / (1.f + expf(-v)); }

__device__ __forceinline__ float apply_unary(int op, float v, float a, float b) {
  switch (static_cast<Activation>(op)) {
    case Activation::relu: return v > 0.f ? v : 0.f;
    case Activation::sigmoid: return sigmoidf(v);
    case Activation::tanh: return tanhf(v);
    case Activation::identity: return v;
    case Activation::leaky_relu: return v >= 0.f ? v : a * v;
    case Activation::elu: return v >= 0.f ? v : a * (expf(v) - 1.f);
    case Activation::selu: return v > 0.f ? b * v : b * (a * expf(v) - a);
    case Activation::celu: return fmaxf(0.f, v) + fminf(0.f, a * (expf(v / a) - 1.f));
    case Activation::gelu: return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    case Activation::gelu_tanh:
      return 0.5f * v * (1.f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    case Activation::softplus: return v > 20.f ? v : log1pf(expf(v));
    case Activation::softsign: return v / (1.f + fabsf(v));
    case Activation::hard_sigmoid: return fmaxf(0.f, fminf(1.f, a * v + b));
    case Activation::hard_swish: return v * fmaxf(0.f, fminf(1.f, v / 6.f + 0.5f));
    case Activation::clip: return fminf(fmaxf(v, a), b);
    case Activation::thresholded_relu: return v > a ? v : 0.f;
    case Activation::mish: return v * tanhf(v > 20.f ? v : log1pf(expf(v)));
    case Activation::swish: return v * sigmoidf(a * v);
    case Activation::abs: return fabsf(v);
    case Activation::neg: return -v;
    case Activation::exp: return expf(v);
    case Activation::log: return logf(v);
    case Activation::sqrt: return sqrtf(v);
    case Activation::reciprocal: return 1.f / v;
    case Activation::erf: return erff(v);
    case Activation::floor: return floorf(v);
    case Activation::ceil: return ceilf(v);
    case Activation::round: return rintf(v);
    case Activation::sign: return v > 0.f ? 1.f : (v < 0.f ? -1.f : 0.f);
    case Activation::sin: return sinf(v);
    case Activation::cos: return cosf(v);
    case Activation::tan: return tanf(v);
    case Activation::shrink: return v < -a ? v + b : (v > a ? v - b : 0.f);
    default: return __int_as_float(0x7fc00000);
  }
}

__device__ __forceinline__ float apply_binary(int op, float x, float y) {
  switch (static_cast<Binary>(op)) {
    case Binary::add: return x + y;
    case Binary::sub: return x - y;
    case Binary::mul: return x * y;
    case Binary::div: return x / y;
    case Binary::pow: return powf(x, y);
    case Binary::max: return fmaxf(x, y);
    case Binary::min: return fminf(x, y);
    case Binary::prelu: return x < 0.f ? x * y : x;
    case Binary::mod: return fmodf(x, y);
    default: return __int_as_float(0x7fc00000);
  }
}

}  // namespace kiln::kernels::detail
