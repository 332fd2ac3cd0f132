// A convolution with stride 0.
// first-line: conv2d_layer<8, kiln::dsl::kernel<3>, kiln::dsl::stride<0>
// first-line: kiln::rules::conv_out_dim, 32, 3, 0, 1, 0, 0>
// expect: conv2d_layer<8, kiln::dsl::kernel<3>, kiln::dsl::stride<0> >
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, fix<32>, fix<32>);
  auto c = conv2d<8, kernel<3>, stride<0>>(x, w, "conv1");
}
