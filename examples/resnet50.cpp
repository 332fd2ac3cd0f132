// ResNet-50 (v1.5: the stride in the 3x3 convolution) exactly as torchvision defines it, with its
// state_dict names, so a WTS file written from torchvision's model binds directly. The ResNet is
// written once, parameterized by its block counts: ResNet-101 and -152 are one line each.
//   resnet50 [resnet50.wts]
#include "resnet50.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) { return examples::run_example("resnet50", argc, argv, resnet50); }
