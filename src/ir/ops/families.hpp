// One registration function per op family; each lives in its own file in this folder.
#pragma once

#include "kiln/ir/op_registry.hpp"

namespace kiln::ops {

void register_elementwise(OpRegistry& r);  // elementwise.cpp: arithmetic, comparison, logic, unary
                                           // math, activations, Cast, Where, Clip
void register_nn(OpRegistry& r);  // nn.cpp: Conv, ConvTranspose, pooling, LRN, normalization, Gemm,
                                  // MatMul, Softmax
void register_rnn(OpRegistry& r);  // rnn.cpp: RNN, LSTM, GRU
void register_tensor(
    OpRegistry& r);  // tensor.cpp: Reshape, Transpose, Slice, Pad, Concat, Gather, Resize, ...
void register_reduce(OpRegistry& r);  // reduce.cpp: Reduce*, ArgMax, ArgMin, TopK, CumSum
void register_quantize(
    OpRegistry& r);  // quantize.cpp: QuantizeLinear, DequantizeLinear, integer and QLinear ops
void register_attention(OpRegistry& r);  // attention.cpp: Attention, RotaryEmbedding
void register_fused(OpRegistry& r);      // fused.cpp: kiln.Fused (the builder's fused steps)

inline void register_all(OpRegistry& r) {
  register_elementwise(r);
  register_nn(r);
  register_rnn(r);
  register_tensor(r);
  register_reduce(r);
  register_quantize(r);
  register_attention(r);
  register_fused(r);
}

}  // namespace kiln::ops
