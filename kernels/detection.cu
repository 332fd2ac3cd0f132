#include <cmath>

#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

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

// NonMaxSuppression.

/// A box's extents in double, as the reference computes them.
struct Extent {
  double x0, x1, y0, y1;
};

template <class T>
__device__ Extent box_extent(const T* b, bool center) {
  const double v0 = detail::load(b, 0), v1 = detail::load(b, 1), v2 = detail::load(b, 2),
               v3 = detail::load(b, 3);
  if (center) return {v0 - v2 / 2, v0 + v2 / 2, v1 - v3 / 2, v1 + v3 / 2};
  return {fmin(v1, v3), fmax(v1, v3), fmin(v0, v2), fmax(v0, v2)};
}

/// Whether box a suppresses box b (the reference's suppresses(), operation for operation).
__device__ bool suppresses(const Extent& a, const Extent& b, double iou_threshold) {
  const double ix0 = fmax(a.x0, b.x0), ix1 = fmin(a.x1, b.x1);
  if (ix1 <= ix0) return false;
  const double iy0 = fmax(a.y0, b.y0), iy1 = fmin(a.y1, b.y1);
  if (iy1 <= iy0) return false;
  const double inter = (ix1 - ix0) * (iy1 - iy0);
  const double area_a = (a.x1 - a.x0) * (a.y1 - a.y0), area_b = (b.x1 - b.x0) * (b.y1 - b.y0);
  const double uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

constexpr int kNmsTile = 256;

/// The workspace of nms(): scores as float keys before and after sorting, box indices before and
/// after, the row offsets, CUB's sort storage, per row its kept extents and box indices (cap of
/// each) and count, the counts' exclusive sum and CUB's scan storage, the output rows and count.
struct NmsLayout {
  std::int64_t rows = 0, items = 0, cap = 0;
  std::size_t keys_in = 0, keys_out = 0, idx_in = 0, idx_out = 0, offsets = 0, sort_temp = 0,
              sort_bytes = 0, kept_ext = 0, kept_box = 0, counts = 0, starts = 0, scan_temp = 0,
              scan_bytes = 0, out_rows = 0, out_count = 0, total = 0;
};

std::size_t nms_align(std::size_t n) { return (n + 255) / 256 * 256; }

cudaError_t nms_layout(const NmsArgs& a, NmsLayout& l) {
  if (a.batches < 0 || a.classes < 0 || a.boxes < 0 || a.capacity < 0) return cudaErrorInvalidValue;
  l.rows = a.batches * a.classes;
  l.items = l.rows * a.boxes;
  if (l.items >= (std::int64_t{1} << 31) || l.rows >= (std::int64_t{1} << 30))
    return cudaErrorInvalidValue;
  l.cap = a.capacity < a.boxes ? a.capacity : a.boxes;
  const auto items = static_cast<std::size_t>(l.items), rows = static_cast<std::size_t>(l.rows),
             kept = static_cast<std::size_t>(l.rows * l.cap);
  std::size_t at = 0;
  auto take = [&](std::size_t bytes) {
    const std::size_t here = at;
    at += nms_align(bytes);
    return here;
  };
  l.keys_in = take(sizeof(float) * items);
  l.keys_out = take(sizeof(float) * items);
  l.idx_in = take(sizeof(int) * items);
  l.idx_out = take(sizeof(int) * items);
  l.offsets = take(sizeof(int) * (rows + 1));
  cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, l.sort_bytes, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int*>(nullptr), static_cast<int*>(nullptr), static_cast<int>(l.items),
      static_cast<int>(l.rows), static_cast<const int*>(nullptr), static_cast<const int*>(nullptr));
  if (e != cudaSuccess) return e;
  l.sort_temp = take(l.sort_bytes);
  l.kept_ext = take(sizeof(Extent) * kept);
  l.kept_box = take(sizeof(int) * kept);
  l.counts = take(sizeof(int) * (rows + 1));
  l.starts = take(sizeof(int) * (rows + 1));
  e = cub::DeviceScan::ExclusiveSum(nullptr, l.scan_bytes, static_cast<const int*>(nullptr),
                                    static_cast<int*>(nullptr), static_cast<int>(rows + 1));
  if (e != cudaSuccess) return e;
  l.scan_temp = take(l.scan_bytes);
  l.out_rows = take(sizeof(std::int64_t) * 3 * kept);
  l.out_count = take(sizeof(std::int64_t));
  l.total = at;
  return cudaSuccess;
}

