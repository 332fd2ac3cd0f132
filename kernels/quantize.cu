#include <cstdint>
#include <limits>

#include <cuda_fp8.h>

#include "device_util.cuh"
#include "quantize.cuh"

// Every float operation here is written with the _rn intrinsics so that nvcc cannot contract a
// multiply and an add into one FMA: each rounds as the CPU reference's float operations do, which
// makes the INT8 steps' outputs equal to the reference's, not only close.

namespace kiln::kernels {

namespace {

__device__ __forceinline__ std::int64_t channel_of(const QuantParams& q, std::int64_t i) {
  return q.channels == 1 ? 0 : (i / q.inner) % q.channels;
}

/// round_half_even(v / scale) + zero_point, saturated to the 8-bit type.
__device__ __forceinline__ int quantize_one(float v, float scale, float zp, bool is_signed) {
  float r = rintf(__fdiv_rn(v, scale));  // rintf: round half to even
  r = __fadd_rn(r, zp);
  const float lo = is_signed ? -128.f : 0.f, hi = is_signed ? 127.f : 255.f;
  r = fminf(fmaxf(r, lo), hi);  // NaN -> lo (fmaxf returns the non-NaN operand)
  return static_cast<int>(r);
}

__device__ __forceinline__ __nv_fp8_interpretation_t fp8_kind(Q8 t) {
  return t == Q8::e4m3 ? __NV_E4M3 : __NV_E5M2;
}

__device__ __forceinline__ float load8(const void* p, Q8 t, std::int64_t i) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  switch (t) {
    case Q8::s8: return static_cast<float>(static_cast<const std::int8_t*>(p)[i]);
    case Q8::u8: return static_cast<float>(b[i]);
    default: return __half2float(__half(__nv_cvt_fp8_to_halfraw(b[i], fp8_kind(t))));
  }
}

/// y[i] = QuantizeLinear(v) in `t`: integers round half to even and saturate; FP8 rounds to
/// nearest even, out of range to the largest finite value (`saturate`) or NaN/infinity.
__device__ __forceinline__ void store_q8(void* y, Q8 t, std::int64_t i, float v, float scale,
                                         float zp, bool saturate) {
  auto* out = static_cast<std::uint8_t*>(y);
  if (t == Q8::s8 || t == Q8::u8) {
    out[i] = static_cast<std::uint8_t>(quantize_one(v, scale, zp, t == Q8::s8));
  } else {
    const float r = __fadd_rn(__fdiv_rn(v, scale), zp);
    out[i] = __nv_cvt_float_to_fp8(r, saturate ? __NV_SATFINITE : __NV_NOSAT, fp8_kind(t));
  }
}

template <class T>
__global__ void quantize_kernel(const T* __restrict__ x, QuantParams q, Q8 t, bool saturate,
                                void* y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t c = channel_of(q, i);
    const float zp = q.zero_point ? q.zero_point[c] : 0.f;
    store_q8(y, t, i, detail::load(x, i), q.scale[c], zp, saturate);
  }
}

template <class T>
__global__ void dequantize_kernel(const void* __restrict__ x, Q8 t, QuantParams q,
                                  T* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t c = channel_of(q, i);
    const float zp = q.zero_point ? q.zero_point[c] : 0.f;
    detail::store(y, i, __fmul_rn(__fsub_rn(load8(x, t, i), zp), q.scale[c]));
  }
}

/// The offset in x of element k of patch row r (-1 in the padding).
__device__ __forceinline__ std::int64_t patch_offset(const Im2col& p, std::int64_t r, int k) {
  int c, kh, kw;
  if (p.nhwc) {
    c = k % p.channels, kw = (k / p.channels) % p.k_w, kh = k / (p.channels * p.k_w);
  } else {
    kw = k % p.k_w, kh = (k / p.k_w) % p.k_h, c = k / (p.k_w * p.k_h);
  }
  const int ow = static_cast<int>(r % p.out_w), oh = static_cast<int>((r / p.out_w) % p.out_h);
  const std::int64_t img = r / (static_cast<std::int64_t>(p.out_w) * p.out_h);
  const int h = oh * p.stride_h - p.pad_top + kh * p.dil_h;
  const int w = ow * p.stride_w - p.pad_left + kw * p.dil_w;
  if (h < 0 || h >= p.in_h || w < 0 || w >= p.in_w) return -1;
  return p.nhwc ? ((img * p.in_h + h) * p.in_w + w) * p.channels + c
                : ((img * p.channels + c) * p.in_h + h) * p.in_w + w;
}

__global__ void im2col_kernel(Im2col p, const std::int8_t* __restrict__ x,
                              std::int8_t* __restrict__ cols, std::int64_t n) {
  const int patch = p.channels * p.k_h * p.k_w;
  KILN_GRID_LOOP(i, n) {
    const int k = static_cast<int>(i % p.row);
    std::int8_t v = 0;
    if (k < patch) {
      const std::int64_t off = patch_offset(p, i / p.row, k);
      if (off >= 0) v = x[off];
    }
    cols[i] = v;
  }
}

