// Average pooling with stride 0.
// first-line: avg_pool_layer<kiln::dsl::kernel<2>, kiln::dsl::stride<0>
// first-line: kiln::rules::pool_out_dim, 32, 2, 0, 1, 0, 0, 0>
// expect: avg_pool_layer<kiln::dsl::kernel<2>, kiln::dsl::stride<0> >
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, fix<32>, fix<32>);
  auto p = avg_pool<kernel<2>, stride<0>>(x);
}
