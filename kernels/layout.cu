#include "device_util.cuh"
#include "layout.cuh"

namespace kiln::kernels {

namespace {
constexpr int kTile = 32, kRowsPerPass = 8;

template <class T>
__global__ void transpose_kernel(const T* __restrict__ x, T* __restrict__ y, std::int64_t rows,
                                 std::int64_t cols, std::int64_t tiles_c,
                                 std::int64_t tiles_per_batch, std::int64_t tiles_total) {
  __shared__ T tile[kTile][kTile + 1];
  for (std::int64_t t = blockIdx.x; t < tiles_total; t += gridDim.x) {
    const std::int64_t b = t / tiles_per_batch, rest = t - b * tiles_per_batch;
    const std::int64_t r0 = (rest / tiles_c) * kTile, c0 = (rest % tiles_c) * kTile;
    const T* xb = x + b * rows * cols;
    T* yb = y + b * rows * cols;
    for (int k = threadIdx.y; k < kTile; k += kRowsPerPass) {
      const std::int64_t r = r0 + k, c = c0 + threadIdx.x;
      if (r < rows && c < cols) tile[k][threadIdx.x] = xb[r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < kTile; k += kRowsPerPass) {
      const std::int64_t c = c0 + k, r = r0 + threadIdx.x;
      if (r < rows && c < cols) yb[c * rows + r] = tile[threadIdx.x][k];
    }
    __syncthreads();
  }
}

template <class From, class To>
__global__ void cast_kernel(const From* __restrict__ x, To* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) detail::store(y, i, detail::load(x, i));
}
}  // namespace

cudaError_t transpose_batched(std::size_t elem_size, std::int64_t batch, std::int64_t rows,
                              std::int64_t cols, const void* x, void* y, cudaStream_t stream) {
  if (batch * rows * cols == 0) return cudaSuccess;
  const std::int64_t tiles_r = (rows + kTile - 1) / kTile, tiles_c = (cols + kTile - 1) / kTile;
  const std::int64_t per_batch = tiles_r * tiles_c, total = per_batch * batch;
  const unsigned blocks = static_cast<unsigned>(total < (1 << 20) ? total : (1 << 20));
  const dim3 threads(kTile, kRowsPerPass);
  switch (elem_size) {
    case 1:
      transpose_kernel<std::uint8_t><<<blocks, threads, 0, stream>>>(
          static_cast<const std::uint8_t*>(x), static_cast<std::uint8_t*>(y), rows, cols, tiles_c,
          per_batch, total);
      break;
    case 2:
      transpose_kernel<std::uint16_t><<<blocks, threads, 0, stream>>>(
          static_cast<const std::uint16_t*>(x), static_cast<std::uint16_t*>(y), rows, cols, tiles_c,
          per_batch, total);
      break;
    case 4:
      transpose_kernel<std::uint32_t><<<blocks, threads, 0, stream>>>(
          static_cast<const std::uint32_t*>(x), static_cast<std::uint32_t*>(y), rows, cols, tiles_c,
          per_batch, total);
      break;
    case 8:
      transpose_kernel<std::uint64_t><<<blocks, threads, 0, stream>>>(
          static_cast<const std::uint64_t*>(x), static_cast<std::uint64_t*>(y), rows, cols, tiles_c,
          per_batch, total);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t cast(Elem from, Elem to, const void* x, void* y, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned blocks = detail::grid_for(n, 256);
  if (from == to)
    return cudaMemcpyAsync(y, x, n * elem_bytes(from), cudaMemcpyDeviceToDevice, stream);
  return detail::dispatch(from, [&](auto* from_tag) {
    using F = std::remove_pointer_t<decltype(from_tag)>;
    return detail::dispatch(to, [&](auto* to_tag) {
      using T = std::remove_pointer_t<decltype(to_tag)>;
      cast_kernel<<<blocks, 256, 0, stream>>>(static_cast<const F*>(x), static_cast<T*>(y), n);
      return cudaGetLastError();
    });
  });
}

namespace {
template <class T>
__global__ void im2col_kernel(const Im2col g, const T* __restrict__ x, T* __restrict__ col,
                              std::int64_t total) {
  const std::int64_t spatial = static_cast<std::int64_t>(g.out_h) * g.out_w;
  const std::int64_t rows = static_cast<std::int64_t>(g.c) * g.kh * g.kw;
  KILN_GRID_LOOP(i, total) {
    const std::int64_t s = i % spatial, rest = i / spatial;
    const std::int64_t r = rest % rows, img = rest / rows;
    const int ow = static_cast<int>(s % g.out_w), oh = static_cast<int>(s / g.out_w);
    const int kx = static_cast<int>(r % g.kw), ky = static_cast<int>((r / g.kw) % g.kh);
    const std::int64_t c = r / (static_cast<std::int64_t>(g.kw) * g.kh);
    const int ih = oh * g.stride_h - g.pad_h + ky * g.dil_h,
              iw = ow * g.stride_w - g.pad_w + kx * g.dil_w;
    T v{};
    if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
      v = x[((img * g.c + c) * g.h + ih) * static_cast<std::int64_t>(g.w) + iw];
    col[i] = v;
  }
}
}  // namespace

cudaError_t im2col(std::size_t elem_size, const Im2col& g, const void* x, void* col,
                   cudaStream_t stream) {
  const std::int64_t total = g.n * g.c * g.kh * g.kw * static_cast<std::int64_t>(g.out_h) * g.out_w;
  if (total == 0) return cudaSuccess;
  const unsigned blocks = detail::grid_for(total, 256);
  if (elem_size == 4)
    im2col_kernel<float><<<blocks, 256, 0, stream>>>(g, static_cast<const float*>(x),
                                                     static_cast<float*>(col), total);
  else if (elem_size == 2)
    im2col_kernel<std::uint16_t><<<blocks, 256, 0, stream>>>(
        g, static_cast<const std::uint16_t*>(x), static_cast<std::uint16_t*>(col), total);
  else
    return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace kiln::kernels
