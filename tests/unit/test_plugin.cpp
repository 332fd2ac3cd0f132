// The plugin API (kiln/ir/plugin.hpp) with the sample fully connected plugin built in
// (examples/plugins/fc_plugin.cpp): shape inference, the CPU reference against the built-in Gemm,
// typed attributes through a saved plan, ONNX nodes of a custom domain, and the errors (a shape
// function that throws, an unsupported dtype, an unknown version, a plugin that is not loaded).
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

#include "expect_error.hpp"
#include "kiln/dsl/dsl.hpp"
#include "kiln/ir/plugin.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/run.hpp"
#include "onnx_test_util.hpp"
#include "plan_test_util.hpp"
#include "plugins/fc_plugin.hpp"

using namespace kiln;
using kiln::test::expect_error;
using i64 = std::int64_t;

namespace {

const char* kFc = "kiln.examples::FullyConnected@1";

/// x [N, K] -> FullyConnected(W [M, K], b [M]) -> Relu; the same through Gemm(transB) when
/// `builtin`.
Graph fc_graph(i64 n, i64 k, i64 m, bool builtin, bool bias = true) {
  Graph g;
  g.name = builtin ? "gemm" : "plugin";
  g.inputs.push_back({"x", {DType::f32, Shape{n, k}}});
  std::mt19937_64 rng(7);
  g.weights["W"] = plan_test::random_tensor(DType::f32, {m, k}, rng);
  g.weights["b"] = plan_test::random_tensor(DType::f32, {m}, rng);
  Node fc;
  fc.name = "fc";
  fc.inputs = {"x", "W"};
  if (bias) fc.inputs.push_back("b");
  fc.outputs = {"h"};
  if (builtin) {
    fc.op = "Gemm";
    fc.attrs["transB"] = std::int64_t{1};
  } else {
    fc.op = kFc;
    fc.attrs["out_features"] = m;
  }
  g.nodes.push_back(fc);
  Node relu;
  relu.op = "Relu";
  relu.name = "relu";
  relu.inputs = {"h"};
  relu.outputs = {"y"};
  g.nodes.push_back(relu);
  g.outputs = {"y"};
  return g;
}

}  // namespace

TEST_CASE("a registered plugin is found by its name and by (domain, op, version)") {
  const plugin::Entry* e = plugin::find(kFc);
  REQUIRE(e != nullptr);
  CHECK(e->name() == kFc);
  CHECK(plugin::find("kiln.examples", "FullyConnected", 1) == e);
  CHECK(plugin::find("kiln.examples", "FullyConnected", 2) == nullptr);
  CHECK(plugin::is_plugin_op(kFc));
  CHECK_FALSE(plugin::is_plugin_op("Gemm"));
  CHECK(e->library.empty());  // built into this program
}

TEST_CASE("the plugin's shape function runs in shape inference, symbolic dims included") {
  Graph g = fc_graph(4, 6, 3, false);
  g.inputs[0].type.shape = Shape{Dim::symbol("N"), 6};
  g.infer();
  CHECK(g.type_of("h").shape.to_string() == "[N,3]");
}

TEST_CASE("the plugin's CPU reference equals the built-in Gemm, with and without bias") {
  for (bool bias : {true, false}) {
    const Graph a = fc_graph(5, 7, 4, false, bias), b = fc_graph(5, 7, 4, true, bias);
    plan_test::check_equivalent(b, a, bias ? "with bias" : "without bias", 7, 1e-6);
  }
}

namespace {
/// Attributes of every kind a plugin may have.
struct P {
  struct Attrs {
    std::int64_t n = 3;
    double scale = 0.5;
    std::string mode = "a";
    std::vector<std::int64_t> axes{1, 2};
    template <class V>
    void visit(V& v) {
      v("n", n), v("scale", scale), v("mode", mode), v("axes", axes);
    }
  };
  static constexpr const char* domain = "t";
  static constexpr const char* op = "P";
  static constexpr int version = 2;
};
}  // namespace

TEST_CASE("typed attributes: node_of writes them, attrs_of reads them back") {
  P::Attrs a;
  a.n = 9, a.scale = 2.25, a.mode = "bilinear", a.axes = {4};
  const Node n = plugin::node_of<P>(a, "p", {"x"}, {"y"});
  CHECK(n.op == "t::P@2");
  const P::Attrs back = plugin::attrs_of<P>(n);
  CHECK(back.n == 9);
  CHECK(back.scale == 2.25);
  CHECK(back.mode == "bilinear");
  CHECK(back.axes == std::vector<std::int64_t>{4});
  CHECK(plugin::attrs_of<P>(Node{}).n == 3);  // absent: the default
}

TEST_CASE("a plan with a plugin step keeps its attributes through a plan file") {
  const Graph g = fc_graph(2, 8, 5, false);
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  const std::string path =
      (std::filesystem::temp_directory_path() / "kiln_test_plugin.plan").string();
  plan::save_plan(p, path);
  const plan::Plan back = plan::load_plan(path);
  std::remove(path.c_str());
  bool found = false;
  for (const Node& s : back.steps)
    if (s.op == kFc) found = s.attr_int("out_features") == 5;
  CHECK(found);
  plan_test::check_plan_equivalent(g, back, "plugin plan from a file", 7, 1e-6);
}

