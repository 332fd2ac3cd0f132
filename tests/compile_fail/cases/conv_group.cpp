// 30 input channels cannot be split into 4 groups.
// first-line: conv2d_layer<32, kiln::dsl::kernel<3>, kiln::dsl::group<4>
// first-line: kiln::rules::group_in_channels, 30, 4>
// expect: conv2d_layer<32, kiln::dsl::kernel<3>, kiln::dsl::group<4> >
// expect: -1, 30, 16, 16>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<30>, fix<16>, fix<16>);
  auto c = conv2d<32, kernel<3>, group<4>>(x, w, "conv");
}
