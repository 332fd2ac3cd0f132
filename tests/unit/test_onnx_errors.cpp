// ONNX import: every kind of bad model gets a clear kiln error, never a crash or a foreign
// exception (issue 5, item 6). test_onnx.cpp covers the first cases (empty and missing files,
// random truncation, unsupported ops, an undefined value, a missing external data file, a too
// new opset); these are the rest: malformed and truncated files, missing initializers, type
// mismatches and cycles.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "expect_error.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"
#include "onnx.pb.h"
#include "onnx_test_util.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

using test::expect_error;
using test::ModelBuilder;

/// Loading `bytes` either succeeds or throws a kiln::Error; nothing else.
void load_never_crashes(const std::string& bytes) {
  try {
    kiln::onnx::load_model_bytes(bytes, "");
  } catch (const Error&) {
  } catch (const std::exception& e) {
    FAIL("foreign exception " << std::string(typeid(e).name()) << ": " << std::string(e.what()));
  }
}

fs::path temp_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("kiln_onnx_errors_" + name);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

/// A Conv model whose weight is a 16x3x3x3 initializer held in raw_data (1.7 kB).
ModelBuilder conv_model() {
  ModelBuilder b(17);
  b.input("x", {1, 3, 8, 8});
  std::vector<float> w(16 * 3 * 3 * 3);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 7) * 0.1f;
  b.initializer("w", {16, 3, 3, 3}, w);
  b.node("Conv", {"x", "w"}, {"y"}, "conv1");
  b.output("y");
  return b;
}

}  // namespace

// ---- malformed and truncated files
// ---------------------------------------------------------------

TEST_CASE("a model file truncated inside its weights is a FormatError naming the file") {
  const std::string good = conv_model().bytes();
  REQUIRE_NOTHROW(kiln::onnx::load_model_bytes(good, ""));
  const auto dir = temp_dir("truncated");
  const auto path = dir / "model.onnx";
  // The raw weight bytes fill most of the file: cutting anywhere in its middle half lands
  // inside them, where protobuf cannot end a message.
  for (std::size_t len : {good.size() / 4, good.size() / 2, good.size() * 3 / 4, good.size() - 1}) {
    CAPTURE(len);
    write_file(path, good.substr(0, len));
    expect_error<FormatError>([&] { kiln::onnx::load_model(path.string()); },
                              {path.string(), "truncated or corrupt"});
  }
}

TEST_CASE("every prefix and every single-byte corruption of a model loads or throws a kiln error") {
  const std::string good = conv_model().bytes();
  for (std::size_t len = 0; len < good.size(); len += 3) load_never_crashes(good.substr(0, len));
  for (std::size_t i = 0; i < good.size(); i += 5) {
    for (unsigned char flip : {0x01, 0x80, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(static_cast<unsigned char>(bad[i]) ^ flip);
      load_never_crashes(bad);
    }
  }
}

TEST_CASE("a protobuf that is not an ONNX model is refused") {
  // A TensorProto file (its field 2 clashes with ModelProto's opset_import).
  ::onnx::TensorProto t;
  t.set_name("t");
  t.set_data_type(1);
  t.add_dims(2);
  t.add_float_data(1.f);
  t.add_float_data(2.f);
  expect_error<FormatError>([&] { kiln::onnx::load_model_bytes(t.SerializeAsString(), ""); },
                            {"not a valid ONNX model"});
  // A NodeProto parses as a ModelProto with unknown fields only, so it holds no graph.
  ::onnx::NodeProto n;
  n.add_input("x");
  n.add_output("y");
  n.set_op_type("Relu");
  expect_error<FormatError>([&] { kiln::onnx::load_model_bytes(n.SerializeAsString(), ""); },
                            {"no ONNX graph"});
  // A model with no graph at all.
  ::onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(17);
  expect_error<FormatError>([&] { kiln::onnx::load_model_bytes(m.SerializeAsString(), ""); },
                            {"no ONNX graph"});
  // Text instead of protobuf.
  expect_error<FormatError>([&] { kiln::onnx::load_model_bytes("ir_version: 8\ngraph { }\n", ""); },
                            {});
}

TEST_CASE("a truncated or corrupt tensor file is a FormatError naming the file") {
  const auto dir = temp_dir("tensor");
  Tensor x(DType::f32, {4, 5});
  for (std::int64_t i = 0; i < x.numel(); ++i) x.set(i, static_cast<double>(i));
  const auto good = dir / "good.pb";
  kiln::onnx::save_tensor(x, good.string(), "x");
  std::ifstream f(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto bad = dir / "bad.pb";
  for (std::size_t len : {bytes.size() / 2, bytes.size() - 1}) {
    CAPTURE(len);
    write_file(bad, bytes.substr(0, len));
    expect_error<FormatError>([&] { kiln::onnx::load_tensor(bad.string()); }, {bad.string()});
  }
  expect_error<FormatError>([&] { kiln::onnx::load_tensor((dir / "absent.pb").string()); },
                            {"absent.pb"});
}

// ---- initializers: missing, malformed, inconsistent ---------------------------------------------

TEST_CASE("a missing weight initializer is a GraphError naming the value and the node") {
  ModelBuilder b(17);
  b.input("x", {1, 3, 8, 8});
  b.node("Conv", {"x", "conv1.weight"}, {"y"}, "conv1");
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"conv1.weight", "conv1"});
}

