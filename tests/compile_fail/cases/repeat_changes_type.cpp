// repeat<N> with a block that halves the spatial dims.
// first-line: repeat_layer<3>
// first-line: kiln::rules::block_keeps_type<kiln::dsl::Tensor<kiln::DType::f32, kiln::dsl::Layout::nchw, -1, 8, 16, 16>, kiln::dsl::Tensor<kiln::DType::f32, kiln::dsl::Layout::nchw, -1, 8, 8, 8>
// expect: -1, 8, 16, 16>
// expect: -1, 8, 8, 8>
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<16>, fix<16>);
  auto y = repeat<3>(x, [](auto t, int) { return max_pool<kernel<2>, stride<2>>(t); });
}
