// must-compile
// LeNet with a dynamic batch: every other dim is computed at compile time.
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
auto lenet(const kiln::WeightMap& w) {
  auto x = input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>);
  auto c1 = conv2d<20, kernel<5>>(x, w, "conv1");
  static_assert(std::is_same_v<decltype(c1), Tensor<f32, NCHW, -1, 20, 24, 24>>);
  auto p1 = max_pool<kernel<2>, stride<2>>(c1);
  auto c2 = conv2d<50, kernel<5>, in_channels<20>>(p1, w, "conv2");
  auto p2 = max_pool<kernel<2>, stride<2>>(c2);
  static_assert(std::is_same_v<decltype(p2), Tensor<f32, NCHW, -1, 50, 4, 4>>);
  auto f1 = relu(fully_connected<500, in_features<800>>(p2, w, "ip1"));
  auto out = softmax(fully_connected<10>(f1, w, "ip2"));
  static_assert(std::is_same_v<decltype(out), Tensor<f32, NC, -1, 10>>);
  auto seq = input<"seq", f32, TNC>(dyn, dyn, fix<32>);
  auto r = lstm<64, layers<2>, bidirectional>(seq, w, "rnn");
  static_assert(std::is_same_v<decltype(r.y), Tensor<f32, TNC, -1, -1, 128>>);
  static_assert(std::is_same_v<decltype(r.h), Tensor<f32, Any, 4, -1, 64>>);
  return network(out.named("prob"));
}
