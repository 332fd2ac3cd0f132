#include "norm.cuh"
#include "pointwise_ops.cuh"

namespace kiln::kernels {

namespace {
template <class T>
__global__ void affine_kernel(const T* __restrict__ x, const float* __restrict__ scale,
                              const float* __restrict__ shift, const float* __restrict__ power,
                              Activation act, float aa, float ab, T* y, std::int64_t n,
                              std::int64_t channels, std::int64_t inner) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t c = (i / inner) % channels;
    float v = detail::load(x, i);
    if (scale) v *= scale[c];
    if (shift) v += shift[c];
    if (power && power[c] != 1.f) v = powf(v, power[c]);
    if (act == Activation::relu)
      v = fmaxf(v, 0.f);
    else if (act != Activation::identity)
      v = detail::apply(act, v, 0.f, aa, ab);
    detail::store(y, i, v);
  }
}

__global__ void fold_kernel(std::int64_t channels, const float* gamma, const float* beta,
                            const float* mean, const float* var, float eps, float* scale,
                            float* shift) {
  KILN_GRID_LOOP(c, channels) {
    const float s = gamma[c] / sqrtf(var[c] + eps);
    shift[c] = beta[c] - mean[c] * s;
    scale[c] = s;
  }
}

template <class T>
__global__ void lrn_kernel(const T* __restrict__ x, T* __restrict__ y, std::int64_t total,
                           std::int64_t channels, std::int64_t inner, int size, float alpha,
                           float beta, float bias) {
  const int before = (size - 1) / 2, after = size / 2;  // floor and ceil of (size-1)/2
  KILN_GRID_LOOP(i, total) {
    const std::int64_t c = (i / inner) % channels;
    const std::int64_t base = i - c * inner;  // element (n, 0, in)
    const std::int64_t c0 = c - before < 0 ? 0 : c - before;
    const std::int64_t c1 = c + after >= channels ? channels - 1 : c + after;
    float sum = 0.f;
    for (std::int64_t k = c0; k <= c1; ++k) {
      const float v = detail::load(x, base + k * inner);
      sum += v * v;
    }
    const float v = detail::load(x, i);
    detail::store(y, i, v / powf(bias + alpha / static_cast<float>(size) * sum, beta));
  }
}
}  // namespace

cudaError_t channel_affine(Elem elem, std::int64_t outer, std::int64_t channels, std::int64_t inner,
                           const void* x, const float* scale, const float* shift,
                           const float* power, Activation act, float act_alpha, float act_beta,
                           void* y, cudaStream_t stream) {
  const std::int64_t n = outer * channels * inner;
  if (n == 0) return cudaSuccess;
  if (!is_op(act) || !is_unary(act)) return cudaErrorInvalidValue;
  const unsigned blocks = detail::grid_for(n, 256);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    affine_kernel<T><<<blocks, 256, 0, stream>>>(static_cast<const T*>(x), scale, shift, power, act,
                                                 act_alpha, act_beta, static_cast<T*>(y), n,
                                                 channels, inner);
    return cudaGetLastError();
  });
}

cudaError_t batchnorm_fold(std::int64_t channels, const float* gamma, const float* beta,
                           const float* mean, const float* var, float eps, float* scale,
                           float* shift, cudaStream_t stream) {
  if (channels == 0) return cudaSuccess;
  fold_kernel<<<detail::grid_for(channels, 256), 256, 0, stream>>>(channels, gamma, beta, mean, var,
                                                                   eps, scale, shift);
  return cudaGetLastError();
}

cudaError_t lrn(Elem elem, std::int64_t n, std::int64_t channels, std::int64_t inner, int size,
                float alpha, float beta, float bias, const void* x, void* y, cudaStream_t stream) {
  const std::int64_t total = n * channels * inner;
  if (size < 1) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    lrn_kernel<T><<<detail::grid_for(total, 256), 256, 0, stream>>>(
        static_cast<const T*>(x), static_cast<T*>(y), total, channels, inner, size, alpha, beta,
        bias);
    return cudaGetLastError();
  });
}

namespace {

/// Block-wide sum through warps and shared memory (`red` holds 32 floats); every thread gets it.
__device__ float block_sum(float v, float* red) {
  v = detail::warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float w = threadIdx.x < (blockDim.x + 31) / 32 ? red[threadIdx.x] : 0.f;
    w = detail::warp_sum(w);
    if (threadIdx.x == 0) red[0] = w;
  }
  __syncthreads();
  const float s = red[0];
  __syncthreads();
  return s;
}

/// One block per row (grid-strided); the row is read three times (mean, centred variance,
/// output), from L1/L2 after the first.
template <class T>
__global__ void row_norm_kernel(RowNormArgs a) {
  __shared__ float red[32];
  const T* x = static_cast<const T*>(a.x);
  const T* res = static_cast<const T*>(a.residual);
  const T* scale = static_cast<const T*>(a.scale);
  const T* bias = static_cast<const T*>(a.bias);
  T* y = static_cast<T*>(a.y);
  const float inv_n = 1.f / static_cast<float>(a.n);
  for (std::int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const std::int64_t base = r * a.n;
    auto value = [&](std::int64_t j) {
      float v = detail::load(x, base + j);
      if (res) v += detail::load(res, base + j);
      return v;
    };
    float mean = 0.f;
    if (!a.rms) {
      float s = 0.f;
      for (std::int64_t j = threadIdx.x; j < a.n; j += blockDim.x) s += value(j);
      mean = block_sum(s, red) * inv_n;
    }
    float q = 0.f;
    for (std::int64_t j = threadIdx.x; j < a.n; j += blockDim.x) {
      const float d = value(j) - mean;
      q += d * d;
    }
    const float invstd = rsqrtf(block_sum(q, red) * inv_n + a.eps);
    for (std::int64_t j = threadIdx.x; j < a.n; j += blockDim.x) {
      const float s = value(j);
      if (a.sum_out) detail::store(static_cast<T*>(a.sum_out), base + j, s);
      float v = (s - mean) * invstd;
      if (scale) v *= detail::load(scale, a.scale_len == 1 ? 0 : j);
      if (bias) v += detail::load(bias, a.bias_len == 1 ? 0 : j);
      detail::store(y, base + j, v);
    }
    if (threadIdx.x == 0) {
      if (a.mean_out) detail::store(static_cast<T*>(a.mean_out), r, mean);
      if (a.invstd_out) detail::store(static_cast<T*>(a.invstd_out), r, invstd);
    }
  }
}

}  // namespace

cudaError_t row_norm(Elem elem, const RowNormArgs& a, cudaStream_t stream) {
  if (a.rows == 0 || a.n == 0) return cudaSuccess;
  // A warp per 32 elements up to 256 threads: rows of 64 (small widths) use 64 threads.
  int threads = 32;
  while (threads < 256 && threads < a.n) threads *= 2;
  const unsigned blocks = static_cast<unsigned>(a.rows < 65535 * 16 ? a.rows : 65535 * 16);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    row_norm_kernel<T><<<blocks, threads, 0, stream>>>(a);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
