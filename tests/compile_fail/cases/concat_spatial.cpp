// Concat along channels of maps with different spatial dims.
// expect: shape_check<kiln::dsl::concat_layer<1>
// expect: -1, 64, 28, 28
// expect: -1, 32, 14, 14
// expect: equal_dims
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<64>, fix<28>, fix<28>);
  auto b = input<"b", f32, NCHW>(dyn, fix<32>, fix<14>, fix<14>);
  auto c = concat<1>(a, b);
}
