// LeNet as in TensorRT's MNIST sample: conv 20 5x5, max pool, conv 50 5x5, max pool, fc 500,
// relu, fc 10, softmax. Weight names follow the sample's WTS file through a rename map
// (conv1filter, conv1bias, ip1filter, ...) when given one; PyTorch names otherwise.
//   lenet [mnist.wts] [--input x.bin] [--output prob.bin]
// The network is defined here (not in lenet.cpp) so that `kiln build --example lenet` builds it
// too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

inline Network lenet(const Weights& w) {
  auto x = input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>);  // [N,1,28,28]
  auto c1 = conv2d<20, kernel<5>>(x, w, "conv1");                    // [N,20,24,24]
  auto p1 = max_pool<kernel<2>, stride<2>>(c1);                      // [N,20,12,12]
  auto c2 = conv2d<50, kernel<5>>(p1, w, "conv2");                   // [N,50,8,8]
  auto p2 = max_pool<kernel<2>, stride<2>>(c2);                      // [N,50,4,4]
  auto f1 = relu(fully_connected<500>(p2, w, "ip1"));                // [N,500]
  auto f2 = fully_connected<10>(f1, w, "ip2");                       // [N,10]
  return network(softmax(f2).named("prob"));                         // [N,10]
}

/// TensorRT sample names: conv1filter, conv1bias, ..., ip2filter, ip2bias.
inline kiln::BindOptions trt_names() {
  kiln::BindOptions o;
  for (const char* l : {"conv1", "conv2", "ip1", "ip2"}) {
    o.rename[std::string(l) + ".weight"] = std::string(l) + "filter";
    o.rename[std::string(l) + ".bias"] = std::string(l) + "bias";
  }
  return o;
}

}  // namespace examples
