// Concat of f32 and f16 tensors.
// expect: concat_dtypes<kiln::DType::f32, kiln::DType::f16>
// expect: concat: the inputs have different element types
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<64>, fix<28>, fix<28>);
  auto b = input<"b", f16, NCHW>(dyn, fix<32>, fix<28>, fix<28>);
  auto c = concat<1>(a, b);
}
