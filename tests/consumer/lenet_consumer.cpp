// A product that uses an installed kiln: LeNet written in the DSL with random weights, run on the
// CPU reference directly and as a fused plan (builder + plan executor), which must agree; every
// row of the softmax output must sum to 1. Built by the CMake, pkg-config and Meson-subproject
// consumers of tests/consumer (run_consumers.py). Exit 0 and "consumer ok" on success.
//   lenet_consumer EXPECTED_VERSION
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>

#include "kiln/build/builder.hpp"
#include "kiln/dsl/dsl.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "kiln/run.hpp"
#include "kiln/version.hpp"

using namespace kiln::dsl;

namespace {

Network lenet(const Weights& w) {
  auto x = input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>);          // [N,1,28,28]
  auto c1 = conv2d<20, kernel<5>>(x, w, "conv1");                            // [N,20,24,24]
  auto p1 = max_pool<kernel<2>, stride<2>>(c1);                              // [N,20,12,12]
  auto c2 = conv2d<50, kernel<5>>(p1, w, "conv2");                           // [N,50,8,8]
  auto p2 = max_pool<kernel<2>, stride<2>>(c2);                              // [N,50,4,4]
  auto f1 = relu(fully_connected<500>(p2, w, "ip1"));                        // [N,500]
  return network(softmax(fully_connected<10>(f1, w, "ip2")).named("prob"));  // [N,10]
}

kiln::Tensor uniform(const std::vector<std::int64_t>& dims, float bound, std::mt19937& rng) {
  kiln::Tensor t(kiln::DType::f32, dims);
  std::uniform_real_distribution<float> u(-bound, bound);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

int fail(const char* what) {
  std::fprintf(stderr, "consumer FAILED: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) return fail("usage: lenet_consumer EXPECTED_VERSION");
  if (std::strcmp(kiln::kVersion, argv[1]) != 0)
    return fail("kiln/version.hpp is not the expected version");

  std::mt19937 rng(7);
  kiln::WeightMap weights;
  const Network shapes = lenet(Weights::shapes_only());  // names and dims of its weights
  for (const auto& spec : shapes.weight_specs())
    weights.add(spec.name, uniform(spec.dims, 0.1f, rng));
  const Network net = lenet(weights);

  const std::int64_t batch = 2;
  const kiln::Tensor x = uniform({batch, 1, 28, 28}, 1.f, rng);
  const kiln::Tensor direct = kiln::run(net, x);  // the graph on the CPU reference

  kiln::build::BuildOptions options;
  options.evaluator = &kiln::reference::constant_evaluator();
  options.input_dims["data"] = {batch, 1, 28, 28};
  const kiln::plan::Plan plan = kiln::build::build_plan(net.graph(), options);
  kiln::reference::PlanExecutor executor(plan);
  const kiln::Tensor planned = executor.run({{"data", x}}).at("prob");

  if (direct.dims() != std::vector<std::int64_t>{batch, 10}) return fail("output is not [2,10]");
  if (planned.dims() != direct.dims()) return fail("the plan's output has other dims");
  for (std::int64_t n = 0; n < batch; ++n) {
    double sum = 0;
    for (int k = 0; k < 10; ++k) {
      const float a = direct.data<float>()[n * 10 + k], b = planned.data<float>()[n * 10 + k];
      if (!std::isfinite(a) || std::fabs(a - b) > 1e-5f)
        return fail("the plan and the graph differ");
      sum += a;
    }
    if (std::fabs(sum - 1.0) > 1e-5) return fail("a softmax row does not sum to 1");
  }
  std::printf("consumer ok: kiln %s, LeNet [2,10], %zu plan steps, prob[0][0] = %.6f\n",
              kiln::kVersion, plan.steps.size(), static_cast<double>(direct.data<float>()[0]));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "consumer FAILED: %s\n", e.what());
  return 1;
}
