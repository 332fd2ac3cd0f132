// Sequences and optionals (kiln::ValueKind): their types and shape rules, the reference kernels of
// the sequence family and SequenceMap against the same arithmetic written out, values through If
// and Loop, the guard that keeps them out of every other op and out of plans, and their files
// (SequenceProto, OptionalProto) written and read back. The ONNX node tests (test_sequence_*,
// test_split_to_sequence_*, test_optional_*, test_if_seq, test_if_opt, test_loop13_seq,
// test_loop16_seq_none, test_identity_sequence, test_identity_opt) run in the conformance suite.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "expect_error.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using kiln::test::expect_error;
using i64 = std::int64_t;

namespace {

Node make(std::string op, std::string name, std::vector<std::string> in,
          std::vector<std::string> out, std::map<std::string, Attribute> attrs = {}) {
  return Node{std::move(op), std::move(name), std::move(in), std::move(out), std::move(attrs)};
}

Tensor seq(std::vector<Tensor> e) {
  const DType t = e.empty() ? DType::f32 : e[0].dtype();
  return Tensor::sequence(t, std::move(e));
}

Tensor vec(std::vector<float> v) { return Tensor::from<float>({static_cast<i64>(v.size())}, v); }

/// Runs a one-node graph on the reference, its inputs typed as given.
reference::TensorMap run_graph(const std::vector<ValueInfo>& inputs, Node n,
                               const reference::TensorMap& values) {
  Graph g;
  g.inputs = inputs;
  g.outputs = n.outputs;
  g.nodes.push_back(std::move(n));
  g.infer(&reference::constant_evaluator());
  return reference::Executor(g).run(values);
}

TensorType seq_f32(Shape s) { return TensorType{DType::f32, std::move(s), ValueKind::sequence}; }

}  // namespace

TEST_CASE("Sequence values and types") {
  const Tensor s = seq({vec({1, 2}), vec({3})});
  CHECK(s.is_sequence());
  CHECK(!s.is_tensor());
  CHECK(s.type_string() == "seq(f32) of 2");
  CHECK(type_of_value(s).to_string() == "seq(f32[?])");
  CHECK(type_of_value(seq({vec({1}), Tensor::scalar<float>(2)})).to_string() == "seq(f32[*])");
  CHECK(type_of_value(Tensor::none(DType::i32)).to_string() == "opt(i32[*])");
  CHECK(Tensor::none(DType::f32).is_none());
  CHECK(TensorType{DType::f32, Shape{5}, ValueKind::optional_sequence}.to_string() ==
        "opt(seq(f32[5]))");
  // A sequence holds tensors of its dtype only, and has no data of its own.
  expect_error<Error>([] { (void)Tensor::sequence(DType::f32, {Tensor::scalar<i64>(1)}); },
                      {"f32", "element 0", "i64"});
  expect_error<Error>([&] { (void)s.data<float>(); }, {"seq(f32) of 2", "only a tensor"});
  expect_error<Error>([&] { (void)s.cast(DType::f16); }, {"cast", "seq(f32) of 2"});
  expect_error<Error>([] { (void)vec({1}).elements(); }, {"f32[1]", "not a sequence"});
  CHECK(s.clone().elements()[1].to_doubles() == std::vector<double>{3});
}

