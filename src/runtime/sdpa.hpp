// Scaled dot-product attention through cuDNN's SDPA forward operation (its flash-attention
// engines): 16-bit Q, K, V and O as [B, heads, S, D] with any strides but a contiguous head dim,
// grouped heads, a scale, no mask. The Attention step (steps_attention.cpp) times its engines
// against kiln's own kernel and keeps the fastest; what cuDNN refuses runs on kiln's kernel.
#pragma once

#include <memory>

#include "attention.cuh"
#include "kiln/runtime/library.hpp"

namespace kiln::runtime {

class CudnnAttention {
 public:
  /// The problem: kernels::AttentionArgs' sizes, strides and scale (its pointers are ignored; no
  /// mask, causal frontier, window or softcap).
  CudnnAttention(const Library& lib, Precision precision, const kernels::AttentionArgs& shape,
                 std::size_t workspace_limit);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  /// Whether cuDNN's SDPA operation can take the problem at all (it still may list no engine).
  static bool takes(Precision precision, const kernels::AttentionArgs& a);
  /// Engines cuDNN's heuristics listed that made an execution plan within the workspace limit
  /// (0: none; the caller runs its own kernel).
  int engines() const;
  /// Uses engine `index` (0..engines()-1).
  void choose(int index);
  int chosen() const { return chosen_; }
  std::size_t workspace_bytes() const;
  /// Y = attention(Q, K, V) with the strides it was made for.
  void forward(const void* q, const void* k, const void* v, void* y, void* workspace,
               Stream stream) const;

 private:
  struct Impl;
  const Library& lib_;
  float scale_ = 1.f;
  int chosen_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::runtime
