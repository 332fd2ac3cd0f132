// VGG-19 exactly as torchvision defines it (configuration "E", no BatchNorm), with its state_dict
// names: features.N (N counts every module: conv, relu, pool) and classifier.0/3/6.
//   vgg19 [vgg19.wts]
#include "vgg19.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) { return examples::run_example("vgg19", argc, argv, vgg19); }
