// A loop body's condition is a bool tensor: an f32 one is refused where it is given.
// first-line: continue_if: the condition is a bool tensor
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto h = input<"h", f32>(fix<1>);
  auto [y] = loop(3, [](auto, auto h) { return std::tuple{continue_if(h), h}; }, carried(h));
}
