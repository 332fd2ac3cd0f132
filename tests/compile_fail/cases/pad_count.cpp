// Three pads for a rank-2 tensor (which needs 4).
// first-line: pad_layer<1, 1, 1>
// first-line: kiln::rules::pad_count, 2, 3>
// expect: pad_layer<1, 1, 1>
// expect: Layout::any, 4, 4>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(fix<4>, fix<4>);
  auto y = pad<1, 1, 1>(x);
}
