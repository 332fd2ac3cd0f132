#include "select.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cub/device/device_segmented_radix_sort.cuh>

#include "device_util.cuh"

namespace kiln::kernels {
namespace {

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

/// Calls f(K{}) with the C++ key type of `t`.
template <class F>
cudaError_t by_type(ValueType t, F&& f) {
  switch (t) {
    case ValueType::f32: return f(float{});
    case ValueType::f16: return f(__half{});
    case ValueType::bf16: return f(__nv_bfloat16{});
    case ValueType::i32: return f(std::int32_t{});
    case ValueType::i64: return f(std::int64_t{});
  }
  return cudaErrorInvalidValue;
}

/// The workspace of TopK: the rows made contiguous (when inner > 1), the sorted keys, the
/// indices before and after sorting, the segment offsets and CUB's own storage.
struct TopKLayout {
  std::size_t rows = 0, sorted = 0, idx_in = 0, idx_out = 0, offsets = 0, temp = 0, temp_bytes = 0,
              total = 0;
};

template <class K>
cudaError_t topk_layout(const TopKArgs& a, TopKLayout& l) {
  const std::int64_t items = a.outer * a.n * a.inner, segs = a.outer * a.inner;
  if (a.n < 1 || a.k < 1 || a.k > a.n || items >= (std::int64_t{1} << 31))
    return cudaErrorInvalidValue;
  std::size_t at = 0;
  auto take = [&](std::size_t bytes) {
    const std::size_t here = at;
    at += align_up(bytes);
    return here;
  };
  l.rows = a.inner > 1 ? take(sizeof(K) * static_cast<std::size_t>(items)) : 0;
  l.sorted = take(sizeof(K) * static_cast<std::size_t>(items));
  l.idx_in = take(sizeof(int) * static_cast<std::size_t>(items));
  l.idx_out = take(sizeof(int) * static_cast<std::size_t>(items));
  l.offsets = take(sizeof(int) * static_cast<std::size_t>(segs + 1));
  std::size_t temp = 0;
  cudaError_t e;
  const int n_items = static_cast<int>(items), n_segs = static_cast<int>(segs);
  if (a.largest)
    e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp, static_cast<const K*>(nullptr), static_cast<K*>(nullptr),
        static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n_items, n_segs,
        static_cast<const int*>(nullptr), static_cast<const int*>(nullptr));
  else
    e = cub::DeviceSegmentedRadixSort::SortPairs(
        nullptr, temp, static_cast<const K*>(nullptr), static_cast<K*>(nullptr),
        static_cast<const int*>(nullptr), static_cast<int*>(nullptr), n_items, n_segs,
        static_cast<const int*>(nullptr), static_cast<const int*>(nullptr));
  if (e != cudaSuccess) return e;
  l.temp_bytes = temp;
  l.temp = take(temp);
  l.total = at;
  return cudaSuccess;
}

template <class K>
__global__ void rows_kernel(const K* __restrict__ x, K* __restrict__ rows, std::int64_t n,
                            std::int64_t inner, std::int64_t total) {
  KILN_GRID_LOOP(i, total) {  // i over [outer, inner, n]
    const std::int64_t j = i % n, in = (i / n) % inner, o = i / (n * inner);
    rows[i] = x[(o * n + j) * inner + in];
  }
}

__global__ void iota_kernel(int* __restrict__ idx, int* __restrict__ offsets, std::int64_t n,
                            std::int64_t items, std::int64_t segs) {
  KILN_GRID_LOOP(i, items > segs ? items : segs + 1) {
    if (i < items) idx[i] = static_cast<int>(i % n);
    if (i <= segs) offsets[i] = static_cast<int>(i * n);
  }
}

template <class K>
__global__ void pick_kernel(const K* __restrict__ sorted, const int* __restrict__ idx,
                            K* __restrict__ values, std::int64_t* __restrict__ indices,
                            std::int64_t n, std::int64_t k, std::int64_t inner,
                            std::int64_t total) {
  KILN_GRID_LOOP(i, total) {  // i over [outer, k, inner]
    const std::int64_t in = i % inner, j = (i / inner) % k, o = i / (inner * k);
    const std::int64_t from = (o * inner + in) * n + j;
    values[i] = sorted[from];
    indices[i] = idx[from];
  }
}

template <class T>
__global__ void gather_nd_kernel(const T* __restrict__ data, const std::int64_t* __restrict__ idx,
                                 T* __restrict__ y, std::int64_t rows, Dims indexed,
                                 std::int64_t inner, std::int64_t total) {
  std::int64_t block = 1;  // elements of data under one batch index
  for (int d = 0; d < indexed.rank; ++d) block *= indexed.d[d];
  block *= inner;
  KILN_GRID_LOOP(i, total) {  // i over [batch, rows, inner]
    const std::int64_t in = i % inner, r = (i / inner) % rows, b = i / (inner * rows);
    const std::int64_t* p = idx + (b * rows + r) * indexed.rank;
    std::int64_t off = 0;
    for (int d = 0; d < indexed.rank; ++d) {
      std::int64_t v = p[d];
      if (v < 0) v += indexed.d[d];
      v = v < 0 ? 0 : (v >= indexed.d[d] ? indexed.d[d] - 1 : v);
      off = off * indexed.d[d] + v;
    }
    y[i] = data[b * block + off * inner + in];
  }
}

// ---- ScatterElements: the reductions as compare-and-swap loops on the element's bits -----------

template <class Bits>
__device__ Bits cas(Bits* p, Bits expected, Bits desired) {
  if constexpr (sizeof(Bits) == 1)
    return *p;  // never called: bytes are only assigned
  else if constexpr (sizeof(Bits) == 2)
    return atomicCAS(reinterpret_cast<unsigned short*>(p), expected, desired);
  else if constexpr (sizeof(Bits) == 4)
    return atomicCAS(reinterpret_cast<unsigned int*>(p), expected, desired);
  else
    return static_cast<Bits>(atomicCAS(reinterpret_cast<unsigned long long*>(p),
                                       static_cast<unsigned long long>(expected),
                                       static_cast<unsigned long long>(desired)));
}

template <class V>
__device__ V reduce(ScatterReduction r, V a, V b) {
  switch (r) {
    case ScatterReduction::add: return a + b;
    case ScatterReduction::mul: return a * b;
    case ScatterReduction::max: return a > b ? a : b;
    case ScatterReduction::min: return a < b ? a : b;
    default: return b;
  }
}

/// a (op) b on the bits of two elements of `type`.
template <class Bits>
__device__ Bits combine(ValueType type, ScatterReduction r, Bits a, Bits b) {
  if constexpr (sizeof(Bits) == 2) {
    if (type == ValueType::f16) {
      const float v =
          reduce(r, __half2float(__ushort_as_half(a)), __half2float(__ushort_as_half(b)));
      return __half_as_ushort(__float2half_rn(v));
    }
    const float v = reduce(r, __bfloat162float(__ushort_as_bfloat16(a)),
                           __bfloat162float(__ushort_as_bfloat16(b)));
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  } else if constexpr (sizeof(Bits) == 4) {
    if (type == ValueType::f32)
      return __float_as_uint(reduce(r, __uint_as_float(a), __uint_as_float(b)));
    return static_cast<Bits>(reduce(r, static_cast<std::int32_t>(a), static_cast<std::int32_t>(b)));
  } else {
    return static_cast<Bits>(reduce(r, static_cast<std::int64_t>(a), static_cast<std::int64_t>(b)));
  }
}

template <class Bits, class I>
__global__ void scatter_kernel(ValueType type, ScatterReduction red, Dims data_dims,
                               Dims index_dims, int axis, const I* __restrict__ idx,
                               const Bits* __restrict__ updates, Bits* __restrict__ y,
                               std::int64_t total) {
  KILN_GRID_LOOP(i, total) {
    std::int64_t rest = i, off = 0, stride = 1;
    bool inside = true;
    for (int d = index_dims.rank - 1; d >= 0; --d) {
      std::int64_t c = rest % index_dims.d[d];
      rest /= index_dims.d[d];
      if (d == axis) {
        c = static_cast<std::int64_t>(idx[i]);
        if (c < 0) c += data_dims.d[d];
        inside = inside && c >= 0 && c < data_dims.d[d];
      }
      off += c * stride;
      stride *= data_dims.d[d];
    }
    if (!inside) continue;
    if (sizeof(Bits) == 1 || red == ScatterReduction::none) {  // bytes: no reduction
      y[off] = updates[i];
      continue;
    }
    Bits old = y[off], assumed;
    do {
      assumed = old;
      old = cas(y + off, assumed, combine(type, red, assumed, updates[i]));
    } while (old != assumed);
  }
}

}  // namespace

