// TopK takes at most the axis' length: 6 of a dim of 5 is refused when it compiles.
// first-line: top_k_layer<6, -1>
// first-line: kiln::rules::top_k, 6, 5>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(dyn, fix<5>);
  auto [v, i] = top_k<6>(x);
}
