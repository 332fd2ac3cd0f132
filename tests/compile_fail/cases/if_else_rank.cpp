// if_else's branches return one rank: x [N, 4] from one and z [N, 2, 2] from the other do not.
// first-line: if_else: the branches return tensors of one rank
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto flag = input<"flag", boolean>(fix<1>);
  auto x = input<"x", f32>(dyn, fix<4>);
  auto z = input<"z", f32>(dyn, fix<2>, fix<2>);
  auto y = if_else(flag, [](auto x, auto) { return x; }, [](auto, auto z) { return z; }, x, z);
}
