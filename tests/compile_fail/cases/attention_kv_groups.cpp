// 8 query heads over 3 key/value heads.
// first-line: attention_layer<8, kiln::dsl::kv_heads<3>
// first-line: kiln::rules::attention_kv_groups, 8, 3>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<512>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<192>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<192>);
  auto y = attention<8, kv_heads<3>>(q, k, v);
}
