// must-compile
// Layout conversions and the rest of the layer set type-check together.
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const kiln::WeightMap& w) {
  auto x = input<"x", f32, NHWC>(dyn, fix<32>, fix<32>, fix<3>);
  auto n = transpose<0, 3, 1, 2>(x);
  static_assert(std::is_same_v<decltype(n), Tensor<f32, NCHW, -1, 3, 32, 32>>);
  auto d = deconv2d<8, kernel<4>, stride<2>, padding<1>>(n, w, "up");
  static_assert(std::is_same_v<decltype(d), Tensor<f32, NCHW, -1, 8, 64, 64>>);
  auto p = pad<0, 0, 1, 1, 0, 0, 1, 1>(d);
  static_assert(std::is_same_v<decltype(p), Tensor<f32, NCHW, -1, 8, 66, 66>>);
  auto s = slice<2, 1, -1>(p);
  static_assert(std::is_same_v<decltype(s), Tensor<f32, NCHW, -1, 8, 64, 66>>);
  auto m = reduce_mean<axes<2, 3>, keep_dims<false>>(s);
  static_assert(std::is_same_v<decltype(m), Tensor<f32, Any, -1, 8>>);
  auto a = avg_pool<kernel<3>, stride<2>, padding<1>, ceil_mode, count_include_pad>(d);
  static_assert(std::is_same_v<decltype(a), Tensor<f32, NCHW, -1, 8, 33, 33>>);  // ceil mode
  auto l = log_softmax<1>(lrn<5>(a));
  auto b = batch_norm(l, w, 1e-3, "bn");
  auto c = scale<ScaleMode::channel>(b, w, "sc");
  auto c1 = conv1d<4, kernel<3>>(input<"s", f32, NCW>(dyn, fix<2>, fix<10>), w, "c1");
  static_assert(std::is_same_v<decltype(c1), Tensor<f32, NCW, -1, 4, 8>>);
  auto mm = matmul(input<"a", f32>(fix<7>, fix<2>, fix<3>), input<"b", f32>(fix<3>, fix<5>));
  static_assert(std::is_same_v<decltype(mm), Tensor<f32, Any, 7, 2, 5>>);
  (void)c;
}
