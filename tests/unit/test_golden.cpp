// Golden plans: the text dump of each example network's fused CPU-target plan is checked in
// (tests/golden/<name>.plan.txt) and compared here, so that a change in what the builder makes
// is visible in review. KILN_UPDATE_GOLDEN=1 rewrites the files instead of comparing.
//
// Each example is compiled here in a namespace of its own, its main() renamed.
#include "../../examples/common.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "plan_test_util.hpp"

#define main lenet_main
namespace ex_lenet {
#include "../../examples/lenet.cpp"
}
#undef main
#define main resnet_main
namespace ex_resnet {
#include "../../examples/resnet50.cpp"
}
#undef main
#define main googlenet_main
namespace ex_googlenet {
#include "../../examples/googlenet.cpp"
}
#undef main
#define main vgg_main
namespace ex_vgg {
#include "../../examples/vgg19.cpp"
}
#undef main
#define main mobilenet_main
namespace ex_mobilenet {
#include "../../examples/mobilenet_v2.cpp"
}
#undef main
#define main charrnn_main
namespace ex_charrnn {
#include "../../examples/charrnn.cpp"
}
#undef main

using namespace plan_test;

namespace {

std::filesystem::path golden_dir() {
  if (const char* env = std::getenv("KILN_GOLDEN_DIR")) return env;
  for (auto p = std::filesystem::current_path(); !p.empty(); p = p.parent_path()) {
    if (std::filesystem::exists(p / "tests" / "golden")) return p / "tests" / "golden";
    if (p == p.parent_path()) break;
  }
  return "tests/golden";
}

struct Built {
  kiln::Graph graph;
  kiln::plan::Plan plan;
  kiln::build::BuildReport report;
};

template <class Build>
Built build_example(Build&& build) {
  const kiln::WeightMap weights = examples::random_weights(build, 42);
  const kiln::dsl::Network net = build(kiln::dsl::Weights(weights));
  Built b;
  b.graph = net.graph();
  kiln::build::BuildOptions o;
  o.evaluator = &kiln::reference::constant_evaluator();
  b.plan = kiln::build::build_plan(b.graph, o, &b.report);
  return b;
}

void compare_golden(const std::string& name, const Built& b) {
  const std::string text = b.report.summary() + b.plan.dump();
  const auto path = golden_dir() / (name + ".plan.txt");
  if (std::getenv("KILN_UPDATE_GOLDEN")) {
    std::ofstream(path) << text;
    MESSAGE("wrote " << path.string());
    return;
  }
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "no golden plan " << path.string() << " (run with KILN_UPDATE_GOLDEN=1)");
  std::stringstream want;
  want << f.rdbuf();
  if (want.str() == text) return;
  // Point at the first line that differs.
  std::istringstream a(want.str()), c(text);
  std::string la, lc;
  int line = 1;
  while (std::getline(a, la) && std::getline(c, lc) && la == lc) ++line;
  FAIL_CHECK(name << ": the plan differs from " << path.string() << " at line " << line
                  << "\n  golden: " << la << "\n  now:    " << lc
                  << "\n(if the change is intended, rerun with KILN_UPDATE_GOLDEN=1 and review the diff)");
}

}  // namespace

TEST_CASE("golden plans of the example networks") {
  struct Example {
    const char* name;
    std::function<Built()> build;
    bool run;  // small enough to check on the reference here
  };
  const std::vector<Example> examples = {
      {"lenet", [] { return build_example(ex_lenet::lenet); }, true},
      {"resnet50", [] { return build_example(ex_resnet::resnet50); }, false},
      {"googlenet", [] { return build_example(ex_googlenet::googlenet); }, false},
      {"vgg19", [] { return build_example(ex_vgg::vgg19); }, false},
      {"mobilenet_v2", [] { return build_example(ex_mobilenet::mobilenet_v2); }, true},
      {"charrnn", [] { return build_example(ex_charrnn::charrnn); }, true},
  };
  for (const auto& e : examples) {
    const std::string name = e.name;
    CAPTURE(name);
    const Built b = e.build();
    MESSAGE(name << ": layers before fusion " << b.report.layers_before << ", after "
                 << b.report.layers_after << "; arena " << b.plan.memory.arena_bytes << " of "
                 << b.plan.memory.naive_bytes << " bytes");
    compare_golden(name, b);
    if (e.run) check_plan_equivalent(b.graph, b.plan, name);
  }
}

TEST_CASE("ResNet-152 layer counts beside TensorRT's (670 to 159)") {
  const Built b = build_example(ex_resnet::resnet152);
  MESSAGE("resnet152: layers before fusion " << b.report.layers_before << ", after " << b.report.layers_after);
  CHECK(b.report.layers_after <= 159);
}
