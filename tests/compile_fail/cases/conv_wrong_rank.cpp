// A 2-D convolution of a rank-3 tensor.
// first-line: conv2d_layer<8, kiln::dsl::kernel<3>
// first-line: kiln::rules::input_rank, 4, 3>
// expect: conv2d_layer<8, kiln::dsl::kernel<3> >
// expect: Layout::ncw, -1, 8, 16>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCW>(dyn, fix<8>, fix<16>);
  auto y = conv2d<8, kernel<3>>(x, w, "conv");
}
