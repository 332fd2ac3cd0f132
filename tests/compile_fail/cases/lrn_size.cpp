// An LRN window of size 0.
// first-line: lrn_layer<0>
// first-line: kiln::rules::lrn_size, 0>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<16>, fix<16>);
  auto y = lrn<0>(x);
}
