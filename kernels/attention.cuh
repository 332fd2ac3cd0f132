// Scaled dot-product attention (ONNX Attention without a cache): per batch b, query head h and
// query row i, y = softmax(scale * q . k_j (softcapped) + bias_j) weighted sum of v_j, with the
// softmax taken online over the keys (one pass, f32 running max and sum, as flash attention
// does) and the bias made of the mask, the causal frontier and the sliding window. Rows whose
// every key is masked give 0 (the ONNX reference's rule).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// Element strides of one operand over (batch, head, sequence); the head dim is contiguous.
struct HeadStrides {
  std::int64_t b = 0, h = 0, s = 0;
};

struct AttentionArgs {
  std::int64_t batch = 0, q_heads = 0, kv_heads = 0, q_len = 0, kv_len = 0;
  std::int64_t head_dim = 0, v_head_dim = 0;  // at most kMaxAttentionHeadDim each
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* y = nullptr;
  HeadStrides qs, ks, vs, ys;
  float scale = 1.f;
  float softcap = 0.f;  // > 0: s = softcap * tanh(s / softcap)
  bool causal = false;
  std::int64_t left_window = -1, right_window = -1;  // -1: unbounded
  /// attn_mask over [B, Hq, S, T] with dims left-padded to 4 (1 broadcasts); keys past its last
  /// dim are masked. mask_kind 0: none, 1: boolean (one byte, nonzero keeps), 2: additive (the
  /// element type).
  int mask_kind = 0;
  const void* mask = nullptr;
  std::int64_t mask_dims[4] = {1, 1, 1, 1};
};

inline constexpr std::int64_t kMaxAttentionHeadDim = 256;

cudaError_t attention(Elem elem, const AttentionArgs& a, cudaStream_t stream);

/// ONNX RotaryEmbedding over a contiguous x of [B, S, heads * D] (rank3) or [B, heads, S, D]:
/// the first `rotary_dim` of each head's D values are rotated in pairs (k, k + rotary_dim / 2),
/// or (2k, 2k + 1) when interleaved, by the angle whose cos and sin are row p of the caches
/// ([rows, rotary_dim / 2], element type), p = positions[b * S + s] (int64) or b * S + s without
/// positions; the rest of D is copied. A position outside 0..cache_rows-1 gives a row of NaN (the
/// CPU reference refuses it with its message; the GPU cannot stop there).
struct RotaryArgs {
  std::int64_t batch = 0, heads = 0, seq = 0, head_dim = 0, rotary_dim = 0, cache_rows = 0;
  bool rank3 = false, interleaved = false;
  const void* x = nullptr;
  void* y = nullptr;
  const void* cos = nullptr;
  const void* sin = nullptr;
  const std::int64_t* positions = nullptr;
};

cudaError_t rotary_embedding(Elem elem, const RotaryArgs& a, cudaStream_t stream);

}  // namespace kiln::kernels
