#include <cmath>
#include <mutex>
#include <type_traits>

#include <mma.h>

#include "attention.cuh"
#include "device_util.cuh"

namespace kiln::kernels {

namespace {

constexpr int kPerLane = static_cast<int>(kMaxAttentionHeadDim / 32);
constexpr int kWarpsPerBlock = 4;

/// Where query row (b, h, i) starts in attn_mask (0 without one).
__device__ __forceinline__ std::int64_t mask_row_of(const AttentionArgs& a, std::int64_t b,
                                                    std::int64_t h, std::int64_t i) {
  const std::int64_t* md = a.mask_dims;
  if (a.mask_kind == 0) return 0;
  return (((md[0] == 1 ? 0 : b) * md[1] + (md[1] == 1 ? 0 : h)) * md[2] + (md[2] == 1 ? 0 : i)) *
         md[3];
}

/// The keys [begin, end) that query rows first..last can see through the causal frontier and the
/// window (the mask aside).
__device__ __forceinline__ void key_range(const AttentionArgs& a, std::int64_t first,
                                          std::int64_t last, std::int64_t& begin,
                                          std::int64_t& end) {
  begin = 0;
  end = a.kv_len;
  if (a.causal && last + 1 < end) end = last + 1;
  if (a.right_window >= 0 && last + a.right_window + 1 < end) end = last + a.right_window + 1;
  if (a.left_window >= 0 && first - a.left_window > 0) begin = first - a.left_window;
}

/// Whether query row i sees key j (its row of the mask starting at mask_row), and the additive
/// mask's value for it in `bias`.
template <class T>
__device__ __forceinline__ bool key_visible(const AttentionArgs& a, std::int64_t mask_row,
                                            std::int64_t i, std::int64_t j, float& bias) {
  bias = 0.f;
  if (j >= a.kv_len || (a.causal && j > i)) return false;
  if ((a.left_window >= 0 && j < i - a.left_window) ||
      (a.right_window >= 0 && j > i + a.right_window))
    return false;
  if (a.mask_kind == 0) return true;
  if (j >= a.mask_dims[3]) return false;
  if (a.mask_kind == 1) return static_cast<const unsigned char*>(a.mask)[mask_row + j] != 0;
  bias = detail::load(static_cast<const T*>(a.mask), mask_row + j);
  return bias != -INFINITY;
}

/// One warp per query row: each lane holds head_dim / 32 of the query and of the output.
template <class T>
__global__ void attention_rows(AttentionArgs a) {
  const std::int64_t warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x & 31);
  const std::int64_t rows = a.batch * a.q_heads * a.q_len;
  if (warp >= rows) return;
  const std::int64_t i = warp % a.q_len;
  const std::int64_t h = (warp / a.q_len) % a.q_heads;
  const std::int64_t b = warp / (a.q_len * a.q_heads);
  const std::int64_t g = h / (a.q_heads / a.kv_heads);
  const T* q = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h + i * a.qs.s;
  const T* k = static_cast<const T*>(a.k) + b * a.ks.b + g * a.ks.h;
  const T* v = static_cast<const T*>(a.v) + b * a.vs.b + g * a.vs.h;
  T* y = static_cast<T*>(a.y) + b * a.ys.b + h * a.ys.h + i * a.ys.s;

  float qr[kPerLane], acc[kPerLane];
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const std::int64_t d = lane + 32 * c;
    qr[c] = d < a.head_dim ? detail::load(q, d) : 0.f;
    acc[c] = 0.f;
  }
  const std::int64_t mask_row = mask_row_of(a, b, h, i);
  float m = -INFINITY, l = 0.f;
  // Only the keys inside the causal frontier and the window are visited.
  std::int64_t j_begin, j_end;
  key_range(a, i, i, j_begin, j_end);
  for (std::int64_t j = j_begin; j < j_end; ++j) {
    // The bias first: a masked key costs no dot product.
    float bias;
    if (!key_visible<T>(a, mask_row, i, j, bias)) continue;
    const T* kj = k + j * a.ks.s;
    float s = 0.f;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const std::int64_t d = lane + 32 * c;
      if (d < a.head_dim) s += qr[c] * detail::load(kj, d);
    }
    s = detail::warp_sum(s) * a.scale;
    if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
    s += bias;
    const float m_new = fmaxf(m, s);
    const float corr = __expf(m - m_new);  // 0 for the first key (m = -inf)
    const float p = __expf(s - m_new);
    l = l * corr + p;
    const T* vj = v + j * a.vs.s;
#pragma unroll
    for (int c = 0; c < kPerLane; ++c) {
      const std::int64_t d = lane + 32 * c;
      if (d < a.v_head_dim) acc[c] = acc[c] * corr + p * detail::load(vj, d);
    }
    m = m_new;
  }
  const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int c = 0; c < kPerLane; ++c) {
    const std::int64_t d = lane + 32 * c;
    if (d < a.v_head_dim) detail::store(y, d, acc[c] * inv);
  }
}

