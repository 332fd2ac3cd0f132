// A permutation naming axis 1 twice.
// expect: transpose_layer<0, 1, 1>
// expect: appears twice in the permutation
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(fix<2>, fix<3>, fix<4>);
  auto y = transpose<0, 1, 1>(x);
}