std::size_t topk_workspace(const TopKArgs& a) {
  TopKLayout l;
  const cudaError_t e = by_type(a.type, [&](auto key) { return topk_layout<decltype(key)>(a, l); });
  return e == cudaSuccess ? l.total : 0;
}

cudaError_t topk(const TopKArgs& a, cudaStream_t stream) {
  return by_type(a.type, [&](auto key) -> cudaError_t {
    using K = decltype(key);
    TopKLayout l;
    if (const cudaError_t e = topk_layout<K>(a, l); e != cudaSuccess) return e;
    auto* ws = static_cast<unsigned char*>(a.workspace);
    const std::int64_t items = a.outer * a.n * a.inner, segs = a.outer * a.inner;
    const K* rows = static_cast<const K*>(a.x);
    if (a.inner > 1) {
      K* r = reinterpret_cast<K*>(ws + l.rows);
      rows_kernel<K><<<detail::grid_for(items, 256), 256, 0, stream>>>(static_cast<const K*>(a.x),
                                                                       r, a.n, a.inner, items);
      rows = r;
    }
    K* sorted = reinterpret_cast<K*>(ws + l.sorted);
    int* idx_in = reinterpret_cast<int*>(ws + l.idx_in);
    int* idx_out = reinterpret_cast<int*>(ws + l.idx_out);
    int* offsets = reinterpret_cast<int*>(ws + l.offsets);
    iota_kernel<<<detail::grid_for(items + 1, 256), 256, 0, stream>>>(idx_in, offsets, a.n, items,
                                                                      segs);
    std::size_t temp = l.temp_bytes;
    const int n_items = static_cast<int>(items), n_segs = static_cast<int>(segs);
    cudaError_t e;
    if (a.largest)
      e = cub::DeviceSegmentedRadixSort::SortPairsDescending(
          ws + l.temp, temp, rows, sorted, idx_in, idx_out, n_items, n_segs, offsets, offsets + 1,
          0, int(sizeof(K) * 8), stream);
    else
      e = cub::DeviceSegmentedRadixSort::SortPairs(ws + l.temp, temp, rows, sorted, idx_in, idx_out,
                                                   n_items, n_segs, offsets, offsets + 1, 0,
                                                   int(sizeof(K) * 8), stream);
    if (e != cudaSuccess) return e;
    const std::int64_t out = a.outer * a.k * a.inner;
    pick_kernel<K><<<detail::grid_for(out, 256), 256, 0, stream>>>(
        sorted, idx_out, static_cast<K*>(a.values), a.indices, a.n, a.k, a.inner, out);
    return cudaGetLastError();
  });
}

