// A 4-D query of 4 heads given to an 8-head attention.
// first-line: attention_layer<8>
// first-line: kiln::rules::attention_heads, 8, 4>
// expect: -1, 4, 16, 64
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<4>, fix<16>, fix<64>);
  auto k = input<"k", f32>(dyn, fix<8>, fix<16>, fix<64>);
  auto v = input<"v", f32>(dyn, fix<8>, fix<16>, fix<64>);
  auto y = attention<8>(q, k, v);
}
