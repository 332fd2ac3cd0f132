#include "device_util.cuh"
#include "resize.cuh"

namespace kiln::kernels {

namespace {
__device__ double source_coord(CoordMode m, int x, double scale, int in, int out) {
  switch (m) {
    case CoordMode::half_pixel: return (x + 0.5) / scale - 0.5;
    case CoordMode::half_pixel_symmetric: {
      const double adjustment = out / (scale * in);
      const double center = in / 2.0;
      return center * (1.0 - adjustment) + (x + 0.5) / scale - 0.5;
    }
    case CoordMode::pytorch_half_pixel: return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CoordMode::align_corners:
      return out == 1 ? 0.0 : x * static_cast<double>(in - 1) / (out - 1);
    case CoordMode::asymmetric: return x / scale;
    case CoordMode::tf_half_pixel_for_nn: return (x + 0.5) / scale;
  }
  return 0.0;
}

__device__ int nearest_index(NearestMode m, double c, int in) {
  double r;
  switch (m) {
    case NearestMode::round_prefer_floor: r = (c - floor(c) == 0.5) ? floor(c) : round(c); break;
    case NearestMode::round_prefer_ceil: r = (c - floor(c) == 0.5) ? ceil(c) : round(c); break;
    case NearestMode::floor: r = floor(c); break;
    default: r = ceil(c); break;
  }
  const int i = static_cast<int>(r);
  return i < 0 ? 0 : (i >= in ? in - 1 : i);
}

template <class T>
__global__ void resize_kernel(const Resize2d r, const T* __restrict__ x, T* __restrict__ y,
                              std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const int ow = static_cast<int>(i % r.out_w);
    const int oh = static_cast<int>((i / r.out_w) % r.out_h);
    const std::int64_t plane = i / (static_cast<std::int64_t>(r.out_w) * r.out_h);
    const T* xp = x + plane * r.in_h * r.in_w;
    const double ch = source_coord(r.coord, oh, r.scale_h, r.in_h, r.out_h);
    const double cw = source_coord(r.coord, ow, r.scale_w, r.in_w, r.out_w);
    float v;
    if (r.mode == ResizeMode::nearest) {
      v = detail::load(xp,
                       static_cast<std::int64_t>(nearest_index(r.nearest, ch, r.in_h)) * r.in_w +
                           nearest_index(r.nearest, cw, r.in_w));
    } else {
      const double fh = floor(ch), fw = floor(cw);
      const float th = static_cast<float>(ch - fh), tw = static_cast<float>(cw - fw);
      const int h0 = min(max(static_cast<int>(fh), 0), r.in_h - 1),
                h1 = min(max(static_cast<int>(fh) + 1, 0), r.in_h - 1);
      const int w0 = min(max(static_cast<int>(fw), 0), r.in_w - 1),
                w1 = min(max(static_cast<int>(fw) + 1, 0), r.in_w - 1);
      const float a = detail::load(xp, static_cast<std::int64_t>(h0) * r.in_w + w0);
      const float b = detail::load(xp, static_cast<std::int64_t>(h0) * r.in_w + w1);
      const float c = detail::load(xp, static_cast<std::int64_t>(h1) * r.in_w + w0);
      const float d = detail::load(xp, static_cast<std::int64_t>(h1) * r.in_w + w1);
      const float top = a + (b - a) * tw, bottom = c + (d - c) * tw;
      v = top + (bottom - top) * th;
    }
    detail::store(y, i, v);
  }
}
}  // namespace

cudaError_t resize2d(Elem elem, const Resize2d& r, const void* x, void* y, cudaStream_t stream) {
  if (r.in_h < 1 || r.in_w < 1 || r.scale_h <= 0 || r.scale_w <= 0) return cudaErrorInvalidValue;
  const std::int64_t n = r.outer * r.out_h * r.out_w;
  if (n == 0) return cudaSuccess;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    resize_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(r, static_cast<const T*>(x),
                                                                   static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
