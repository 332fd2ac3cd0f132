// Adaptive pooling of 7 to 3: 7 is not a multiple of 3.
// first-line: adaptive_avg_pool_layer<3, 3>
// first-line: kiln::rules::adaptive_pool_window, 7, 3>
// expect: adaptive_avg_pool_layer<3, 3>
// expect: -1, 512, 7, 7>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<512>, fix<7>, fix<7>);
  auto y = adaptive_avg_pool<3>(x);
}