TEST_CASE("a weight listed as a graph input without its initializer must be fed at run time") {
  // IR version 3 lists weights as graph inputs; without the initializer the weight is an input,
  // and running without it names it.
  ModelBuilder b(9, 3);
  b.input("x", {2});
  b.input("w", {2});
  b.node("Add", {"x", "w"}, {"y"});
  b.output("y");
  Graph g = b.load();
  REQUIRE(g.inputs.size() == 2);
  reference::Executor exec(g);
  expect_error<Error>([&] { exec.run({{"x", Tensor::from<float>({2}, {1.f, 2.f})}}); }, {"'w'"});
}

TEST_CASE("a graph output that no node produces is a GraphError naming it") {
  ModelBuilder b(17);
  b.input("x", {2});
  b.node("Relu", {"x"}, {"y"});
  b.output("z");
  expect_error<GraphError>([&] { b.load(); }, {"'z'"});
}

TEST_CASE("malformed initializers are FormatErrors naming the tensor") {
  SUBCASE("raw data shorter than the dims need") {
    ModelBuilder b = conv_model();
    auto* w = b.m.mutable_graph()->mutable_initializer(0);
    w->set_raw_data(w->raw_data().substr(0, 100));
    expect_error<FormatError>([&] { b.load(); }, {"'w'", "100 bytes"});
  }
  SUBCASE("typed data of the wrong count") {
    ModelBuilder b(17);
    b.input("x", {3});
    auto* t = b.m.mutable_graph()->add_initializer();
    t->set_name("c");
    t->set_data_type(1);
    t->add_dims(3);
    t->add_float_data(1.f);
    b.node("Add", {"x", "c"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"'c'", "holds 1 values"});
  }
  SUBCASE("a negative dim") {
    ModelBuilder b(17);
    b.input("x", {3});
    b.initializer("c", {-3}, {1.f, 2.f, 3.f});
    b.node("Add", {"x", "c"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"'c'", "negative dim"});
  }
  SUBCASE("dims too large to allocate are refused before allocating") {
    ModelBuilder b(17);
    b.input("x", {3});
    b.initializer("c", {1ll << 40, 1ll << 40}, {1.f});
    b.node("Add", {"x", "c"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"'c'"});
  }
  SUBCASE("an initializer without a name") {
    ModelBuilder b(17);
    b.input("x", {1});
    b.initializer("", {1}, {1.f});
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"no name"});
  }
  SUBCASE("an initializer given twice") {
    ModelBuilder b(17);
    b.input("x", {1});
    b.initializer("c", {1}, {1.f});
    b.initializer("c", {1}, {2.f});
    b.node("Add", {"x", "c"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"'c'", "twice"});
  }
  SUBCASE("a STRING initializer is unsupported, by name and type") {
    ModelBuilder b(17);
    b.input("x", {1});
    auto* t = b.m.mutable_graph()->add_initializer();
    t->set_name("s");
    t->set_data_type(8);
    t->add_dims(1);
    t->add_string_data("hello");
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"'s'", "STRING"});
  }
}

