// [4,3] x [5,2]: inner dims differ.
// expect: shape_check<kiln::dsl::matmul_layer
// expect: Layout::any, 4, 3>
// expect: Layout::any, 5, 2>
// expect: matmul_inner
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32>(fix<4>, fix<3>);
  auto b = input<"b", f32>(fix<5>, fix<2>);
  auto c = matmul(a, b);
}
