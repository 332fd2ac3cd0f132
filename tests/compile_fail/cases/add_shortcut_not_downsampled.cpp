// A residual add whose shortcut was not downsampled: [N,256,28,28] + [N,256,56,56].
// first-line: add_layer
// first-line: kiln::rules::broadcast_dim, 28, 56>
// expect: -1, 256, 28, 28
// expect: -1, 256, 56, 56
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<256>, fix<56>, fix<56>);
  auto y = conv2d<256, kernel<3>, stride<2>, padding<1>>(x, w, "res3a_branch2a");  // [N,256,28,28]
  auto r = add(y, x, "res3a");
}
