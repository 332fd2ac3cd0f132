// An elementwise add of an NCHW and an NHWC tensor.
// first-line: add_layer
// first-line: kiln::rules::compatible_layouts<kiln::dsl::Layout::nchw, kiln::dsl::Layout::nhwc>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<8>, fix<8>, fix<8>);
  auto b = input<"b", f32, NHWC>(dyn, fix<8>, fix<8>, fix<8>);
  auto c = a + b;
}
