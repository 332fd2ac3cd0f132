// A matmul of f32 and i32.
// first-line: matmul_layer
// first-line: kiln::rules::same_element_type<kiln::DType::f32, kiln::DType::i32>
// expect: kiln::DType::f32
// expect: kiln::DType::i32
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32>(fix<4>, fix<3>);
  auto b = input<"b", i32>(fix<3>, fix<2>);
  auto c = matmul(a, b);
}
