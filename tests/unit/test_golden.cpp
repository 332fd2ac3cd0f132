// Golden plans: the text dump of each example network's fused CPU-target plan (and ResNet-50's
// for the CUDA targets) is checked in
// (tests/golden/<name>.plan.txt) and compared here, so that a change in what the builder makes
// is visible in review. KILN_UPDATE_GOLDEN=1 rewrites the files instead of comparing.
//
// The example networks are defined in examples/<name>.hpp (shared with `kiln build --example`).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kiln/build/calibration.hpp"
#include "plan_test_util.hpp"

#include "../../examples/charrnn.hpp"
#include "../../examples/digits.hpp"
#include "../../examples/encoder.hpp"
#include "../../examples/googlenet.hpp"
#include "../../examples/lenet.hpp"
#include "../../examples/mobilenet_v2.hpp"
#include "../../examples/resnet50.hpp"
#include "../../examples/vgg19.hpp"

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
Built build_example(Build&& build, const kiln::plan::Target* target = nullptr) {
  const kiln::WeightMap weights = examples::random_weights(build, 42);
  const kiln::dsl::Network net = build(kiln::dsl::Weights(weights));
  Built b;
  b.graph = net.graph();
  kiln::build::BuildOptions o;
  o.evaluator = &kiln::reference::constant_evaluator();
  o.target = target;
  b.plan = kiln::build::build_plan(b.graph, o, &b.report);
  return b;
}

/// The example's graph with every tensor that calibration would measure given one fixed INT8
/// scale (its Q/DQ form, as `kiln build --int8` makes it from a cache; `format` f8e4m3fn: as
/// `--fp8` does), built: the fused INT8 (FP8) steps.
template <class Build>
Built build_example_int8(Build&& build, float scale, const kiln::plan::Target* target = nullptr,
                         kiln::DType format = kiln::DType::i8) {
  const kiln::WeightMap weights = examples::random_weights(build, 42);
  const kiln::dsl::Network net = build(kiln::dsl::Weights(weights));
  std::map<std::string, float> scales;
  for (const auto& t : kiln::build::tensors_to_calibrate(net.graph())) scales[t] = scale;
  Built b;
  b.graph = kiln::build::quantize_graph(net.graph(), scales, {}, format);
  kiln::build::BuildOptions o;
  o.evaluator = &kiln::reference::constant_evaluator();
  o.target = target;
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
  REQUIRE_MESSAGE(f.good(),
                  "no golden plan " << path.string() << " (run with KILN_UPDATE_GOLDEN=1)");
  std::stringstream want;
  want << f.rdbuf();
  if (want.str() == text) return;
  // Point at the first line that differs.
  std::istringstream a(want.str()), c(text);
  std::string la, lc;
  int line = 1;
  while (std::getline(a, la) && std::getline(c, lc) && la == lc) ++line;
  FAIL_CHECK(
      name << ": the plan differs from " << path.string() << " at line " << line
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
  const std::vector<Example> cases = {
      {"lenet", [] { return build_example(examples::lenet); }, true},
      {"resnet50", [] { return build_example(examples::resnet50); }, false},
      {"googlenet", [] { return build_example(examples::googlenet); }, false},
      {"vgg19", [] { return build_example(examples::vgg19); }, false},
      {"mobilenet_v2", [] { return build_example(examples::mobilenet_v2); }, true},
      {"charrnn", [] { return build_example(examples::charrnn); }, true},
      {"digits", [] { return build_example(examples::digits); }, true},
      {"encoder", [] { return build_example(examples::encoder); }, true},
      // INT8: the digits network's convolutions and products as fused INT8 steps.
      {"digits.int8", [] { return build_example_int8(examples::digits, 0.05f); }, true},
      // The same for the GPU (its INT8 steps: tests/gpu/test_int8_gpu), and ResNet-50's.
      {"digits.int8.cuda-fp16",
       [] { return build_example_int8(examples::digits, 0.05f, &kiln::plan::cuda_target(true)); },
       false},
      {"resnet50.int8.cuda-fp16",
       [] { return build_example_int8(examples::resnet50, 0.05f, &kiln::plan::cuda_target(true)); },
       false},
      // FP8 (`kiln build --fp8`): fused FP8 steps, on the reference and for the GPU.
      {"digits.fp8",
       [] { return build_example_int8(examples::digits, 0.05f, nullptr, kiln::DType::f8e4m3fn); },
       true},
      {"digits.fp8.cuda-fp16",
       [] {
         return build_example_int8(examples::digits, 0.05f, &kiln::plan::cuda_target(true),
                                   kiln::DType::f8e4m3fn);
       },
       false},
      {"resnet50.fp8.cuda-fp16",
       [] {
         return build_example_int8(examples::resnet50, 0.05f, &kiln::plan::cuda_target(true),
                                   kiln::DType::f8e4m3fn);
       },
       false},
      // The CUDA runtime's targets: FP32 in NCHW, FP16 in NHWC with its kiln.ToLayout steps.
      {"resnet50.cuda",
       [] { return build_example(examples::resnet50, &kiln::plan::cuda_target(false)); }, false},
      {"resnet50.cuda-fp16",
       [] { return build_example(examples::resnet50, &kiln::plan::cuda_target(true)); }, false},
  };
  for (const auto& e : cases) {
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
  const Built b = build_example(examples::resnet152);
  MESSAGE("resnet152: layers before fusion " << b.report.layers_before << ", after "
                                             << b.report.layers_after);
  CHECK(b.report.layers_after <= 159);
}
