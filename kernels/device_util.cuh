// Device-side helpers shared by the .cu files (never included by host C++).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_types.cuh"

namespace kiln::kernels::detail {

__device__ __forceinline__ float load(const float* p, std::int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, std::int64_t i) {
  return __half2float(p[i]);
}
__device__ __forceinline__ float load(const __nv_bfloat16* p, std::int64_t i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ float load(const std::int8_t* p, std::int64_t i) {
  return static_cast<float>(p[i]);
}
__device__ __forceinline__ void store(float* p, std::int64_t i, float v) { p[i] = v; }
/// An int8 store of a value that is already an int8 (a max over int8 inputs).
__device__ __forceinline__ void store(std::int8_t* p, std::int64_t i, float v) {
  p[i] = static_cast<std::int8_t>(fminf(fmaxf(rintf(v), -128.f), 127.f));
}
__device__ __forceinline__ void store(__half* p, std::int64_t i, float v) {
  p[i] = __float2half_rn(v);
}
__device__ __forceinline__ void store(__nv_bfloat16* p, std::int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

/// Offset of linear row-major index `i` over `dims` in a view with `strides`.
__device__ __forceinline__ std::int64_t offset_of(std::int64_t i, const Dims& dims,
                                                  const Strides& strides) {
  std::int64_t off = 0;
#pragma unroll
  for (int k = kMaxDims - 1; k >= 0; --k) {
    if (k < dims.rank) {
      const std::int64_t q = i / dims.d[k];
      off += (i - q * dims.d[k]) * strides.s[k];
      i = q;
    }
  }
  return off;
}

/// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(std::int64_t n, int threads, std::int64_t cap = 65535LL * 8) {
  std::int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < cap ? b : cap);
}

#define KILN_GRID_LOOP(i, n)                                                                       \
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)

/// Dispatches on Elem: F is a generic lambda taking a null pointer of the element type.
template <class F>
cudaError_t dispatch(Elem e, F&& f) {
  switch (e) {
    case Elem::f32: return f(static_cast<float*>(nullptr));
    case Elem::f16: return f(static_cast<__half*>(nullptr));
    case Elem::bf16: return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return cudaErrorInvalidValue;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_prod(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v *= __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace kiln::kernels::detail
