// The builder's passes: each on graphs made for it (what it rewrites, what it must leave alone)
// and each proved to keep outputs on the CPU reference, on random networks too.
#include "kiln/build/passes.hpp"

#include "../qdq_graphs.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/plan/plan.hpp"
#include "plan_test_util.hpp"

using namespace plan_test;
using namespace kiln;
namespace b = kiln::build;

namespace {

b::PassContext ctx(const plan::Target* t = nullptr) {
  return b::PassContext{t, &reference::constant_evaluator()};
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op == op;
  return n;
}

/// Runs `pass` on a copy of g, checks equivalence, returns the result.
template <class Pass>
Graph run_checked(const Graph& g, Pass pass, int* changes = nullptr,
                  const plan::Target* t = nullptr) {
  Graph after = g;
  const int c = pass(after, ctx(t));
  if (changes) *changes = c;
  check_equivalent(g, after, "pass");
  return after;
}

}  // namespace

TEST_CASE("fused node: encoding round trip, malformed encodings are refused") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 4, 4});
  auto c = bld.conv(x, 2, 3, 3);
  auto r = bld.node("Relu", {c});
  Graph g = bld.finish({r});
  Graph f = run_checked(g, b::fuse_conv_activation);
  REQUIRE(f.nodes.size() == 1);
  const Node& n = f.nodes[0];
  CHECK(is_fused(n));
  CHECK(n.attr_string("pattern", "") == "Conv+Relu");
  CHECK(fused_absorbed(n) == std::vector<std::string>{g.nodes[0].name, g.nodes[1].name});
  const FusedBody body = fused_body(n);
  REQUIRE(body.parts.size() == 2);
  CHECK(body.parts[0].attr_ints("kernel_shape") == std::vector<std::int64_t>{3, 3});

  Node bad = n;
  bad.attrs["p1.in"] = std::vector<std::string>{"nowhere"};
  CHECK_THROWS_AS(fused_body(bad), GraphError);
  bad = n;
  bad.attrs["p0.in"] = std::vector<std::string>{"$9"};
  CHECK_THROWS_AS(fused_body(bad), GraphError);
  bad = n;
  bad.attrs["parts"] = std::int64_t{-3};
  CHECK_THROWS_AS(fused_body(bad), GraphError);
  bad = n;
  bad.attrs["results"] = std::vector<std::string>{"a", "b"};
  CHECK_THROWS_AS(fused_body(bad), GraphError);
}

TEST_CASE("verify refuses a graph without types and a malformed graph") {
  Builder bld;
  auto x = bld.input("x", {2, 3});
  auto r = bld.node("Relu", {x});
  Graph g = bld.finish({r});
  CHECK(b::verify_graph(g, ctx()) == 0);
  Graph bad = g;
  bad.nodes[0].inputs[0] = "missing";
  CHECK_THROWS_AS(b::verify_graph(bad, ctx()), GraphError);
  Graph untyped = g;
  untyped.nodes[0].outputs[0] = "renamed";
  untyped.outputs[0] = "renamed";
  CHECK_THROWS_WITH_AS(b::verify_graph(untyped, ctx()), doctest::Contains("no inferred type"),
                       GraphError);
}

TEST_CASE("fold_constants: ConstantOfShape weights and shape subgraphs become weights") {
  Builder bld;
  auto x = bld.input("x", {2, 6});
  const std::string shape = "wshape";
  bld.g.weights[shape] = Tensor::from<std::int64_t>({2}, {6, 4});
  Node cos;
  cos.op = "ConstantOfShape";
  cos.name = "cos";
  cos.inputs = {shape};
  cos.outputs = {"wcos"};
  cos.attrs["value"] = Tensor::from<float>({1}, {0.5f});
  bld.g.add_node(cos);
  auto w2 = bld.node("Mul", {"wcos", bld.weight({1})});
  auto mm = bld.node("MatMul", {x, w2});
  auto shp = bld.node("Shape", {mm});  // of a static value: folded
  auto flat = bld.node("Reshape", {mm, bld.node("Concat", {shp}, {{"axis", std::int64_t{0}}})});
  Graph g = bld.finish({flat});
  int n = 0;
  Graph f = run_checked(g, b::fold_constants, &n);
  CHECK(n == 4);  // ConstantOfShape, Mul, Shape, Concat
  CHECK(count_op(f, "ConstantOfShape") == 0);
  CHECK(count_op(f, "MatMul") == 1);
  CHECK(f.weights.count("wcos") == 1);

  Graph g2 = g;
  CHECK_THROWS_AS(b::fold_constants(g2, b::PassContext{}), GraphError);
}

TEST_CASE("eliminate_dead removes unread nodes and weights") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 4, 4});
  auto live = bld.node("Relu", {x});
  auto dead = bld.conv(x, 2, 3, 1);
  bld.node("Sigmoid", {dead});
  Graph g = bld.finish({live});
  int n = 0;
  Graph f = run_checked(g, b::eliminate_dead, &n);
  CHECK(f.nodes.size() == 1);
  CHECK(f.weights.empty());
  CHECK(n == 4);  // conv, sigmoid, conv weight and bias
}

TEST_CASE("elide_identity keeps output names and leaves what it cannot remove") {
  Builder bld;
  auto x = bld.input("x", {1, 3});
  auto a = bld.node("Relu", {x});
  auto i1 = bld.node("Identity", {a});
  auto d = bld.node("Dropout", {i1});
  auto s = bld.node("Sigmoid", {d});
  auto out = bld.node("Identity", {s});      // a graph output: its producer takes the name
  auto through = bld.node("Identity", {x});  // of a graph input to a graph output: stays
  Graph g = bld.finish({out, through});
  Graph f = run_checked(g, b::elide_identity);
  CHECK(count_op(f, "Identity") == 1);
  CHECK(count_op(f, "Dropout") == 0);
  CHECK(f.outputs == std::vector<std::string>{out, through});
  CHECK(f.nodes[1].op == "Sigmoid");
  CHECK(f.nodes[1].outputs[0] == out);
}

TEST_CASE("fold_batchnorm: into Conv (with and without bias) and Gemm (both transB)") {
  for (bool bias : {true, false}) {
    Builder bld;
    auto x = bld.input("x", {2, 3, 5, 5});
    auto c = bld.conv(x, 3, 4, 3, bias);
    auto y = bld.node("Relu", {bld.bn(c, 4)});
    Graph g = bld.finish({y});
    int n = 0;
    Graph f = run_checked(g, b::fold_batchnorm, &n);
    CHECK(n == 1);
    CHECK(count_op(f, "BatchNormalization") == 0);
    CHECK(count_op(f, "Conv") == 1);
  }
  for (std::int64_t trans : {0, 1}) {
    Builder bld;
    auto x = bld.input("x", {3, 5});
    auto w = bld.weight(trans ? std::vector<std::int64_t>{4, 5} : std::vector<std::int64_t>{5, 4});
    auto gm = bld.node("Gemm", {x, w, bld.weight({4})},
                       {{"transB", trans}, {"beta", 0.5}, {"alpha", 2.0}});
    auto y = bld.bn(gm, 4);
    Graph g = bld.finish({y});
    int n = 0;
    Graph f = run_checked(g, b::fold_batchnorm, &n);
    CHECK(n == 1);
    CHECK(count_op(f, "BatchNormalization") == 0);
  }
}

TEST_CASE("fold_batchnorm: per-channel Mul and Add fold; other shapes and shared outputs do not") {
  Builder bld;
  auto x = bld.input("x", {1, 3, 4, 4});
  auto c = bld.conv(x, 3, 2, 1);
  auto m = bld.node("Mul", {bld.weight({2, 1, 1}), c});
  auto a = bld.node("Add", {m, bld.weight({1, 2, 1, 1})});
  auto spatial = bld.node("Mul", {a, bld.weight({4})});  // varies along W: not a scale
  auto c2 = bld.conv(x, 3, 2, 1);
  auto shared_bn = bld.bn(c2, 2);
  auto other = bld.node("Relu", {c2});  // c2 read twice: its BN cannot fold
  Graph g = bld.finish({spatial, shared_bn, other});
  int n = 0;
  Graph f = run_checked(g, b::fold_batchnorm, &n);
  CHECK(n == 2);
  CHECK(count_op(f, "Mul") == 1);
  CHECK(count_op(f, "Add") == 0);
  CHECK(count_op(f, "BatchNormalization") == 1);
}

