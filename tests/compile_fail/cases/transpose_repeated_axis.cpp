// A permutation naming axis 1 twice.
// first-line: transpose_layer<0, 1, 1>
// first-line: kiln::rules::permutation<0, 1, 1>::check, 3>
// expect: transpose_layer<0, 1, 1>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(fix<2>, fix<3>, fix<4>);
  auto y = transpose<0, 1, 1>(x);
}
