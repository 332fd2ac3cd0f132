// Three pads for a rank-2 tensor (which needs 4).
// expect: pad_layer<1, 1, 1>
// expect: Layout::any, 4, 4>
// expect: pads (2 x the input rank)
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(fix<4>, fix<4>);
  auto y = pad<1, 1, 1>(x);
}
