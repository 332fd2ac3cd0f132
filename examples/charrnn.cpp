// A character-level language model, as in TensorRT's char-RNN sample: embedded characters
// [T, N, 512], a 2-layer LSTM of 512 hidden units with initial states in and final states out,
// a fully connected layer to a vocabulary of 65, softmax. PyTorch names: rnn.weight_ih_l0, ...,
// fc.weight, fc.bias (gates converted to the IR's ONNX order when bound).
//   charrnn [charrnn.wts | charrnn_tf.wts] [--input x.bin] [--output prob.bin]
// With --input, the file is data [16,N,512] (N from its size) and the initial states are zeros.
#include "charrnn.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) {
  return examples::run_example("charrnn", argc, argv, charrnn, 1, tf_to_torch);
}
