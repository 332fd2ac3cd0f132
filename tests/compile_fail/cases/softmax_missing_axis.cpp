// Softmax on axis 2 of a rank-2 tensor.
// first-line: softmax_layer<2>
// first-line: kiln::rules::normalize_axis, 2, 2>
// expect: softmax_layer<2>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NC>(dyn, fix<100>);
  auto y = softmax<2>(fully_connected<10>(x, w, "fc"));
}
