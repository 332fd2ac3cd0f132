// One registration function per op family of reference kernels, one file each.
#pragma once

#include "kiln/reference/executor.hpp"

namespace kiln::reference {

void register_elementwise(KernelRegistry& r);  // elementwise.cpp
void register_nn(KernelRegistry& r);         // nn.cpp (conv, pooling, gemm, normalization, softmax)
void register_rnn(KernelRegistry& r);        // rnn.cpp
void register_tensor(KernelRegistry& r);     // tensor.cpp (layout and indexing ops)
void register_reduce(KernelRegistry& r);     // reduce.cpp
void register_quantize(KernelRegistry& r);   // quantize.cpp (Q/DQ, integer and QLinear ops)
void register_attention(KernelRegistry& r);  // attention.cpp (Attention, RotaryEmbedding)
void register_fused(KernelRegistry& r);      // fused.cpp (kiln.Fused: the parts in order)

inline void register_all(KernelRegistry& r) {
  register_elementwise(r);
  register_nn(r);
  register_rnn(r);
  register_tensor(r);
  register_reduce(r);
  register_quantize(r);
  register_attention(r);
  register_fused(r);
}

}  // namespace kiln::reference
