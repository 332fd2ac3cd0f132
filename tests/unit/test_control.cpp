// The control op family: If, Loop, Scan with bodies that capture outer values (kiln::Subgraph).
// Shape rules (a known cond picks its branch; otherwise dims where branches differ are dynamic;
// count and dtype disagreements are GraphErrors naming the node, rank ones UnsupportedErrors),
// the reference against loops written out by hand, bodies through a plan file, and the ONNX
// importer's captures (outer values, through removed Identity nodes and nested bodies). The ONNX
// node tests (test_if, test_loop11, test_scan_sum, test_scan9_*, the *_expanded tests built on
// them) run in the conformance suite.
#include <doctest/doctest.h>

#include "expect_error.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/control.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"

using namespace kiln;
using kiln::test::expect_error;
using i64 = std::int64_t;

namespace {

TensorType f32(Shape s) { return {DType::f32, std::move(s)}; }

/// A body: its formal inputs, then the captured outer values; nodes as given.
std::shared_ptr<Graph> body(std::string name, std::vector<ValueInfo> formal,
                            std::vector<std::string> captured, std::vector<Node> nodes,
                            std::vector<std::string> outputs,
                            std::map<std::string, Tensor> weights = {}) {
  auto g = std::make_shared<Graph>();
  g->name = std::move(name);
  g->inputs = std::move(formal);
  for (auto& c : captured) g->inputs.push_back({c, TensorType{}});
  g->nodes = std::move(nodes);
  g->outputs = std::move(outputs);
  g->weights = std::move(weights);
  return g;
}

Node make(std::string op, std::string name, std::vector<std::string> in,
          std::vector<std::string> out, std::map<std::string, Attribute> attrs = {}) {
  return Node{std::move(op), std::move(name), std::move(in), std::move(out), std::move(attrs)};
}

/// y = cond ? x + 1 : -x, x: f32[N, 3]; the then branch captures x and a weight of the outer graph.
Graph if_graph() {
  Graph g;
  g.inputs = {{"cond", {DType::boolean, Shape{}}}, {"x", f32({Dim::symbol("N"), 3})}};
  g.weights["one"] = Tensor::scalar<float>(1.0f);
  auto then_b = body("then", {}, {"x", "one"}, {make("Add", "add", {"x", "one"}, {"t"})}, {"t"});
  auto else_b = body("else", {}, {"x", "one"}, {make("Neg", "neg", {"x"}, {"e"})}, {"e"});
  g.nodes.push_back(
      make("If", "if", {"cond", "x", "one"}, {"y"},
           {{"then_branch", Subgraph{then_b, 2}}, {"else_branch", Subgraph{else_b, 2}}}));
  g.outputs = {"y"};
  return g;
}

}  // namespace

TEST_CASE("If: shapes, both branches on the reference, a known cond picks its branch") {
  Graph g = if_graph();
  g.infer(&reference::constant_evaluator());
  CHECK(g.type_of("y").to_string() == "f32[N,3]");
  const Tensor x = Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  reference::Executor ex(g);
  auto y = ex.run({{"cond", Tensor::scalar<bool>(true)}, {"x", x}}).at("y");
  CHECK(y.to_doubles() == std::vector<double>{2, 3, 4, 5, 6, 7});
  y = ex.run({{"cond", Tensor::scalar<bool>(false)}, {"x", x}}).at("y");
  CHECK(y.to_doubles() == std::vector<double>{-1, -2, -3, -4, -5, -6});

  // Branches of different ranks: an UnsupportedError naming the node while cond is unknown, the
  // taken branch's type once cond is a known value.
  Graph r = if_graph();
  auto flat = body("else", {}, {"x", "one"}, {make("Reshape", "flat", {"x", "all"}, {"e"})}, {"e"},
                   {{"all", Tensor::from<i64>({1}, {-1})}});
  r.nodes[0].attrs["else_branch"] = Subgraph{flat, 2};
  expect_error<UnsupportedError>([&] { r.infer(); },
                                 {"[If 'if']", "output 0", "then_branch", "else_branch", "rank"});
  r.inputs.erase(r.inputs.begin());
  r.weights["cond"] = Tensor::scalar<bool>(true);
  r.infer(&reference::constant_evaluator());
  CHECK(r.type_of("y").to_string() == "f32[N,3]");
}

