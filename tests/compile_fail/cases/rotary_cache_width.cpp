// Caches of 8 columns for heads of 8 (a full rotation needs 8 / 2 = 4).
// first-line: rotary_embedding_layer<4>
// first-line: kiln::rules::rotary_cache_width, 4, 8>
// expect: 64, 8
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(dyn, fix<16>, fix<32>);
  auto c = input<"cos", f32>(fix<64>, fix<8>);
  auto s = input<"sin", f32>(fix<64>, fix<8>);
  auto p = input<"pos", i64>(dyn, fix<16>);
  auto y = rotary_embedding<4>(x, c, s, p);
}