TEST_CASE("Sequence ops on the reference: construct, insert, at, erase, length") {
  using test::node;
  using test::run;
  const Tensor a = vec({1, 2}), b = vec({3}), c = vec({4, 5, 6});
  Tensor s = run(node("SequenceConstruct", 2), {a, b})[0];
  REQUIRE(s.elements().size() == 2);
  // Insert at the end, at 0 and at -1 (before the last); the input sequence is unchanged.
  Tensor end = run(node("SequenceInsert", 2), {s, c})[0];
  CHECK(end.elements()[2].to_doubles() == std::vector<double>{4, 5, 6});
  CHECK(s.elements().size() == 2);
  Tensor front = run(node("SequenceInsert", 3), {s, c, Tensor::scalar<i64>(0)})[0];
  CHECK(front.elements()[0].numel() == 3);
  Tensor before_last = run(node("SequenceInsert", 3), {s, c, Tensor::scalar<std::int32_t>(-1)})[0];
  CHECK(before_last.elements()[1].numel() == 3);
  CHECK(before_last.elements()[2].to_doubles() == std::vector<double>{3});
  CHECK(run(node("SequenceAt", 2), {end, Tensor::scalar<i64>(-3)})[0].to_doubles() ==
        std::vector<double>{1, 2});
  CHECK(run(node("SequenceLength", 1), {end})[0].get(0) == 3);
  Tensor erased = run(node("SequenceErase", 2), {end, Tensor::scalar<i64>(1)})[0];
  CHECK(erased.elements()[1].numel() == 3);
  CHECK(run(node("SequenceErase", 1), {end})[0].elements().size() == 2);  // the last
  Tensor empty = run(node("SequenceEmpty", 0, {{"dtype", i64{7}}}), {})[0];
  CHECK(empty.dtype() == DType::i64);
  CHECK(empty.elements().empty());

  // Positions out of range name the position and the length; dtypes must agree.
  expect_error<Error>(
      [&] {
        run(node("SequenceAt", 2), {s, Tensor::scalar<i64>(2)});
      },
      {"[SequenceAt 'n']", "position 2", "2 tensors", "-2 to 1"});
  expect_error<Error>(
      [&] {
        run(node("SequenceInsert", 3), {s, c, Tensor::scalar<i64>(-3)});
      },
      {"position -3", "-2 to 2"});
  expect_error<Error>([&] { run(node("SequenceErase", 1), {empty}); }, {"empty sequence"});
  expect_error<Error>(
      [&] {
        run(node("SequenceInsert", 2), {s, Tensor::scalar<i64>(1)});
      },
      {"sequence of f32", "i64"});
  expect_error<Error>(
      [&] {
        run(node("SequenceConstruct", 2), {a, Tensor::scalar<i64>(1)});
      },
      {"input 1", "one dtype"});
}

TEST_CASE("ConcatFromSequence and SplitToSequence against hand-written results") {
  using test::node;
  using test::run;
  const Tensor x = Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  // Split along axis 1 into [2, 1], then concatenate back: x again.
  Tensor parts =
      run(node("SplitToSequence", 2, {{"axis", i64{1}}}), {x, Tensor::from<i64>({2}, {2, 1})})[0];
  REQUIRE(parts.elements().size() == 2);
  CHECK(parts.elements()[0].dims() == std::vector<i64>{2, 2});
  CHECK(parts.elements()[0].to_doubles() == std::vector<double>{1, 2, 4, 5});
  CHECK(parts.elements()[1].to_doubles() == std::vector<double>{3, 6});
  Tensor back = run(node("ConcatFromSequence", 1, {{"axis", i64{1}}}), {parts})[0];
  CHECK(back.dims() == std::vector<i64>{2, 3});
  CHECK(back.to_doubles() == x.to_doubles());
  // A scalar split: chunks of 2, the last shorter.
  Tensor chunks =
      run(node("SplitToSequence", 2, {{"axis", i64{1}}}), {x, Tensor::scalar<i64>(2)})[0];
  REQUIRE(chunks.elements().size() == 2);
  CHECK(chunks.elements()[1].dims() == std::vector<i64>{2, 1});
  // No split: pieces of 1, squeezed where keepdims is 0; stacked again on a new axis 0.
  Tensor rows = run(node("SplitToSequence", 1, {{"keepdims", i64{0}}}), {x})[0];
  REQUIRE(rows.elements().size() == 2);
  CHECK(rows.elements()[1].dims() == std::vector<i64>{3});
  CHECK(rows.elements()[1].to_doubles() == std::vector<double>{4, 5, 6});
  Tensor stacked =
      run(node("ConcatFromSequence", 1, {{"axis", i64{-1}}, {"new_axis", i64{1}}}), {rows})[0];
  CHECK(stacked.dims() == std::vector<i64>{3, 2});  // the transpose of x
  CHECK(stacked.to_doubles() == std::vector<double>{1, 4, 2, 5, 3, 6});

  expect_error<Error>(
      [&] {
        run(node("SplitToSequence", 2, {{"axis", i64{1}}}), {x, Tensor::from<i64>({2}, {1, 1})});
      },
      {"[SplitToSequence 'n']", "sums to 2", "3 long"});
  // Lengths over the axis (a sum that would overflow int64 is never made), and positions at the
  // ends of int64.
  expect_error<Error>(
      [&] {
        run(node("SplitToSequence", 2, {{"axis", i64{1}}}),
            {x, Tensor::from<i64>({2}, {2, std::numeric_limits<i64>::max()})});
      },
      {"[SplitToSequence 'n']", "sums to more than axis 1", "3 long"});
  expect_error<Error>(
      [&] {
        run(node("SequenceAt", 2), {rows, Tensor::scalar<i64>(std::numeric_limits<i64>::min())});
      },
      {"out of range", "-2 to 1"});
  expect_error<Error>(
      [&] {
        run(node("ConcatFromSequence", 1, {{"axis", i64{0}}}), {seq({vec({1}), x})});
      },
      {"tensor 1", "f32[2,3]", "agree"});
  expect_error<Error>(
      [&] {
        run(node("ConcatFromSequence", 1, {{"axis", i64{0}}}), {Tensor::sequence(DType::f32, {})});
      },
      {"empty sequence"});
}

