// Shared by test_passes and test_plan: small graphs, random networks, and the equivalence check
// (reference outputs of two graphs, or of a graph and a plan, on the same random inputs).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include <fmt/format.h>

#include "kiln/build/builder.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"

namespace plan_test {

using namespace kiln;
using i64 = std::int64_t;

inline Tensor random_tensor(DType dt, const std::vector<i64>& dims, std::mt19937_64& rng,
                            double lo = -1.0, double hi = 1.0) {
  Tensor t(dt, dims);
  std::uniform_real_distribution<double> u(lo, hi);
  for (i64 i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

inline reference::TensorMap random_inputs(const std::vector<ValueInfo>& inputs,
                                          std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  reference::TensorMap m;
  for (const auto& vi : inputs) {
    std::vector<i64> dims;
    for (const auto& d : vi.type.shape) dims.push_back(d.is_fixed() ? d.value() : 1);
    m[vi.name] = random_tensor(vi.type.dtype, dims, rng);
  }
  return m;
}
inline reference::TensorMap random_inputs(const Graph& g, std::uint64_t seed) {
  return random_inputs(g.inputs, seed);
}

/// Largest |a - b| / (1 + |a|) over two output maps; fails the test on a missing output or a
/// type mismatch.
inline double max_error(const reference::TensorMap& a, const reference::TensorMap& b) {
  double worst = 0;
  for (const auto& [name, ta] : a) {
    auto it = b.find(name);
    REQUIRE_MESSAGE(it != b.end(), "output '" << name << "' is missing");
    const Tensor& tb = it->second;
    REQUIRE_MESSAGE(ta.type_string() == tb.type_string(),
                    name << ": " << ta.type_string() << " vs " << tb.type_string());
    for (i64 i = 0; i < ta.numel(); ++i) {
      const double x = ta.get(i), y = tb.get(i);
      if (std::isnan(x) || std::isnan(y)) {
        if (std::isnan(x) != std::isnan(y)) return INFINITY;
        continue;
      }
      worst = std::max(worst, std::abs(x - y) / (1.0 + std::abs(x)));
    }
  }
  return worst;
}

/// The graphs compute the same outputs (to float rounding) on random inputs.
inline void check_equivalent(const Graph& before, const Graph& after, const std::string& what,
                             std::uint64_t seed = 7, double tol = 1e-4) {
  const auto in = random_inputs(before, seed);
  const auto a = reference::Executor(before).run(in);
  const auto b = reference::Executor(after).run(in);
  const double e = max_error(a, b);
  CHECK_MESSAGE(e <= tol, what << ": outputs differ by " << e);
}

/// The plan computes what the graph computes.
inline void check_plan_equivalent(const Graph& g, const plan::Plan& p, const std::string& what,
                                  std::uint64_t seed = 7, double tol = 1e-4) {
  const auto in = random_inputs(g, seed);
  const auto a = reference::Executor(g).run(in);
  reference::PlanExecutor pe(p);
  const auto b = pe.run(in);
  const double e = max_error(a, b);
  CHECK_MESSAGE(e <= tol, what << ": plan outputs differ by " << e);
}

/// Options that check every pass's equivalence on the reference as it builds, on given inputs.
inline build::BuildOptions checked_options_on(reference::TensorMap inputs) {
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  o.after_pass = [inputs](const std::string& pass, const Graph& before, const Graph& after) {
    const double e =
        max_error(reference::Executor(before).run(inputs), reference::Executor(after).run(inputs));
    CHECK_MESSAGE(e <= 1e-4, "pass " << pass << ": outputs differ by " << e);
  };
  return o;
}

/// Options that check every pass's equivalence on the reference as it builds.
inline build::BuildOptions checked_options(const plan::Target* t = nullptr,
                                           std::uint64_t seed = 7) {
  build::BuildOptions o;
  o.target = t;
  o.evaluator = &reference::constant_evaluator();
  o.after_pass = [seed](const std::string& pass, const Graph& before, const Graph& after) {
    check_equivalent(before, after, "pass " + pass, seed);
  };
  return o;
}

// ---- building graphs ---------------------------------------------------------------------

struct Builder {
  Graph g;
  std::mt19937_64 rng{1};
  int counter = 0;

  std::string input(const std::string& name, std::vector<i64> dims, DType dt = DType::f32) {
    g.inputs.push_back({name, {dt, Shape::of(dims)}});
    return name;
  }
  std::string weight(std::vector<i64> dims, double lo = -1, double hi = 1) {
    const std::string n = fmt::format("w{}", counter++);
    g.weights[n] = random_tensor(DType::f32, dims, rng, lo, hi);
    return n;
  }
  std::string node(const std::string& op, std::vector<std::string> inputs,
                   std::map<std::string, Attribute> attrs = {}, int outputs = 1) {
    Node n;
    n.op = op;
    n.name = fmt::format("{}{}", op, counter++);
    n.inputs = std::move(inputs);
    for (int i = 0; i < outputs; ++i)
      n.outputs.push_back(outputs == 1 ? n.name : fmt::format("{}:{}", n.name, i));
    n.attrs = std::move(attrs);
    return g.add_node(std::move(n)).outputs[0];
  }
  /// Conv with `cout` output channels, kernel k (padding keeps H and W), optional bias.
  std::string conv(const std::string& x, i64 cin, i64 cout, i64 k, bool bias = true) {
    std::vector<std::string> in{x, weight({cout, cin, k, k}, -0.5, 0.5)};
    if (bias) in.push_back(weight({cout}));
    return node("Conv", in,
                {{"kernel_shape", std::vector<i64>{k, k}},
                 {"pads", std::vector<i64>{k / 2, k / 2, k / 2, k / 2}}});
  }
  std::string bn(const std::string& x, i64 c) {
    return node("BatchNormalization",
                {x, weight({c}, 0.5, 1.5), weight({c}), weight({c}), weight({c}, 0.5, 2.0)},
                {{"epsilon", 1e-5}});
  }
  Graph finish(std::vector<std::string> outputs) {
    g.outputs = std::move(outputs);
    g.infer(&reference::constant_evaluator());
    return g;
  }
};

/// A random small CNN over one input of [N,C,H,W]: convolutions (1x1 and 3x3, with and without
/// bias), BatchNorm, per-channel Mul/Add, activations, residual adds, concats, pooling,
/// horizontal groups, Identity/Dropout, Flatten+Reshape round trips, pointwise chains.
inline Graph random_cnn(std::uint64_t seed, int layers = 14) {
  Builder b;
  b.rng.seed(seed);
  std::mt19937_64& rng = b.rng;
  auto pick = [&](int n) {
    return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng));
  };
  const i64 N = 1 + pick(2), H = 3 + pick(4), W = 3 + pick(4);
  struct V {
    std::string name;
    i64 c;
  };
  std::vector<V> vs{{b.input("x", {N, 1 + pick(4), H, W}), 0}};
  vs[0].c = b.g.inputs[0].type.shape[1].value();
  auto any = [&]() -> V { return vs[static_cast<std::size_t>(pick(static_cast<int>(vs.size())))]; };
  for (int l = 0; l < layers; ++l) {
    const V v = pick(3) == 0 ? any() : vs.back();
    switch (pick(12)) {
      case 0:
      case 1: {
        const i64 co = 1 + pick(6);
        std::string y = b.conv(v.name, v.c, co, pick(2) ? 3 : 1, pick(3) != 0);
        if (pick(2)) y = b.bn(y, co);
        if (pick(2)) y = b.node("Relu", {y});
        vs.push_back({y, co});
        break;
      }
      case 2: vs.push_back({b.node(pick(2) ? "Sigmoid" : "Relu", {v.name}), v.c}); break;
      case 3: {  // residual: conv to the same channels, then add
        std::string y = b.conv(v.name, v.c, v.c, 3);
        y = b.node("Add", {pick(2) ? y : v.name, pick(2) ? v.name : y});
        if (y.find("Add") == 0 && pick(2)) y = b.node("Relu", {y});
        vs.push_back({y, v.c});
        break;
      }
      case 4: {  // concat of two values of the same spatial size
        const V w = any();
        if (w.name == v.name) break;
        vs.push_back({b.node("Concat", {v.name, w.name}, {{"axis", i64{1}}}), v.c + w.c});
        break;
      }
      case 5: {  // per-channel scale and shift
        std::string y = b.node("Mul", {v.name, b.weight({v.c, 1, 1})});
        vs.push_back({b.node("Add", {y, b.weight({1, v.c, 1, 1})}), v.c});
        break;
      }
      case 6:
        vs.push_back({b.node("MaxPool", {v.name},
                             {{"kernel_shape", std::vector<i64>{3, 3}},
                              {"pads", std::vector<i64>{1, 1, 1, 1}}}),
                      v.c});
        break;
      case 7: {  // horizontal group: 1x1 convs sharing an input, then a concat
        std::vector<std::string> outs;
        i64 total = 0;
        for (int k = 0; k < 3; ++k) {
          const i64 co = 1 + pick(4);
          outs.push_back(b.node("Relu", {b.conv(v.name, v.c, co, 1)}));
          total += co;
        }
        vs.push_back({b.node("Concat", outs, {{"axis", i64{1}}}), total});
        break;
      }
      case 8: vs.push_back({b.node(pick(2) ? "Identity" : "Dropout", {v.name}), v.c}); break;
      case 9: {  // flatten and back: views
        std::string f = b.node("Flatten", {v.name}, {{"axis", i64{1}}});
        const std::string shape = fmt::format("shape{}", b.counter++);
        b.g.weights[shape] = Tensor::from<i64>({4}, {N, v.c, H, W});
        vs.push_back({b.node("Reshape", {f, shape}), v.c});
        break;
      }
      case 10: {  // a pointwise chain
        std::string y = b.node("Mul", {v.name, b.weight({1})});
        y = b.node("Tanh", {y});
        vs.push_back({b.node("Sub", {y, b.weight({W})}), v.c});
        break;
      }
      case 11: {  // the same value read twice
        std::string y = b.node("Relu", {v.name});
        vs.push_back({b.node("Add", {y, v.name}), v.c});
        break;
      }
    }
  }
  if (vs.back().name == "x") vs.push_back({b.node("Relu", {"x"}), vs[0].c});
  std::vector<std::string> outs{vs.back().name};
  if (pick(2) && vs.size() > 2 && vs[vs.size() - 2].name != vs.back().name)
    outs.push_back(vs[vs.size() - 2].name);
  return b.finish(outs);
}

}  // namespace plan_test
