// Eight heads of 64 (a width of 512) declared for a query of width 500.
// first-line: attention_layer<8, kiln::dsl::head_dim<64>
// first-line: kiln::rules::attention_width, 8, 64, 500>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<500>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<512>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<512>);
  auto y = attention<8, head_dim<64>>(q, k, v);
}
