#include "device_util.cuh"
#include "reduce.cuh"

namespace kiln::kernels {

namespace {
struct Acc {
  Reduction op;
  __device__ float init() const {
    switch (op) {
      case Reduction::max: return -INFINITY;
      case Reduction::min: return INFINITY;
      case Reduction::prod: return 1.f;
      default: return 0.f;
    }
  }
  __device__ float add(float a, float v, float shift) const {
    switch (op) {
      case Reduction::max: return fmaxf(a, v);
      case Reduction::min: return fminf(a, v);
      case Reduction::prod: return a * v;
      case Reduction::l1: return a + fabsf(v);
      case Reduction::l2:
      case Reduction::sum_square: return a + v * v;
      case Reduction::log_sum_exp: return a + expf(v - shift);
      default: return a + v;
    }
  }
  __device__ float combine(float a, float b) const {
    switch (op) {
      case Reduction::max: return fmaxf(a, b);
      case Reduction::min: return fminf(a, b);
      case Reduction::prod: return a * b;
      default: return a + b;
    }
  }
  __device__ float finish(float a, std::int64_t count, float shift) const {
    switch (op) {
      case Reduction::mean: return a / static_cast<float>(count);
      case Reduction::l2: return sqrtf(a);
      case Reduction::log_sum: return logf(a);
      case Reduction::log_sum_exp: return logf(a) + shift;
      default: return a;
    }
  }
};

__device__ __forceinline__ float warp_combine(const Acc& acc, float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = acc.combine(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// One warp per output element (the reduced elements are many).
template <class T>
__global__ void reduce_warp(const ReduceDesc d, Reduction op, const T* __restrict__ x,
                            T* __restrict__ y, std::int64_t outs, std::int64_t count) {
  const Acc acc{op};
  const int lane = threadIdx.x & 31;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t o = blockIdx.x * static_cast<std::int64_t>(blockDim.x / 32) + threadIdx.x / 32;
       o < outs; o += warps) {
    const std::int64_t base = detail::offset_of(o, d.out_dims, d.out_strides);
    float shift = 0.f;
    if (op == Reduction::log_sum_exp) {
      float m = -INFINITY;
      for (std::int64_t j = lane; j < count; j += 32)
        m = fmaxf(m, detail::load(x, base + detail::offset_of(j, d.red_dims, d.red_strides)));
      shift = detail::warp_max(m);
      if (isinf(shift)) shift = 0.f;
    }
    float a = acc.init();
    for (std::int64_t j = lane; j < count; j += 32)
      a = acc.add(a, detail::load(x, base + detail::offset_of(j, d.red_dims, d.red_strides)),
                  shift);
    a = warp_combine(acc, a);
    if (lane == 0) detail::store(y, o, acc.finish(a, count, shift));
  }
}

/// One thread per output element (few reduced elements, or outputs adjacent in memory).
template <class T>
__global__ void reduce_thread(const ReduceDesc d, Reduction op, const T* __restrict__ x,
                              T* __restrict__ y, std::int64_t outs, std::int64_t count) {
  const Acc acc{op};
  KILN_GRID_LOOP(o, outs) {
    const std::int64_t base = detail::offset_of(o, d.out_dims, d.out_strides);
    float shift = 0.f;
    if (op == Reduction::log_sum_exp) {
      float m = -INFINITY;
      for (std::int64_t j = 0; j < count; ++j)
        m = fmaxf(m, detail::load(x, base + detail::offset_of(j, d.red_dims, d.red_strides)));
      shift = isinf(m) ? 0.f : m;
    }
    float a = acc.init();
    for (std::int64_t j = 0; j < count; ++j)
      a = acc.add(a, detail::load(x, base + detail::offset_of(j, d.red_dims, d.red_strides)),
                  shift);
    detail::store(y, o, acc.finish(a, count, shift));
  }
}
}  // namespace

ReduceDesc reduce_desc(const Dims& dims, unsigned axes_mask) {
  const Strides st = contiguous_strides(dims);
  ReduceDesc d;
  for (int k = 0; k < dims.rank; ++k) {
    if (axes_mask & (1u << k)) {
      d.red_dims.d[d.red_dims.rank] = dims.d[k];
      d.red_strides.s[d.red_dims.rank++] = st.s[k];
    } else {
      d.out_dims.d[d.out_dims.rank] = dims.d[k];
      d.out_strides.s[d.out_dims.rank++] = st.s[k];
    }
  }
  return d;
}

cudaError_t reduce(Elem elem, Reduction op, const ReduceDesc& d, const void* x, void* y,
                   cudaStream_t stream) {
  if (static_cast<int>(op) < 0 || op >= Reduction::count_) return cudaErrorInvalidValue;
  const std::int64_t outs = d.out_dims.numel(), count = d.red_dims.numel();
  if (outs == 0) return cudaSuccess;
  // Warp per output when the reduction is long and its innermost dim is contiguous (or when
  // there are too few outputs to fill the GPU with threads).
  const bool inner_contiguous = d.red_dims.rank > 0 && d.red_strides.s[d.red_dims.rank - 1] == 1;
  const bool warp = count >= 64 && (inner_contiguous || outs < 4096);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (warp)
      reduce_warp<T><<<detail::grid_for(outs * 32, 256), 256, 0, stream>>>(
          d, op, static_cast<const T*>(x), static_cast<T*>(y), outs, count);
    else
      reduce_thread<T><<<detail::grid_for(outs, 256), 256, 0, stream>>>(
          d, op, static_cast<const T*>(x), static_cast<T*>(y), outs, count);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