cudaError_t gather_nd(std::size_t elem_size, std::int64_t batch, std::int64_t rows,
                      const Dims& indexed, std::int64_t inner, const std::int64_t* indices,
                      const void* data, void* y, cudaStream_t stream) {
  const std::int64_t total = batch * rows * inner;
  if (total == 0) return cudaSuccess;
  if (indexed.rank < 0 || indexed.rank > kMaxDims) return cudaErrorInvalidValue;
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    gather_nd_kernel<T><<<detail::grid_for(total, 256), 256, 0, stream>>>(
        static_cast<const T*>(data), indices, static_cast<T*>(y), rows, indexed, inner, total);
    return cudaGetLastError();
  };
  switch (elem_size) {
    case 1: return launch(std::uint8_t{});
    case 2: return launch(std::uint16_t{});
    case 4: return launch(std::uint32_t{});
    case 8: return launch(std::uint64_t{});
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t scatter_elements(std::size_t elem_size, ValueType type, ScatterReduction reduction,
                             const Dims& data_dims, const Dims& index_dims, int axis,
                             const void* indices, bool indices_are_int64, const void* updates,
                             void* y, cudaStream_t stream) {
  const std::int64_t total = index_dims.numel();
  if (total == 0) return cudaSuccess;
  if (data_dims.rank != index_dims.rank || axis < 0 || axis >= data_dims.rank)
    return cudaErrorInvalidValue;
  auto launch = [&](auto tag) {
    using Bits = decltype(tag);
    const unsigned blocks = detail::grid_for(total, 256);
    if (indices_are_int64)
      scatter_kernel<Bits, std::int64_t><<<blocks, 256, 0, stream>>>(
          type, reduction, data_dims, index_dims, axis, static_cast<const std::int64_t*>(indices),
          static_cast<const Bits*>(updates), static_cast<Bits*>(y), total);
    else
      scatter_kernel<Bits, std::int32_t><<<blocks, 256, 0, stream>>>(
          type, reduction, data_dims, index_dims, axis, static_cast<const std::int32_t*>(indices),
          static_cast<const Bits*>(updates), static_cast<Bits*>(y), total);
    return cudaGetLastError();
  };
  switch (elem_size) {
    case 2: return launch(std::uint16_t{});
    case 4: return launch(std::uint32_t{});
    case 8: return launch(std::uint64_t{});
    case 1:
      if (reduction == ScatterReduction::none) return launch(std::uint8_t{});
      return cudaErrorInvalidValue;
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace kiln::kernels