TEST_CASE("Sequence shape rules: merged element shapes, unknown ranks, errors naming the node") {
  Graph g;
  g.inputs = {{"a", {DType::f32, Shape{2, 3}}},
              {"b", {DType::f32, Shape{4, 3}}},
              {"v", {DType::f32, Shape{5}}}};
  g.nodes = {make("SequenceConstruct", "sc", {"a", "b"}, {"s"}),
             make("SequenceAt", "at", {"s", "i"}, {"x"}),
             make("SequenceInsert", "ins", {"s", "v"}, {"s2"}),
             make("SequenceLength", "len", {"s2"}, {"n"}),
             make("ConcatFromSequence", "cat", {"s"}, {"c"}, {{"axis", i64{0}}}),
             make("SplitToSequence", "split", {"a"}, {"rows"}, {{"keepdims", i64{0}}}),
             make("Optional", "opt", {"s"}, {"o"}),
             make("OptionalHasElement", "has", {"o"}, {"h"}),
             make("OptionalGetElement", "get", {"o"}, {"back"})};
  g.weights["i"] = Tensor::scalar<i64>(1);
  g.outputs = {"x", "s2", "n", "c", "rows", "h", "back"};
  g.infer(&reference::constant_evaluator());
  CHECK(g.type_of("s").to_string() == "seq(f32[?,3])");
  CHECK(g.type_of("x").to_string() == "f32[?,3]");
  CHECK(g.type_of("s2").to_string() == "seq(f32[*])");  // tensors of ranks 2 and 1
  CHECK(g.type_of("n").to_string() == "i64[]");
  CHECK(g.type_of("c").to_string() == "f32[?,3]");
  CHECK(g.type_of("rows").to_string() == "seq(f32[3])");
  CHECK(g.type_of("o").to_string() == "opt(seq(f32[?,3]))");
  CHECK(g.type_of("h").to_string() == "bool[]");
  CHECK(g.type_of("back").to_string() == "seq(f32[?,3])");
  // Sequences are not folded into weights, though their inputs are known.
  CHECK(g.known_value("s") == nullptr);

  // A tensor taken from a sequence of unknown rank: kiln's tensors have one rank.
  Graph u = g;
  u.nodes.push_back(make("SequenceAt", "at2", {"s2", "i"}, {"x2"}));
  expect_error<UnsupportedError>([&] { u.infer(); }, {"[SequenceAt 'at2']", "seq(f32[*])", "rank"});
  // A sequence given to an op that takes tensors: a GraphError naming the op and the input.
  Graph t = g;
  t.nodes.push_back(make("Relu", "relu", {"s"}, {"r"}));
  t.outputs.push_back("r");
  expect_error<GraphError>([&] { t.infer(); },
                           {"[Relu 'relu']", "input 0 ('s')", "seq(f32[?,3])", "takes tensors"});
  // A tensor where a sequence is expected, and a dtype a sequence cannot hold.
  Graph w = g;
  w.nodes[3].inputs[0] = "a";
  expect_error<ShapeError>([&] { w.infer(); }, {"[SequenceLength 'len']", "must be a sequence"});
  Graph d = g;
  d.weights["v"] = Tensor::scalar<i64>(3);
  d.inputs.pop_back();
  expect_error<ShapeError>([&] { d.infer(); }, {"[SequenceInsert 'ins']", "f32", "i64"});
}

