// MobileNetV2 exactly as torchvision defines it (width 1.0), with its state_dict names:
// features.0 (Conv2dNormActivation), features.1-17 (InvertedResidual: conv.M), features.18,
// classifier.1. ReLU6 after every expansion and depthwise convolution.
//   mobilenet_v2 [mobilenet_v2.wts]
// The network is defined here (not in mobilenet_v2.cpp) so that `kiln build --example mobilenet_v2`
// builds it too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

/// Conv2dNormActivation: conv (no bias) + BatchNorm + ReLU6, named <p>.0 and <p>.1.
template <dim_t Out, class... Opts, tensor_expr T>
auto conv_bn_relu6(const T& x, const Weights& w, const std::string& p) {
  return relu6(batch_norm(conv2d<Out, Opts..., no_bias>(x, w, p + ".0"), w, p + ".1"));
}

/// InvertedResidual(inp, Out, Stride, Expand).
template <dim_t Out, dim_t Stride, dim_t Expand, tensor_expr T>
auto inverted_residual(const T& x, const Weights& w, const std::string& p) {
  constexpr dim_t In = T::static_dims[1];
  constexpr dim_t Hidden = In * Expand;
  auto body = [&](const auto& e, int next) {
    auto dw = conv_bn_relu6<Hidden, kernel<3>, stride<Stride>, padding<1>, group<Hidden>>(
        e, w, p + ".conv." + std::to_string(next));
    auto pw = conv2d<Out, kernel<1>, no_bias>(dw, w, p + ".conv." + std::to_string(next + 1));
    return batch_norm(pw, w, p + ".conv." + std::to_string(next + 2));
  };
  auto y = [&] {
    if constexpr (Expand != 1)
      return body(conv_bn_relu6<Hidden, kernel<1>>(x, w, p + ".conv.0"), 1);
    else
      return body(x, 0);
  }();
  if constexpr (Stride == 1 && In == Out)
    return add(x, y);
  else
    return y;
}

/// One row of torchvision's inverted_residual_setting (t, c, n, s), starting at features.Index.
template <int Index, dim_t T_, dim_t C, int N, dim_t S, tensor_expr X>
auto blocks(const X& x, const Weights& w) {
  auto y = inverted_residual<C, S, T_>(x, w, "features." + std::to_string(Index));
  if constexpr (N == 1)
    return y;
  else
    return repeat<N - 1>(y, [&](auto t, int i) {
      return inverted_residual<C, 1, T_>(t, w, "features." + std::to_string(Index + 1 + i));
    });
}

inline Network mobilenet_v2(const Weights& w) {
  auto x = input<"input", f32, NCHW>(dyn, fix<3>, fix<224>, fix<224>);  // [N,3,224,224]
  auto f0 =
      conv_bn_relu6<32, kernel<3>, stride<2>, padding<1>>(x, w, "features.0");  // [N,32,112,112]
  auto b1 = blocks<1, 1, 16, 1, 1>(f0, w);                                      // [N,16,112,112]
  auto b2 = blocks<2, 6, 24, 2, 2>(b1, w);                                      // [N,24,56,56]
  auto b3 = blocks<4, 6, 32, 3, 2>(b2, w);                                      // [N,32,28,28]
  auto b4 = blocks<7, 6, 64, 4, 2>(b3, w);                                      // [N,64,14,14]
  auto b5 = blocks<11, 6, 96, 3, 1>(b4, w);                                     // [N,96,14,14]
  auto b6 = blocks<14, 6, 160, 3, 2>(b5, w);                                    // [N,160,7,7]
  auto b7 = blocks<17, 6, 320, 1, 1>(b6, w);                                    // [N,320,7,7]
  auto f18 = conv_bn_relu6<1280, kernel<1>>(b7, w, "features.18");              // [N,1280,7,7]
  auto pooled = flatten(global_avg_pool(f18));                                  // [N,1280]
  return network(fully_connected<1000>(pooled, w, "classifier.1").named("logits"));  // [N,1000]
}

}  // namespace examples