TEST_CASE("conv + bias + activation, gemm + activation") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 5, 5});
  auto c = bld.node("LeakyRelu", {bld.conv(x, 2, 3, 3)}, {{"alpha", 0.2}});
  auto cl = bld.node("Clip",
                     {bld.conv(c, 3, 3, 1), bld.weight({}, -0.5, -0.4), bld.weight({}, 0.4, 0.5)});
  auto fl = bld.node("Flatten", {cl}, {{"axis", std::int64_t{1}}});
  auto gm = bld.node("Sigmoid", {bld.node("Gemm", {fl, bld.weight({75, 4}), bld.weight({4})})});
  Graph g = bld.finish({gm});
  int n = 0;
  Graph f = run_checked(g, b::fuse_conv_activation, &n);
  CHECK(n == 3);
  CHECK(count_op(f, kFusedOp) == 3);
  CHECK(f.nodes[0].attr_string("pattern", "") == "Conv+LeakyRelu");
  CHECK(f.nodes[1].attr_string("pattern", "") == "Conv+Clip");
  CHECK(f.nodes.back().attr_string("pattern", "") == "Gemm+Sigmoid");

  // A target without these fusions leaves the graph alone.
  Graph plain = g;
  CHECK(b::fuse_conv_activation(plain, ctx(&plan::plain_target())) == 0);
  CHECK(plain.nodes.size() == g.nodes.size());
}

TEST_CASE("conv + residual add + activation") {
  Builder bld;
  auto x = bld.input("x", {2, 3, 4, 4});
  auto c1 = bld.conv(x, 3, 3, 3);
  auto c2 = bld.conv(x, 3, 3, 1);
  auto s = bld.node("Sum", {c1, c2});
  auto y = bld.node("Relu", {s});
  auto c3 = bld.conv(y, 3, 3, 3);
  auto bcast = bld.node("Add", {c3, bld.weight({1, 3, 1, 1})});  // a bias, not a residual
  Graph g = bld.finish({bcast});
  int n = 0;
  Graph f = run_checked(g, b::fuse_conv_residual, &n);
  CHECK(n == 1);
  f = run_checked(f, b::fuse_conv_activation, &n);
  bool found = false;
  for (const auto& node : f.nodes)
    if (node.attr_string("pattern", "") == "Conv+Sum+Relu") {
      found = true;
      CHECK(fused_absorbed(node).size() == 3);
    }
  CHECK(found);
  CHECK(count_op(f, "Add") == 1);  // the broadcast add stays (fold_batchnorm's job)
}

TEST_CASE("pointwise chains fuse up to the target's limit and only at one shape") {
  Builder bld;
  auto x = bld.input("x", {2, 8});
  std::string v = x;
  for (int i = 0; i < 20; ++i)
    v = bld.node(i % 2 ? "Tanh" : "Mul", i % 2 ? std::vector<std::string>{v}
                                               : std::vector<std::string>{v, bld.weight({8})});
  auto grow = bld.node("Add", {v, bld.input("y", {3, 2, 8})});  // broadcast grows the shape
  Graph g = bld.finish({grow});
  Graph f = run_checked(g, b::fuse_pointwise);
  const auto limit = plan::cpu_reference_target().max_pointwise_chain;
  CHECK(f.nodes.size() == (20 + limit - 1) / limit + 1);
  for (const auto& n : f.nodes)
    if (is_fused(n)) CHECK(fused_body(n).parts.size() <= limit);
  CHECK(f.nodes.back().op == "Add");
}

TEST_CASE("horizontal fusion of convolutions that share an input") {
  Builder bld;
  auto x = bld.input("x", {2, 4, 5, 5});
  auto a = bld.node("Relu", {bld.conv(x, 4, 3, 1)});
  auto c = bld.node("Relu", {bld.conv(x, 4, 2, 1)});
  auto d = bld.node("Relu", {bld.conv(x, 4, 5, 1, false)});
  auto e = bld.conv(x, 4, 2, 3);                          // another kernel size: apart
  auto f3 = bld.node("Sigmoid", {bld.conv(x, 4, 2, 1)});  // another activation: apart
  auto cat = bld.node("Concat", {a, c, d, e, f3}, {{"axis", std::int64_t{1}}});
  Graph g = bld.finish({cat});
  Graph f = run_checked(g, b::fuse_conv_activation);
  int n = 0;
  f = run_checked(f, b::fuse_horizontal, &n);
  CHECK(n == 1);
  int merged = 0;
  for (const auto& node : f.nodes)
    if (node.attr_string("pattern", "") == "Conv+Relu+Split") {
      ++merged;
      CHECK(node.outputs.size() == 3);
    }
  CHECK(merged == 1);
  CHECK(f.nodes.size() == 4);
}

TEST_CASE("views and in-place concats are marked only where legal") {
  Builder bld;
  auto x = bld.input("x", {2, 3, 4, 4});
  auto a = bld.node("Relu", {x});
  auto c = bld.conv(x, 3, 2, 1);
  auto cat = bld.node("Concat", {a, c}, {{"axis", std::int64_t{1}}});
  auto cat2 = bld.node("Concat", {x, c}, {{"axis", std::int64_t{1}}});  // a graph input: no
  auto fl = bld.node("Flatten", {cat}, {{"axis", std::int64_t{1}}});
  Graph g = bld.finish({fl, cat2});
  Graph f = g;
  CHECK(b::mark_views(f, ctx()) == 1);
  CHECK(b::elide_concat(f, ctx()) == 1);
  check_equivalent(g, f, "marks");
  CHECK(f.nodes[2].attr_int(plan::kConcatInPlaceAttr, 0) == 1);
  CHECK(f.nodes[3].attr_int(plan::kConcatInPlaceAttr, 0) == 0);
  CHECK(b::count_layers(f) == 3);  // Relu, Conv, the second Concat
  Graph p = g;
  CHECK(b::mark_views(p, ctx(&plan::plain_target())) == 0);
  CHECK(b::elide_concat(p, ctx(&plan::plain_target())) == 0);
}

TEST_CASE("layout choice: the CPU reference runs NCHW; a target preferring NHWC converts least") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 4, 4});
  auto y = bld.node("Relu", {bld.conv(bld.node("Relu", {bld.conv(x, 2, 2, 3)}), 2, 2, 3)});
  Graph g = bld.finish({y});
  Graph f = g;
  CHECK(b::choose_layout(f, ctx()) == 0);
  for (const auto& n : f.nodes) CHECK(n.attr_string(plan::kLayoutAttr, "") == "NCHW");

  plan::Target nhwc = plan::cpu_reference_target();
  nhwc.name = "test-nhwc";
  nhwc.layouts["Conv"] = {plan::Layout::NHWC, plan::Layout::NCHW};
  Graph h = g;
  // All NHWC needs two conversions (in and out), all NCHW none: NCHW wins.
  CHECK(b::choose_layout(h, ctx(&nhwc)) == 0);
  nhwc.layouts["Conv"] = {plan::Layout::NHWC};
  Graph k = g;
  CHECK(b::choose_layout(k, ctx(&nhwc)) == 2);  // the input to NHWC, the output back to NCHW
  REQUIRE(k.nodes.size() == 6);
  CHECK(k.nodes[0].op == plan::kToLayoutOp);
  CHECK(k.nodes[1].op == "Conv");
  CHECK(k.nodes[1].attr_string(plan::kLayoutAttr, "") == "NHWC");
  CHECK(k.nodes[2].attr_string(plan::kLayoutAttr, "") == "NHWC");  // the Relu follows
  CHECK(k.nodes[5].op == plan::kToLayoutOp);
  CHECK(k.outputs == g.outputs);
  check_equivalent(g, k, "layout");
}

