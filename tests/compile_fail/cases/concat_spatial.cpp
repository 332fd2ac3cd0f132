// Concat along channels of maps with different spatial dims.
// first-line: concat_layer<1>
// first-line: kiln::rules::concat_dim, 28, 14>
// expect: -1, 64, 28, 28
// expect: -1, 32, 14, 14
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<64>, fix<28>, fix<28>);
  auto b = input<"b", f32, NCHW>(dyn, fix<32>, fix<14>, fix<14>);
  auto c = concat<1>(a, b);
}
