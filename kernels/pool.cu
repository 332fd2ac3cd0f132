#include "device_util.cuh"
#include "pool.cuh"

namespace kiln::kernels {

namespace {
template <class T, PoolMode M>
__global__ void pool2d_kernel(const Pool2d p, const T* __restrict__ x, T* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const int ow = static_cast<int>(i % p.out_w);
    const int oh = static_cast<int>((i / p.out_w) % p.out_h);
    const std::int64_t plane = i / (static_cast<std::int64_t>(p.out_w) * p.out_h);
    const T* xp = x + plane * p.in_h * p.in_w;
    const int h0 = oh * p.stride_h - p.pad_top, w0 = ow * p.stride_w - p.pad_left;
    float acc = M == PoolMode::max ? -INFINITY : 0.f;
    int valid = 0;
    for (int kh = 0; kh < p.k_h; ++kh) {
      const int h = h0 + kh * p.dil_h;
      if (h < 0 || h >= p.in_h) continue;
      for (int kw = 0; kw < p.k_w; ++kw) {
        const int w = w0 + kw * p.dil_w;
        if (w < 0 || w >= p.in_w) continue;
        const float v = detail::load(xp, static_cast<std::int64_t>(h) * p.in_w + w);
        if constexpr (M == PoolMode::max) acc = fmaxf(acc, v);
        else acc += v;
        ++valid;
      }
    }
    if constexpr (M == PoolMode::average) {
      int count = valid;
      if (p.count_include_pad) {
        // window clipped to the padded input [-pad_begin, in + pad_end)
        const int hs = max(h0, -p.pad_top), he = min(h0 + (p.k_h - 1) * p.dil_h, p.in_h + p.pad_bottom - 1);
        const int ws = max(w0, -p.pad_left), we = min(w0 + (p.k_w - 1) * p.dil_w, p.in_w + p.pad_right - 1);
        const int ch = he < hs ? 0 : (he - hs) / p.dil_h + 1;
        const int cw = we < ws ? 0 : (we - ws) / p.dil_w + 1;
        count = ch * cw;
      }
      acc = count > 0 ? acc / static_cast<float>(count) : 0.f;
    }
    detail::store(y, i, acc);
  }
}
}  // namespace

cudaError_t pool2d(Elem elem, PoolMode mode, const Pool2d& p, const void* x, void* y,
                   cudaStream_t stream) {
  if (p.k_h < 1 || p.k_w < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1)
    return cudaErrorInvalidValue;
  const std::int64_t n = p.planes * p.out_h * p.out_w;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = detail::grid_for(n, threads);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (mode == PoolMode::max)
      pool2d_kernel<T, PoolMode::max><<<blocks, threads, 0, stream>>>(p, static_cast<const T*>(x), static_cast<T*>(y), n);
    else
      pool2d_kernel<T, PoolMode::average><<<blocks, threads, 0, stream>>>(p, static_cast<const T*>(x), static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