namespace {

/// Every reader sees the layout it needs (an independent statement of the rules in passes.hpp):
/// the physical layout of a 4-D value is its producer's kiln.layout (inputs, weights: NCHW).
void check_layouts(const Graph& g, const plan::Target& t) {
  std::map<std::string, std::string> phys;
  for (const auto& i : g.inputs) phys[i.name] = "NCHW";
  auto four_d = [&](const std::string& v) { return !v.empty() && g.type_of(v).shape.rank() == 4; };
  auto layout_of = [&](const std::string& v) { return phys.count(v) ? phys[v] : "NCHW"; };
  auto same_bytes = [&](const std::string& v) {
    const auto d = g.type_of(v).shape.values();
    return d[1] == 1 || d[2] * d[3] == 1;
  };
  for (const Node& n : g.nodes) {
    CAPTURE(n.name);
    bool out4 = false;
    for (const auto& o : n.outputs) out4 |= four_d(o);
    const std::string mine = n.attr_string(plan::kLayoutAttr, "");
    CHECK((mine.empty() != out4));
    bool sensitive = false, pointwise = true;
    for (const auto& p : fused_body(n).parts) {
      if (t.is_pointwise(p.op) || (is_fused(n) && p.op == "Split")) continue;
      pointwise = false;
      sensitive |= t.layouts.count(p.op) != 0;
    }
    if (n.op == plan::kToLayoutOp) {
      CHECK(n.attr_string(plan::kToLayoutAttr, "") == mine);
      CHECK(layout_of(n.inputs[0]) != mine);  // never a conversion that converts nothing
    } else if (out4 && sensitive) {
      for (const auto& in : n.inputs)
        if (four_d(in) && !g.weights.count(in)) CHECK_MESSAGE(layout_of(in) == mine, in);
    } else if (out4 && pointwise) {
      for (const auto& in : n.inputs)
        if (four_d(in) && !g.weights.count(in)) {
          CHECK(layout_of(in) == mine);  // follows its first computed 4-D input
          break;
        }
    } else if (n.op != "Shape" && n.op != "Size") {
      CHECK((mine.empty() || mine == "NCHW"));
      for (const auto& in : n.inputs)
        if (four_d(in)) CHECK_MESSAGE((layout_of(in) == "NCHW" || same_bytes(in)), in);
    }
    for (const auto& o : n.outputs)
      if (four_d(o)) phys[o] = mine;
  }
  for (const auto& o : g.outputs)
    if (four_d(o)) CHECK_MESSAGE(layout_of(o) == "NCHW", o);
}

std::vector<const Node*> steps_of(const plan::Plan& p, const std::string& op) {
  std::vector<const Node*> r;
  for (const auto& s : p.steps)
    if (s.op == op) r.push_back(&s);
  return r;
}

/// input [1,3,14,14] -> Conv -> Relu -> MaxPool -> Conv + residual Add -> (GlobalAveragePool) ->
/// Flatten -> Gemm.
Graph small_resnet(bool global_pool) {
  Builder bld;
  auto x = bld.input("x", {1, 3, 14, 14});
  auto r = bld.node("Relu", {bld.conv(x, 3, 8, 3)});
  auto p = bld.node("MaxPool", {r},
                    {{"kernel_shape", std::vector<std::int64_t>{2, 2}},
                     {"strides", std::vector<std::int64_t>{2, 2}}});  // [1,8,7,7]
  auto a = bld.node("Add", {bld.conv(p, 8, 8, 3), p});
  auto v = global_pool ? bld.node("GlobalAveragePool", {a}) : a;  // [1,8,1,1] or [1,8,7,7]
  auto f = bld.node("Flatten", {v}, {{"axis", std::int64_t{1}}});
  const std::int64_t k = global_pool ? 8 : 8 * 7 * 7;
  auto y = bld.node("Gemm", {f, bld.weight({k, 10}), bld.weight({10})});
  return bld.finish({y});
}

plan::Plan build_for(const Graph& g, const plan::Target& t, build::BuildReport* r = nullptr) {
  build::BuildReport local;
  build::BuildReport& rep = r ? *r : local;
  plan::Plan p = build::build_plan(g, checked_options(&t), &rep);
  check_layouts(rep.after_fusion, t);
  check_plan_equivalent(g, p, t.name);
  return p;
}

}  // namespace

TEST_CASE("layout: NHWC plans convert once at the input, not before a Flatten of H*W == 1") {
  const Graph g = small_resnet(true);
  build::BuildReport r;
  const plan::Plan p = build_for(g, plan::cuda_target(true), &r);
  const auto conv = steps_of(p, plan::kToLayoutOp);
  REQUIRE(conv.size() == 1);
  CHECK(conv[0]->inputs == std::vector<std::string>{"x"});
  CHECK(conv[0]->outputs == std::vector<std::string>{"x.nhwc"});
  CHECK(conv[0]->attr_string("to", "") == "NHWC");
  CHECK(conv[0]->attr_string(plan::kLayoutAttr, "") == "NHWC");
  CHECK(&p.steps[0] == conv[0]);
  for (const auto& [pass, n] : r.pass_changes)
    if (pass == "choose-layout") CHECK(n == 1);
  int nhwc = 0;
  for (const auto& s : p.steps) nhwc += s.attr_string(plan::kLayoutAttr, "") == "NHWC";
  CHECK(nhwc == 5);  // the conversion, Conv+Relu, MaxPool, Conv+Add, GlobalAveragePool
  // The Flatten of [1,8,1,1] reads the NHWC pool output as it is (a view, no step).
  for (const auto& n : r.after_fusion.nodes)
    if (n.op == "Flatten") CHECK(n.attr_int(plan::kViewAttr, 0) == 1);
  CHECK(p.outputs.size() == 1);

  // FP32 CUDA and the CPU reference are NCHW throughout: nothing to convert.
  for (const plan::Target* t : {&plan::cuda_target(false), &plan::cpu_reference_target()}) {
    const plan::Plan q = build_for(g, *t);
    CHECK(steps_of(q, plan::kToLayoutOp).empty());
    for (const auto& s : q.steps) CHECK(s.attr_string(plan::kLayoutAttr, "NCHW") == "NCHW");
  }
}

TEST_CASE("layout: a Flatten of a 7x7 NHWC map reads an NCHW copy") {
  const Graph g = small_resnet(false);
  build::BuildReport r;
  const plan::Plan p = build_for(g, plan::cuda_target(true), &r);
  const auto conv = steps_of(p, plan::kToLayoutOp);
  REQUIRE(conv.size() == 2);
  CHECK(conv[0]->attr_string("to", "") == "NHWC");
  CHECK(conv[1]->attr_string("to", "") == "NCHW");
  const std::string nchw = conv[1]->outputs[0];
  CHECK(nchw == conv[1]->inputs[0] + ".nchw");
  int flatten = 0;
  for (const auto& n : r.after_fusion.nodes)
    if (n.op == "Flatten") {
      ++flatten;
      CHECK(n.inputs[0] == nchw);
    }
  CHECK(flatten == 1);
}

TEST_CASE("layout: a 4-D NHWC graph output is converted back and keeps its name") {
  Builder bld;
  auto x = bld.input("x", {2, 3, 6, 6});
  auto c = bld.node("Relu", {bld.conv(bld.node("Relu", {bld.conv(x, 3, 4, 3)}), 4, 4, 3)});
  auto p = bld.node("MaxPool", {c},
                    {{"kernel_shape", std::vector<std::int64_t>{2, 2}},
                     {"strides", std::vector<std::int64_t>{2, 2}}});  // [2,4,3,3]
  auto sm = bld.node("Softmax", {p}, {{"axis", std::int64_t{1}}});    // reads p in NCHW
  auto gp = bld.node("GlobalMaxPool", {p});                           // reads p in NHWC
  Graph g = bld.finish({p, sm, gp});
  build::BuildReport r;
  const plan::Plan plan = build_for(g, plan::cuda_target(true), &r);
  CHECK(r.after_fusion.outputs == g.outputs);
  REQUIRE(plan.outputs.size() == 3);
  CHECK(plan.outputs[0].name == p);
  const auto conv = steps_of(plan, plan::kToLayoutOp);
  REQUIRE(conv.size() == 3);  // x to NHWC; p back (shared by Softmax); gp back
  CHECK(conv[1]->outputs[0] == p);
  CHECK(conv[1]->inputs[0] == p + ".nhwc");
  CHECK(conv[1]->attr_string("to", "") == "NCHW");
  for (const auto& s : plan.steps) {
    if (s.op == "Softmax") CHECK(s.inputs[0] == p);
    if (s.op == "GlobalMaxPool") CHECK(s.inputs[0] == p + ".nhwc");
  }
  // [2,4,1,1]: both layouts are the same bytes, but a graph output is always handed over in NCHW.
  CHECK(conv[2]->outputs[0] == gp);
}

