// ResNet-50 (v1.5: the stride in the 3x3 convolution) exactly as torchvision defines it, with its
// state_dict names, so a WTS file written from torchvision's model binds directly. The ResNet is
// written once, parameterized by its block counts: ResNet-101 and -152 are one line each.
//   resnet50 [resnet50.wts]
// The network is defined here (not in resnet50.cpp) so that `kiln build --example resnet50` builds
// it too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

/// torchvision's Bottleneck: 1x1, 3x3 (stride), 1x1 (x4), each with BatchNorm; residual add.
template <dim_t Planes, dim_t Stride, bool Downsample, tensor_expr T>
auto bottleneck(const T& x, const Weights& w, const std::string& p) {
  auto o1 = relu(batch_norm(conv2d<Planes, kernel<1>, no_bias>(x, w, p + ".conv1"), w, p + ".bn1"));
  auto o2 = relu(batch_norm(
      conv2d<Planes, kernel<3>, stride<Stride>, padding<1>, no_bias>(o1, w, p + ".conv2"), w,
      p + ".bn2"));
  auto o3 = batch_norm(conv2d<Planes * 4, kernel<1>, no_bias>(o2, w, p + ".conv3"), w, p + ".bn3");
  if constexpr (Downsample) {
    auto sc = batch_norm(
        conv2d<Planes * 4, kernel<1>, stride<Stride>, no_bias>(x, w, p + ".downsample.0"), w,
        p + ".downsample.1");
    return relu(add(o3, sc, p + ".add"));
  } else {
    return relu(add(o3, x, p + ".add"));
  }
}

/// torchvision's _make_layer: a downsampling block, then Blocks - 1 identity blocks.
template <dim_t Planes, dim_t Stride, int Blocks, tensor_expr T>
auto stage(const T& x, const Weights& w, const std::string& name) {
  auto y = bottleneck<Planes, Stride, true>(x, w, name + ".0");
  return repeat<Blocks - 1>(y, [&](auto t, int i) {
    return bottleneck<Planes, 1, false>(t, w, name + "." + std::to_string(i + 1));
  });
}

template <int B1, int B2, int B3, int B4>
inline Network resnet(const Weights& w) {
  auto x = input<"input", f32, NCHW>(dyn, fix<3>, fix<224>, fix<224>);  // [N,3,224,224]
  auto c1 = relu(
      batch_norm(conv2d<64, kernel<7>, stride<2>, padding<3>, no_bias>(x, w, "conv1"), w, "bn1"));
  auto p1 = max_pool<kernel<3>, stride<2>, padding<1>>(c1, "maxpool");     // [N,64,56,56]
  auto l1 = stage<64, 1, B1>(p1, w, "layer1");                             // [N,256,56,56]
  auto l2 = stage<128, 2, B2>(l1, w, "layer2");                            // [N,512,28,28]
  auto l3 = stage<256, 2, B3>(l2, w, "layer3");                            // [N,1024,14,14]
  auto l4 = stage<512, 2, B4>(l3, w, "layer4");                            // [N,2048,7,7]
  auto pooled = flatten(adaptive_avg_pool<1>(l4, "avgpool"));              // [N,2048]
  return network(fully_connected<1000>(pooled, w, "fc").named("logits"));  // [N,1000]
}

inline Network resnet50(const Weights& w) { return resnet<3, 4, 6, 3>(w); }
inline Network resnet101(const Weights& w) { return resnet<3, 4, 23, 3>(w); }
inline Network resnet152(const Weights& w) { return resnet<3, 8, 36, 3>(w); }

}  // namespace examples
