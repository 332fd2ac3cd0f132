#include "device_util.cuh"
#include "softmax.cuh"

namespace kiln::kernels {

namespace {
constexpr int kRowThreads = 256;

/// inner == 1: one block per row, reductions through warps and shared memory.
template <class T, bool Log>
__global__ void softmax_rows(const T* x, T* y, std::int64_t rows, std::int64_t n) {
  __shared__ float red[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    float m = -INFINITY;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, detail::load(xr, j));
    m = detail::warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
      float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : -INFINITY;
      v = detail::warp_max(v);
      if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    m = red[0];
    __syncthreads();
    float s = 0.f;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(detail::load(xr, j) - m);
    s = detail::warp_sum(s);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
      float v = threadIdx.x < blockDim.x / 32 ? red[threadIdx.x] : 0.f;
      v = detail::warp_sum(v);
      if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    s = red[0];
    __syncthreads();
    const float ls = logf(s), inv = 1.f / s;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const float v = detail::load(xr, j) - m;
      detail::store(yr, j, Log ? v - ls : expf(v) * inv);
    }
  }
}

/// inner > 1: one thread per (outer, inner) column, coalesced across inner.
template <class T, bool Log>
__global__ void softmax_columns(const T* x, T* y, std::int64_t outer, std::int64_t n,
                                std::int64_t inner) {
  KILN_GRID_LOOP(c, outer * inner) {
    const std::int64_t o = c / inner, in = c - o * inner;
    const std::int64_t base = o * n * inner + in;
    float m = -INFINITY;
    for (std::int64_t j = 0; j < n; ++j) m = fmaxf(m, detail::load(x, base + j * inner));
    float s = 0.f;
    for (std::int64_t j = 0; j < n; ++j) s += expf(detail::load(x, base + j * inner) - m);
    const float ls = logf(s), inv = 1.f / s;
    for (std::int64_t j = 0; j < n; ++j) {
      const float v = detail::load(x, base + j * inner) - m;
      detail::store(y, base + j * inner, Log ? v - ls : expf(v) * inv);
    }
  }
}
}  // namespace

cudaError_t softmax(Elem elem, bool log, std::int64_t outer, std::int64_t n, std::int64_t inner,
                    const void* x, void* y, cudaStream_t stream) {
  if (outer * n * inner == 0) return cudaSuccess;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* xt = static_cast<const T*>(x);
    T* yt = static_cast<T*>(y);
    if (inner == 1) {
      const unsigned blocks = static_cast<unsigned>(outer < 65535 * 16 ? outer : 65535 * 16);
      if (log)
        softmax_rows<T, true><<<blocks, kRowThreads, 0, stream>>>(xt, yt, outer, n);
      else
        softmax_rows<T, false><<<blocks, kRowThreads, 0, stream>>>(xt, yt, outer, n);
    } else {
      const unsigned blocks = detail::grid_for(outer * inner, 256);
      if (log)
        softmax_columns<T, true><<<blocks, 256, 0, stream>>>(xt, yt, outer, n, inner);
      else
        softmax_columns<T, false><<<blocks, 256, 0, stream>>>(xt, yt, outer, n, inner);
    }
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