TEST_CASE("layout: random networks on the CUDA targets compute the same, every read consistent") {
  int converted = 0;
  for (std::uint64_t seed = 1; seed <= 30; ++seed) {
    CAPTURE(seed);
    const Graph g = random_cnn(seed);
    for (bool fp16 : {true, false}) {
      build::BuildReport r;
      const plan::Plan p = build_for(g, plan::cuda_target(fp16), &r);
      const auto n = static_cast<int>(steps_of(p, plan::kToLayoutOp).size());
      for (const auto& [pass, c] : r.pass_changes)
        if (pass == "choose-layout") CHECK(c == n);
      if (!fp16) CHECK(n == 0);
      converted += n;
      CHECK(r.after_fusion.outputs == g.outputs);
    }
  }
  MESSAGE("kiln.ToLayout steps over 30 random networks for cuda-fp16: " << converted);
  CHECK(converted > 0);  // some of them run in NHWC
}

TEST_CASE("kiln.ToLayout: same type, 4-D only, 'to' must name a layout") {
  auto make = [](std::vector<std::int64_t> dims, std::string to) {
    Graph g;
    g.inputs.push_back({"x", {DType::f32, Shape::of(dims)}});
    Node n;
    n.op = plan::kToLayoutOp;
    n.name = "conv";
    n.inputs = {"x"};
    n.outputs = {"y"};
    n.attrs[plan::kToLayoutAttr] = to;
    g.add_node(n);
    g.outputs = {"y"};
    return g;
  };
  Graph ok = make({1, 3, 4, 5}, "NHWC");
  ok.infer();
  CHECK(ok.type_of("y") == ok.type_of("x"));
  std::mt19937_64 rng(3);
  const Tensor x = random_tensor(DType::f32, {1, 3, 4, 5}, rng);
  const auto y = reference::run_node(ok.nodes[0], {&x});
  CHECK(y[0].to_doubles() == x.to_doubles());

  Graph bad = make({1, 3, 4, 5}, "NCWH");
  CHECK_THROWS_WITH_AS(bad.infer(),
                       doctest::Contains("attribute 'to' = 'NCWH': expected 'NCHW' or 'NHWC'"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(reference::run_node(bad.nodes[0], {&x}),
                       doctest::Contains("expected 'NCHW' or 'NHWC'"), Error);
  Graph flat = make({3, 4}, "NCHW");
  CHECK_THROWS_WITH_AS(flat.infer(), doctest::Contains("expected a 4-D input"), ShapeError);
  const Tensor x2 = random_tensor(DType::f32, {3, 4}, rng);
  CHECK_THROWS_WITH_AS(reference::run_node(flat.nodes[0], {&x2}),
                       doctest::Contains("expected a 4-D input"), ShapeError);
  Graph missing = make({1, 3, 4, 5}, "");
  missing.nodes[0].attrs.clear();
  CHECK_THROWS_WITH_AS(missing.infer(), doctest::Contains("attribute 'to' = ''"), ShapeError);
}

TEST_CASE("every pass keeps outputs on random networks") {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    const Graph g = random_cnn(seed);
    build::BuildReport report;
    const auto plan = build::build_plan(g, checked_options(nullptr, seed), &report);
    check_plan_equivalent(g, plan, fmt::format("random network {}", seed), seed);
    CHECK(report.layers_after <= report.layers_before);
  }
}

TEST_CASE("the plain target builds one step per layer and still computes the same") {
  for (std::uint64_t seed = 100; seed < 110; ++seed) {
    CAPTURE(seed);
    const Graph g = random_cnn(seed);
    build::BuildReport report;
    const auto plan = build::build_plan(g, checked_options(&plan::plain_target(), seed), &report);
    check_plan_equivalent(g, plan, "plain", seed);
    for (const auto& s : plan.steps) CHECK(!is_fused(s));
    CHECK(plan.memory.in_place == 0);
    CHECK(plan.memory.views == 0);
    CHECK(plan.memory.slices == 0);
  }
}

// ---- transformer patterns (src/passes/transformer.cpp) ----------------------------------------

namespace {

std::string scalar_weight(Builder& bld, float v) {
  const std::string n = fmt::format("c{}", bld.counter++);
  bld.g.weights[n] = Tensor::scalar(v);
  return n;
}

/// The axes input of a Reduce op (the IR's form in every opset).
std::string axes_weight(Builder& bld, std::vector<std::int64_t> axes) {
  const std::string n = fmt::format("axes{}", bld.counter++);
  bld.g.weights[n] = Tensor::from<std::int64_t>({static_cast<std::int64_t>(axes.size())}, axes);
  return n;
}

/// PyTorch's export of nn.LayerNorm before opset 17: centred variance, Pow and Div.
struct DecomposedLayerNorm {
  Builder bld;
  std::string x, mean, dev, y;
  DecomposedLayerNorm(bool affine, std::vector<std::int64_t> dims = {2, 3, 8}) {
    x = bld.input("x", dims);
    const std::int64_t d = dims.back();
    mean = bld.node("ReduceMean", {x, axes_weight(bld, {-1})});
    dev = bld.node("Sub", {x, mean});
    auto sq = bld.node("Pow", {dev, scalar_weight(bld, 2.f)});
    auto var = bld.node("ReduceMean", {sq, axes_weight(bld, {-1})});
    auto ve = bld.node("Add", {var, scalar_weight(bld, 1e-5f)});
    auto sd = bld.node("Sqrt", {ve});
    y = bld.node("Div", {dev, sd});
    if (affine) {
      y = bld.node("Mul", {y, bld.weight({d})});
      y = bld.node("Add", {bld.weight({d}), y});
    }
  }
};

}  // namespace

TEST_CASE("fuse_layer_norm: PyTorch's decomposed LayerNorm becomes one LayerNormalization") {
  for (bool affine : {true, false}) {
    DecomposedLayerNorm p(affine);
    Graph g = p.bld.finish({p.y});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_layer_norm, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 1);
    CHECK(f.nodes[0].op == "LayerNormalization");
    CHECK(f.nodes[0].outputs == std::vector<std::string>{p.y});
    CHECK(f.nodes[0].attr_int("axis") == 2);
    CHECK(f.nodes[0].attr_float("epsilon", 0) == doctest::Approx(1e-5));
    CHECK(f.nodes[0].inputs.size() == (affine ? 3u : 2u));  // Scale is required: ones when absent
  }
}

TEST_CASE("fuse_layer_norm: ONNX's function body (E[x^2] - E[x]^2) with Mean and InvStdDev read") {
  Builder bld;
  auto x = bld.input("x", {6, 5});
  auto s = bld.input("scale", {5});
  auto bias = bld.input("bias", {1, 5});
  const std::string axes = axes_weight(bld, {1});
  auto mean = bld.node("ReduceMean", {x, axes});
  auto sq = bld.node("Mul", {x, x});
  auto msq = bld.node("ReduceMean", {sq, axes});
  auto m2 = bld.node("Mul", {mean, mean});
  auto var = bld.node("Sub", {msq, m2});
  auto ve = bld.node("Add", {var, scalar_weight(bld, 1e-3f)});
  auto sd = bld.node("Sqrt", {ve});
  auto dev = bld.node("Sub", {x, mean});
  auto norm = bld.node("Div", {dev, sd});
  auto y0 = bld.node("Add", {bld.node("Mul", {norm, s}), bias});
  auto y = bld.node("Relu", {y0});  // Y read before the InvStdDev is made (ONNX's body does so)
  auto inv = bld.node("Reciprocal", {sd});
  auto mean_out = bld.node("Reshape", {mean, bld.weight({1})});
  bld.g.weights[bld.g.nodes.back().inputs[1]] = Tensor::from<std::int64_t>({1}, {6});
  Graph g = bld.finish({y, mean_out, inv});
  Graph f = run_checked(g, b::fuse_layer_norm);
  REQUIRE(count_op(f, "LayerNormalization") == 1);
  CHECK(f.nodes.size() == 3);  // the Relu of Y and the Reshape of Mean stay, reading the fused node
  for (const auto& n : f.nodes)
    if (n.op == "LayerNormalization") {
      CHECK(n.outputs == std::vector<std::string>{y0, mean, inv});
      CHECK(n.inputs == std::vector<std::string>{x, s, bias});
    }
}

