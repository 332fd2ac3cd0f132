// A mask over 20 keys for 16 keys.
// first-line: attention_layer<8>
// first-line: kiln::rules::attention_mask_keys, 20, 16>
// expect: 16, 20
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<512>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<512>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<512>);
  auto m = input<"m", boolean>(fix<16>, fix<20>);
  auto y = attention<8>(q, k, v, m);
}
