// LeNet as in TensorRT's MNIST sample: conv 20 5x5, max pool, conv 50 5x5, max pool, fc 500,
// relu, fc 10, softmax. Weight names follow the sample's WTS file through a rename map
// (conv1filter, conv1bias, ip1filter, ...) when given one; PyTorch names otherwise.
//   lenet [mnist.wts] [--input x.bin] [--output prob.bin]
#include "lenet.hpp"

using namespace kiln::dsl;
using namespace examples;

int main(int argc, char** argv) {
  bool trt = false;
  if (const auto path = examples::wts_path(argc, argv)) {
    const auto wts = kiln::read_wts(*path).weights;
    trt = wts.contains("conv1filter");
  }
  return examples::run_example("lenet", argc, argv, [&](const Weights& w) {
    return lenet(trt && !w.dry_run() ? Weights(w.map(), trt_names()) : w);
  });
}