TEST_CASE("fuse_layer_norm leaves patterns it must not rewrite") {
  SUBCASE("an intermediate read elsewhere") {
    DecomposedLayerNorm p(true);
    auto other = p.bld.node("Relu", {p.dev});
    Graph g = p.bld.finish({p.y, other});
    int changes = -1;
    run_checked(g, b::fuse_layer_norm, &changes);
    CHECK(changes == 0);
  }
  SUBCASE("a mean over a leading axis") {
    Builder bld;
    auto x = bld.input("x", {4, 3});
    auto mean = bld.node("ReduceMean", {x, axes_weight(bld, {0})});
    auto dev = bld.node("Sub", {x, mean});
    auto var = bld.node("ReduceMean", {bld.node("Mul", {dev, dev}), axes_weight(bld, {0})});
    auto y = bld.node("Div",
                      {dev, bld.node("Sqrt", {bld.node("Add", {var, scalar_weight(bld, 1e-5f)})})});
    Graph g = bld.finish({y});
    int changes = -1;
    run_checked(g, b::fuse_layer_norm, &changes);
    CHECK(changes == 0);
  }
  SUBCASE("a scale that varies along a dim that is not normalized stays a Mul") {
    DecomposedLayerNorm p(false, {2, 3, 8});
    auto y = p.bld.node("Mul", {p.y, p.bld.weight({3, 1})});
    Graph g = p.bld.finish({y});
    Graph f = run_checked(g, b::fuse_layer_norm);
    CHECK(count_op(f, "LayerNormalization") == 1);
    CHECK(count_op(f, "Mul") == 1);
  }
}

TEST_CASE("fuse_gelu: the Erf and tanh forms become Gelu; near misses stay") {
  auto erf_form = [](bool half_first, float half) {
    Builder bld;
    auto x = bld.input("x", {3, 7});
    auto e = bld.node("Erf", {bld.node("Div", {x, scalar_weight(bld, 1.4142135f)})});
    auto p1 = bld.node("Add", {e, scalar_weight(bld, 1.f)});
    std::string y;
    if (half_first)
      y = bld.node("Mul", {bld.node("Mul", {x, scalar_weight(bld, half)}), p1});
    else
      y = bld.node("Mul", {bld.node("Mul", {x, p1}), scalar_weight(bld, half)});
    return bld.finish({y});
  };
  for (bool half_first : {false, true}) {
    int changes = 0;
    Graph f = run_checked(erf_form(half_first, 0.5f), b::fuse_gelu, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 1);
    CHECK(f.nodes[0].op == "Gelu");
    CHECK(!f.nodes[0].has_attr("approximate"));
    int none = -1;
    run_checked(erf_form(half_first, 0.6f), b::fuse_gelu, &none);
    CHECK(none == 0);
  }
  for (bool pow : {true, false}) {
    Builder bld;
    auto x = bld.input("x", {2, 9});
    auto cube = pow ? bld.node("Pow", {x, scalar_weight(bld, 3.f)})
                    : bld.node("Mul", {x, bld.node("Mul", {x, x})});
    auto inner = bld.node("Add", {x, bld.node("Mul", {cube, scalar_weight(bld, 0.044715f)})});
    auto t = bld.node("Tanh", {bld.node("Mul", {inner, scalar_weight(bld, 0.7978845608f)})});
    auto y = bld.node("Mul", {bld.node("Mul", {x, scalar_weight(bld, 0.5f)}),
                              bld.node("Add", {t, scalar_weight(bld, 1.f)})});
    Graph g = bld.finish({y});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_gelu, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 1);
    CHECK(f.nodes[0].attr_string("approximate", "") == "tanh");
  }
  {  // the Erf's output read elsewhere
    Builder bld;
    auto x = bld.input("x", {3, 7});
    auto e = bld.node("Erf", {bld.node("Div", {x, scalar_weight(bld, 1.4142135f)})});
    auto y = bld.node("Mul", {bld.node("Mul", {x, bld.node("Add", {e, scalar_weight(bld, 1.f)})}),
                              scalar_weight(bld, 0.5f)});
    Graph g = bld.finish({y, e});
    int changes = -1;
    run_checked(g, b::fuse_gelu, &changes);
    CHECK(changes == 0);
  }
}

TEST_CASE("fuse_attention: PyTorch's 3-D attention and a 4-D one with K^T from the head split") {
  SUBCASE("3-D, q scaled first, a 3-D additive mask per batch*head") {
    Builder bld;
    auto q = bld.input("q", {6, 5, 8});
    auto k = bld.input("k", {6, 7, 8});
    auto v = bld.input("v", {6, 7, 4});
    auto mask = bld.input("mask", {6, 5, 7});
    auto qs = bld.node("Div", {q, scalar_weight(bld, 2.828427f)});
    auto kt = bld.node("Transpose", {k}, {{"perm", std::vector<std::int64_t>{0, 2, 1}}});
    auto s = bld.node("Add", {bld.node("MatMul", {qs, kt}), mask});
    auto y = bld.node("MatMul", {bld.node("Softmax", {s}, {{"axis", std::int64_t{-1}}}), v});
    Graph g = bld.finish({y});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_attention, &changes);
    CHECK(changes == 1);
    REQUIRE(count_op(f, "Attention") == 1);
    CHECK(count_op(f, "Unsqueeze") == 1);  // the mask as [6, 1, 5, 7]
    CHECK(count_op(f, "Transpose") == 0);
    CHECK(count_op(f, "Softmax") == 0);
  }
  SUBCASE("4-D, K^T made by one Transpose of the split heads, the scores scaled") {
    Builder bld;
    auto q = bld.input("q", {2, 3, 5, 8});
    auto k = bld.input("k", {2, 7, 3, 8});  // [B, T, H, D]: K^T is perm [0, 2, 3, 1]
    auto v = bld.input("v", {2, 3, 7, 8});
    auto kt = bld.node("Transpose", {k}, {{"perm", std::vector<std::int64_t>{0, 2, 3, 1}}});
    auto s = bld.node("Mul", {bld.node("MatMul", {q, kt}), scalar_weight(bld, 0.35f)});
    s = bld.node("Add", {bld.weight({1, 1, 5, 7}), s});
    auto y = bld.node("MatMul", {bld.node("Softmax", {s}, {{"axis", std::int64_t{3}}}), v});
    Graph g = bld.finish({y});
    Graph f = run_checked(g, b::fuse_attention);
    REQUIRE(count_op(f, "Attention") == 1);
    REQUIRE(count_op(f, "Transpose") == 1);  // [B, T, H, D] -> [B, H, T, D]
    for (const auto& n : f.nodes)
      if (n.op == "Transpose")
        CHECK(n.attr_ints("perm") == std::vector<std::int64_t>{0, 2, 1, 3});
      else
        CHECK(n.attr_float("scale", 0) == doctest::Approx(0.35));
  }
  SUBCASE(
      "4-D as PyTorch 2 exports scaled_dot_product_attention: Q and K^T each times sqrt(scale)") {
    Builder bld;
    auto q = bld.input("q", {2, 3, 5, 8});
    auto k = bld.input("k", {2, 3, 7, 8});
    auto v = bld.input("v", {2, 3, 7, 8});
    const float root = 0.5946036f;  // sqrt(1 / sqrt(8))
    auto kt = bld.node("Transpose", {k}, {{"perm", std::vector<std::int64_t>{0, 1, 3, 2}}});
    auto s = bld.node("MatMul", {bld.node("Mul", {q, scalar_weight(bld, root)}),
                                 bld.node("Mul", {kt, scalar_weight(bld, root)})});
    auto y = bld.node("MatMul", {bld.node("Softmax", {s}, {{"axis", std::int64_t{-1}}}), v});
    Graph g = bld.finish({y});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_attention, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 1);
    CHECK(f.nodes[0].op == "Attention");
    CHECK(f.nodes[0].attr_float("scale", 0) == doctest::Approx(root * root));
  }
  SUBCASE("not fused: probabilities read elsewhere, softmax over another axis") {
    for (bool leak : {true, false}) {
      Builder bld;
      auto q = bld.input("q", {2, 5, 8});
      auto k = bld.input("k", {2, 5, 8});
      auto v = bld.input("v", {2, 5, 8});
      auto kt = bld.node("Transpose", {k}, {{"perm", std::vector<std::int64_t>{0, 2, 1}}});
      auto p = bld.node("Softmax", {bld.node("MatMul", {q, kt})},
                        {{"axis", std::int64_t{leak ? -1 : 1}}});
      auto y = bld.node("MatMul", {p, v});
      Graph g = bld.finish(leak ? std::vector<std::string>{y, p} : std::vector<std::string>{y});
      int changes = -1;
      run_checked(g, b::fuse_attention, &changes);
      CHECK(changes == 0);
    }
  }
}

