// Output padding 2 with stride 2.
// first-line: deconv2d_layer<4, kiln::dsl::kernel<4>, kiln::dsl::stride<2>, kiln::dsl::output_padding<2>
// first-line: kiln::rules::deconv_out_dim, 8, 4, 2, 1, 0, 0, 2>
// expect: deconv2d_layer<4, kiln::dsl::kernel<4>, kiln::dsl::stride<2>, kiln::dsl::output_padding<2> >
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<8>, fix<8>);
  auto y = deconv2d<4, kernel<4>, stride<2>, output_padding<2>>(x, w, "up");
}
