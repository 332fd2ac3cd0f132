#include "device_util.cuh"
#include "pool.cuh"

namespace kiln::kernels {

namespace {
/// Output element i: NCHW walks (plane, oh, ow); NHWC walks (n, oh, ow, c) with c fastest and
/// reads x at stride C.
template <class T, PoolMode M, bool Nhwc>
__global__ void pool2d_kernel(const Pool2d p, std::int64_t channels, const T* __restrict__ x,
                              T* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    std::int64_t rest = i, cstride = 1;
    const T* xp = x;
    if constexpr (Nhwc) {
      const std::int64_t c = rest % channels;
      rest /= channels;
      const std::int64_t img = rest / (static_cast<std::int64_t>(p.out_w) * p.out_h);
      xp = x + img * p.in_h * p.in_w * channels + c;
      cstride = channels;
    }
    const int ow = static_cast<int>(rest % p.out_w);
    const int oh = static_cast<int>((rest / p.out_w) % p.out_h);
    if constexpr (!Nhwc) {
      const std::int64_t plane = rest / (static_cast<std::int64_t>(p.out_w) * p.out_h);
      xp = x + plane * p.in_h * p.in_w;
    }
    const int h0 = oh * p.stride_h - p.pad_top, w0 = ow * p.stride_w - p.pad_left;
    float acc = M == PoolMode::max ? -INFINITY : 0.f;
    int valid = 0;
    for (int kh = 0; kh < p.k_h; ++kh) {
      const int h = h0 + kh * p.dil_h;
      if (h < 0 || h >= p.in_h) continue;
      for (int kw = 0; kw < p.k_w; ++kw) {
        const int w = w0 + kw * p.dil_w;
        if (w < 0 || w >= p.in_w) continue;
        const float v = detail::load(xp, (static_cast<std::int64_t>(h) * p.in_w + w) * cstride);
        if constexpr (M == PoolMode::max)
          acc = fmaxf(acc, v);
        else
          acc += v;
        ++valid;
      }
    }
    if constexpr (M == PoolMode::average) {
      int count = valid;
      if (p.count_include_pad) {
        // window clipped to the padded input [-pad_begin, in + pad_end)
        const int hs = max(h0, -p.pad_top),
                  he = min(h0 + (p.k_h - 1) * p.dil_h, p.in_h + p.pad_bottom - 1);
        const int ws = max(w0, -p.pad_left),
                  we = min(w0 + (p.k_w - 1) * p.dil_w, p.in_w + p.pad_right - 1);
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

namespace {
template <bool Nhwc>
cudaError_t launch_pool(Elem elem, PoolMode mode, const Pool2d& p, std::int64_t channels,
                        const void* x, void* y, cudaStream_t stream) {
  if (p.k_h < 1 || p.k_w < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1)
    return cudaErrorInvalidValue;
  const std::int64_t n = p.planes * p.out_h * p.out_w;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = detail::grid_for(n, threads);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (mode == PoolMode::max)
      pool2d_kernel<T, PoolMode::max, Nhwc><<<blocks, threads, 0, stream>>>(
          p, channels, static_cast<const T*>(x), static_cast<T*>(y), n);
    else
      pool2d_kernel<T, PoolMode::average, Nhwc><<<blocks, threads, 0, stream>>>(
          p, channels, static_cast<const T*>(x), static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}
}  // namespace

cudaError_t pool2d(Elem elem, PoolMode mode, const Pool2d& p, const void* x, void* y,
                   cudaStream_t stream) {
  return launch_pool<false>(elem, mode, p, 1, x, y, stream);
}

cudaError_t pool2d_nhwc(Elem elem, PoolMode mode, const Pool2d& p, std::int64_t channels,
                        const void* x, void* y, cudaStream_t stream) {
  if (channels < 1 || p.planes % channels != 0) return cudaErrorInvalidValue;
  return launch_pool<true>(elem, mode, p, channels, x, y, stream);
}

cudaError_t max_pool2d_s8(const Pool2d& p, bool nhwc, std::int64_t channels, const void* x, void* y,
                          cudaStream_t stream) {
  if (p.k_h < 1 || p.k_w < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 ||
      (nhwc && (channels < 1 || p.planes % channels != 0)))
    return cudaErrorInvalidValue;
  const std::int64_t n = p.planes * p.out_h * p.out_w;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = detail::grid_for(n, threads);
  const auto* xs = static_cast<const std::int8_t*>(x);
  auto* ys = static_cast<std::int8_t*>(y);
  if (nhwc)
    pool2d_kernel<std::int8_t, PoolMode::max, true>
        <<<blocks, threads, 0, stream>>>(p, channels, xs, ys, n);
  else
    pool2d_kernel<std::int8_t, PoolMode::max, false>
        <<<blocks, threads, 0, stream>>>(p, 1, xs, ys, n);
  return cudaGetLastError();
}

}  // namespace kiln::kernels
