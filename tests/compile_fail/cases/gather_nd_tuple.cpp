// GatherND's index tuples (indices' last dim) index data's dims past batch_dims: 3 for 2 fails.
// first-line: gather_nd_layer<1, 3>
// first-line: kiln::rules::gather_nd_tuple, 3, 2>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto data = input<"data", f32>(fix<2>, fix<3>, fix<4>);
  auto idx = input<"idx", i64>(fix<2>, fix<5>, fix<3>);
  auto y = gather_nd<1>(data, idx);
}
