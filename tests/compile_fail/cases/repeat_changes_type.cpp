// repeat<N> with a block that halves the spatial dims.
// expect: repeat<N>(x, block): the block must return the type it takes
// expect: -1, 8, 16, 16>
// expect: -1, 8, 8, 8>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<16>, fix<16>);
  auto y = repeat<3>(x, [](auto t, int) { return max_pool<kernel<2>, stride<2>>(t); });
}
