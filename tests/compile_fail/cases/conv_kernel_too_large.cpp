// A 7x7 kernel over a 5x5 input padded by 0.
// first-line: conv2d_layer<8, kiln::dsl::kernel<7>
// first-line: kiln::rules::conv_out_dim, 5, 7, 1, 1, 0, 0>
// expect: conv2d_layer<8, kiln::dsl::kernel<7> >
// expect: -1, 3, 5, 5>
// expect: conv_out_dim
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, fix<5>, fix<5>);
  auto c = conv2d<8, kernel<7>>(x, w, "conv1");
}
