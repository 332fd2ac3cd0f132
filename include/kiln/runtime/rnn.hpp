// One recurrent layer (ONNX LSTM, GRU or RNN, layout 0) through cuDNN's RNN API. The ONNX
// weights are packed once into cuDNN's weight space (gates reordered); forward() runs cuDNN's
// inference pass and, where ONNX and cuDNN lay Y out differently (two directions, reverse),
// moves it through the workspace with a strided copy.
//
// Supported: ONNX default activations (LSTM sigmoid/tanh/tanh, GRU sigmoid/tanh, RNN tanh, or
// RNN relu), no clip, no peepholes (P), input_forget = 0, no sequence_lens (every sequence runs
// all `seq` steps), and for GRU only linear_before_reset = 1: cuDNN's GRU applies the reset gate
// after the recurrent product, h' = tanh(Wh x + Wbh + r . (Rh h + Rbh)). A GRU with
// linear_before_reset = 0 must not use this layer; the caller falls back.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "kiln/runtime/library.hpp"

namespace kiln::runtime {

enum class RnnCell : int { lstm = 0, gru, rnn_tanh, rnn_relu };

struct RnnShape {
  RnnCell cell = RnnCell::lstm;
  int seq = 1, batch = 1, input = 1, hidden = 1;
  int directions = 1;    ///< 1 (forward or reverse) or 2 (bidirectional)
  bool reverse = false;  ///< ONNX direction="reverse"; requires directions == 1
};

/// The ONNX op name of a cell ("LSTM", "GRU", "RNN") and its gate count G (4, 3, 1).
const char* rnn_op_name(RnnCell cell);
int rnn_gates(RnnCell cell);
/// "LSTM seq 7, batch 5, input 3, hidden 4, bidirectional": names a shape in errors.
std::string rnn_shape_text(const RnnShape& shape);

class Rnn {
 public:
  /// Throws kiln::Error naming the shape when it is invalid or cuDNN refuses it.
  Rnn(const Library& lib, const RnnShape& shape, Precision precision);
  ~Rnn();
  Rnn(const Rnn&) = delete;
  Rnn& operator=(const Rnn&) = delete;

  const RnnShape& shape() const { return shape_; }
  Precision precision() const { return precision_; }

  /// Bytes of cuDNN's packed weight space (allocate this on the device for pack_weights).
  std::size_t weight_space_bytes() const;
  /// Bytes of scratch that forward() needs: cuDNN's workspace plus room for Y in cuDNN's layout
  /// and, for reverse, the time-reversed X.
  std::size_t workspace_bytes() const;

  /// Packs host float32 ONNX weights into `weight_space` (device, weight_space_bytes(), in the
  /// precision's dtype), synchronously:
  ///   W [dirs, G*hidden, input], R [dirs, G*hidden, hidden], B [dirs, 2*G*hidden] (Wb then Rb)
  ///   or nullptr for zeros; gates in ONNX order (LSTM i,o,f,c; GRU z,r,h).
  void pack_weights(const float* W, const float* R, const float* B, void* weight_space) const;

  /// ONNX layout 0, device pointers in the precision's dtype:
  ///   x [seq, batch, input]; h0, c0 [dirs, batch, hidden] or nullptr (zeros; c0 LSTM only);
  ///   y [seq, dirs, batch, hidden] or nullptr; y_h, y_c [dirs, batch, hidden] or nullptr.
  /// Asynchronous on `stream`: no allocation and no synchronisation, so it can be captured
  /// into a CUDA graph. `workspace` holds workspace_bytes().
  void forward(const void* x, const void* h0, const void* c0, const void* weight_space, void* y,
               void* y_h, void* y_c, void* workspace, Stream stream) const;

 private:
  struct Impl;
  const Library& lib_;
  RnnShape shape_;
  Precision precision_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::runtime