TEST_CASE("Optionals: empty ones, values, and OptionalHasElement without an input") {
  using test::node;
  using test::run;
  Node empty = node("Optional", 0, {{"dtype", i64{1}}, {"sequence", i64{1}}});
  Tensor none = run(empty, {})[0];
  CHECK(none.is_none());
  CHECK(run(node("OptionalHasElement", 1), {none})[0].get(0) == 0);
  CHECK(run(node("OptionalHasElement", 0), {})[0].get(0) == 0);
  CHECK(run(node("OptionalHasElement", 1), {vec({1})})[0].get(0) == 1);
  const Tensor present = run(node("Optional", 1), {vec({7})})[0];
  CHECK(run(node("OptionalGetElement", 1), {present})[0].to_doubles() == std::vector<double>{7});
  expect_error<Error>([&] { run(node("OptionalGetElement", 1), {none}); },
                      {"[OptionalGetElement 'n']", "holds nothing"});

  Graph g;
  g.nodes = {make("Optional", "o", {}, {"o"}, {{"dtype", i64{1}}, {"shape", std::vector<i64>{5}}})};
  g.outputs = {"o"};
  g.infer();
  CHECK(g.type_of("o").to_string() == "opt(f32[5])");
  Graph bad = g;
  bad.nodes[0].attrs.clear();
  expect_error<ShapeError>([&] { bad.infer(); }, {"[Optional 'o']", "needs its type"});
}