TEST_CASE("bad external data references are FormatErrors, never foreign exceptions") {
  const auto dir = temp_dir("external");
  {
    const float w[2] = {5.f, 6.f};
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(w), sizeof w);
  }
  auto model_with = [&](std::vector<std::pair<std::string, std::string>> entries) {
    ModelBuilder b(17);
    b.input("x", {2});
    auto* t = b.m.mutable_graph()->add_initializer();
    t->set_name("w");
    t->set_data_type(1);
    t->add_dims(2);
    t->set_data_location(::onnx::TensorProto::EXTERNAL);
    for (const auto& [k, v] : entries) {
      auto* e = t->add_external_data();
      e->set_key(k);
      e->set_value(v);
    }
    b.node("Add", {"x", "w"}, {"y"});
    b.output("y");
    write_file(dir / "model.onnx", b.bytes());
    return (dir / "model.onnx").string();
  };
  CHECK_NOTHROW(kiln::onnx::load_model(model_with({{"location", "weights.bin"}})));
  expect_error<FormatError>([&] { kiln::onnx::load_model(model_with({})); }, {"'w'", "location"});
  expect_error<FormatError>(
      [&] {
        kiln::onnx::load_model(model_with({{"location", "../weights.bin"}}));
      },
      {"'w'", "relative"});
  expect_error<FormatError>(
      [&] {
        kiln::onnx::load_model(model_with({{"location", "/etc/passwd"}}));
      },
      {"'w'", "relative"});
  expect_error<FormatError>(
      [&] {
        kiln::onnx::load_model(model_with({{"location", "weights.bin"}, {"offset", "4"}}));
      },
      {"'w'", "8 bytes"});
  expect_error<FormatError>(
      [&] {
        kiln::onnx::load_model(model_with({{"location", "weights.bin"}, {"length", "4"}}));
      },
      {"'w'", "length 4"});
}

TEST_CASE("external data offsets and lengths that are not numbers are FormatErrors") {
  const auto dir = temp_dir("external_text");
  {
    const float w[2] = {5.f, 6.f};
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(w), sizeof w);
  }
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"offset", "four"}, {"length", "99999999999999999999999"}}) {
    CAPTURE(key);
    ModelBuilder b(17);
    b.input("x", {2});
    auto* t = b.external_initializer("w", {2}, "weights.bin");
    auto* e = t->add_external_data();
    e->set_key(key);
    e->set_value(value);
    b.node("Add", {"x", "w"}, {"y"});
    b.output("y");
    write_file(dir / "model.onnx", b.bytes());
    expect_error<FormatError>([&] { kiln::onnx::load_model((dir / "model.onnx").string()); },
                              {"'w'", value});
  }
}

// ---- type mismatches
// -----------------------------------------------------------------------------

TEST_CASE("type mismatches between inputs of a node are ShapeErrors naming the node") {
  SUBCASE("Add of FLOAT and INT64") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.input("i", {2}, 7);
    b.node("Add", {"x", "i"}, {"y"}, "add1");
    b.output("y");
    expect_error<ShapeError>([&] { b.load(); }, {"add1"});
  }
  SUBCASE("MatMul inner dims") {
    ModelBuilder b(17);
    b.input("a", {2, 3});
    b.initializer("w", {4, 5}, std::vector<float>(20, 1.f));
    b.node("MatMul", {"a", "w"}, {"y"}, "mm");
    b.output("y");
    expect_error<ShapeError>([&] { b.load(); }, {"mm"});
  }
  SUBCASE("Conv channels") {
    ModelBuilder b(17);
    b.input("x", {1, 5, 8, 8});
    b.initializer("w", {4, 3, 1, 1}, std::vector<float>(12, 1.f));
    b.node("Conv", {"x", "w"}, {"y"}, "conv2");
    b.output("y");
    expect_error<ShapeError>([&] { b.load(); }, {"conv2", "5", "3"});
  }
  SUBCASE("a FLOAT weight where Gather needs integer indices") {
    ModelBuilder b(17);
    b.input("x", {4, 2});
    b.initializer("idx", {2}, {0.f, 1.f});
    b.node("Gather", {"x", "idx"}, {"y"}, "gather1");
    b.output("y");
    expect_error<ShapeError>([&] { b.load(); }, {"gather1"});
  }
}

TEST_CASE("an attribute of the wrong type is an error naming the attribute and node") {
  ModelBuilder b(17);
  b.input("x", {1, 1, 4, 4});
  auto* n = b.node("MaxPool", {"x"}, {"y"}, "pool1");
  auto* a = n->add_attribute();
  a->set_name("kernel_shape");
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(2.f);
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"pool1", "kernel_shape"});
}