TEST_CASE("an ONNX node of the plugin's domain imports as the plugin") {
  kiln::test::ModelBuilder mb(17);
  auto* o = mb.m.add_opset_import();
  o->set_domain("kiln.examples");
  o->set_version(1);
  mb.input("x", {-1, 6});
  mb.initializer("W", {2, 6}, std::vector<float>(12, 0.5f));
  auto* n = mb.node("FullyConnected", {"x", "W"}, {"y"}, "fc1");
  n->set_domain("kiln.examples");
  kiln::test::ModelBuilder::integer(n, "out_features", 2);
  mb.output("y");
  const Graph g = mb.load();
  REQUIRE(g.nodes.size() == 1);
  CHECK(g.nodes[0].op == kFc);
  Tensor x(DType::f32, {3, 6});
  for (i64 i = 0; i < x.numel(); ++i) x.set(i, static_cast<double>(i));
  const Tensor y = reference::Executor(g).run({{"x", x}}).at("y");
  CHECK(y.dims() == std::vector<i64>{3, 2});
  CHECK(y.get(0) == doctest::Approx(0.5 * (0 + 1 + 2 + 3 + 4 + 5)));
  // Another version of the domain is no registered plugin: the message says which exist.
  o->set_version(3);
  expect_error<UnsupportedError>(
      [&] { mb.load(); },
      {"'FullyConnected'", "kiln.examples", "version 3", "versions registered: 1", "--plugin"});
}

TEST_CASE("plugin errors name the plugin and the node") {
  // The shape function throws: W's rows do not match out_features.
  Graph g = fc_graph(2, 4, 3, false);
  g.nodes[0].attrs["out_features"] = std::int64_t{5};
  expect_error<ShapeError>([&] { g.infer(); }, {"'fc'", "shape function of plugin", kFc,
                                                "expected 5 rows of W (out_features), got 3"});
  // A dtype it does not take.
  Graph d = fc_graph(2, 4, 3, false);
  d.inputs[0].type.dtype = DType::f64;
  d.weights["W"] = d.weights["W"].cast(DType::f64);
  expect_error<ShapeError>([&] { d.infer(); }, {"'fc'", kFc, "does not take input 0", "f64"});
  // A plugin nobody registered, with the library its node came from.
  Graph m = fc_graph(2, 4, 3, false);
  m.nodes[0].op = "kiln.examples::Missing@1";
  m.nodes[0].attrs[plugin::kLibraryAttr] = std::string("/opt/lib/libmissing.so");
  expect_error<UnsupportedError>(
      [&] { m.infer(); },
      {"'fc'", "kiln.examples::Missing@1", "not loaded", "--plugin /opt/lib/libmissing.so"});
  expect_error<UnsupportedError>([&] { reference::Executor{m}; }, {"Missing@1", "not loaded"});
  // Registering the same plugin twice.
  expect_error<Error>([] { plugin::add(*plugin::find(kFc)); }, {"registered twice", kFc});
  // Libraries that are none.
  expect_error<Error>([] { plugin::load_library("/nonexistent/libx.so"); },
                      {"/nonexistent/libx.so", "no file"});
}

TEST_CASE("the DSL runs a plugin as a layer, its rule checked on fixed dims") {
  using namespace kiln::dsl;
  using FC = kiln_examples::FullyConnected;
  kiln::WeightMap m;
  m.add("fc.weight", kiln::Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  m.add("fc.bias", kiln::Tensor::from<float>({2}, {0.5f, -1}));
  auto x = input<"x", f32, NC>(dyn, fix<3>);
  auto y = custom<FC, FC::Attrs{.out_features = 2}>(x, weight<2, 3>(x, m, "fc.weight"),
                                                    weight<2>(x, m, "fc.bias"));
  static_assert(std::is_same_v<decltype(y), kiln::dsl::Tensor<DType::f32, Layout::any, -1, 2>>);
  Network n = network(relu(y));
  const kiln::Tensor out = kiln::run(n, kiln::Tensor::from<float>({1, 3}, {1, 0, -1}));
  CHECK(out.get(0) == 0);  // relu(1 - 3 + 0.5)
  CHECK(out.get(1) == 0);  // relu(4 - 6 - 1)
  // The same as the DSL's built-in fully connected layer on the same weights.
  auto x2 = input<"x", f32, NC>(dyn, fix<3>);
  Network b = network(relu(fully_connected<2>(x2, m, "fc")));
  const kiln::Tensor in = kiln::Tensor::from<float>({2, 3}, {0.5f, -2, 3, 1, 1, 1});
  const auto got = kiln::run(n, in).to_doubles(), want = kiln::run(b, in).to_doubles();
  CHECK(got == want);
}