/// Scores as sort keys (NaN as -inf, -0 as +0, so that the sort's order is the reference's) and
/// each row's box indices and offset.
template <class T>
__global__ void nms_keys_kernel(const T* __restrict__ scores, float* __restrict__ keys,
                                int* __restrict__ idx, int* __restrict__ offsets, std::int64_t n,
                                std::int64_t items, std::int64_t rows) {
  KILN_GRID_LOOP(i, items > rows ? items : rows + 1) {
    if (i < items) {
      float k = detail::load(scores, i);
      if (isnan(k)) k = -INFINITY;
      if (k == 0.f) k = 0.f;
      keys[i] = k;
      idx[i] = static_cast<int>(i % n);
    }
    if (i <= rows) offsets[i] = static_cast<int>(i * n);
  }
}

/// One block per (batch, class) row: its candidates in sorted order, a tile of kNmsTile at a
/// time, keeping at most `limit` of them (`cap` apart in kept_ext and kept_box). Each thread tests
/// its candidate against the boxes kept by earlier tiles and marks which earlier candidates of its
/// tile overlap it; one thread then walks the tile in order, keeping a candidate no kept box
/// suppresses. The greedy rule, exactly.
template <class T>
__global__ void __launch_bounds__(kNmsTile)
    nms_kernel(NmsArgs a, const float* __restrict__ keys, const int* __restrict__ idx,
               std::int64_t cap, std::int64_t limit, Extent* __restrict__ kept_ext,
               int* __restrict__ kept_box, int* __restrict__ counts) {
  constexpr int kWords = kNmsTile / 64;
  __shared__ Extent tile[kNmsTile];
  __shared__ unsigned long long overlaps[kNmsTile][kWords];
  __shared__ bool live[kNmsTile];
  __shared__ int kept_n;
  __shared__ bool done;
  const std::int64_t row = blockIdx.x, n = a.boxes, b = row / a.classes;
  const float* k = keys + row * n;
  const int* id = idx + row * n;
  const T* boxes = static_cast<const T*>(a.box_data) + b * n * 4;
  Extent* kept = kept_ext + row * cap;
  int* kbox = kept_box + row * cap;
  const int t = threadIdx.x;
  if (t == 0) kept_n = 0, done = limit == 0;
  __syncthreads();
  for (std::int64_t base = 0; base < n && !done; base += kNmsTile) {
    const std::int64_t j = base + t;
    bool ok = j < n && (!a.has_score_threshold || static_cast<double>(k[j]) > a.score_threshold);
    Extent e{0, 0, 0, 0};
    if (ok) e = box_extent(boxes + static_cast<std::int64_t>(id[j]) * 4, a.center);
    tile[t] = e;
    for (int q = 0; ok && q < kept_n; ++q)
      if (suppresses(kept[q], e, a.iou_threshold)) ok = false;
    live[t] = ok;
    __syncthreads();
    unsigned long long mine[kWords] = {};
    if (ok)
      for (int s = 0; s < t; ++s)
        if (live[s] && suppresses(tile[s], e, a.iou_threshold)) mine[s / 64] |= 1ull << (s % 64);
    for (int w = 0; w < kWords; ++w) overlaps[t][w] = mine[w];
    __syncthreads();
    if (t == 0) {
      unsigned long long keep[kWords] = {};
      for (int s = 0; s < kNmsTile && kept_n < limit; ++s) {
        if (!live[s]) continue;
        bool hit = false;
        for (int w = 0; w < kWords; ++w) hit |= (overlaps[s][w] & keep[w]) != 0;
        if (hit) continue;
        keep[s / 64] |= 1ull << (s % 64);
        kept[kept_n] = tile[s];
        kbox[kept_n] = id[base + s];
        ++kept_n;
      }
      // Candidates are a prefix of the sorted row: a tile ending below the threshold is the last.
      const std::int64_t last = base + kNmsTile - 1;
      done = kept_n >= limit || (a.has_score_threshold && last < n &&
                                 !(static_cast<double>(k[last]) > a.score_threshold));
    }
    __syncthreads();
  }
  if (t == 0) {
    counts[row] = kept_n;
    if (row == 0) counts[gridDim.x] = 0;
  }
}

