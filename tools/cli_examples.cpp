#include "cli_examples.hpp"

#include <functional>

#include <fmt/format.h>

#include "charrnn.hpp"
#include "digits.hpp"
#include "encoder.hpp"
#include "googlenet.hpp"
#include "lenet.hpp"
#include "mobilenet_v2.hpp"
#include "resnet50.hpp"
#include "vgg19.hpp"

namespace kiln::tools {
namespace {

using Build = std::function<dsl::Network(const dsl::Weights&)>;

struct Example {
  std::string name;
  Build build;
  std::function<void(WeightMap&)> adapt;  ///< rewrites weights read from a WTS file
};

const std::vector<Example>& examples_list() {
  static const std::vector<Example> list = {
      {"lenet", examples::lenet, {}},
      {"resnet50", examples::resnet50, {}},
      {"resnet101", examples::resnet101, {}},
      {"resnet152", examples::resnet152, {}},
      {"googlenet", examples::googlenet, {}},
      {"vgg19", examples::vgg19, {}},
      {"mobilenet_v2", examples::mobilenet_v2, {}},
      {"charrnn", examples::charrnn, examples::tf_to_torch},
      {"digits", examples::digits, {}},
      {"encoder", examples::encoder, {}},
  };
  return list;
}

}  // namespace

const std::vector<std::string>& example_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& e : examples_list()) v.push_back(e.name);
    return v;
  }();
  return names;
}

Graph example_graph(const std::string& name, const std::string& wts_path) {
  for (const auto& e : examples_list()) {
    if (e.name != name) continue;
    WeightMap weights;
    if (wts_path.empty()) {
      weights = examples::random_weights(e.build, 42);
    } else {
      weights = read_wts(wts_path).weights;
      if (e.adapt) e.adapt(weights);
    }
    // LeNet binds TensorRT's sample names (conv1filter, ...) through a rename map.
    const bool trt_lenet = name == "lenet" && weights.contains("conv1filter");
    const dsl::Network net = trt_lenet
                                 ? examples::lenet(dsl::Weights(weights, examples::trt_names()))
                                 : e.build(dsl::Weights(weights));
    for (const auto& w : net.weight_warnings()) fmt::print("warning: {}\n", w);
    return net.graph();
  }
  throw Error(fmt::format("--example '{}': no such example network (the examples: {})", name,
                          fmt::join(example_names(), ", ")));
}

}  // namespace kiln::tools
