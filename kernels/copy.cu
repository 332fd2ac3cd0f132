#include "copy.cuh"
#include "device_util.cuh"

namespace kiln::kernels {

namespace {
// kWide: 16-byte units too (only the strided copy moves those; see simplify below).
template <bool kWide = false, class F>
cudaError_t by_size(std::size_t elem_size, F&& f) {
  switch (elem_size) {
    case 1: return f(static_cast<std::uint8_t*>(nullptr));
    case 2: return f(static_cast<std::uint16_t*>(nullptr));
    case 4: return f(static_cast<std::uint32_t*>(nullptr));
    case 8: return f(static_cast<std::uint64_t*>(nullptr));
    case 16:
      if constexpr (kWide) return f(static_cast<uint4*>(nullptr));
      return cudaErrorInvalidValue;
    default: return cudaErrorInvalidValue;
  }
}

// One division per dim gives both offsets; I is int where every index and offset fits (most
// copies), which makes those divisions several times cheaper than 64-bit ones.
template <class T, class I>
__global__ void strided_copy_kernel(const Dims dims, const T* __restrict__ src, const Strides ss,
                                    T* __restrict__ dst, const Strides ds, I n) {
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x);
       i < n; i += static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x)) {
    I rest = i, so = 0, dO = 0;
#pragma unroll
    for (int k = kMaxDims - 1; k >= 0; --k) {
      if (k < dims.rank) {
        const I dk = static_cast<I>(dims.d[k]);
        const I q = rest / dk;
        const I r = rest - q * dk;
        so += r * static_cast<I>(ss.s[k]);
        dO += r * static_cast<I>(ds.s[k]);
        rest = q;
      }
    }
    dst[dO] = src[so];
  }
}

// A copy described with as few dims and as wide elements as it allows: dims of 1 dropped,
// neighbours contiguous in both operands merged, and where the innermost dim is contiguous in
// both and everything is aligned, 16-, 8- or 4-byte units moved instead of single elements.
struct CopyPlan {
  std::size_t elem;
  Dims dims;
  Strides ss, ds;
};

CopyPlan simplify(std::size_t elem, const Dims& dims, const Strides& ss, const Strides& ds,
                  const void* src, const void* dst) {
  CopyPlan p{elem, {}, {}, {}};
  int r = 0;
  for (int k = 0; k < dims.rank; ++k) {
    if (dims.d[k] == 1) continue;
    if (r > 0 && p.ss.s[r - 1] == ss.s[k] * dims.d[k] && p.ds.s[r - 1] == ds.s[k] * dims.d[k]) {
      p.dims.d[r - 1] *= dims.d[k];
      p.ss.s[r - 1] = ss.s[k];
      p.ds.s[r - 1] = ds.s[k];
      continue;
    }
    p.dims.d[r] = dims.d[k];
    p.ss.s[r] = ss.s[k];
    p.ds.s[r] = ds.s[k];
    ++r;
  }
  p.dims.rank = r;
  if (r == 0 || p.ss.s[r - 1] != 1 || p.ds.s[r - 1] != 1) return p;
  for (std::size_t w : {std::size_t{16}, std::size_t{8}, std::size_t{4}}) {
    if (w <= elem) break;
    const auto f = static_cast<std::int64_t>(w / elem);
    bool ok = p.dims.d[r - 1] % f == 0 && reinterpret_cast<std::uintptr_t>(src) % w == 0 &&
              reinterpret_cast<std::uintptr_t>(dst) % w == 0;
    for (int k = 0; ok && k + 1 < r; ++k) ok = p.ss.s[k] % f == 0 && p.ds.s[k] % f == 0;
    if (!ok) continue;
    p.elem = w;
    p.dims.d[r - 1] /= f;
    for (int k = 0; k + 1 < r; ++k) p.ss.s[k] /= f, p.ds.s[k] /= f;
    return p;
  }
  return p;
}

// The largest |offset| a copy reaches through `st` (an index type must hold it).
std::int64_t reach(const Dims& d, const Strides& st) {
  std::int64_t m = 0;
  for (int k = 0; k < d.rank; ++k) m += (st.s[k] < 0 ? -st.s[k] : st.s[k]) * (d.d[k] - 1);
  return m;
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
  if (dims.rank < 0 || dims.rank > kMaxDims || elem_size > 8) return cudaErrorInvalidValue;
  if (dims.numel() == 0) return cudaSuccess;
  const CopyPlan p = simplify(elem_size, dims, src_strides, dst_strides, src, dst);
  const std::int64_t n = p.dims.numel();
  constexpr std::int64_t kSmall = std::int64_t{1} << 30;  // i + the grid's stride stays below 2^31
  const bool small = n < kSmall && reach(p.dims, p.ss) < kSmall && reach(p.dims, p.ds) < kSmall;
  return by_size<true>(p.elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const auto* s = static_cast<const T*>(src);
    auto* d = static_cast<T*>(dst);
    if (small)
      strided_copy_kernel<T, int><<<detail::grid_for(n, 256), 256, 0, stream>>>(
          p.dims, s, p.ss, d, p.ds, static_cast<int>(n));
    else
      strided_copy_kernel<T, std::int64_t>
          <<<detail::grid_for(n, 256), 256, 0, stream>>>(p.dims, s, p.ss, d, p.ds, n);
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
      gather_kernel<T, std::int64_t><<<blocks, 256, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const std::int64_t*>(indices), static_cast<T*>(y),
          axis_n, inner, count, n);
    else
      gather_kernel<T, std::int32_t><<<blocks, 256, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const std::int32_t*>(indices), static_cast<T*>(y),
          axis_n, inner, count, n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
