// MobileNetV2 exactly as torchvision defines it (width 1.0), with its state_dict names:
// features.0 (Conv2dNormActivation), features.1-17 (InvertedResidual: conv.M), features.18,
// classifier.1. ReLU6 after every expansion and depthwise convolution.
//   mobilenet_v2 [mobilenet_v2.wts]
#include "mobilenet_v2.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) {
  return examples::run_example("mobilenet_v2", argc, argv, mobilenet_v2);
}
