// [N,3,4] * [N,5]: 4 and 5 do not broadcast.
// first-line: mul_layer
// first-line: kiln::rules::broadcast_dim, 4, 5>
// expect: -1, 3, 4>
// expect: Layout::any, 3, 5>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32>(dyn, fix<3>, fix<4>);
  auto b = input<"b", f32>(fix<3>, fix<5>);
  auto c = mul(a, b);
}