/// NHWC with C a multiple of 4: four channels of one tap per thread, as one 32-bit word (the
/// arena's offsets are 256-byte aligned, the rows multiples of 4 bytes).
__global__ void im2col_nhwc4_kernel(Im2col p, const std::int8_t* __restrict__ x,
                                    std::int32_t* __restrict__ cols, std::int64_t n) {
  const int words = p.row / 4;
  KILN_GRID_LOOP(i, n) {
    const std::int64_t off = patch_offset(p, i / words, static_cast<int>(i % words) * 4);
    cols[i] = off >= 0 ? *reinterpret_cast<const std::int32_t*>(x + off) : 0;
  }
}

/// NHWC with C a multiple of 16 and rows of exactly the patch: 16 bytes of one tap per thread,
/// with 32-bit index math (launched when the 16-byte words fit in an int). The arena's and the
/// workspace's offsets are 256-byte aligned and C a multiple of 16: every word is aligned.
__global__ void im2col_nhwc16_kernel(Im2col p, const std::int8_t* __restrict__ x,
                                     int4* __restrict__ cols, int n) {
  const int words = p.row / 16;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int r = i / words, k = (i - r * words) * 16;
    const int tap = k / p.channels, c = k - tap * p.channels;
    const int kh = tap / p.k_w, kw = tap - kh * p.k_w;
    const int ow = r % p.out_w, rest = r / p.out_w, oh = rest % p.out_h, img = rest / p.out_h;
    const int h = oh * p.stride_h - p.pad_top + kh * p.dil_h;
    const int w = ow * p.stride_w - p.pad_left + kw * p.dil_w;
    int4 v = make_int4(0, 0, 0, 0);
    if (h >= 0 && h < p.in_h && w >= 0 && w < p.in_w)
      v = *reinterpret_cast<const int4*>(
          x + ((static_cast<std::int64_t>(img) * p.in_h + h) * p.in_w + w) * p.channels + c);
    cols[i] = v;
  }
}

__global__ void pad_rows_kernel(const std::int8_t* __restrict__ x, std::int64_t k, std::int64_t row,
                                std::int8_t* __restrict__ y, std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const std::int64_t c = i % row, r = i / row;
    y[i] = c < k ? x[r * k + c] : std::int8_t{0};
  }
}

/// The epilogue of one output element: `v` its accumulator, `c` its channel, `i` its index in y
/// (and in the residual).
template <class T>
__device__ __forceinline__ void epilogue_one(const Int8Epilogue& e, float v, std::int64_t c,
                                             std::int64_t i, void* __restrict__ y) {
  v = __fmul_rn(v, e.multiplier[c]);
  if (e.bias) v = __fadd_rn(v, e.bias[c]);
  if (e.residual) {
    const std::int64_t rc = channel_of(e.residual_q, i);
    const float rz = e.residual_q.zero_point ? e.residual_q.zero_point[rc] : 0.f;
    v = __fadd_rn(
        v, __fmul_rn(__fsub_rn(load8(e.residual, e.residual_type, i), rz), e.residual_q.scale[rc]));
  }
  if (e.relu) v = fmaxf(v, 0.f);
  if (e.out_q) {
    const std::int64_t qc = channel_of(e.y_q, i);
    const float zp = e.y_q.zero_point ? e.y_q.zero_point[qc] : 0.f;
    store_q8(y, e.out_type, i, v, e.y_q.scale[qc], zp, e.out_saturate);
  } else {
    detail::store(static_cast<T*>(y), i, v);
  }
}

__device__ __forceinline__ float acc_at(const Int8Epilogue& e, const void* acc, std::int64_t at) {
  return e.acc_f32 ? static_cast<const float*>(acc)[at]
                   : __int2float_rn(static_cast<const std::int32_t*>(acc)[at]);
}

/// One output element per thread, in the output's order (NCHW: p fastest).
template <class T>
__global__ void epilogue_kernel(Int8Epilogue e, const void* __restrict__ acc, void* __restrict__ y,
                                std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    std::int64_t p, c;
    if (e.nhwc) {
      c = i % e.channels;
      p = (i / e.channels) % e.pixels;
    } else {
      p = i % e.pixels;
      c = (i / e.pixels) % e.channels;
    }
    const std::int64_t img = i / (e.pixels * e.channels);
    epilogue_one<T>(e, acc_at(e, acc, (img * e.pixels + p) * e.acc_ld + c), c, i, y);
  }
}

