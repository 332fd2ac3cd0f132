// A 2-layer LSTM given initial states for 1 layer.
// first-line: lstm_layer<128, kiln::dsl::layers<2>
// first-line: kiln::rules::rnn_states, 2, 1>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, TNC>(fix<10>, dyn, fix<64>);
  auto h0 = input<"h0", f32>(fix<1>, dyn, fix<128>);
  auto c0 = input<"c0", f32>(fix<1>, dyn, fix<128>);
  auto y = lstm<128, layers<2>>(x, h0, c0, w, "rnn");
}
