// An LSTM of 512 hidden units given initial states of 256.
// first-line: lstm_layer<512, kiln::dsl::layers<2>
// first-line: kiln::rules::rnn_hidden, 512, 256>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, TNC>(fix<10>, dyn, fix<512>);
  auto h0 = input<"h0", f32>(fix<2>, dyn, fix<256>);
  auto c0 = input<"c0", f32>(fix<2>, dyn, fix<256>);
  auto y = lstm<512, layers<2>>(x, h0, c0, w, "rnn");
}