// ---- tensor cores (f16 and bf16, head dim 32/64/96/128)
// ------------------------------------------------ Flash attention with WMMA: a block of four warps
// takes 64 query rows (16 per warp) of one (batch, head) and walks the keys in tiles of 64. Per
// tile each warp computes its 16x64 scores S = Q K^T on tensor cores (f32 accumulation) into shared
// memory, applies scale, softcap, mask, causal frontier and window there with the online softmax
// (two lanes per row, f32 running max and sum), writes P in the input type (f16 or bf16) and adds P
// V into its f32 output rows, which sit in shared memory so that each row can be rescaled by
// exp(m_old - m_new) before the product. Keys past the causal or window frontier of the block's
// last row are never loaded.
namespace wmma = nvcuda::wmma;
constexpr int kTile = 64;  // query rows per block and keys per tile

template <int D>
struct TcLayout {
  static constexpr int ldh = D + 8, lds = kTile + 4, ldp = kTile + 8, ldo = D + 4;
  static constexpr std::size_t q = 0, k = q + kTile * ldh * 2, v = k + kTile * ldh * 2,
                               s = v + kTile * ldh * 2, p = s + kTile * lds * 4,
                               o = p + kTile * ldp * 2, bytes = o + kTile * ldo * 4;
};

/// rows x D halves from `src` (row r at src + r * stride; rows >= valid read as 0) into shared
/// memory with leading dim ld, in 16-byte pieces.
template <int D, class T>
__device__ __forceinline__ void load_rows(T* dst, int ld, const T* src, std::int64_t stride,
                                          std::int64_t valid) {
  constexpr int kChunks = D / 8;
  for (int c = static_cast<int>(threadIdx.x); c < kTile * kChunks;
       c += static_cast<int>(blockDim.x)) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < valid) v = *reinterpret_cast<const uint4*>(src + r * stride + col);
    *reinterpret_cast<uint4*>(dst + r * ld + col) = v;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(128) attention_tc(AttentionArgs a) {
  using L = TcLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  auto* Qs = reinterpret_cast<T*>(smem + L::q);
  auto* Ks = reinterpret_cast<T*>(smem + L::k);
  auto* Vs = reinterpret_cast<T*>(smem + L::v);
  auto* S = reinterpret_cast<float*>(smem + L::s);
  auto* P = reinterpret_cast<T*>(smem + L::p);
  auto* O = reinterpret_cast<float*>(smem + L::o);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) & 31;
  const std::int64_t tiles = (a.q_len + kTile - 1) / kTile;
  const std::int64_t q0 = (blockIdx.x % tiles) * kTile;
  const std::int64_t h = (blockIdx.x / tiles) % a.q_heads;
  const std::int64_t b = blockIdx.x / (tiles * a.q_heads);
  const std::int64_t g = h / (a.q_heads / a.kv_heads);
  const auto* q = static_cast<const T*>(a.q) + b * a.qs.b + h * a.qs.h + q0 * a.qs.s;
  const auto* k = static_cast<const T*>(a.k) + b * a.ks.b + g * a.ks.h;
  const auto* v = static_cast<const T*>(a.v) + b * a.vs.b + g * a.vs.h;

  load_rows<D>(Qs, L::ldh, q, a.qs.s, a.q_len - q0);
  for (int c = static_cast<int>(threadIdx.x); c < kTile * L::ldo; c += static_cast<int>(blockDim.x))
    O[c] = 0.f;
  __syncthreads();
  const int r0 = warp * 16;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk)
    wmma::load_matrix_sync(qf[kk], Qs + r0 * L::ldh + kk * 16, L::ldh);

  // This lane's row (two lanes per row, each with half of the tile's columns).
  const int row = r0 + lane / 2, part = lane & 1;
  const std::int64_t i = q0 + row;
  const std::int64_t mask_row = mask_row_of(a, b, h, i);
  float m = -INFINITY, l = 0.f;

  // The keys any row of this block can see, from a whole tile.
  std::int64_t kv_begin, kv_end;
  key_range(a, q0, q0 + kTile - 1, kv_begin, kv_end);
  kv_begin = kv_begin / kTile * kTile;

  for (std::int64_t j0 = kv_begin; j0 < kv_end; j0 += kTile) {
    load_rows<D>(Ks, L::ldh, k + j0 * a.ks.s, a.ks.s, a.kv_len - j0);
    load_rows<D>(Vs, L::ldh, v + j0 * a.vs.s, a.vs.s, a.kv_len - j0);
    __syncthreads();
    // S = Q K^T for this warp's 16 rows.
#pragma unroll
    for (int nt = 0; nt < kTile / 16; ++nt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
      wmma::fill_fragment(sf, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
        wmma::load_matrix_sync(kf, Ks + nt * 16 * L::ldh + kk * 16, L::ldh);
        wmma::mma_sync(sf, qf[kk], kf, sf);
      }
      wmma::store_matrix_sync(S + r0 * L::lds + nt * 16, sf, L::lds, wmma::mem_row_major);
    }
    __syncwarp();
    // Online softmax over this tile's 32 columns of the lane's row.
    float* srow = S + row * L::lds + part * 32;
    float tmax = -INFINITY;
    for (int c = 0; c < 32; ++c) {
      const std::int64_t j = j0 + part * 32 + c;
      float x = srow[c] * a.scale;
      if (a.softcap > 0.f) x = a.softcap * tanhf(x / a.softcap);
      float bias;
      const bool keep = key_visible<T>(a, mask_row, i, j, bias);
      x += bias;
      x = keep ? x : -INFINITY;
      srow[c] = x;
      tmax = fmaxf(tmax, x);
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    const float m_new = fmaxf(m, tmax);
    const float corr = m == -INFINITY ? 0.f : __expf(m - m_new);
    T* prow = P + row * L::ldp + part * 32;
    float sum = 0.f;
    for (int c = 0; c < 32; ++c) {
      const float p = srow[c] == -INFINITY ? 0.f : __expf(srow[c] - m_new);
      detail::store(prow, c, p);
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * corr + sum;
    m = m_new;
    float* orow = O + row * L::ldo + part * (D / 2);
    for (int d = 0; d < D / 2; ++d) orow[d] *= corr;
    __syncwarp();
    // O += P V for this warp's rows.
#pragma unroll
    for (int dt = 0; dt < D / 16; ++dt) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
      wmma::load_matrix_sync(of, O + r0 * L::ldo + dt * 16, L::ldo, wmma::mem_row_major);
#pragma unroll
      for (int kk = 0; kk < kTile / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
        wmma::load_matrix_sync(pf, P + r0 * L::ldp + kk * 16, L::ldp);
        wmma::load_matrix_sync(vf, Vs + kk * 16 * L::ldh + dt * 16, L::ldh);
        wmma::mma_sync(of, pf, vf, of);
      }
      wmma::store_matrix_sync(O + r0 * L::ldo + dt * 16, of, L::ldo, wmma::mem_row_major);
    }
    __syncthreads();  // K and V are loaded again
  }
  if (i >= a.q_len) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;  // every key masked: 0, as the reference
  auto* y = static_cast<T*>(a.y) + b * a.ys.b + h * a.ys.h + i * a.ys.s;
  const float* orow = O + row * L::ldo;
  for (int d = part * (D / 2); d < (part + 1) * (D / 2); ++d) detail::store(y, d, orow[d] * inv);
}

