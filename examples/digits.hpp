// The digits CNN of tools/digits_int8.py (scikit-learn's 8x8 handwritten digits, one channel):
// conv 16 3x3 pad 1, relu, conv 32 3x3 pad 1, relu, max pool 2, flatten, fc 64, relu, fc 10 (the
// logits). Weight names are the PyTorch model's state_dict names (features.0.weight, ...,
// classifier.3.bias), as tools/gen_wts.py writes them from the trained model.
//   digits [digits.wts] [--input x.bin] [--output logits.bin] [--int8 DIR [--calibrator NAME]]
// The network is defined here (not in digits.cpp) so that `kiln build --example digits` builds it
// too.
#pragma once
#include "common.hpp"

namespace examples {
using namespace kiln::dsl;

inline Network digits(const Weights& w) {
  // Every layer is named after its PyTorch module (nn.Sequential indices), so that the network's
  // tensors, and its calibration cache, name the same layers as the ONNX export's.
  auto x = input<"input", f32, NCHW>(dyn, fix<1>, fix<8>, fix<8>);  // [N,1,8,8]
  auto c1 = relu(conv2d<16, kernel<3>, padding<1>>(x, w, "features.0"), "features.1");
  auto c2 = relu(conv2d<32, kernel<3>, padding<1>>(c1, w, "features.2"), "features.3");
  auto p = max_pool<kernel<2>, stride<2>>(c2, "features.4");                   // [N,32,4,4]
  auto f = flatten(p, "classifier.0");                                         // [N,512]
  auto f1 = relu(fully_connected<64>(f, w, "classifier.1"), "classifier.2");   // [N,64]
  return network(fully_connected<10>(f1, w, "classifier.3").named("logits"));  // [N,10]
}

}  // namespace examples
