// A GRU of 64 hidden units given an initial state of 32.
// first-line: gru_layer<64>
// first-line: kiln::rules::rnn_hidden, 64, 32>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, TNC>(fix<10>, dyn, fix<16>);
  auto h0 = input<"h0", f32>(fix<1>, dyn, fix<32>);
  auto y = gru<64>(x, h0, w, "gru");
}