TEST_CASE("Sequences through If and Loop: a loop-carried sequence grows, an If returns one") {
  // Loop: carried seq starts empty; each trip appends x[:i+1] (test_loop13_seq's arithmetic).
  auto body = std::make_shared<Graph>();
  body->name = "body";
  body->inputs = {{"i", {DType::i64, Shape{}}},
                  {"c", {DType::boolean, Shape{}}},
                  {"s_in", seq_f32({})},
                  {"x", {}}};
  body->weights["one"] = Tensor::scalar<i64>(1);
  body->weights["zero"] = Tensor::from<i64>({1}, {0});
  body->weights["axes"] = Tensor::from<i64>({1}, {0});
  body->nodes = {make("Add", "end", {"i", "one"}, {"end"}),
                 make("Unsqueeze", "end1", {"end", "axes"}, {"end1"}),
                 make("Slice", "slice", {"x", "zero", "end1"}, {"piece"}),
                 make("SequenceInsert", "ins", {"s_in", "piece"}, {"s_out"}),
                 make("Identity", "cond", {"c"}, {"c_out"})};
  body->outputs = {"c_out", "s_out"};
  Graph g;
  g.inputs = {{"M", {DType::i64, Shape{}}}, {"x", {DType::f32, Shape{5}}}};
  g.nodes = {make("SequenceEmpty", "empty", {}, {"s0"}),
             make("Loop", "loop", {"M", "", "s0", "x"}, {"s"}, {{"body", Subgraph{body, 1}}}),
             make("SequenceLength", "len", {"s"}, {"n"})};
  g.outputs = {"s", "n"};
  g.infer(&reference::constant_evaluator());
  CHECK(g.type_of("s").to_string() == "seq(f32[*])");
  reference::Executor ex(g);
  auto out = ex.run({{"M", Tensor::scalar<i64>(3)}, {"x", vec({1, 2, 3, 4, 5})}});
  REQUIRE(out.at("s").elements().size() == 3);
  CHECK(out.at("s").elements()[2].to_doubles() == std::vector<double>{1, 2, 3});
  CHECK(out.at("n").get(0) == 3);
  CHECK(ex.run({{"M", Tensor::scalar<i64>(0)}, {"x", vec({1, 2, 3, 4, 5})}})
            .at("s")
            .elements()
            .empty());

  // If: then gives Optional(seq), else an empty optional: the output is an optional sequence.
  auto then_b = std::make_shared<Graph>();
  then_b->name = "then";
  then_b->inputs = {{"x", {}}};
  then_b->nodes = {make("SequenceConstruct", "sc", {"x"}, {"s"}),
                   make("Optional", "o", {"s"}, {"o"})};
  then_b->outputs = {"o"};
  auto else_b = std::make_shared<Graph>();
  else_b->name = "else";
  else_b->inputs = {{"x", {}}};
  else_b->nodes = {make("Optional", "none", {}, {"none"},
                        {{"dtype", i64{1}}, {"sequence", i64{1}}, {"shape", std::vector<i64>{5}}})};
  else_b->outputs = {"none"};
  Graph f;
  f.inputs = {{"cond", {DType::boolean, Shape{}}}, {"x", {DType::f32, Shape{5}}}};
  f.nodes = {make("If", "if", {"cond", "x"}, {"y"},
                  {{"then_branch", Subgraph{then_b, 1}}, {"else_branch", Subgraph{else_b, 1}}})};
  f.outputs = {"y"};
  f.infer(&reference::constant_evaluator());
  CHECK(f.type_of("y").to_string() == "opt(seq(f32[5]))");
  reference::Executor fx(f);
  CHECK(fx.run({{"cond", Tensor::scalar<bool>(false)}, {"x", vec({1, 2, 3, 4, 5})}})
            .at("y")
            .is_none());
  CHECK(fx.run({{"cond", Tensor::scalar<bool>(true)}, {"x", vec({1, 2, 3, 4, 5})}})
            .at("y")
            .elements()
            .size() == 1);

  // Plans hold tensors: a graph with a sequence value is refused, naming it.
  expect_error<UnsupportedError>([&] { (void)build::build_plan(g, {}); },
                                 {"'s0'", "seq(f32[*])", "plans hold tensors", "CPU reference"});
}

TEST_CASE("SequenceMap: the body per tensor, with a tensor input whole") {
  auto body = std::make_shared<Graph>();
  body->name = "map";
  body->inputs = {{"e", {}}, {"t", {}}};
  body->nodes = {make("Add", "add", {"e", "t"}, {"sum"}), make("Shape", "shape", {"e"}, {"dims"})};
  body->outputs = {"sum", "dims"};
  const std::vector<ValueInfo> inputs = {{"s", seq_f32({2})}, {"t", {DType::f32, Shape{2}}}};
  Node n =
      make("SequenceMap", "map", {"s", "t"}, {"sums", "shapes"}, {{"body", Subgraph{body, 0}}});
  auto out = run_graph(inputs, n, {{"s", seq({vec({1, 2}), vec({3, 4})})}, {"t", vec({10, 20})}});
  REQUIRE(out.at("sums").elements().size() == 2);
  CHECK(out.at("sums").elements()[1].to_doubles() == std::vector<double>{13, 24});
  CHECK(out.at("shapes").elements()[0].to_doubles() == std::vector<double>{2});
  // The executor checks a sequence input's tensors against the declared element shape.
  expect_error<ShapeError>(
      [&] {
        run_graph(inputs, n, {{"s", seq({vec({1, 2, 3})})}, {"t", vec({10, 20})}});
      },
      {"input 's'", "seq(f32[2])"});
  expect_error<Error>(
      [&] {
        run_graph(inputs, n, {{"s", vec({1, 2})}, {"t", vec({10, 20})}});
      },
      {"input 's' expects seq(f32[2])", "f32[2]"});
  // Sequences of two lengths.
  Node two =
      make("SequenceMap", "map2", {"s", "u"}, {"sums", "shapes"}, {{"body", Subgraph{body, 0}}});
  expect_error<Error>(
      [&] {
        run_graph({{"s", seq_f32({2})}, {"u", seq_f32({2})}}, two,
                  {{"s", seq({vec({1, 2})})}, {"u", seq({vec({1, 2}), vec({3, 4})})}});
      },
      {"[SequenceMap 'map2']", "input 1 holds 2 tensors", "input 0 1"});
}