TEST_CASE("If: branches that disagree in output count or dtype are errors naming the node") {
  Graph g = if_graph();
  auto two = body("else", {}, {"x", "one"}, {make("Neg", "neg", {"x"}, {"e"})}, {"e", "e"});
  g.nodes[0].attrs["else_branch"] = Subgraph{two, 2};
  expect_error<GraphError>([&] { g.infer(); }, {"[If 'if']", "then_branch has 1", "else_branch 2"});
  Graph d = if_graph();
  auto cast =
      body("else", {}, {"x", "one"}, {make("Cast", "c", {"x"}, {"e"}, {{"to", i64{7}}})}, {"e"});
  d.nodes[0].attrs["else_branch"] = Subgraph{cast, 2};
  expect_error<GraphError>([&] { d.infer(); }, {"[If 'if']", "f32", "i64", "dtype"});
  // An error inside a branch names the If, then the branch, then its node.
  Graph b = if_graph();
  auto bad = body("else", {}, {"x", "one"}, {make("Reshape", "rs", {"x", "shape"}, {"e"})}, {"e"},
                  {{"shape", Tensor::from<i64>({1}, {7})}});
  b.nodes[0].attrs["else_branch"] = Subgraph{bad, 2};
  Graph fixed = b;
  fixed.inputs[1].type = f32({2, 3});
  expect_error<ShapeError>([&] { fixed.infer(); }, {"[If 'if'] in else_branch: [Reshape 'rs']"});
}

namespace {

/// Loop: acc += x * i for i < M while acc < limit; scan output: acc after each iteration.
Graph loop_graph() {
  Graph g;
  g.inputs = {
      {"M", {DType::i64, Shape{}}}, {"acc0", f32({2})}, {"x", f32({2})}, {"limit", f32({})}};
  auto b = body(
      "loop_body",
      {{"i", {DType::i64, Shape{}}}, {"c", {DType::boolean, Shape{}}}, {"acc", f32({2})}},
      {"x", "limit"},
      {make("Cast", "fi", {"i"}, {"fi"}, {{"to", i64{1}}}), make("Mul", "mul", {"x", "fi"}, {"xi"}),
       make("Add", "add", {"acc", "xi"}, {"next"}),
       make("ReduceMax", "max", {"next"}, {"m"}, {{"keepdims", i64{0}}}),
       make("Less", "less", {"m", "limit"}, {"go"}), make("Identity", "copy", {"next"}, {"scan"})},
      {"go", "next", "scan"});
  g.nodes.push_back(make("Loop", "loop", {"M", "", "acc0", "x", "limit"}, {"acc", "accs"},
                         {{"body", Subgraph{b, 2}}}));
  g.outputs = {"acc", "accs"};
  return g;
}

}  // namespace

TEST_CASE("Loop: carried values, scan outputs, the trip count and the body's condition") {
  Graph g = loop_graph();
  g.infer(&reference::constant_evaluator());
  CHECK(g.type_of("acc").to_string() == "f32[2]");
  CHECK(g.type_of("accs").to_string() == "f32[?,2]");
  reference::Executor ex(g);
  const Tensor acc0 = Tensor::from<float>({2}, {0, 10}), x = Tensor::from<float>({2}, {1, 2});
  // M = 4, no limit reached: acc = acc0 + x * (0 + 1 + 2 + 3).
  auto out = ex.run({{"M", Tensor::scalar<i64>(4)},
                     {"acc0", acc0},
                     {"x", x},
                     {"limit", Tensor::scalar<float>(100)}});
  CHECK(out.at("acc").to_doubles() == std::vector<double>{6, 22});
  CHECK(out.at("accs").dims() == std::vector<i64>{4, 2});
  CHECK(out.at("accs").to_doubles() == std::vector<double>{0, 10, 1, 12, 3, 16, 6, 22});
  // The body's condition stops it: after i = 2, max(acc) = 16 >= 15.
  out = ex.run({{"M", Tensor::scalar<i64>(10)},
                {"acc0", acc0},
                {"x", x},
                {"limit", Tensor::scalar<float>(15)}});
  CHECK(out.at("acc").to_doubles() == std::vector<double>{3, 16});
  CHECK(out.at("accs").dims() == std::vector<i64>{3, 2});
  // No iteration: the carried values as given, empty scan outputs of the body's dims.
  out = ex.run({{"M", Tensor::scalar<i64>(0)},
                {"acc0", acc0},
                {"x", x},
                {"limit", Tensor::scalar<float>(15)}});
  CHECK(out.at("acc").to_doubles() == std::vector<double>{0, 10});
  CHECK(out.at("accs").dims() == std::vector<i64>{0, 2});
  CHECK(out.at("accs").dtype() == DType::f32);
}

