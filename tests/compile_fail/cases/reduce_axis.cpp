// Reducing axis 5 of a rank-4 tensor.
// first-line: reduce_layer<kiln::dsl::axes<5>
// first-line: kiln::rules::normalize_axis, 5, 4>
// expect: reduce_layer<kiln::dsl::axes<5> >
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, fix<8>, fix<8>);
  auto y = reduce_mean<axes<5>>(x);
}