TEST_CASE("Sequence and optional files: written and read back, the wrong kind refused") {
  const auto dir = std::filesystem::temp_directory_path() / "kiln_test_sequence";
  std::filesystem::create_directories(dir);
  const std::string sp = (dir / "s.pb").string(), np = (dir / "n.pb").string();
  onnx::save_value(seq({vec({1, 2}), vec({3})}), sp, "s");
  onnx::save_value(Tensor::none(DType::f32), np, "n");
  const Tensor s = onnx::load_value(sp, seq_f32({Dim::dynamic()}));
  REQUIRE(s.elements().size() == 2);
  CHECK(s.elements()[1].to_doubles() == std::vector<double>{3});
  CHECK(
      onnx::load_value(np, TensorType{DType::f32, Shape{}, ValueKind::optional_tensor}).is_none());
  // A sequence of f32 tensors read where i64 ones are expected.
  expect_error<Error>(
      [&] {
        onnx::load_value(sp, TensorType{DType::i64, Shape{}, ValueKind::sequence});
      },
      {"s.pb", "tensor 0", "f32[2]"});
  // A truncated file.
  {
    std::string bytes;
    {
      std::ifstream f(sp, std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(f), {});
    }
    std::ofstream(sp, std::ios::binary).write(bytes.data(), 9);
  }
  expect_error<FormatError>([&] { onnx::load_value(sp, seq_f32({Dim::dynamic()})); },
                            {"s.pb", "SequenceProto", "truncated or corrupt"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("A sequence inside an If's branch: the plan holds tensors, its step runs the body") {
  // y = cond ? concat(split(x)) + 1 : -x; the sequence of x's rows lives in the then branch.
  auto then_b = std::make_shared<Graph>();
  then_b->name = "then";
  then_b->inputs = {{"x", {}}, {"one", {}}};
  then_b->nodes = {make("SplitToSequence", "rows", {"x"}, {"rows"}),
                   make("ConcatFromSequence", "cat", {"rows"}, {"back"}, {{"axis", i64{0}}}),
                   make("Add", "add", {"back", "one"}, {"t"})};
  then_b->outputs = {"t"};
  auto else_b = std::make_shared<Graph>();
  else_b->name = "else";
  else_b->inputs = {{"x", {}}, {"one", {}}};
  else_b->nodes = {make("Neg", "neg", {"x"}, {"e"})};
  else_b->outputs = {"e"};
  Graph g;
  g.inputs = {{"cond", {DType::boolean, Shape{}}}, {"x", {DType::f32, Shape{3, 2}}}};
  g.weights["one"] = Tensor::scalar<float>(1);
  g.nodes = {make("If", "if", {"cond", "x", "one"}, {"y"},
                  {{"then_branch", Subgraph{then_b, 2}}, {"else_branch", Subgraph{else_b, 2}}})};
  g.outputs = {"y"};
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  const Tensor x = Tensor::from<float>({3, 2}, {1, 2, 3, 4, 5, 6});
  for (bool cond : {true, false}) {
    const reference::TensorMap in{{"cond", Tensor::scalar<bool>(cond)}, {"x", x}};
    const Tensor want = reference::Executor(g).run(in).at("y");
    CHECK(want.to_doubles() == (cond ? std::vector<double>{2, 3, 4, 5, 6, 7}
                                     : std::vector<double>{-1, -2, -3, -4, -5, -6}));
    CHECK(reference::PlanExecutor(p).run(in).at("y").to_doubles() == want.to_doubles());
  }
  // A sequence given for a plan's tensor input is refused, naming it (not read as empty data).
  expect_error<Error>(
      [&] {
        reference::PlanExecutor(p).run({{"cond", seq({Tensor::scalar<bool>(true)})}, {"x", x}});
      },
      {"'cond'", "seq(bool) of 1", "the plan expects bool[]"});
}
