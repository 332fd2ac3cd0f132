// The host side of the GPU runtime, which needs no GPU: which ops and targets it declares, the
// refusal of plans it cannot run, and the profiler's tables, rooflines and Chrome traces.
#include <doctest/doctest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "kiln/build/builder.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/plan/target.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

using namespace kiln;
namespace rt = kiln::runtime;

namespace {

/// x -> Relu -> (op) -> y, built for `target`.
plan::Plan tiny_plan(const std::string& op, const plan::Target& target) {
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape::of({2, 3})}});
  Node relu;
  relu.name = "relu";
  relu.op = "Relu";
  relu.inputs = {"x"};
  relu.outputs = {"r"};
  g.nodes.push_back(relu);
  Node last;
  last.name = "last";
  last.op = op;
  last.inputs = {"r"};
  last.outputs = {"y"};
  if (op == "ArgMax") last.attrs["axis"] = std::int64_t{1};
  g.nodes.push_back(last);
  g.outputs = {"y"};
  g.infer(&reference::constant_evaluator());
  build::BuildOptions o;
  o.target = &target;
  o.evaluator = &reference::constant_evaluator();
  return build::build_plan(g, o);
}

}  // namespace

TEST_CASE("the GPU targets ask only for what the runtime runs") {
  for (bool fp16 : {false, true}) {
    const plan::Target& t = plan::cuda_target(fp16);
    CHECK(t.name == (fp16 ? "cuda-fp16" : "cuda"));
    for (const auto& op : t.pointwise_ops) CHECK_MESSAGE(rt::gpu_supports(op), op);
    for (const auto& [op, layouts] : t.layouts) CHECK_MESSAGE(rt::gpu_supports(op), op);
    CHECK(t.max_pointwise_chain == 8);
    CHECK_FALSE(t.in_place);  // cuDNN cannot write a convolution over the residual it adds
    CHECK_FALSE(t.strided_output);
    CHECK(t.layouts_of("Conv").front() == (fp16 ? plan::Layout::NHWC : plan::Layout::NCHW));
  }
  CHECK(rt::gpu_supports("Conv"));
  CHECK(rt::gpu_supports("LSTM"));
  CHECK(rt::gpu_supports(plan::kToLayoutOp));
  CHECK_FALSE(rt::gpu_supports("ArgMax"));
  CHECK_FALSE(rt::gpu_supports("NonMaxSuppression"));
}

TEST_CASE("a GPU plan with an op the runtime lacks is refused, naming the step and the op") {
  for (bool fp16 : {false, true}) {
    const plan::Plan ok = tiny_plan("Sigmoid", plan::cuda_target(fp16));
    CHECK_NOTHROW(rt::check_gpu_plan(ok));
    const plan::Plan bad = tiny_plan("ArgMax", plan::cuda_target(fp16));
    try {
      rt::check_gpu_plan(bad);
      FAIL("ArgMax was accepted");
    } catch (const UnsupportedError& e) {
      const std::string what = e.what();
      CHECK(what.find("'ArgMax'") != std::string::npos);
      CHECK(what.find("last") != std::string::npos);
    }
  }
}

TEST_CASE("an engine refuses a plan built for another target, before touching a GPU") {
  const plan::Plan cpu = tiny_plan("Sigmoid", plan::cpu_reference_target());
  try {
    rt::Engine e(cpu);
    FAIL("a cpu-reference plan was accepted");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).find("cpu-reference") != std::string::npos);
  }
}

TEST_CASE("the roofline is the larger of compute time and memory time") {
  rt::Roofline r{1e12, 1e9};  // 1 TFLOP/s, 1 GB/s
  CHECK(r.ms(1e9, 0) == doctest::Approx(1.0));     // 1 GFLOP: 1 ms
  CHECK(r.ms(0, 1e6) == doctest::Approx(1.0));     // 1 MB: 1 ms
  CHECK(r.ms(2e9, 1e6) == doctest::Approx(2.0));   // compute-bound
  CHECK(r.ms(1e9, 3e6) == doctest::Approx(3.0));   // memory-bound
  CHECK(rt::Roofline{}.ms(1e9, 1e6) == 0.0);       // no rates measured: no roofline
}

TEST_CASE("the trace profiler averages runs, sorts steps and writes a Chrome trace") {
  rt::TraceProfiler p;
  CHECK(p.table().find("no profiled runs") != std::string::npos);
  auto run = [](float a, float b) {
    return std::vector<rt::StepTime>{{0, "conv \"1\"", "Conv+Relu", "cudnn-graph", a, 2e9, 1e6},
                                     {1, "pool", "MaxPool", "pool", b, 1e6, 4e6}};
  };
  p.report(1, run(1.0f, 3.0f));
  p.report(1, run(3.0f, 5.0f));
  REQUIRE(p.runs().size() == 2);
  const std::string t = p.table();
  // Means 2 and 4 ms: the pool first, its share two thirds.
  CHECK(t.find("pool") < t.find("conv"));
  CHECK(t.find("66.7%") != std::string::npos);
  CHECK(t.find("total 6.0000 ms over 2 steps (mean of 2 runs)") != std::string::npos);
  CHECK(t.find("roofline") == std::string::npos);
  CHECK(p.table(1).find("conv") == std::string::npos);  // --top 1
  p.set_roofline(rt::Roofline{1e12, 1e9});
  const std::string r = p.table();
  CHECK(r.find("roofline ms") != std::string::npos);
  CHECK(r.find("2.0000") != std::string::npos);  // the conv's 2 GFLOP at 1 TFLOP/s
  const auto j = nlohmann::json::parse(p.chrome_trace_json());
  REQUIRE(j["traceEvents"].size() == 4);
  for (const auto& e : j["traceEvents"]) CHECK(e["ph"] == "X");
  CHECK(j["traceEvents"][0]["name"] == "conv \"1\"");  // quotes round-trip
  CHECK(j["traceEvents"][2]["dur"].get<double>() == doctest::Approx(3000.0));  // 3 ms in microseconds
  CHECK(j["traceEvents"][3]["args"]["run"] == 1);
}
