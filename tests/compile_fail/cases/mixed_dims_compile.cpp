// must-compile
// Mixed fixed and dynamic dims: the fixed ones are computed by the compiler, dynamic ones stay -1.
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w, long h, long wd) {
  auto x = input<"x", f32, NCHW>(dyn, fix<3>, dyn(h), dyn(wd));                  // [N,3,?,?]
  auto c = conv2d<16, kernel<3>, padding<1>>(x, w, "conv");                      // [N,16,?,?]
  static_assert(std::is_same_v<decltype(c), Tensor<f32, NCHW, -1, 16, -1, -1>>);
  auto g = global_avg_pool(c);                                                   // [N,16,1,1]
  static_assert(std::is_same_v<decltype(g), Tensor<f32, NCHW, -1, 16, 1, 1>>);
  auto y = fully_connected<10>(g, w, "fc");                                      // [N,10]
  static_assert(std::is_same_v<decltype(y), Tensor<f32, NC, -1, 10>>);
  auto b = input<"bias", f32>(fix<16>, fix<1>, fix<1>);                          // [16,1,1]
  auto s = c + b;                                                                // broadcast
  static_assert(std::is_same_v<decltype(s), Tensor<f32, NCHW, -1, 16, -1, -1>>);
  auto z = concat<1>(c, s);                                                      // [N,32,?,?]
  static_assert(std::is_same_v<decltype(z), Tensor<f32, NCHW, -1, 32, -1, -1>>);
  auto r = reshape<0, -1>(g);                                                    // [N,16]
  static_assert(std::is_same_v<decltype(r), Tensor<f32, Any, -1, 16>>);
}