TEST_CASE("Loop: a body that grows a carried value makes its dims dynamic; endless loops stop") {
  Graph g;
  g.inputs = {{"v0", f32({1})}};
  auto b = body("grow",
                {{"i", {DType::i64, Shape{}}}, {"c", {DType::boolean, Shape{}}}, {"v", f32({1})}},
                {}, {make("Concat", "cat", {"v", "v"}, {"w"}, {{"axis", i64{0}}})}, {"c", "w"});
  g.weights["M"] = Tensor::scalar<i64>(3);
  g.nodes.push_back(make("Loop", "loop", {"M", "", "v0"}, {"v"}, {{"body", Subgraph{b, 0}}}));
  g.outputs = {"v"};
  g.infer();
  CHECK(g.type_of("v").to_string() == "f32[?]");
  auto out = reference::Executor(g).run({{"v0", Tensor::from<float>({1}, {5})}});
  CHECK(out.at("v").dims() == std::vector<i64>{8});

  // Neither a trip count nor a condition that turns false: an error naming the node.
  Graph forever;
  forever.inputs = {{"v0", f32({1})}};
  auto same = body(
      "same", {{"i", {DType::i64, Shape{}}}, {"c", {DType::boolean, Shape{}}}, {"v", f32({1})}}, {},
      {}, {"c", "v"});
  forever.nodes.push_back(
      make("Loop", "spin", {"", "", "v0"}, {"v"}, {{"body", Subgraph{same, 0}}}));
  forever.outputs = {"v"};
  forever.infer();
  expect_error<Error>(
      [&] {
        reference::Executor(forever).run({{"v0", Tensor::from<float>({1}, {1})}});
      },
      {"[Loop 'spin']", std::to_string(control::kMaxLoopIterations), "iterations"});
}

TEST_CASE("Scan: states, slices along an axis, reversed directions, output axes") {
  // Running sum over the rows of x [3, 2] from the end; the sums stacked along output axis 1.
  Graph g;
  g.inputs = {{"s0", f32({2})}, {"x", f32({3, 2})}};
  auto b = body("sum", {{"s", f32({2})}, {"row", f32({2})}}, {},
                {make("Add", "add", {"s", "row"}, {"t"}), make("Identity", "copy", {"t"}, {"u"})},
                {"t", "u"});
  g.nodes.push_back(make("Scan", "scan", {"s0", "x"}, {"s", "sums"},
                         {{"body", Subgraph{b, 0}},
                          {"num_scan_inputs", i64{1}},
                          {"scan_input_directions", std::vector<i64>{1}},
                          {"scan_output_axes", std::vector<i64>{1}}}));
  g.outputs = {"s", "sums"};
  g.infer();
  CHECK(g.type_of("sums").to_string() == "f32[2,3]");
  auto out = reference::Executor(g).run({{"s0", Tensor::from<float>({2}, {0, 100})},
                                         {"x", Tensor::from<float>({3, 2}, {1, 2, 3, 4, 5, 6})}});
  CHECK(out.at("s").to_doubles() == std::vector<double>{9, 112});
  // Rows taken 2, 1, 0: sums (5, 106), (8, 110), (9, 112), along axis 1.
  CHECK(out.at("sums").to_doubles() == std::vector<double>{5, 8, 9, 106, 110, 112});
  // Scan inputs of different lengths are an error naming the node.
  Graph two = g;
  two.inputs.push_back({"z", f32({4, 2})});
  two.nodes[0].inputs.push_back("z");
  two.nodes[0].attrs["num_scan_inputs"] = i64{2};
  two.nodes[0].attrs["scan_input_directions"] = std::vector<i64>{1, 0};
  expect_error<ShapeError>([&] { two.infer(); }, {"[Scan 'scan']", "length 4", "3"});
}

TEST_CASE("Control flow through a plan file: the bodies are saved whole") {
  Graph g = if_graph();
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  const plan::Plan q = plan::deserialize_plan(plan::serialize_plan(p));
  CHECK(q.dump() == p.dump());
  reference::PlanExecutor ex(q);  // the plan fixes the dynamic N at 1
  const Tensor x = Tensor::from<float>({1, 3}, {1, 2, 3});
  CHECK(ex.run({{"cond", Tensor::scalar<bool>(false)}, {"x", x}}).at("y").to_doubles() ==
        std::vector<double>{-1, -2, -3});
  CHECK(ex.run({{"cond", Tensor::scalar<bool>(true)}, {"x", x}}).at("y").to_doubles() ==
        std::vector<double>{2, 3, 4});
}

