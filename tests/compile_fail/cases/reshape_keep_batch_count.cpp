// [N,50,4,4] reshaped to [N,1000]: the batch is copied (0), 800 elements remain, not 1000.
// first-line: reshape_layer<0, 1000>
// first-line: kiln::rules::same_count, 800, 1000>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto a = input<"a", f32, NCHW>(dyn, fix<50>, fix<4>, fix<4>);
  auto b = reshape<0, 1000>(a);
}
