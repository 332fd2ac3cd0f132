// A flatten of [N,50,5,5] (1250 features) feeding a layer declared for 800.
// first-line: fully_connected_layer<500, kiln::dsl::in_features<800>
// first-line: kiln::rules::fc_in_features, 800, 1250>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NCHW>(dyn, fix<50>, fix<5>, fix<5>);
  auto y = fully_connected<500, in_features<800>>(flatten(x), w, "ip1");
}