template <class T, int D>
cudaError_t launch_tc(const AttentionArgs& a, cudaStream_t stream) {
  // More than 48 KiB of shared memory is opted into once per device.
  static std::mutex mu;
  static std::uint64_t opted = 0;
  int dev = 0;
  if (const cudaError_t e = cudaGetDevice(&dev); e != cudaSuccess) return e;
  {
    std::lock_guard<std::mutex> lock(mu);
    const std::uint64_t bit = std::uint64_t{1} << (dev & 63);
    if (!(opted & bit)) {
      const cudaError_t e =
          cudaFuncSetAttribute(attention_tc<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(TcLayout<D>::bytes));
      if (e != cudaSuccess) return e;
      opted |= bit;
    }
  }
  const std::int64_t blocks = a.batch * a.q_heads * ((a.q_len + kTile - 1) / kTile);
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  attention_tc<T, D><<<static_cast<unsigned>(blocks), 128, TcLayout<D>::bytes, stream>>>(a);
  return cudaGetLastError();
}

/// The tensor-core kernel takes f16 or bf16 with equal Q/K and V head dims of 32, 64, 96 or 128,
/// each row 16-byte aligned (its loads are 16-byte pieces).
bool tensor_core_case(Elem elem, const AttentionArgs& a) {
  if (elem == Elem::f32 || a.head_dim != a.v_head_dim) return false;
  if (a.head_dim != 32 && a.head_dim != 64 && a.head_dim != 96 && a.head_dim != 128) return false;
  for (const void* p : {a.q, a.k, a.v})
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  for (const HeadStrides* st : {&a.qs, &a.ks, &a.vs})
    if (st->b % 8 != 0 || st->h % 8 != 0 || st->s % 8 != 0) return false;
  return true;
}

}  // namespace