TEST_CASE("graph inputs of an unsupported kind or dtype are UnsupportedErrors naming them") {
  SUBCASE("STRING input") {
    ModelBuilder b(17);
    b.input("s", {2}, 8);
    b.node("Identity", {"s"}, {"y"});
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"'s'", "STRING"});
  }
  SUBCASE("a map input, and a sequence of maps") {
    ModelBuilder b(17);
    auto* v = b.m.mutable_graph()->add_input();
    v->set_name("map");
    v->mutable_type()->mutable_map_type()->set_key_type(7);
    b.node("Identity", {"map"}, {"y"});
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"graph input 'map'", "not maps"});
    ModelBuilder s(17);
    auto* sv = s.m.mutable_graph()->add_input();
    sv->set_name("seq_of_maps");
    sv->mutable_type()->mutable_sequence_type()->mutable_elem_type()->mutable_map_type();
    s.node("Identity", {"seq_of_maps"}, {"y"});
    s.output("y");
    expect_error<UnsupportedError>([&] { s.load(); }, {"graph input 'seq_of_maps'", "not maps"});
  }
  SUBCASE("a sequence input: its type, and a tensor op given it") {
    ModelBuilder b(17);
    auto* v = b.m.mutable_graph()->add_input();
    v->set_name("seq");
    v->mutable_type()
        ->mutable_sequence_type()
        ->mutable_elem_type()
        ->mutable_tensor_type()
        ->set_elem_type(1);
    b.node("SequenceLength", {"seq"}, {"y"});
    b.output("y");
    const Graph g = b.load();
    CHECK(g.inputs[0].type.to_string() == "seq(f32[*])");
    CHECK(g.type_of("y").to_string() == "i64[]");
    ModelBuilder r(17);
    auto* rv = r.m.mutable_graph()->add_input();
    *rv = *v;
    r.node("Relu", {"seq"}, {"y"});
    r.output("y");
    expect_error<GraphError>([&] { r.load(); }, {"[Relu", "input 0 ('seq')", "takes tensors"});
  }
  SUBCASE("an input without a type") {
    ModelBuilder b(17);
    b.m.mutable_graph()->add_input()->set_name("untyped");
    b.node("Relu", {"untyped"}, {"y"});
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"'untyped'"});
  }
}

TEST_CASE("running with an input of the wrong dtype or shape is an error naming the input") {
  ModelBuilder b(17);
  b.input("x", {2, 3});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  Graph g = b.load();
  reference::Executor exec(g);
  expect_error<Error>([&] { exec.run({{"x", Tensor(DType::i64, {2, 3})}}); }, {"'x'"});
  expect_error<Error>([&] { exec.run({{"x", Tensor(DType::f32, {3, 2})}}); }, {"'x'"});
}

// ---- cycles and duplicate definitions -----------------------------------------------------------

TEST_CASE("a cycle is a GraphError that says so") {
  SUBCASE("two nodes feeding each other") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.node("Add", {"x", "b"}, {"a"}, "first");
    b.node("Relu", {"a"}, {"b"}, "second");
    b.output("b");
    expect_error<GraphError>([&] { b.load(); }, {"first", "'b'", "cycle"});
  }
  SUBCASE("a node reading its own output") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.node("Add", {"x", "y"}, {"y"}, "self_loop");
    b.output("y");
    expect_error<GraphError>([&] { b.load(); }, {"self_loop", "'y'"});
  }
}

TEST_CASE("a value defined twice is a GraphError naming it") {
  SUBCASE("by two nodes") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.node("Relu", {"x"}, {"y"}, "r1");
    b.node("Neg", {"x"}, {"y"}, "r2");
    b.output("y");
    expect_error<GraphError>([&] { b.load(); }, {"'y'", "twice"});
  }
  SUBCASE("by a node and a graph input") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.node("Relu", {"x"}, {"x"}, "r1");
    b.output("x");
    expect_error<GraphError>([&] { b.load(); }, {"'x'"});
  }
}

TEST_CASE("a Constant redefining an initializer is a GraphError naming it") {
  {
    ModelBuilder b(17);
    b.input("x", {1});
    b.initializer("c", {1}, {1.f});
    auto* n = b.node("Constant", {}, {"c"}, "const1");
    auto* a = n->add_attribute();
    a->set_name("value_float");
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(2.f);
    b.node("Add", {"x", "c"}, {"y"});
    b.output("y");
    expect_error<GraphError>([&] { b.load(); }, {"'c'"});
  }
}

// ---- malformed nodes
// -----------------------------------------------------------------------------

TEST_CASE("nodes missing inputs, outputs or attributes get kiln errors, not foreign exceptions") {
  SUBCASE("a Constant with no value") {
    ModelBuilder b(17);
    b.node("Constant", {}, {"c"}, "const1");
    b.output("c");
    expect_error<UnsupportedError>([&] { b.load(); }, {"const1"});
  }
  SUBCASE("a Conv with too many inputs") {
    ModelBuilder b = conv_model();
    b.m.mutable_graph()->mutable_node(0)->add_input("w");
    b.m.mutable_graph()->mutable_node(0)->add_input("w");
    expect_error<GraphError>([&] { b.load(); }, {"conv1", "inputs"});
  }
  SUBCASE("a MaxPool without kernel_shape") {
    ModelBuilder b(17);
    b.input("x", {1, 1, 4, 4});
    b.node("MaxPool", {"x"}, {"y"}, "pool1");
    b.output("y");
    expect_error<Error>([&] { b.load(); }, {"pool1", "kernel_shape"});
  }
  SUBCASE("a Slice-1 whose starts and ends differ in length") {
    ModelBuilder b(1);
    b.input("x", {4, 5});
    auto* n = b.node("Slice", {"x"}, {"y"}, "slice1");
    ModelBuilder::ints(n, "starts", {1, 0});
    ModelBuilder::ints(n, "ends", {3});
    b.output("y");
    expect_error<Error>([&] { b.load(); }, {"slice1"});
  }
}

