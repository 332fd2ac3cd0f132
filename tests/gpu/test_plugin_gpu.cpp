// A plugin on the GPU against the CPU reference: the sample fully connected plugin
// (examples/plugins/fc_plugin.cpp, built in) between built-in steps, in plans for cuda and
// cuda-fp16 (the plugin takes f16 there), run plainly and as a captured CUDA graph; and the
// built-in Gemm of the same weights gives the same outputs. bf16 plans are refused naming the
// plugin (it supports f32 and f16 only). Fresh random inputs each run.
#include "gpu_check.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/ir/plugin.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

using namespace gpu_test;

namespace {

/// x [n, k] -> Relu -> FullyConnected(W [m, k], b [m]) (or Gemm transB) -> Sigmoid -> y.
kiln::Graph graph(i64 n, i64 k, i64 m, bool builtin) {
  kiln::Graph g;
  g.name = builtin ? "gemm" : "plugin";
  g.inputs.push_back({"x", {kiln::DType::f32, kiln::Shape{n, k}}});
  const float ws = 1.f / std::sqrt(static_cast<float>(k));
  static std::vector<float> w, b;  // the same weights for both graphs of a size
  if (static_cast<i64>(w.size()) != m * k) w = random_values(m * k, -ws, ws), b = random_values(m);
  g.weights["W"] = tensor({m, k}, w);
  g.weights["b"] = tensor({m}, b);
  auto node = [&](std::string op, std::string name, std::vector<std::string> in, std::string out) {
    kiln::Node nd;
    nd.op = std::move(op), nd.name = std::move(name), nd.inputs = std::move(in);
    nd.outputs = {std::move(out)};
    return nd;
  };
  g.nodes.push_back(node("Relu", "relu", {"x"}, "r"));
  kiln::Node fc =
      node(builtin ? "Gemm" : "kiln.examples::FullyConnected@1", "fc", {"r", "W", "b"}, "h");
  if (builtin)
    fc.attrs["transB"] = std::int64_t{1};
  else
    fc.attrs["out_features"] = m;
  g.nodes.push_back(fc);
  g.nodes.push_back(node("Sigmoid", "sig", {"h"}, "y"));
  g.outputs = {"y"};
  g.infer();
  return g;
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  const i64 sizes[][3] = {{1, 64, 10}, {37, 96, 40}, {256, 512, 1000}};
  for (const auto& s : sizes)
    for (Elem el : {Elem::f32, Elem::f16}) {
      const std::string what = fmt::format("fc {}x{} -> {}", s[0], s[1], s[2]);
      report.run(what, [&] {
        const kiln::Graph g = graph(s[0], s[1], s[2], false), gg = graph(s[0], s[1], s[2], true);
        kiln::build::BuildOptions o;
        o.target = &kiln::plan::target_by_name(plan_precision(el).target);
        o.evaluator = &kiln::reference::constant_evaluator();
        const kiln::plan::Plan p = kiln::build::build_plan(g, o);
        const auto x = round_to(random_values(s[0] * s[1]), el);
        const std::map<std::string, kiln::Tensor> in{{"x", tensor({s[0], s[1]}, x)}};
        const kiln::Tensor ref = kiln::reference::Executor(g).run(in).at("y");
        const kiln::Tensor ref_gemm = kiln::reference::Executor(gg).run(in).at("y");
        const auto rv = ref.to_doubles();
        report.check(what + ": the plugin's reference equals Gemm's",
                     std::vector<float>(rv.begin(), rv.end()), ref_gemm, Elem::f32);
        kiln::runtime::Engine engine(p);
        report.expect(what + ": a plugin step",
                      engine.describe().find("plugin") != std::string::npos);
        auto ctx = engine.create_context();
        const kiln::Tensor got = kiln::runtime::run_on_gpu(*ctx, in).at("y");
        const auto gv = got.to_doubles();
        report.check(what, std::vector<float>(gv.begin(), gv.end()), ref, el);
        // Captured in a CUDA graph on the first run, replayed on the second.
        ctx->set_cuda_graph(true);
        for (int run = 0; run < 2; ++run) {
          const auto cv = kiln::runtime::run_on_gpu(*ctx, in).at("y").to_doubles();
          report.check(what + (run ? " (CUDA graph replayed)" : " (CUDA graph captured)"),
                       std::vector<float>(cv.begin(), cv.end()), ref, el);
        }
      });
    }
  report.run("bf16 plan", [&] {
    kiln::build::BuildOptions o;
    o.target = &kiln::plan::target_by_name("cuda-bf16");
    o.evaluator = &kiln::reference::constant_evaluator();
    const kiln::plan::Plan p = kiln::build::build_plan(graph(4, 16, 8, false), o);
    try {
      kiln::runtime::Engine engine(p);
      report.expect("bf16: the plugin step is refused", false);
    } catch (const kiln::UnsupportedError& e) {
      const std::string m = e.what();
      report.expect(
          "bf16: refused naming the plugin and the dtype (" + m + ")",
          m.find("FullyConnected@1") != std::string::npos && m.find("bf16") != std::string::npos);
    }
  });
  return report.finish("gpu-plugin");
}
