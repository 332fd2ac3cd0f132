// VGG-19 exactly as torchvision defines it (configuration "E", no BatchNorm), with its state_dict
// names: features.N (N counts every module: conv, relu, pool) and classifier.0/3/6.
//   vgg19 [vgg19.wts]
// The network is defined here (not in vgg19.cpp) so that `kiln build --example vgg19` builds it
// too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

inline constexpr dim_t M = 0;  // a max pool in the configuration

/// torchvision's make_layers: each number a 3x3 conv + ReLU, each M a 2x2 max pool; Index is
/// the module index in `features`.
template <int Index, dim_t First, dim_t... Rest, tensor_expr T>
auto features(const T& x, const Weights& w) {
  const std::string name = "features." + std::to_string(Index);
  if constexpr (First == M) {
    auto y = max_pool<kernel<2>, stride<2>>(x, name);
    if constexpr (sizeof...(Rest) == 0)
      return y;
    else
      return features<Index + 1, Rest...>(y, w);
  } else {
    auto y = relu(conv2d<First, kernel<3>, padding<1>>(x, w, name));
    if constexpr (sizeof...(Rest) == 0)
      return y;
    else
      return features<Index + 2, Rest...>(y, w);
  }
}

inline Network vgg19(const Weights& w) {
  auto x = input<"input", f32, NCHW>(dyn, fix<3>, fix<224>, fix<224>);  // [N,3,224,224]
  auto f = features<0, 64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512,
                    512, 512, 512, M>(x, w);                                     // [N,512,7,7]
  auto p = flatten(adaptive_avg_pool<7, 7>(f, "avgpool"));                       // [N,25088]
  auto c0 = relu(fully_connected<4096>(p, w, "classifier.0"));                   // [N,4096]
  auto c3 = relu(fully_connected<4096>(c0, w, "classifier.3"));                  // [N,4096]
  return network(fully_connected<1000>(c3, w, "classifier.6").named("logits"));  // [N,1000]
}

}  // namespace examples
