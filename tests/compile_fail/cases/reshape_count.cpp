// [3,4] (12 elements) reshaped to [2,5] (10 elements).
// first-line: reshape_layer<2, 5>
// first-line: kiln::rules::same_count, 12, 10>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32>(fix<3>, fix<4>);
  auto b = reshape<2, 5>(a);
}
