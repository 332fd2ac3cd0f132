// Caches of 8 columns for heads of 8 (a full rotation needs 8 / 2 = 4).
// expect: shape_check<kiln::dsl::rotary_embedding_layer<4>
// expect: 64, 8
// expect: last dim of cos (rotated dims / 2)
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32>(dyn, fix<16>, fix<32>);
  auto c = input<"cos", f32>(fix<64>, fix<8>);
  auto s = input<"sin", f32>(fix<64>, fix<8>);
  auto p = input<"pos", i64>(dyn, fix<16>);
  auto y = rotary_embedding<4>(x, c, s, p);
}