cudaError_t attention(Elem elem, const AttentionArgs& a, cudaStream_t stream) {
  const std::int64_t rows = a.batch * a.q_heads * a.q_len;
  if (rows == 0) return cudaSuccess;
  if (a.head_dim > kMaxAttentionHeadDim || a.v_head_dim > kMaxAttentionHeadDim || a.kv_heads <= 0 ||
      a.q_heads % a.kv_heads != 0)
    return cudaErrorInvalidValue;
  const std::int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  if (tensor_core_case(elem, a)) {
    return detail::dispatch(elem, [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      if constexpr (std::is_same_v<T, float>) {
        return cudaErrorInvalidValue;  // tensor_core_case takes 16-bit floats only
      } else {
        switch (a.head_dim) {
          case 32: return launch_tc<T, 32>(a, stream);
          case 64: return launch_tc<T, 64>(a, stream);
          case 96: return launch_tc<T, 96>(a, stream);
          default: return launch_tc<T, 128>(a, stream);
        }
      }
    });
  }
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    attention_rows<T><<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(a);
    return cudaGetLastError();
  });
}

namespace {

template <class T>
__global__ void rotary_kernel(RotaryArgs a, std::int64_t n) {
  const std::int64_t half = a.rotary_dim / 2;
  KILN_GRID_LOOP(i, n) {
    const std::int64_t d = i % a.head_dim, t = i / a.head_dim;
    std::int64_t b, s;
    if (a.rank3) {  // [B, S, H, D]
      s = (t / a.heads) % a.seq;
      b = t / (a.heads * a.seq);
    } else {  // [B, H, S, D]
      s = t % a.seq;
      b = t / (a.seq * a.heads);
    }
    const T* x = static_cast<const T*>(a.x);
    const float v = detail::load(x, i);
    float out = v;
    if (d < a.rotary_dim) {
      const std::int64_t row = b * a.seq + s;
      const std::int64_t p = a.positions ? a.positions[row] : row;
      if (p < 0 || p >= a.cache_rows) {
        out = NAN;
      } else {
        const bool first = a.interleaved ? d % 2 == 0 : d < half;
        const std::int64_t k = a.interleaved ? d / 2 : (first ? d : d - half);
        const std::int64_t base = i - d;
        const float x1 = detail::load(x, base + (a.interleaved ? 2 * k : k));
        const float x2 = detail::load(x, base + (a.interleaved ? 2 * k + 1 : k + half));
        const float c = detail::load(static_cast<const T*>(a.cos), p * half + k);
        const float sn = detail::load(static_cast<const T*>(a.sin), p * half + k);
        out = first ? c * x1 - sn * x2 : sn * x1 + c * x2;
      }
    }
    detail::store(static_cast<T*>(a.y), i, out);
  }
}

}  // namespace

cudaError_t rotary_embedding(Elem elem, const RotaryArgs& a, cudaStream_t stream) {
  const std::int64_t n = a.batch * a.heads * a.seq * a.head_dim;
  if (n == 0) return cudaSuccess;
  if (a.rotary_dim < 0 || a.rotary_dim % 2 != 0 || a.rotary_dim > a.head_dim)
    return cudaErrorInvalidValue;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    rotary_kernel<T><<<detail::grid_for(n, 256), 256, 0, stream>>>(a, n);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
