// [4,3] x [5,2]: inner dims differ.
// first-line: matmul_layer
// first-line: kiln::rules::matmul_inner, 3, 5>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32>(fix<4>, fix<3>);
  auto b = input<"b", f32>(fix<5>, fix<2>);
  auto c = matmul(a, b);
}
