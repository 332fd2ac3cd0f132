// conv2 declares 20 input channels but receives 50.
// first-line: conv2d_layer<50, kiln::dsl::kernel<5>, kiln::dsl::in_channels<20>
// first-line: kiln::rules::input_channels, 20, 50>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<50>, fix<12>, fix<12>);
  auto c = conv2d<50, kernel<5>, in_channels<20>>(x, w, "conv2");
}