TEST_CASE("The builder inlines an If whose condition is a constant") {
  for (bool taken : {true, false}) {
    Graph g = if_graph();
    g.inputs.erase(g.inputs.begin());
    g.weights["cond"] = Tensor::scalar<bool>(taken);
    build::BuildOptions o;
    o.evaluator = &reference::constant_evaluator();
    const plan::Plan p = build::build_plan(g, o);
    for (const auto& s : p.steps) CHECK(s.op != "If");
    const Tensor x = Tensor::from<float>({1, 3}, {1, 2, 3});
    reference::PlanExecutor ex(p);
    CHECK(ex.run({{"x", x}}).at("y").to_doubles() ==
          (taken ? std::vector<double>{2, 3, 4} : std::vector<double>{-1, -2, -3}));
  }
  // The cond of a nested If that only the types decide (Gather(Shape(x), 1) == 3) folds too,
  // with no evaluator: the inner If is inlined into the branch that stays.
  Graph g;
  g.inputs = {{"x", f32({Dim::symbol("N"), 3})}};
  g.weights["one"] = Tensor::from<i64>({}, {1});
  g.weights["three"] = Tensor::from<i64>({}, {3});
  g.nodes.push_back(make("Shape", "shape", {"x"}, {"s"}));
  g.nodes.push_back(make("Gather", "dim1", {"s", "one"}, {"d"}));
  g.nodes.push_back(make("Equal", "is3", {"d", "three"}, {"c"}));
  auto then_b = body("then", {}, {"x"}, {make("Relu", "relu", {"x"}, {"t"})}, {"t"});
  auto else_b = body("else", {}, {"x"}, {}, {"x"});
  g.nodes.push_back(
      make("If", "if", {"c", "x"}, {"y"},
           {{"then_branch", Subgraph{then_b, 1}}, {"else_branch", Subgraph{else_b, 1}}}));
  g.outputs = {"y"};
  g.infer();
  REQUIRE(g.known_value("d") != nullptr);
  CHECK(g.known_value("d")->to_int64s() == std::vector<i64>{3});
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  for (const auto& s : p.steps) CHECK(s.op != "If");
  reference::PlanExecutor ex(p);
  CHECK(ex.run({{"x", Tensor::from<float>({1, 3}, {-1, 0, 2})}}).at("y").to_doubles() ==
        std::vector<double>{0, 0, 2});
}

TEST_CASE("Values of data-dependent size: held apart from the arena, sized when made") {
  // y = Transpose(NonZero(x)) + 1: NonZero's count is known only when it has run.
  Graph g;
  g.inputs = {{"x", f32({2, 3})}};
  g.weights["one"] = Tensor::scalar<i64>(1);
  g.nodes.push_back(make("NonZero", "nz", {"x"}, {"idx"}));
  g.nodes.push_back(make("Transpose", "t", {"idx"}, {"pairs"}));
  g.nodes.push_back(make("Add", "add", {"pairs", "one"}, {"y"}));
  g.outputs = {"y"};
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan built = build::build_plan(g, o);
  for (const char* v : {"idx", "y"}) {
    const auto& pv = built.memory.values.at(v);
    CHECK(pv.sized_at_run_time());
    CHECK(pv.offset == -1);
    CHECK(pv.bytes() == 0);
  }
  CHECK(built.memory.values.at("idx").dims == std::vector<i64>{2, -1});
  CHECK(built.memory_report().find("idx i64[2,?] (sized at run time)") != std::string::npos);
  CHECK(built.outputs.at(0).type.to_string() == "i64[?,2]");
  const plan::Plan p = plan::deserialize_plan(plan::serialize_plan(built));
  CHECK(p.dump() == built.dump());
  reference::PlanExecutor ex(p);
  for (int nonzeros : {0, 2, 6}) {
    std::vector<float> x(6, 0.0f);
    for (int i = 0; i < nonzeros; ++i)
      x[static_cast<std::size_t>(i * (6 / std::max(nonzeros, 1)))] = 1;
    const Tensor y = ex.run({{"x", Tensor::from<float>({2, 3}, x)}}).at("y");
    CHECK(y.dims() == std::vector<i64>{nonzeros, 2});
    const Tensor want = reference::Executor(g).run({{"x", Tensor::from<float>({2, 3}, x)}}).at("y");
    CHECK(y.to_int64s() == want.to_int64s());
  }
}
