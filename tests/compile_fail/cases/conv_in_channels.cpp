// conv2 declares 20 input channels but receives 50.
// expect: conv2d_layer<50, kiln::dsl::kernel<5>, kiln::dsl::in_channels<20> >
// expect: -1, 50, 12, 12>
// expect: "input channels"
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<50>, fix<12>, fix<12>);
  auto c = conv2d<50, kernel<5>, in_channels<20>>(x, w, "conv2");
}
