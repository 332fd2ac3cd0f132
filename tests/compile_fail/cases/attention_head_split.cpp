// A width of 500 split into 8 heads.
// first-line: attention_layer<8>
// first-line: kiln::rules::attention_head_dim, 500, 8>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<500>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<500>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<500>);
  auto y = attention<8>(q, k, v);
}