TEST_CASE("fuse_residual_norm: post-norm and pre-norm residuals join their norm; others stay") {
  // Post-norm (BERT): the sum is read by the norm only.
  {
    Builder bld;
    auto x = bld.input("x", {2, 5, 8});
    auto h = bld.node("Relu", {bld.node("MatMul", {x, bld.weight({8, 8})})});
    auto y =
        bld.node("LayerNormalization", {bld.node("Add", {h, x}), bld.weight({8}), bld.weight({8})},
                 {{"axis", std::int64_t{-1}}, {"epsilon", 1e-5}});
    Graph g = bld.finish({y});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_residual_norm, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 3);
    CHECK(f.nodes[2].attr_string("pattern", "") == "Add+LayerNormalization");
    CHECK(f.nodes[2].outputs == std::vector<std::string>{y});
  }
  // Pre-norm (GPT, ViT): the residual stream goes on after the norm, so the step outputs the sum
  // too; the same for RMSNormalization.
  for (const char* op : {"LayerNormalization", "RMSNormalization"}) {
    CAPTURE(op);
    Builder bld;
    auto x = bld.input("x", {3, 16});
    auto r = bld.input("r", {3, 16});
    auto sum = bld.node("Add", {x, r});
    auto n = bld.node(op, {sum, bld.weight({16})}, {{"axis", std::int64_t{1}}});
    auto next = bld.node("Add", {sum, bld.node("Tanh", {n})});
    Graph g = bld.finish({next});
    int changes = 0;
    Graph f = run_checked(g, b::fuse_residual_norm, &changes);
    CHECK(changes == 1);
    REQUIRE(f.nodes.size() == 3);
    CHECK(f.nodes[0].attr_string("pattern", "") == std::string("Add+") + op);
    CHECK(f.nodes[0].outputs == std::vector<std::string>{n, sum});
  }
  // Left alone: a broadcast Add (a bias row), an Add of a constant, a sum read before the norm, a
  // sum that is also the norm's Scale, and a target without the fusion.
  {
    Builder bld;
    auto x = bld.input("x", {4, 8});
    auto row = bld.input("row", {1, 8});
    auto a = bld.node("LayerNormalization", {bld.node("Add", {x, row}), bld.weight({8})});
    auto b2 =
        bld.node("LayerNormalization", {bld.node("Add", {x, bld.weight({4, 8})}), bld.weight({8})});
    auto s = bld.node("Add", {x, x});
    auto early = bld.node("Relu", {s});
    auto c = bld.node("LayerNormalization", {s, bld.weight({8})});
    Graph g = bld.finish({a, b2, early, c});
    // `early` reads the sum between the Add and the norm: move the norm after it in the node list.
    int none = -1;
    run_checked(g, b::fuse_residual_norm, &none);
    CHECK(none == 0);
    Builder b3;
    auto x3 = b3.input("x", {4, 8});
    auto y3 = b3.node("LayerNormalization", {b3.node("Add", {x3, x3}), b3.weight({8})});
    Graph g3 = b3.finish({y3});
    run_checked(g3, b::fuse_residual_norm, &none, &plan::plain_target());
    CHECK(none == 0);
  }
}

// ---- Q/DQ propagation (src/passes/qdq.cpp) ----------------------------------------------------

namespace {

/// Per-tensor quantization parameters as weights: scale (f32) and zero point (u8 or i8).
struct QdqParams {
  std::string scale, zero;
  QdqParams(Builder& bld, float s, int z, DType t = DType::u8) {
    scale = fmt::format("s{}", bld.counter++);
    zero = fmt::format("z{}", bld.counter++);
    bld.g.weights[scale] = Tensor::scalar(s);
    bld.g.weights[zero] = Tensor::from_doubles(t, {}, {static_cast<double>(z)});
  }
};
std::string q(Builder& bld, const std::string& x, const QdqParams& p) {
  return bld.node("QuantizeLinear", {x, p.scale, p.zero});
}
std::string dq(Builder& bld, const std::string& x, const QdqParams& p) {
  return bld.node("DequantizeLinear", {x, p.scale, p.zero});
}
std::vector<std::string> ops_of(const Graph& g) {
  std::vector<std::string> v;
  for (const auto& n : g.nodes) v.push_back(n.op);
  return v;
}
using Ops = std::vector<std::string>;

}  // namespace

TEST_CASE(
    "propagate_qdq: DQ moves past MaxPool, reshapes and Concat; Q(DQ) pairs cancel, exactly") {
  // onnxruntime's quantize_static form: Q -> DQ -> MaxPool -> Q -> DQ -> Relu.
  {
    Builder bld;
    auto x = bld.input("x", {1, 2, 6, 6});
    const QdqParams p(bld, 0.05f, 128);
    auto pooled = bld.node("MaxPool", {dq(bld, q(bld, x, p), p)},
                           {{"kernel_shape", std::vector<i64>{2, 2}},
                            {"strides", std::vector<i64>{2, 2}},
                            {"pads", std::vector<i64>{1, 1, 0, 0}}});
    auto y = bld.node("Relu", {dq(bld, q(bld, pooled, p), p)});
    Graph g = bld.finish({y});
    int changes = 0;
    Graph f = run_checked(g, b::propagate_qdq, &changes);
    CHECK(changes == 2);  // one move, one cancelled pair
    CHECK(ops_of(f) == Ops{"QuantizeLinear", "MaxPool", "DequantizeLinear", "Relu"});
    CHECK(f.type_of(f.nodes[1].outputs[0]).dtype == DType::u8);  // MaxPool on the 8-bit values
    CHECK(f.outputs == std::vector<std::string>{y});
  }
  // Reshape, Transpose and a Concat of two DQs of one scale; the pair at the output cancels and
  // the graph output keeps its name.
  {
    Builder bld;
    auto a = bld.input("a", {2, 3, 4});
    auto b2 = bld.input("b", {2, 3, 4});
    const QdqParams p(bld, 0.1f, -3, DType::i8);
    auto ta =
        bld.node("Transpose", {dq(bld, q(bld, a, p), p)}, {{"perm", std::vector<i64>{0, 2, 1}}});
    auto tb =
        bld.node("Transpose", {dq(bld, q(bld, b2, p), p)}, {{"perm", std::vector<i64>{0, 2, 1}}});
    auto c = bld.node("Concat", {ta, tb}, {{"axis", i64{1}}});
    const std::string shape = "shape";
    bld.g.weights[shape] = Tensor::from<std::int64_t>({2}, {2, 24});
    auto r = bld.node("Reshape", {c, shape});
    auto out = q(bld, r, p);
    Graph g = bld.finish({out});
    int changes = 0;
    Graph f = run_checked(g, b::propagate_qdq, &changes);
    CHECK(changes == 5);  // 2 Transposes, the Concat, the Reshape, then the pair at the output
    CHECK(ops_of(f) ==
          Ops{"QuantizeLinear", "Transpose", "QuantizeLinear", "Transpose", "Concat", "Reshape"});
    CHECK(f.outputs == std::vector<std::string>{out});
    CHECK(f.nodes.back().outputs[0] == out);
    CHECK(f.type_of(out).dtype == DType::i8);
  }
}

TEST_CASE("propagate_qdq leaves what does not commute exactly") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 4, 4});
  const QdqParams p(bld, 0.05f, 128), other(bld, 0.06f, 128);
  // A Q of another scale after the moved DQ: the DQ moves, the pair stays.
  auto pooled =
      bld.node("MaxPool", {dq(bld, q(bld, x, p), p)}, {{"kernel_shape", std::vector<i64>{2, 2}}});
  auto y1 = dq(bld, q(bld, pooled, other), other);
  // A per-channel DQ (scale per axis) does not move.
  const std::string s2 = "s_axis", z2 = "z_axis";
  bld.g.weights[s2] = Tensor::from<float>({2}, {0.05f, 0.07f});
  bld.g.weights[z2] = Tensor::from_doubles(DType::u8, {2}, {128, 120});
  auto qa = bld.node("QuantizeLinear", {x, s2, z2}, {{"axis", i64{1}}});
  auto y2 = bld.node("Flatten", {bld.node("DequantizeLinear", {qa, s2, z2}, {{"axis", i64{1}}})});
  // A DQ read twice does not move; Relu does not commute with DQ (a zero point) and stays after it.
  auto d3 = dq(bld, q(bld, x, p), p);
  auto y3 = bld.node("Add", {bld.node("Flatten", {d3}), bld.node("Flatten", {d3})});
  auto y4 = bld.node("Relu", {dq(bld, q(bld, x, p), p)});
  Graph g = bld.finish({y1, y2, y3, y4});
  int changes = 0;
  Graph f = run_checked(g, b::propagate_qdq, &changes);
  CHECK(changes == 1);  // only the MaxPool move
  int q_count = 0, dq_count = 0;
  for (const auto& n : f.nodes)
    q_count += n.op == "QuantizeLinear", dq_count += n.op == "DequantizeLinear";
  CHECK(q_count == 5);
  CHECK(dq_count == 5);
  // The plain target fuses nothing, this included.
  run_checked(g, b::propagate_qdq, &changes, &plan::plain_target());
  CHECK(changes == 0);
}