/// Outputs whose rows are the accumulator's (NHWC, or a matrix product), channels a multiple of
/// 4: four channels per thread, one 16-byte load of the accumulator, one division per thread.
template <class T>
__global__ void epilogue_rows4_kernel(Int8Epilogue e, const void* __restrict__ acc,
                                      void* __restrict__ y, std::int64_t rows) {
  const std::int64_t groups = e.channels / 4;
  KILN_GRID_LOOP(t, rows * groups) {
    const std::int64_t row = t / groups, c0 = (t - row * groups) * 4;
    const std::int64_t at = row * e.acc_ld + c0, i = row * e.channels + c0;
    float v[4];
    if (e.acc_f32) {
      const float4 a = *reinterpret_cast<const float4*>(static_cast<const float*>(acc) + at);
      v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
    } else {
      const int4 a = *reinterpret_cast<const int4*>(static_cast<const std::int32_t*>(acc) + at);
      v[0] = __int2float_rn(a.x), v[1] = __int2float_rn(a.y), v[2] = __int2float_rn(a.z),
      v[3] = __int2float_rn(a.w);
    }
#pragma unroll
    for (int k = 0; k < 4; ++k) epilogue_one<T>(e, v[k], c0 + k, i + k, y);
  }
}

constexpr int kThreads = 256;

}  // namespace

cudaError_t quantize(Elem x_elem, const void* x, const QuantParams& q, Q8 type, bool saturate,
                     void* y, std::int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!q.scale || q.channels < 1 || q.inner < 1) return cudaErrorInvalidValue;
  return detail::dispatch(x_elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    quantize_kernel<T><<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), q, type, saturate, y, n);
    return cudaGetLastError();
  });
}

cudaError_t dequantize(const void* x, Q8 type, const QuantParams& q, Elem y_elem, void* y,
                       std::int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!q.scale || q.channels < 1 || q.inner < 1) return cudaErrorInvalidValue;
  return detail::dispatch(y_elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dequantize_kernel<T>
        <<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(x, type, q, static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

cudaError_t im2col_s8(const Im2col& p, const std::int8_t* x, std::int8_t* cols,
                      cudaStream_t stream) {
  if (p.k_h < 1 || p.k_w < 1 || p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 ||
      p.row < p.channels * p.k_h * p.k_w)
    return cudaErrorInvalidValue;
  const std::int64_t n = p.batch * p.out_h * p.out_w * p.row;
  if (n == 0) return cudaSuccess;
  if (p.nhwc && p.channels % 16 == 0 && p.row == p.channels * p.k_h * p.k_w &&
      n / 16 <= std::numeric_limits<int>::max()) {
    const int words = static_cast<int>(n / 16);
    im2col_nhwc16_kernel<<<detail::grid_for(words, kThreads), kThreads, 0, stream>>>(
        p, x, reinterpret_cast<int4*>(cols), words);
    return cudaGetLastError();
  }
  if (p.nhwc && p.channels % 4 == 0 && p.row == p.channels * p.k_h * p.k_w) {
    im2col_nhwc4_kernel<<<detail::grid_for(n / 4, kThreads), kThreads, 0, stream>>>(
        p, x, reinterpret_cast<std::int32_t*>(cols), n / 4);
    return cudaGetLastError();
  }
  im2col_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(p, x, cols, n);
  return cudaGetLastError();
}

cudaError_t pad_rows_s8(const std::int8_t* x, std::int64_t rows, std::int64_t k, std::int64_t row,
                        std::int8_t* y, cudaStream_t stream) {
  if (row < k) return cudaErrorInvalidValue;
  const std::int64_t n = rows * row;
  if (n == 0) return cudaSuccess;
  pad_rows_kernel<<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(x, k, row, y, n);
  return cudaGetLastError();
}

cudaError_t int8_epilogue(const Int8Epilogue& e, const void* acc, void* y, cudaStream_t stream) {
  if (!e.multiplier || e.acc_ld < e.channels || (e.out_q && !e.y_q.scale) ||
      (e.residual && !e.residual_q.scale))
    return cudaErrorInvalidValue;
  const std::int64_t n = e.batch * e.channels * e.pixels;
  if (n == 0) return cudaSuccess;
  // Rows of the accumulator are rows of y when y is NHWC or a matrix product's; the accumulator's
  // rows (acc_ld, a multiple of 4) start 16-byte aligned in the workspace.
  const bool rows4 = (e.nhwc || e.pixels == 1) && e.channels % 4 == 0 && e.acc_ld % 4 == 0 &&
                     reinterpret_cast<std::uintptr_t>(acc) % 16 == 0;
  return detail::dispatch(e.y_elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (rows4) {
      const std::int64_t rows = e.batch * e.pixels, work = rows * (e.channels / 4);
      epilogue_rows4_kernel<T>
          <<<detail::grid_for(work, kThreads), kThreads, 0, stream>>>(e, acc, y, rows);
    } else {
      epilogue_kernel<T><<<detail::grid_for(n, kThreads), kThreads, 0, stream>>>(e, acc, y, n);
    }
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
