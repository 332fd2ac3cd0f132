// Dynamic shapes on the GPU (issue 14): a CNN with dynamic N, H and W (convolutions, BatchNorm,
// a residual add, pooling, a shape subgraph feeding a Reshape, a matrix product) built as a
// dynamic plan for cuda and cuda-fp16, run by a DynamicEngine at the profile's min, opt and max
// and at random shapes inside it, each against the CPU reference on the graph made static at the
// same shape; CUDA graphs per shape; a shape switch back reuses what was made; bad shapes are
// refused before any GPU work; a shape between buckets runs its bucket's tactics. Prints what each
// shape switch cost.
#include <chrono>
#include <cstdio>

#include "gpu_check.hpp"
#include "kiln/build/specializer.hpp"
#include "kiln/runtime/dynamic.hpp"

using namespace gpu_test;
using namespace kiln;

namespace {

struct Net {
  Graph g;
  int counter = 0;
  std::mt19937 r{5};

  std::string weight(std::vector<i64> dims, float lo, float hi) {
    const std::string n = "w" + std::to_string(counter++);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(static_cast<std::size_t>(numel(dims)));
    for (auto& x : v) x = u(r);
    g.weights[n] = Tensor::from<float>(dims, v);
    return n;
  }
  std::string node(const std::string& op, std::vector<std::string> in,
                   std::map<std::string, Attribute> attrs = {}) {
    Node n;
    n.op = op;
    n.name = op + std::to_string(counter++);
    n.inputs = std::move(in);
    n.outputs = {n.name};
    n.attrs = std::move(attrs);
    return g.add_node(std::move(n)).outputs[0];
  }
  std::string conv(const std::string& x, i64 cin, i64 cout) {
    return node("Conv", {x, weight({cout, cin, 3, 3}, -0.3f, 0.3f), weight({cout}, -0.1f, 0.1f)},
                {{"kernel_shape", std::vector<i64>{3, 3}}, {"pads", std::vector<i64>{1, 1, 1, 1}}});
  }
};

Graph dynamic_cnn() {
  Net b;
  b.g.inputs.push_back(
      {"x", {DType::f32, Shape{Dim::symbol("N"), 3, Dim::symbol("H"), Dim::symbol("W")}}});
  std::string y = b.conv("x", 3, 16);
  y = b.node("BatchNormalization",
             {y, b.weight({16}, 0.5f, 1.5f), b.weight({16}, -0.2f, 0.2f),
              b.weight({16}, -0.2f, 0.2f), b.weight({16}, 0.5f, 2.f)},
             {{"epsilon", 1e-5}});
  y = b.node("Relu", {y});
  std::string z = b.node("Relu", {b.node("Add", {b.conv(y, 16, 16), y})});
  z = b.node("MaxPool", {z},
             {{"kernel_shape", std::vector<i64>{2, 2}}, {"strides", std::vector<i64>{2, 2}}});
  const std::string pooled = b.node("GlobalAveragePool", {z});  // [N,16,1,1]
  b.g.weights["zero"] = Tensor::from<std::int64_t>({}, {0});
  b.g.weights["axes0"] = Tensor::from<std::int64_t>({1}, {0});
  b.g.weights["minus1"] = Tensor::from<std::int64_t>({1}, {-1});
  const std::string n1 =
      b.node("Unsqueeze",
             {b.node("Gather", {b.node("Shape", {pooled}), "zero"}, {{"axis", i64{0}}}), "axes0"});
  const std::string flat =
      b.node("Reshape", {pooled, b.node("Concat", {n1, "minus1"}, {{"axis", i64{0}}})});  // [N,16]
  const std::string logits = b.node(
      "Add",
      {b.node("MatMul", {flat, b.weight({16, 10}, -0.5f, 0.5f)}), b.weight({10}, -0.1f, 0.1f)});
  b.g.outputs = {logits, z};
  b.g.infer(&reference::constant_evaluator());
  return b.g;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

/// The CPU reference's outputs of `g` made static at input x's `dims`.
std::map<std::string, Tensor> reference_at(const Graph& g, const std::vector<i64>& dims,
                                           const std::vector<float>& x) {
  Graph st = g;
  build::BuildOptions so;
  so.evaluator = &reference::constant_evaluator();
  so.input_dims = {{"x", dims}};
  build::make_static(st, so);
  return reference::Executor(st).run({{"x", tensor(dims, x)}});
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  const Graph g = dynamic_cnn();
  const auto profile = plan::make_profile(g, {{"x", {1, 3, 16, 16}}}, {{"x", {4, 3, 64, 64}}},
                                          {{"x", {8, 3, 96, 80}}});
  for (bool f16 : {false, true}) {
    const char* prec = f16 ? "fp16" : "fp32";
    report.run(std::string("dynamic engine ") + prec, [&] {
      build::BuildOptions o;
      o.target = &plan::target_by_name(f16 ? runtime::kCudaFp16Target : runtime::kCudaTarget);
      o.evaluator = &reference::constant_evaluator();
      const plan::Plan dyn = build::build_dynamic_plan(g, o, {profile}, 1);
      build::Specializer sp(dyn, &reference::constant_evaluator());
      runtime::DynamicEngine engine(
          dyn, [&](const plan::ShapeMap& s, std::size_t p) { return sp.plan_for(s, p); });
      auto ctx = engine.create_context();

      std::vector<std::vector<i64>> shapes{profile.min().at("x"), profile.opt().at("x"),
                                           profile.max().at("x")};
      for (int i = 0; i < 3; ++i) {
        auto pick = [&](i64 lo, i64 hi) {
          return std::uniform_int_distribution<i64>(lo, hi)(rng());
        };
        shapes.push_back({pick(1, 8), 3, pick(16, 96), pick(16, 80)});
      }
      shapes.push_back(profile.min().at("x"));  // back to the first shape: nothing is made again
      for (bool graph : {false, true}) {
        ctx->set_cuda_graph(graph);
        for (const auto& dims : shapes) {
          const std::string what =
              std::string(prec) + (graph ? " graph " : " ") + "x " + dims_text(dims);
          report.run(what, [&] {
            const auto made = engine.stats().engines_made;
            auto t0 = std::chrono::steady_clock::now();
            ctx->set_input_shape("x", dims);
            const auto logits_dims = ctx->output_dims(g.outputs[0]);
            const auto z_dims = ctx->output_dims(g.outputs[1]);
            report.expect(what + ": output dims known before the run",
                          logits_dims == std::vector<i64>{dims[0], 10} &&
                              z_dims == std::vector<i64>{dims[0], 16, dims[2] / 2, dims[3] / 2});
            auto x = random_values(numel(dims));
            if (f16) x = round_f16(x);
            DeviceBuffer dx = upload(x), dl = poisoned(numel(logits_dims)),
                         dz = poisoned(numel(z_dims));
            ctx->execute({{"x", dx.get()}, {g.outputs[0], dl.get()}, {g.outputs[1], dz.get()}});
            const double first_ms = ms_since(t0);
            t0 = std::chrono::steady_clock::now();
            ctx->execute({{"x", dx.get()}, {g.outputs[0], dl.get()}, {g.outputs[1], dz.get()}});
            const double again_ms = ms_since(t0);
            std::printf("  %s: first run %.1f ms (engines made %zu -> %zu), next run %.3f ms\n",
                        what.c_str(), first_ms, made, engine.stats().engines_made, again_ms);

            const auto ref = reference_at(g, dims, x);
            report.check(what + " logits", download(dl, numel(logits_dims)), ref.at(g.outputs[0]),
                         f16);
            report.check(what + " features", download(dz, numel(z_dims)), ref.at(g.outputs[1]),
                         f16);
          });
        }
      }
      // One arena for every shape the context ran: allocated once, for the profile's largest.
      std::size_t largest = 0, at_max = 0;
      for (const auto& dims : shapes)
        largest = std::max(largest, std::size_t(sp.plan_for({{"x", dims}}, 0)->memory.arena_bytes));
      at_max = std::size_t(sp.plan_for(profile.max(), 0)->memory.arena_bytes);
      std::printf(
          "  %s: one arena of %zu bytes for %zu shapes (max shape's plan %zu, largest "
          "shape run %zu), allocated %zu time(s)\n",
          prec, ctx->arena_bytes(), shapes.size(), at_max, largest, ctx->arena_allocations());
      report.expect(
          std::string(prec) + ": one arena, sized for the profile's largest shape",
          ctx->arena_bytes() == std::max(at_max, largest) &&
              (largest <= at_max ? ctx->arena_allocations() == 1 : ctx->arena_allocations() >= 2));
      const auto s = engine.stats();
      std::printf(
          "  %s: %zu engines made, %zu dropped; specializing %.1f ms, engines %.1f ms in all; %zu "
          "problems untimed\n",
          prec, s.engines_made, s.engines_dropped, s.specialize_ms, s.engine_ms,
          s.untimed_problems);
      // This plan was built without a GPU, so it has no tactics: by default nothing is timed at
      // run time (the shapes above ran the libraries' heuristic choices); tune_new_shapes times.
      report.expect(std::string(prec) + ": no tuning at run time unless asked for",
                    s.untimed_problems > 0);
      report.run(std::string(prec) + " tune_new_shapes", [&] {
        runtime::DynamicEngine tuned(
            dyn, [&](const plan::ShapeMap& sh, std::size_t p) { return sp.plan_for(sh, p); }, {}, 4,
            true);
        auto tctx = tuned.create_context();
        const std::vector<i64> dims{3, 3, 40, 56};
        tctx->set_input_shape("x", dims);
        auto x = random_values(numel(dims));
        if (f16) x = round_f16(x);
        const auto ld = tctx->output_dims(g.outputs[0]), zd = tctx->output_dims(g.outputs[1]);
        DeviceBuffer dx = upload(x), dl = poisoned(numel(ld)), dz = poisoned(numel(zd));
        tctx->execute({{"x", dx.get()}, {g.outputs[0], dl.get()}, {g.outputs[1], dz.get()}});
        report.expect(std::string(prec) + " tune_new_shapes: every problem timed",
                      tuned.stats().untimed_problems == 0 && tuned.stats().engines_made == 1);
        const auto ref = reference_at(g, dims, x);
        report.check(std::string(prec) + " tune_new_shapes logits", download(dl, numel(ld)),
                     ref.at(g.outputs[0]), f16);
      });

      // What `kiln build` does on a GPU: each bucket's tactics timed, and the problem each of its
      // steps ran recorded (Plan::buckets). A shape between buckets then runs every step with its
      // bucket's tactic: nothing timed, nothing left to the heuristic.
      report.run(std::string(prec) + " bucket tactics", [&] {
        std::vector<build::BucketPlan> buckets;
        plan::Plan timed = build::build_dynamic_plan(g, o, {profile}, 1, &buckets);
        for (auto& b : buckets) {
          const runtime::Engine e(b.plan);  // times every problem of the bucket shape
          for (const auto& [k, v] : e.tactics()) timed.tactics.emplace(k, v);
          timed.buckets.push_back({b.profile, b.shape, e.step_problems()});
        }
        build::Specializer tsp(timed, &reference::constant_evaluator());
        runtime::DynamicEngine bucketed(
            timed, [&](const plan::ShapeMap& sh, std::size_t p) { return tsp.plan_for(sh, p); });
        auto bctx = bucketed.create_context();
        const std::vector<i64> dims{3, 3, 40, 56};  // in opt's bucket (4x3x64x64), not one
        bctx->set_input_shape("x", dims);
        auto x = random_values(numel(dims));
        if (f16) x = round_f16(x);
        const auto ld = bctx->output_dims(g.outputs[0]), zd = bctx->output_dims(g.outputs[1]);
        DeviceBuffer dx = upload(x), dl = poisoned(numel(ld)), dz = poisoned(numel(zd));
        bctx->execute({{"x", dx.get()}, {g.outputs[0], dl.get()}, {g.outputs[1], dz.get()}});
        const auto st = bucketed.stats();
        std::printf(
            "  %s bucket tactics: %zu buckets recorded; x %s ran %zu problems with its "
            "bucket's tactics, %zu untimed\n",
            prec, timed.buckets.size(), dims_text(dims).c_str(), st.borrowed_problems,
            st.untimed_problems);
        report.expect(std::string(prec) + " bucket tactics: every problem ran its bucket's tactic",
                      st.borrowed_problems > 0 && st.untimed_problems == 0);
        const auto ref = reference_at(g, dims, x);
        report.check(std::string(prec) + " bucket tactics logits", download(dl, numel(ld)),
                     ref.at(g.outputs[0]), f16);
        report.check(std::string(prec) + " bucket tactics features", download(dz, numel(zd)),
                     ref.at(g.outputs[1]), f16);
      });

      // Refused on the host, naming the input, the dim, the value and the range.
      report.run(std::string(prec) + " shapes outside the profile", [&] {
        for (const auto& bad : std::vector<std::vector<i64>>{
                 {9, 3, 32, 32}, {1, 3, 8, 32}, {1, 3, 32}, {1, 4, 32, 32}}) {
          bool refused = false;
          try {
            ctx->set_input_shape("x", bad);
          } catch (const ShapeError& e) {
            refused = std::string(e.what()).find("'x'") != std::string::npos;
            std::printf("  refused x %s: %s\n", dims_text(bad).c_str(), e.what());
          }
          report.expect(std::string(prec) + " x " + dims_text(bad) + " refused", refused);
        }
      });
    });
  }
  return report.finish("gpu-dynamic");
}