TEST_CASE("fuse_gemm_bias: MatMul + bias row is one step, then GELU joins it") {
  Builder bld;
  auto x = bld.input("x", {2, 5, 8});
  auto y = bld.node("Add", {bld.node("MatMul", {x, bld.weight({8, 6})}), bld.weight({6})});
  auto z = bld.node("Gelu", {y});
  Graph g = bld.finish({z});
  int changes = 0;
  Graph f = run_checked(g, b::fuse_gemm_bias, &changes);
  CHECK(changes == 1);
  Graph h = run_checked(f, b::fuse_conv_activation);
  REQUIRE(h.nodes.size() == 1);
  CHECK(h.nodes[0].attr_string("pattern", "") == "MatMul+Add+Gelu");
  // Not a bias row: a per-row Add, or an Add of a computed value, stays apart.
  Builder b2;
  auto x2 = b2.input("x", {2, 5, 8});
  auto r = b2.input("r", {2, 5, 6});
  auto y2 = b2.node("Add", {b2.node("MatMul", {x2, b2.weight({8, 6})}), b2.weight({5, 1})});
  auto y3 = b2.node("Add", {b2.node("MatMul", {x2, b2.weight({8, 6})}), r});
  Graph g2 = b2.finish({y2, y3});
  int none = -1;
  run_checked(g2, b::fuse_gemm_bias, &none);
  CHECK(none == 0);
}

namespace {

/// x [2, 5, 8] projected three times (Q, K, V of width 8, the last with another tail when
/// `odd_tail`), attention over 2 heads, and a fourth product of another width sharing x.
Graph qkv_graph(bool odd_tail) {
  Builder bld;
  auto x = bld.input("x", {2, 5, 8});
  auto proj = [&](std::int64_t n) {
    return bld.node("Add", {bld.node("MatMul", {x, bld.weight({8, n})}), bld.weight({n})});
  };
  auto q = proj(8), k = proj(8);
  auto v = odd_tail ? bld.node("Relu", {proj(8)}) : proj(8);
  auto y = bld.node("Attention", {q, k, v},
                    {{"q_num_heads", std::int64_t{2}}, {"kv_num_heads", std::int64_t{2}}});
  auto w = bld.node("Add", {bld.node("MatMul", {x, bld.weight({8, 6})}), bld.weight({6})});
  auto sm = bld.node("Softmax", {w});  // no activation: not fused into the product
  return bld.finish({y, sm});
}

}  // namespace

TEST_CASE("horizontal fusion of matrix products: Q, K and V become one product and a Split") {
  Graph g = qkv_graph(false);
  Graph f = run_checked(g, b::fuse_gemm_bias);
  int n = 0;
  f = run_checked(f, b::fuse_horizontal, &n);
  CHECK(n == 1);
  // One MatMul+Add over [8, 8+8+8+6] (every product of x with a bias row), then the Split.
  REQUIRE(count_op(f, "Split") == 1);
  int products = 0;
  for (const auto& node : f.nodes)
    if (node.attr_string("pattern", "") == "MatMul+Add") {
      ++products;
      CHECK(f.weights.at(node.inputs[1]).dims() == std::vector<std::int64_t>{8, 30});
      CHECK(f.weights.at(node.inputs[2]).dims() == std::vector<std::int64_t>{30});
    }
  CHECK(products == 1);
  // Another tail (a Relu after V's bias) or another K stays apart.
  Graph h = run_checked(run_checked(qkv_graph(true), b::fuse_gemm_bias), b::fuse_conv_activation);
  h = run_checked(h, b::fuse_horizontal, &n);
  CHECK(n == 1);  // Q, K and the fourth product; V+Relu apart
  // A target without the fusion keeps the products.
  Graph c = run_checked(g, b::fuse_gemm_bias);
  CHECK(b::fuse_horizontal(c, ctx(&plan::plain_target())) == 0);
}

TEST_CASE("a Split is done in place where its slices' readers take them") {
  Graph g = qkv_graph(false);
  // The reference reads strided inputs everywhere: the Split is no step, its outputs slices.
  build::BuildReport r;
  plan::Plan p = build_for(g, plan::cpu_reference_target(), &r);
  CHECK(count_op(r.after_fusion, "Split") == 1);
  for (const auto& s : p.steps) CHECK(s.op != "Split");
  int slices = 0;
  for (const auto& [name, v] : p.memory.values)
    if (v.how.rfind("slice of ", 0) == 0) {
      ++slices;
      CHECK_FALSE(v.contiguous());  // [2, 5, 8] of a [2, 5, 30] row
    }
  CHECK(slices == 4);
  // The GPU reads strided inputs in Attention only: the Softmax's slice keeps the Split a step.
  for (bool fp16 : {false, true}) {
    plan::Plan q = build_for(g, plan::cuda_target(fp16));
    int splits = 0;
    for (const auto& s : q.steps) splits += s.op == "Split";
    CHECK(splits == 1);
  }
  // Without the fourth product every reader is Attention: no Split step on the GPU either.
  Builder bld;
  auto x = bld.input("x", {2, 5, 8});
  auto proj = [&] {
    return bld.node("Add", {bld.node("MatMul", {x, bld.weight({8, 8})}), bld.weight({8})});
  };
  auto q = proj(), k = proj(), v = proj();
  auto y = bld.node("Attention", {q, k, v},
                    {{"q_num_heads", std::int64_t{2}}, {"kv_num_heads", std::int64_t{2}}});
  Graph a = bld.finish({y});
  for (bool fp16 : {false, true}) {
    plan::Plan s = build_for(a, plan::cuda_target(fp16));
    REQUIRE(s.steps.size() == 2);
    CHECK(s.steps[0].attr_string("pattern", "") == "MatMul+Add");
    CHECK(s.steps[1].op == "Attention");
    CHECK_FALSE(s.memory.values.at(s.steps[1].inputs[0]).contiguous());
  }
}

// ---- the fused INT8 step (src/passes/qdq.cpp) ---------------------------------------------

namespace {

/// A float weight that is int8 values times a scale per output channel (dim `axis`): what a
/// folded DequantizeLinear of an int8 weight is.
std::string int8_weight(Builder& bld, std::vector<i64> dims, i64 axis, std::uint64_t seed,
                        bool per_tensor = false) {
  Tensor w(DType::f32, dims);
  i64 inner = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < dims.size(); ++d) inner *= dims[d];
  std::uint64_t s = seed;
  std::set<i64> seen;  // each channel's first value is 127: its max|w| sets its scale
  for (i64 i = 0; i < w.numel(); ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    const i64 c = (i / inner) % dims[static_cast<std::size_t>(axis)];
    const double q = seen.insert(c).second
                         ? 127.0
                         : static_cast<double>(static_cast<int>((s >> 33) % 255) - 127);
    w.set(i, static_cast<float>(q * (per_tensor ? 0.01 : 0.01 + 0.003 * static_cast<double>(c))));
  }
  const std::string n = fmt::format("w{}", bld.counter++);
  bld.g.weights[n] = std::move(w);
  return n;
}

/// Outputs of two graphs that hold 8-bit values, or floats made from them: at most `step` (one
/// quantization step) apart anywhere, and that far apart in at most 1% of the values.
void check_within_one_step(const Graph& a, const Graph& b, double step) {
  const auto in = random_inputs(a, 11);
  const auto ya = reference::Executor(a).run(in);
  const auto yb = reference::Executor(b).run(in);
  for (const auto& [name, t] : ya) {
    const Tensor& u = yb.at(name);
    REQUIRE(u.dims() == t.dims());
    i64 differ = 0;
    double worst = 0;
    for (i64 i = 0; i < t.numel(); ++i) {
      const double d = std::abs(t.get(i) - u.get(i));
      worst = std::max(worst, d);
      differ += d > step / 2;  // a value that rounded the other way (floats differ in ulps)
    }
    CHECK_MESSAGE(worst <= step * 1.0001, name << ": " << worst << " apart");
    CHECK_MESSAGE(differ * 100 <= t.numel(),
                  name << ": " << differ << " of " << t.numel() << " differ");
  }
}

}  // namespace

