#include <cmath>

#include "detection.cuh"
#include "device_util.cuh"

namespace kiln::kernels {

namespace {

/// The bilinear value of plane [h, w] at (y, x): 0 outside [-1, size]; for max mode the largest
/// of the four weighted corners (ONNX's RoiAlign max), else their sum.
template <class T>
__device__ float bilinear(const T* plane, float y, float x, std::int64_t h, std::int64_t w,
                          bool max_mode) {
  if (y < -1.f || y > static_cast<float>(h) || x < -1.f || x > static_cast<float>(w)) return 0.f;
  y = fmaxf(y, 0.f);
  x = fmaxf(x, 0.f);
  std::int64_t y0 = static_cast<std::int64_t>(y), x0 = static_cast<std::int64_t>(x), y1, x1;
  if (y0 >= h - 1)
    y1 = y0 = h - 1, y = static_cast<float>(y0);
  else
    y1 = y0 + 1;
  if (x0 >= w - 1)
    x1 = x0 = w - 1, x = static_cast<float>(x0);
  else
    x1 = x0 + 1;
  const float ly = y - static_cast<float>(y0), lx = x - static_cast<float>(x0);
  const float hy = 1.f - ly, hx = 1.f - lx;
  const float v00 = hy * hx * detail::load(plane, y0 * w + x0);
  const float v01 = hy * lx * detail::load(plane, y0 * w + x1);
  const float v10 = ly * hx * detail::load(plane, y1 * w + x0);
  const float v11 = ly * lx * detail::load(plane, y1 * w + x1);
  return max_mode ? fmaxf(fmaxf(v00, v01), fmaxf(v10, v11)) : v00 + v01 + v10 + v11;
}

template <class T>
__global__ void roi_align_kernel(RoiAlignArgs a, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t pw = i % a.out_w, ph = (i / a.out_w) % a.out_h;
    const std::int64_t c = (i / (a.out_w * a.out_h)) % a.channels;
    const std::int64_t r = i / (a.out_w * a.out_h * a.channels);
    const std::int64_t b = a.batch_indices[r];
    if (b < 0 || b >= a.batch) {
      detail::store(static_cast<T*>(a.y), i, NAN);
      continue;
    }
    const T* roi = static_cast<const T*>(a.boxes) + r * 4;
    const float off = a.half_pixel ? 0.5f : 0.f;
    const float x0 = detail::load(roi, 0) * a.spatial_scale - off;
    const float y0 = detail::load(roi, 1) * a.spatial_scale - off;
    float rw = detail::load(roi, 2) * a.spatial_scale - off - x0;
    float rh = detail::load(roi, 3) * a.spatial_scale - off - y0;
    if (!a.half_pixel) rw = fmaxf(rw, 1.f), rh = fmaxf(rh, 1.f);
    const float bin_h = rh / static_cast<float>(a.out_h), bin_w = rw / static_cast<float>(a.out_w);
    const std::int64_t gh =
        a.sampling_ratio > 0 ? a.sampling_ratio
                             : static_cast<std::int64_t>(ceilf(rh / static_cast<float>(a.out_h)));
    const std::int64_t gw =
        a.sampling_ratio > 0 ? a.sampling_ratio
                             : static_cast<std::int64_t>(ceilf(rw / static_cast<float>(a.out_w)));
    const T* plane = static_cast<const T*>(a.x) + (b * a.channels + c) * a.height * a.width;
    float v = 0.f;
    bool first = true;
    for (std::int64_t iy = 0; iy < gh; ++iy) {
      const float yy = y0 + static_cast<float>(ph) * bin_h +
                       (static_cast<float>(iy) + 0.5f) * bin_h / static_cast<float>(gh);
      for (std::int64_t ix = 0; ix < gw; ++ix) {
        const float xx = x0 + static_cast<float>(pw) * bin_w +
                         (static_cast<float>(ix) + 0.5f) * bin_w / static_cast<float>(gw);
        const float s = bilinear(plane, yy, xx, a.height, a.width, a.max_mode);
        if (a.max_mode)
          v = first ? s : fmaxf(v, s);
        else
          v += s;
        first = false;
      }
    }
    const float count = static_cast<float>(gh * gw > 1 ? gh * gw : 1);
    detail::store(static_cast<T*>(a.y), i, a.max_mode ? v : v / count);
  }
}

template <class T>
__global__ void max_roi_pool_kernel(MaxRoiPoolArgs a, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t pw = i % a.pooled_w, ph = (i / a.pooled_w) % a.pooled_h;
    const std::int64_t c = (i / (a.pooled_w * a.pooled_h)) % a.channels;
    const std::int64_t r = i / (a.pooled_w * a.pooled_h * a.channels);
    const T* roi = static_cast<const T*>(a.boxes) + r * 5;
    const float bf = detail::load(roi, 0);
    const std::int64_t b = static_cast<std::int64_t>(bf);
    if (bf != static_cast<float>(b) || b < 0 || b >= a.batch) {
      detail::store(static_cast<T*>(a.y), i, NAN);
      continue;
    }
    const std::int64_t x0 =
        static_cast<std::int64_t>(roundf(detail::load(roi, 1) * a.spatial_scale));
    const std::int64_t y0 =
        static_cast<std::int64_t>(roundf(detail::load(roi, 2) * a.spatial_scale));
    const std::int64_t x1 =
        static_cast<std::int64_t>(roundf(detail::load(roi, 3) * a.spatial_scale));
    const std::int64_t y1 =
        static_cast<std::int64_t>(roundf(detail::load(roi, 4) * a.spatial_scale));
    const float bin_h =
        static_cast<float>(y1 - y0 + 1 > 1 ? y1 - y0 + 1 : 1) / static_cast<float>(a.pooled_h);
    const float bin_w =
        static_cast<float>(x1 - x0 + 1 > 1 ? x1 - x0 + 1 : 1) / static_cast<float>(a.pooled_w);
    auto clip = [](std::int64_t v, std::int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); };
    const std::int64_t hs =
        clip(static_cast<std::int64_t>(floorf(static_cast<float>(ph) * bin_h)) + y0, a.height);
    const std::int64_t he =
        clip(static_cast<std::int64_t>(ceilf(static_cast<float>(ph + 1) * bin_h)) + y0, a.height);
    const std::int64_t ws =
        clip(static_cast<std::int64_t>(floorf(static_cast<float>(pw) * bin_w)) + x0, a.width);
    const std::int64_t we =
        clip(static_cast<std::int64_t>(ceilf(static_cast<float>(pw + 1) * bin_w)) + x0, a.width);
    const T* plane = static_cast<const T*>(a.x) + (b * a.channels + c) * a.height * a.width;
    float m = 0.f;
    bool any = false;
    for (std::int64_t yy = hs; yy < he; ++yy)
      for (std::int64_t xx = ws; xx < we; ++xx) {
        const float v = detail::load(plane, yy * a.width + xx);
        m = any ? fmaxf(m, v) : v;
        any = true;
      }
    detail::store(static_cast<T*>(a.y), i, m);
  }
}

}  // namespace

cudaError_t roi_align(Elem elem, const RoiAlignArgs& a, cudaStream_t stream) {
  const std::int64_t n = a.rois * a.channels * a.out_h * a.out_w;
  if (n == 0) return cudaSuccess;
  if (a.height <= 0 || a.width <= 0) return cudaErrorInvalidValue;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    roi_align_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(a, n);
    return cudaGetLastError();
  });
}

cudaError_t max_roi_pool(Elem elem, const MaxRoiPoolArgs& a, cudaStream_t stream) {
  const std::int64_t n = a.rois * a.channels * a.pooled_h * a.pooled_w;
  if (n == 0) return cudaSuccess;
  if (a.height <= 0 || a.width <= 0) return cudaErrorInvalidValue;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    max_roi_pool_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(a, n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
