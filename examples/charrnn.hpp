// A character-level language model, as in TensorRT's char-RNN sample: embedded characters
// [T, N, 512], a 2-layer LSTM of 512 hidden units with initial states in and final states out,
// a fully connected layer to a vocabulary of 65, softmax. PyTorch names: rnn.weight_ih_l0, ...,
// fc.weight, fc.bias (gates converted to the IR's ONNX order when bound).
//   charrnn [charrnn.wts | charrnn_tf.wts] [--input x.bin] [--output prob.bin]
// With --input, the file is data [16,N,512] (N from its size) and the initial states are zeros.
// The network is defined here (not in charrnn.cpp) so that `kiln build --example charrnn` builds it
// too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

inline Network charrnn(const Weights& w) {
  auto x = input<"data", f32, TNC>(fix<16>, dyn, fix<512>);  // [16,N,512]
  auto h0 = input<"hidden_in", f32>(fix<2>, dyn, fix<512>);  // [2,N,512]
  auto c0 = input<"cell_in", f32>(fix<2>, dyn, fix<512>);    // [2,N,512]
  auto r = lstm<512, layers<2>>(x, h0, c0, w, "rnn");        // y [16,N,512]
  auto flat = reshape<-1, 512>(r.y);                         // [16N,512]
  auto logits = fully_connected<65>(flat, w, "fc");          // [16N,65]
  auto prob = reshape<16, -1, 65>(softmax(logits));          // [16,N,65]
  return network(prob.named("prob"), r.h.named("hidden_out"), r.c.named("cell_out"));
}

/// A WTS file in TensorFlow's layout (rnn/multi_rnn_cell/cell_<k>/basic_lstm_cell/{kernel,bias},
/// gates i,c,f,o, forget bias 1.0 added at run time) is rewritten as PyTorch's rnn.* entries.
inline void tf_to_torch(kiln::WeightMap& w) {
  for (int layer = 0; layer < 2; ++layer) {
    const std::string cell =
        "rnn/multi_rnn_cell/cell_" + std::to_string(layer) + "/basic_lstm_cell/";
    if (!w.contains(cell + "kernel")) continue;
    kiln::port::tf_lstm_to_torch(w, cell + "kernel", cell + "bias", 512, "rnn.", layer, 1.0);
    std::printf("charrnn: layer %d converted from TensorFlow's LSTM layout\n", layer);
  }
}

}  // namespace examples