TEST_CASE("fuse_int8: DQ -> Conv/Gemm/MatMul (+ bias, DQ residual, Relu) -> Q is one INT8 step") {
  // Conv with bias, a residual DQ and Relu, quantized again; then a Gemm (transB) to a float
  // output.
  Builder bld;
  auto x = bld.input("x", {2, 3, 6, 6});
  auto r = bld.input("r", {2, 4, 6, 6});
  const QdqParams px(bld, 0.04f, 0, DType::i8), pr(bld, 0.05f, 3, DType::i8),
      py(bld, 0.1f, 0, DType::i8), pz(bld, 0.02f, 128);
  auto xq = q(bld, x, px);
  auto conv =
      bld.node("Conv", {dq(bld, xq, px), int8_weight(bld, {4, 3, 3, 3}, 0, 1), bld.weight({4})},
               {{"pads", std::vector<i64>{1, 1, 1, 1}}});
  auto sum = bld.node("Add", {conv, dq(bld, q(bld, r, pr), pr)});
  auto yq = q(bld, bld.node("Relu", {sum}), py);
  const std::string shape = "shape";
  bld.g.weights[shape] = Tensor::from<std::int64_t>({2}, {2, 144});
  auto flat = bld.node("Reshape", {dq(bld, yq, py), shape});
  auto gemm = bld.node("Gemm", {flat, int8_weight(bld, {5, 144}, 0, 2), bld.weight({5})},
                       {{"transB", i64{1}}});
  // A MatMul of uint8 values with a zero point, its weight quantized per tensor.
  auto m = bld.input("m", {2, 7, 6});
  auto mm = bld.node("MatMul", {dq(bld, q(bld, m, pz), pz), int8_weight(bld, {6, 3}, 1, 3, true)});
  Graph g = bld.finish({yq, gemm, mm});
  int changes = 0;
  Graph f = g;
  b::propagate_qdq(f, ctx());                  // the reshape moves to the 8-bit side
  f = run_checked(f, b::fuse_int8, &changes);  // equal within check_equivalent's 1e-4 here
  CHECK(changes == 3);
  Ops patterns;
  for (const auto& n : f.nodes)
    if (is_fused(n)) patterns.push_back(n.attr_string("pattern", ""));
  CHECK(patterns == Ops{"ConvInteger+Cast+Mul+Add+DequantizeLinear+Add+Relu+QuantizeLinear",
                        "MatMulInteger+Cast+Mul+Add", "MatMulInteger+Cast+Mul"});
  for (const auto& n : f.nodes)
    if (is_fused(n)) CHECK(f.weights.at(n.inputs[1]).dtype() == DType::i8);
  check_within_one_step(g, f, 0.1);
  // The plain target and a weight that is not INT8 values leave it.
  CHECK(b::fuse_int8(f = g, ctx(&plan::plain_target())) == 0);
  Builder b2;
  auto x2 = b2.input("x", {1, 3, 4, 4});
  const QdqParams p2(b2, 0.04f, 0, DType::i8);
  auto c2 = b2.node("Conv", {dq(b2, q(b2, x2, p2), p2), b2.weight({2, 3, 1, 1})});
  Graph g2 = b2.finish({c2});
  CHECK(b::fuse_int8(g2, ctx()) == 0);
}

TEST_CASE(
    "fuse_int8: a MatMul's bias row Add joins the step; channels whose largest |q| is below 127 "
    "are still INT8") {
  Builder bld;
  auto x = bld.input("x", {3, 4, 6});
  const QdqParams px(bld, 0.04f, 0, DType::i8), py(bld, 0.05f, 0, DType::i8);
  // W [6, 5]: column c holds integers in [-(20 + 10c), 20 + 10c] times its scale, never 127.
  Tensor w(DType::f32, {6, 5});
  for (i64 k = 0; k < 6; ++k)
    for (i64 c = 0; c < 5; ++c) {
      const i64 lim = 20 + 10 * c;
      w.set(k * 5 + c, static_cast<float>(((k * 7 + c * 3) % (2 * lim + 1) - lim) *
                                          (0.01 + 0.002 * static_cast<double>(c))));
    }
  bld.g.weights["w"] = std::move(w);
  auto mm = bld.node("MatMul", {dq(bld, q(bld, x, px), px), "w"});
  auto yq = q(bld, bld.node("Add", {bld.weight({5}), mm}), py);  // the bias on either side
  Graph g = bld.finish({dq(bld, yq, py)});
  int changes = 0;
  Graph f = run_checked(g, b::fuse_int8, &changes);
  CHECK(changes == 1);
  Ops patterns;
  for (const auto& n : f.nodes)
    if (is_fused(n)) patterns.push_back(n.attr_string("pattern", ""));
  CHECK(patterns == Ops{"MatMulInteger+Cast+Mul+Add+QuantizeLinear"});
  check_within_one_step(g, f, 0.05);
}

TEST_CASE(
    "fuse_int8 in FP8: DQ(x), DQ(W) -> Conv/MatMul (+ bias, DQ residual, Relu) -> Q is one FP8 "
    "step with the FP8 weight; the float sums may differ by one FP8 step") {
  const DType f8 = DType::f8e4m3fn;
  struct Case {
    Graph g;
    const char* pattern;
  };
  const Case cases[] = {
      {test::qdq_conv(2, 4, 4, 6, 3, 1, true, f8),
       "DequantizeLinear+DequantizeLinear+Conv+Add+DequantizeLinear+Add+Relu+QuantizeLinear"},
      {test::qdq_matmul(3, 20, 7, 2, f8),
       "DequantizeLinear+DequantizeLinear+MatMul+Add+"
       "QuantizeLinear"},
  };
  for (const auto& c : cases) {
    Graph f = c.g;
    b::fold_constants(f, ctx());  // the weight's DQ becomes a float weight, as when building
    CHECK(b::fuse_int8(f, ctx()) == 1);
    Ops patterns;
    for (const auto& n : f.nodes)
      if (is_fused(n)) {
        patterns.push_back(n.attr_string("pattern", ""));
        CHECK(f.weights.at(n.inputs.at(3)).dtype() == f8);  // the FP8 weight
      }
    CHECK(patterns == Ops{c.pattern});
    // Outputs DQ(Q(y)) in FP8: equal, or one E4M3 step (2^-3 of the value) apart.
    const auto in = random_inputs(c.g, 5);
    const Tensor ya = reference::Executor(c.g).run(in).at(c.g.outputs[0]);
    const Tensor yb = reference::Executor(f).run(in).at(c.g.outputs[0]);
    i64 differ = 0, nonzero = 0;
    for (i64 i = 0; i < ya.numel(); ++i) {
      const double a = ya.get(i), d = std::abs(a - yb.get(i));
      CHECK(d <= std::abs(a) * 0.126 + 1e-6);
      differ += d > 0;
      nonzero += a != 0;
    }
    CHECK(differ * 20 <= ya.numel());
    CHECK(nonzero > 0);
  }
  // An INT8 target's FP8 network with a weight that is not FP8 values stays unfused.
  test::QdqMaker m(4, "not_fp8", {2, 8}, f8);
  m.finish(m.op("MatMul", {m.dq(m.q("x", 0.02f), 0.02f), m.floats({8, 3}, -1, 1)}));
  Graph g = m.g;
  b::fold_constants(g, ctx());
  CHECK(b::fuse_int8(g, ctx()) == 0);
}

TEST_CASE("propagate_qdq: a Q moves backward through MaxPool and reshapes to its producer") {
  Builder bld;
  auto x = bld.input("x", {1, 2, 6, 6});
  const QdqParams p(bld, 0.05f, 0, DType::i8);
  auto pooled =
      bld.node("MaxPool", {bld.node("Relu", {x})},
               {{"kernel_shape", std::vector<i64>{2, 2}}, {"strides", std::vector<i64>{2, 2}}});
  auto flat = bld.node("Flatten", {pooled});
  auto y = dq(bld, q(bld, flat, p), p);
  Graph g = bld.finish({y});
  int changes = 0;
  Graph f = run_checked(g, b::propagate_qdq, &changes);
  CHECK(changes == 2);
  CHECK(ops_of(f) == Ops{"Relu", "QuantizeLinear", "MaxPool", "Flatten", "DequantizeLinear"});
}
