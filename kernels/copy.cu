#include "copy.cuh"
#include "device_util.cuh"

namespace kiln::kernels {

namespace {
template <class F>
cudaError_t by_size(std::size_t elem_size, F&& f) {
  switch (elem_size) {
    case 1: return f(static_cast<std::uint8_t*>(nullptr));
    case 2: return f(static_cast<std::uint16_t*>(nullptr));
    case 4: return f(static_cast<std::uint32_t*>(nullptr));
    case 8: return f(static_cast<std::uint64_t*>(nullptr));
    default: return cudaErrorInvalidValue;
  }
}

template <class T>
__global__ void strided_copy_kernel(const Dims dims, const T* __restrict__ src, const Strides ss,
                                    T* __restrict__ dst, const Strides ds, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    dst[detail::offset_of(i, dims, ds)] = src[detail::offset_of(i, dims, ss)];
  }
}

struct PadDesc {
  Dims in, out;
  std::int64_t begin[kMaxDims];
};

template <class T>
__global__ void pad_kernel(const PadDesc p, PadMode mode, T value, const T* __restrict__ x,
                           T* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    std::int64_t rest = i, off = 0, stride = 1;
    bool inside = true;
    for (int k = p.out.rank - 1; k >= 0; --k) {
      const std::int64_t o = rest % p.out.d[k];
      rest /= p.out.d[k];
      const std::int64_t len = p.in.d[k];
      std::int64_t s = o - p.begin[k];
      if (s < 0 || s >= len) {
        if (mode == PadMode::constant || len == 0) {
          inside = false;
          break;
        }
        if (mode == PadMode::edge) {
          s = s < 0 ? 0 : len - 1;
        } else if (mode == PadMode::wrap) {
          s = ((s % len) + len) % len;
        } else {  // reflect (without repeating the edge)
          const std::int64_t period = len > 1 ? 2 * (len - 1) : 1;
          s = ((s % period) + period) % period;
          if (s >= len) s = period - s;
        }
      }
      off += s * stride;
      stride *= len;
    }
    y[i] = inside ? x[off] : value;
  }
}

template <class T, class I>
__global__ void gather_kernel(const T* __restrict__ x, const I* __restrict__ idx, T* __restrict__ y,
                              std::int64_t axis_n, std::int64_t inner, std::int64_t count,
                              std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t in = i % inner;
    const std::int64_t j = (i / inner) % count;
    const std::int64_t o = i / (inner * count);
    std::int64_t k = static_cast<std::int64_t>(idx[j]);
    if (k < 0) k += axis_n;
    k = k < 0 ? 0 : (k >= axis_n ? axis_n - 1 : k);
    y[i] = x[(o * axis_n + k) * inner + in];
  }
}
}  // namespace

cudaError_t strided_copy(std::size_t elem_size, const Dims& dims, const void* src,
                         const Strides& src_strides, void* dst, const Strides& dst_strides,
                         cudaStream_t stream) {
  if (dims.rank < 0 || dims.rank > kMaxDims) return cudaErrorInvalidValue;
  const std::int64_t n = dims.numel();
  if (n == 0) return cudaSuccess;
  return by_size(elem_size, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    strided_copy_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(
        dims, static_cast<const T*>(src), src_strides, static_cast<T*>(dst), dst_strides, n);
    return cudaGetLastError();
  });
}

cudaError_t pad(std::size_t elem_size, PadMode mode, const Dims& in_dims, const Dims& out_dims,
                const std::int64_t* pad_begin, std::uint64_t value_bits, const void* x, void* y,
                cudaStream_t stream) {
  if (in_dims.rank != out_dims.rank || in_dims.rank > kMaxDims) return cudaErrorInvalidValue;
  PadDesc p{in_dims, out_dims, {}};
  for (int k = 0; k < in_dims.rank; ++k) p.begin[k] = pad_begin[k];
  const std::int64_t n = out_dims.numel();
  if (n == 0) return cudaSuccess;
  return by_size(elem_size, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    pad_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(
        p, mode, static_cast<T>(value_bits), static_cast<const T*>(x), static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

cudaError_t gather(std::size_t elem_size, std::int64_t outer, std::int64_t axis_n,
                   std::int64_t inner, const void* indices, bool indices_are_int64,
                   std::int64_t count, const void* x, void* y, cudaStream_t stream) {
  const std::int64_t n = outer * count * inner;
  if (n == 0) return cudaSuccess;
  if (axis_n == 0) return cudaErrorInvalidValue;
  return by_size(elem_size, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const unsigned blocks = detail::grid_for(n, 256);
    if (indices_are_int64)
      gather_kernel<T, std::int64_t><<<blocks, 256, 0, stream>>>(static_cast<const T*>(x), static_cast<const std::int64_t*>(indices), static_cast<T*>(y), axis_n, inner, count, n);
    else
      gather_kernel<T, std::int32_t><<<blocks, 256, 0, stream>>>(static_cast<const T*>(x), static_cast<const std::int32_t*>(indices), static_cast<T*>(y), axis_n, inner, count, n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
