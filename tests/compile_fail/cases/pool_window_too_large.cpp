// A 3x3 pooling window over a 2x2 map.
// first-line: max_pool_layer<kiln::dsl::kernel<3>, kiln::dsl::stride<1>
// first-line: kiln::rules::pool_out_dim, 2, 3, 1, 1, 0, 0, 0>
// expect: max_pool_layer<kiln::dsl::kernel<3>
// expect: -1, 8, 2, 2>
// expect: pool_out_dim
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<2>, fix<2>);
  auto p = max_pool<kernel<3>, stride<1>>(x);
}
