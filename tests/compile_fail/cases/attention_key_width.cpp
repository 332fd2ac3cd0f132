// Keys of width 100 for 2 key/value heads of 64 (the query's head size).
// first-line: attention_layer<8, kiln::dsl::kv_heads<2>
// first-line: kiln::rules::attention_width, 2, 64, 100>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<512>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<100>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<128>);
  auto y = attention<8, kv_heads<2>>(q, k, v);
}