TEST_CASE("a Constant with no output is a GraphError naming it") {
  ModelBuilder b(17);
  b.input("x", {1});
  auto* n = b.node("Constant", {}, {}, "const1");
  auto* a = n->add_attribute();
  a->set_name("value_float");
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(1.f);
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"const1"});
}

TEST_CASE("an opset-11 Softmax with no input is a GraphError naming it") {
  ModelBuilder b(11);
  b.input("x", {2});
  b.node("Softmax", {}, {"y"}, "sm");
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"sm"});
}

TEST_CASE("an Upsample with no input is a GraphError naming it") {
  ModelBuilder b(9);
  b.node("Upsample", {}, {"y"}, "up");
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"up"});
}

TEST_CASE("an opset-6 broadcasting Add with one input is a GraphError naming it") {
  ModelBuilder b(6);
  b.input("x", {2, 3});
  auto* n = b.node("Add", {"x"}, {"y"}, "add_legacy");
  auto* a = n->add_attribute();
  a->set_name("broadcast");
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(1);
  auto* ax = n->add_attribute();
  ax->set_name("axis");
  ax->set_type(::onnx::AttributeProto::INT);
  ax->set_i(0);
  b.output("y");
  expect_error<GraphError>([&] { b.load(); }, {"add_legacy"});
}

TEST_CASE(
    "a missing branch, a list of graphs and attribute references are errors naming the node") {
  SUBCASE("an If without its else_branch") {
    ModelBuilder b(17);
    b.input("c", {1}, 9);
    auto* n = b.node("If", {"c"}, {"y"}, "if1");
    auto* a = n->add_attribute();
    a->set_name("then_branch");
    a->set_type(::onnx::AttributeProto::GRAPH);
    a->mutable_g()->set_name("then");
    b.output("y");
    expect_error<GraphError>([&] { b.load(); }, {"if1", "else_branch"});
  }
  SUBCASE("a GRAPHS attribute") {
    ModelBuilder b(17);
    b.input("c", {1}, 9);
    auto* n = b.node("If", {"c"}, {"y"}, "if2");
    auto* a = n->add_attribute();
    a->set_name("then_branch");
    a->set_type(::onnx::AttributeProto::GRAPHS);
    a->add_graphs()->set_name("then");
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"if2", "then_branch", "GRAPHS"});
  }
  SUBCASE("an attribute reference") {
    ModelBuilder b(17);
    b.input("x", {2});
    auto* n = b.node("LeakyRelu", {"x"}, {"y"}, "lrelu");
    auto* a = n->add_attribute();
    a->set_name("alpha");
    a->set_ref_attr_name("outer_alpha");
    a->set_type(::onnx::AttributeProto::FLOAT);
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"lrelu"});
  }
  SUBCASE("a sparse initializer") {
    ModelBuilder b(17);
    b.input("x", {2});
    auto* s = b.m.mutable_graph()->add_sparse_initializer();
    s->mutable_values()->set_name("sp");
    s->mutable_values()->set_data_type(1);
    b.node("Relu", {"x"}, {"y"});
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); }, {"sparse"});
  }
  SUBCASE("an op of a custom domain that no plugin has names the domain and --plugin") {
    ModelBuilder b(17);
    auto* o = b.m.add_opset_import();
    o->set_domain("com.example");
    o->set_version(2);
    b.input("x", {2});
    b.node("Relu", {"x"}, {"y"}, "custom")->set_domain("com.example");
    b.output("y");
    expect_error<UnsupportedError>([&] { b.load(); },
                                   {"custom", "com.example", "version 2", "--plugin"});
  }
  SUBCASE("a custom domain the model does not import is a format error naming it") {
    ModelBuilder b(17);
    b.input("x", {2});
    b.node("Relu", {"x"}, {"y"}, "custom")->set_domain("com.example");
    b.output("y");
    expect_error<FormatError>([&] { b.load(); }, {"custom", "com.example", "opset_import"});
  }
}
