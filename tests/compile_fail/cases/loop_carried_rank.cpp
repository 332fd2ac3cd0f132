// A loop's body returns each carried value with its rank: h [2, 3] may not come back as [2, 3, 1].
// first-line: loop: the body returns each carried value with its element type and rank
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto h = input<"h", f32>(fix<2>, fix<3>);
  auto z = input<"z", f32>(fix<2>, fix<3>, fix<1>);
  auto [y] = loop(3, [](auto, auto, auto z) { return std::tuple{z}; }, carried(h), z);
}
