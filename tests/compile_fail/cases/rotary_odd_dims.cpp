// Rotating 3 dims of each head (the rotated dims pair up, so they must be even).
// first-line: rotary_embedding_layer<4, kiln::dsl::rotary_dim<3>
// first-line: kiln::rules::rotary_dim, 3, 8>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(dyn, fix<4>, fix<16>, fix<8>);
  auto c = input<"cos", f32>(fix<64>, fix<1>);
  auto s = input<"sin", f32>(fix<64>, fix<1>);
  auto p = input<"pos", i64>(dyn, fix<16>);
  auto y = rotary_embedding<4, rotary_dim<3>>(x, c, s, p);
}
