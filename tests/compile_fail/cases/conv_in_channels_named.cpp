// first-line: conv2d_layer<50, kiln::dsl::kernel<5>, kiln::dsl::in_channels<20>, kiln::dsl::layer_name<
// first-line: "conv2"
// first-line: kiln::rules::input_channels, 20, 50>
// A layer named at compile time: the diagnostic shows its name, 'conv2', too.
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<50>, fix<8>, fix<8>);
  auto c = conv2d<50, kernel<5>, in_channels<20>, layer_name<"conv2">>(x, w);
}
