#include <cmath>

#include "attention.cuh"
#include "device_util.cuh"

namespace kiln::kernels {

namespace {

constexpr int kPerLane = static_cast<int>(kMaxAttentionHeadDim / 32);
constexpr int kWarpsPerBlock = 4;

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
  const std::int64_t* md = a.mask_dims;
  const std::int64_t mask_row = a.mask_kind == 0 ? 0
      : (((md[0] == 1 ? 0 : b) * md[1] + (md[1] == 1 ? 0 : h)) * md[2] + (md[2] == 1 ? 0 : i)) * md[3];
  float m = -INFINITY, l = 0.f;
  for (std::int64_t j = 0; j < a.kv_len; ++j) {
    // The bias first: a masked key costs no dot product.
    float bias = 0.f;
    if (a.causal && j > i) continue;
    if (a.left_window >= 0 && j < i - a.left_window) continue;
    if (a.right_window >= 0 && j > i + a.right_window) continue;
    if (a.mask_kind != 0) {
      if (j >= md[3]) continue;
      if (a.mask_kind == 1) {
        if (static_cast<const unsigned char*>(a.mask)[mask_row + j] == 0) continue;
      } else {
        bias = detail::load(static_cast<const T*>(a.mask), mask_row + j);
        if (bias == -INFINITY) continue;
      }
    }
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

}  // namespace

cudaError_t attention(Elem elem, const AttentionArgs& a, cudaStream_t stream) {
  const std::int64_t rows = a.batch * a.q_heads * a.q_len;
  if (rows == 0) return cudaSuccess;
  if (a.head_dim > kMaxAttentionHeadDim || a.v_head_dim > kMaxAttentionHeadDim || a.kv_heads <= 0 ||
      a.q_heads % a.kv_heads != 0)
    return cudaErrorInvalidValue;
  const std::int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    attention_rows<T><<<static_cast<unsigned>(blocks), 32 * kWarpsPerBlock, 0, stream>>>(a);
    return cudaGetLastError();
  });
}

}  // namespace kiln::kernels
