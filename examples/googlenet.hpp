// GoogLeNet exactly as torchvision defines it (aux_logits=False, transform_input=False), with its
// state_dict names. BasicConv2d is conv (no bias) + BatchNorm (eps 0.001) + ReLU; the "5x5"
// branch uses a 3x3 kernel, as torchvision's does.
//   googlenet [googlenet.wts]
// The network is defined here (not in googlenet.cpp) so that `kiln build --example googlenet`
// builds it too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

/// torchvision's BasicConv2d in the scope of `w` ("inception3a.branch1"): "conv" and "bn".
template <dim_t Out, class... Opts, tensor_expr T>
auto basic_conv(const T& x, const Weights& w) {
  return relu(batch_norm(conv2d<Out, Opts..., no_bias>(x, w, "conv"), w, 1e-3, "bn"));
}

template <dim_t C1, dim_t C3r, dim_t C3, dim_t C5r, dim_t C5, dim_t Pool, tensor_expr T>
auto inception(const T& x, const Weights& w, const std::string& p) {
  const Weights in = w.scope(p);
  auto b1 = basic_conv<C1, kernel<1>>(x, in.scope("branch1"));
  auto b2 = basic_conv<C3, kernel<3>, padding<1>>(
      basic_conv<C3r, kernel<1>>(x, in.scope("branch2.0")), in.scope("branch2.1"));
  auto b3 = basic_conv<C5, kernel<3>, padding<1>>(
      basic_conv<C5r, kernel<1>>(x, in.scope("branch3.0")), in.scope("branch3.1"));
  auto b4 = basic_conv<Pool, kernel<1>>(max_pool<kernel<3>, stride<1>, padding<1>, ceil_mode>(x),
                                        in.scope("branch4.1"));
  return concat<1>(b1, b2, b3, b4, p);
}

inline Network googlenet(const Weights& w) {
  auto x = input<"input", f32, NCHW>(dyn, fix<3>, fix<224>, fix<224>);  // [N,3,224,224]
  auto c1 =
      basic_conv<64, kernel<7>, stride<2>, padding<3>>(x, w.scope("conv1"));  // [N,64,112,112]
  auto p1 = max_pool<kernel<3>, stride<2>, ceil_mode>(c1, "maxpool1");        // [N,64,56,56]
  auto c2 = basic_conv<64, kernel<1>>(p1, w.scope("conv2"));
  auto c3 = basic_conv<192, kernel<3>, padding<1>>(c2, w.scope("conv3"));  // [N,192,56,56]
  auto p2 = max_pool<kernel<3>, stride<2>, ceil_mode>(c3, "maxpool2");     // [N,192,28,28]
  auto i3a = inception<64, 96, 128, 16, 32, 32>(p2, w, "inception3a");     // [N,256,28,28]
  auto i3b = inception<128, 128, 192, 32, 96, 64>(i3a, w, "inception3b");  // [N,480,28,28]
  auto p3 = max_pool<kernel<3>, stride<2>, ceil_mode>(i3b, "maxpool3");    // [N,480,14,14]
  auto i4a = inception<192, 96, 208, 16, 48, 64>(p3, w, "inception4a");    // [N,512,14,14]
  auto i4b = inception<160, 112, 224, 24, 64, 64>(i4a, w, "inception4b");
  auto i4c = inception<128, 128, 256, 24, 64, 64>(i4b, w, "inception4c");
  auto i4d = inception<112, 144, 288, 32, 64, 64>(i4c, w, "inception4d");    // [N,528,14,14]
  auto i4e = inception<256, 160, 320, 32, 128, 128>(i4d, w, "inception4e");  // [N,832,14,14]
  auto p4 = max_pool<kernel<2>, stride<2>, ceil_mode>(i4e, "maxpool4");      // [N,832,7,7]
  auto i5a = inception<256, 160, 320, 32, 128, 128>(p4, w, "inception5a");
  auto i5b = inception<384, 192, 384, 48, 128, 128>(i5a, w, "inception5b");  // [N,1024,7,7]
  auto pooled = flatten(adaptive_avg_pool<1>(i5b, "avgpool"));               // [N,1024]
  static_assert(std::is_same_v<decltype(pooled), Tensor<f32, NC, -1, 1024>>);
  return network(fully_connected<1000>(pooled, w, "fc").named("logits"));  // [N,1000]
}

}  // namespace examples
