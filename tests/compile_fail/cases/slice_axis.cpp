// A slice along axis 4 of a rank-4 tensor.
// first-line: slice_layer<4, 0, 2, 1>
// first-line: kiln::rules::normalize_axis, 4, 4>
// expect: slice_layer<4, 0, 2, 1>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, fix<8>, fix<8>);
  auto y = slice<4, 0, 2>(x);
}
