// GoogLeNet exactly as torchvision defines it (aux_logits=False, transform_input=False), with its
// state_dict names. BasicConv2d is conv (no bias) + BatchNorm (eps 0.001) + ReLU; the "5x5"
// branch uses a 3x3 kernel, as torchvision's does.
//   googlenet [googlenet.wts]
#include "googlenet.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) {
  return examples::run_example("googlenet", argc, argv, googlenet);
}
