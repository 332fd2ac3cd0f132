// Concat of f32 and f16 tensors.
// first-line: concat_layer<1>
// first-line: kiln::rules::same_element_type<kiln::DType::f32, kiln::DType::f16>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<64>, fix<28>, fix<28>);
  auto b = input<"b", f16, NCHW>(dyn, fix<32>, fix<28>, fix<28>);
  auto c = concat<1>(a, b);
}