/// The kept boxes of every row as (batch, class, box) rows at the row's start; the total count.
__global__ void nms_rows_kernel(const int* __restrict__ counts, const int* __restrict__ starts,
                                const int* __restrict__ kept_box, std::int64_t cap,
                                std::int64_t classes, std::int64_t* __restrict__ out,
                                std::int64_t* __restrict__ out_count) {
  const std::int64_t row = blockIdx.x;
  const std::int64_t start = starts[row], count = counts[row];
  for (std::int64_t q = threadIdx.x; q < count; q += blockDim.x) {
    std::int64_t* o = out + (start + q) * 3;
    o[0] = row / classes;
    o[1] = row % classes;
    o[2] = kept_box[row * cap + q];
  }
  if (row == 0 && threadIdx.x == 0) *out_count = starts[gridDim.x];
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

std::size_t nms_workspace(const NmsArgs& a) {
  NmsLayout l;
  return nms_layout(a, l) == cudaSuccess ? l.total : 0;
}

const std::int64_t* nms_rows(const NmsArgs& a) {
  NmsLayout l;
  if (nms_layout(a, l) != cudaSuccess) return nullptr;
  return reinterpret_cast<const std::int64_t*>(static_cast<const unsigned char*>(a.workspace) +
                                               l.out_rows);
}

const std::int64_t* nms_count(const NmsArgs& a) {
  NmsLayout l;
  if (nms_layout(a, l) != cudaSuccess) return nullptr;
  return reinterpret_cast<const std::int64_t*>(static_cast<const unsigned char*>(a.workspace) +
                                               l.out_count);
}

cudaError_t nms(Elem elem, const NmsArgs& a, cudaStream_t stream) {
  NmsLayout l;
  if (const cudaError_t e = nms_layout(a, l); e != cudaSuccess) return e;
  auto* ws = static_cast<unsigned char*>(a.workspace);
  auto* count = reinterpret_cast<std::int64_t*>(ws + l.out_count);
  const std::int64_t limit = a.max_out < l.cap ? (a.max_out > 0 ? a.max_out : 0) : l.cap;
  if (l.rows * limit == 0) return cudaMemsetAsync(count, 0, sizeof(std::int64_t), stream);
  auto* keys_in = reinterpret_cast<float*>(ws + l.keys_in);
  auto* keys_out = reinterpret_cast<float*>(ws + l.keys_out);
  auto* idx_in = reinterpret_cast<int*>(ws + l.idx_in);
  auto* idx_out = reinterpret_cast<int*>(ws + l.idx_out);
  auto* offsets = reinterpret_cast<int*>(ws + l.offsets);
  auto* counts = reinterpret_cast<int*>(ws + l.counts);
  auto* starts = reinterpret_cast<int*>(ws + l.starts);
  auto* kept_ext = reinterpret_cast<Extent*>(ws + l.kept_ext);
  auto* kept_box = reinterpret_cast<int*>(ws + l.kept_box);
  const int rows = static_cast<int>(l.rows);
  return detail::dispatch(elem, [&](auto* tag) -> cudaError_t {
    using T = std::remove_pointer_t<decltype(tag)>;
    nms_keys_kernel<T><<<detail::grid_for(l.items + 1, 256), 256, 0, stream>>>(
        static_cast<const T*>(a.scores), keys_in, idx_in, offsets, a.boxes, l.items, l.rows);
    std::size_t bytes = l.sort_bytes;
    cudaError_t e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
        ws + l.sort_temp, bytes, keys_in, keys_out, idx_in, idx_out, static_cast<int>(l.items),
        rows, offsets, offsets + 1, 0, int(sizeof(float) * 8), stream);
    if (e != cudaSuccess) return e;
    nms_kernel<T><<<rows, kNmsTile, 0, stream>>>(a, keys_out, idx_out, l.cap, limit, kept_ext,
                                                 kept_box, counts);
    bytes = l.scan_bytes;
    e = cub::DeviceScan::ExclusiveSum(ws + l.scan_temp, bytes, counts, starts, rows + 1, stream);
    if (e != cudaSuccess) return e;
    nms_rows_kernel<<<rows, 128, 0, stream>>>(counts, starts, kept_box, l.cap, a.classes,
                                              reinterpret_cast<std::int64_t*>(ws + l.out_rows),
                                              count);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
