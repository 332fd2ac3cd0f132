// A layer_norm declared for a width of 64 on rows of 48.
// first-line: layer_norm_layer<64>
// first-line: kiln::rules::norm_width, 64, 48>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32>(dyn, fix<16>, fix<48>);
  auto y = layer_norm<64>(x, w, "norm1");
}
