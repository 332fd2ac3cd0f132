// ONNX import: TensorProto conversion, opset translation, and every bad-input path.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"
#include "onnx.pb.h"
#include "onnx_test_util.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

using test::ModelBuilder;

Tensor iota(std::vector<std::int64_t> dims) {
  Tensor t(DType::f32, dims);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, static_cast<double>(i) - 3.0);
  return t;
}

}  // namespace

TEST_CASE("TensorProto round trip in every dtype") {
  const auto dir = fs::temp_directory_path() / "kiln_test_onnx";
  fs::create_directories(dir);
  std::vector<DType> all(std::begin(kAllDTypes), std::end(kAllDTypes));
  all.insert(all.end(), std::begin(kFloat8DTypes), std::end(kFloat8DTypes));
  all.insert(all.end(), std::begin(kSubByteDTypes), std::end(kSubByteDTypes));  // packed in files
  for (DType t : all) {
    CAPTURE(dtype_name(t));
    Tensor x(t, {2, 3});
    for (std::int64_t i = 0; i < x.numel(); ++i) x.set(i, static_cast<double>(i % 2));
    const auto path = (dir / "t.pb").string();
    kiln::onnx::save_tensor(x, path, "x");
    const Tensor y = kiln::onnx::load_tensor(path);
    CHECK(y.dtype() == t);
    CHECK(y.dims() == x.dims());
    CHECK(y.to_doubles() == x.to_doubles());
    CHECK(kiln::onnx::load_tensor_name(path) == "x");
  }
}

TEST_CASE("typed TensorProto fields are read, and a count mismatch is refused") {
  ::onnx::TensorProto p;
  p.set_name("w");
  p.set_data_type(1);
  p.add_dims(3);
  for (float v : {1.f, 2.f, 3.f}) p.add_float_data(v);
  const auto path = (fs::temp_directory_path() / "kiln_typed.pb").string();
  {
    std::ofstream f(path, std::ios::binary);
    p.SerializeToOstream(&f);
  }
  CHECK(kiln::onnx::load_tensor(path).to_doubles() == std::vector<double>{1, 2, 3});
  p.add_float_data(4.f);
  {
    std::ofstream f(path, std::ios::binary);
    p.SerializeToOstream(&f);
  }
  CHECK_THROWS_AS(kiln::onnx::load_tensor(path), FormatError);
}

TEST_CASE("bad model files give FormatError, never a crash") {
  ModelBuilder b(17);
  b.input("x", {2, 3});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  const std::string good = b.bytes();
  CHECK_NOTHROW(kiln::onnx::load_model_bytes(good, ""));
  CHECK_THROWS_AS(kiln::onnx::load_model_bytes("", ""), FormatError);
  CHECK_THROWS_AS(kiln::onnx::load_model("/nonexistent/model.onnx"), FormatError);
  // Every truncation is refused or loads a consistent model: it never crashes.
  for (std::size_t len = 1; len < good.size(); ++len) {
    try {
      kiln::onnx::load_model_bytes(good.substr(0, len), "");
    } catch (const Error&) {}
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string garbage(64 + rng() % 512, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    try {
      kiln::onnx::load_model_bytes(garbage, "");
    } catch (const Error&) {}
  }
}

TEST_CASE("an unsupported op names the node, op type, domain, opset and the supported set") {
  ModelBuilder b(17);
  b.input("x", {2});
  b.node("FancyOp", {"x"}, {"y"});
  b.output("y");
  try {
    b.load();
    FAIL("expected UnsupportedError");
  } catch (const UnsupportedError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("FancyOp_node") != std::string::npos);
    CHECK(msg.find("op 'FancyOp'") != std::string::npos);
    CHECK(msg.find("opset 17") != std::string::npos);
    CHECK(msg.find("domain 'ai.onnx'") != std::string::npos);
    CHECK(msg.find("`kiln ops` lists the supported ops") != std::string::npos);
    CHECK(msg.find("Conv") == std::string::npos);  // not the list of every op (issue 16)
  }
}

TEST_CASE("a node reading an undefined value is a GraphError naming it") {
  ModelBuilder b(17);
  b.input("x", {2});
  b.node("Relu", {"missing"}, {"y"});
  b.output("y");
  CHECK_THROWS_WITH_AS(b.load(), doctest::Contains("'missing'"), GraphError);
}

TEST_CASE("initializers listed as graph inputs are weights, not inputs") {
  ModelBuilder b(17);
  b.input("x", {2});
  b.input("w", {2});
  b.initializer("w", {2}, {10.f, 20.f});
  b.node("Add", {"x", "w"}, {"y"});
  b.output("y");
  Graph g = b.load();
  REQUIRE(g.inputs.size() == 1);
  CHECK(g.inputs[0].name == "x");
  auto out = reference::Executor(g).run({{"x", Tensor::from<float>({2}, {1.f, 2.f})}});
  CHECK(out.at("y").to_doubles() == std::vector<double>{11, 22});
}

TEST_CASE("dim_param becomes a symbolic dim") {
  ModelBuilder b(17);
  b.input("x", {-1, 3});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  Graph g = b.load();
  CHECK(g.inputs[0].type.shape[0].is_symbolic());
  CHECK(g.type_of("y").shape.to_string() == "[N,3]");
}

TEST_CASE("opset translation: Slice-1 attributes become inputs") {
  ModelBuilder b(1);
  b.input("x", {4, 5});
  auto* n = b.node("Slice", {"x"}, {"y"});
  ModelBuilder::ints(n, "starts", {1, 0});
  ModelBuilder::ints(n, "ends", {3, 5});
  ModelBuilder::ints(n, "axes", {0, 1});
  b.output("y");
  Graph g = b.load();
  CHECK(g.type_of("y").shape.to_string() == "[2,5]");
  auto out = reference::Executor(g).run({{"x", iota({4, 5})}});
  CHECK(out.at("y").get(0) == doctest::Approx(5 - 3.0));
}

TEST_CASE("opset translation: Clip-6 min/max attributes") {
  ModelBuilder b(6);
  b.input("x", {7});
  auto* n = b.node("Clip", {"x"}, {"y"});
  ModelBuilder::flt(n, "min", -1.f);
  ModelBuilder::flt(n, "max", 2.f);
  b.output("y");
  Graph g = b.load();
  auto out = reference::Executor(g).run({{"x", iota({7})}});
  CHECK(out.at("y").to_doubles() == std::vector<double>{-1, -1, -1, 0, 1, 2, 2});
}

TEST_CASE("opset translation: Softmax-11 flattens at its axis") {
  ModelBuilder b(11);
  b.input("x", {2, 2, 2});
  auto* n = b.node("Softmax", {"x"}, {"y"});
  auto* a = n->add_attribute();
  a->set_name("axis");
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(1);
  b.output("y");
  Graph g = b.load();
  auto y = reference::Executor(g).run({{"x", iota({2, 2, 2})}}).at("y");
  REQUIRE(y.dims() == std::vector<std::int64_t>{2, 2, 2});
  // Each batch row of 4 values (flattened from axis 1) sums to 1.
  for (int b0 = 0; b0 < 2; ++b0) {
    double s = 0;
    for (int i = 0; i < 4; ++i) s += y.get(b0 * 4 + i);
    CHECK(s == doctest::Approx(1.0));
  }
}

TEST_CASE("external data: read relative to the model, and a missing file is a clear error") {
  const auto dir = fs::temp_directory_path() / "kiln_ext";
  fs::create_directories(dir);
  ModelBuilder b(17);
  b.input("x", {2});
  b.external_initializer("w", {2}, "weights.bin");
  b.node("Add", {"x", "w"}, {"y"});
  b.output("y");
  {
    std::ofstream f(dir / "model.onnx", std::ios::binary);
    f << b.bytes();
  }
  fs::remove(dir / "weights.bin");
  CHECK_THROWS_WITH_AS(kiln::onnx::load_model((dir / "model.onnx").string()),
                       doctest::Contains("weights.bin"), FormatError);
  {
    std::ofstream f(dir / "weights.bin", std::ios::binary);
    const float w[2] = {5.f, 6.f};
    f.write(reinterpret_cast<const char*>(w), sizeof w);
  }
  Graph g = kiln::onnx::load_model((dir / "model.onnx").string());
  CHECK(g.weights.at("w").to_doubles() == std::vector<double>{5, 6});
}

TEST_CASE("an opset newer than kiln reads is refused with the numbers") {
  ModelBuilder b(99);
  b.input("x", {2});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  CHECK_THROWS_WITH_AS(b.load(), doctest::Contains("opset 99"), UnsupportedError);
}

TEST_CASE("Identity and inference Dropout are removed, except where they name a graph output") {
  ModelBuilder b(17);
  b.input("x", {3});
  b.node("Identity", {"x"}, {"a"});
  b.node("Dropout", {"a"}, {"c"});
  b.node("Relu", {"c"}, {"y"});
  b.node("Identity", {"y"}, {"z"});
  b.output("z");
  Graph g = b.load();
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(n.op);
  CHECK(ops == std::vector<std::string>{"Relu", "Identity"});
  CHECK(g.nodes[0].inputs[0] == "x");
  auto out = reference::Executor(g).run({{"x", iota({3})}});
  CHECK(out.at("z").to_doubles() == std::vector<double>{0, 0, 0});
}

TEST_CASE("an op used outside the opsets that define it is refused with the range") {
  ModelBuilder b(17);  // Gelu exists from opset 20
  b.input("x", {3});
  b.node("Gelu", {"x"}, {"y"});
  b.output("y");
  CHECK_THROWS_WITH_AS(b.load(), doctest::Contains("exists in opsets 20 to"), UnsupportedError);
}

TEST_CASE(
    "RoiAlign-10 imports as output_half_pixel; its coordinate mode attribute is refused before "
    "opset 16") {
  auto model = [](int opset, const char* mode) {
    ModelBuilder b(opset);
    b.input("x", {1, 2, 6, 6});
    b.input("rois", {3, 4});
    b.input("idx", {3}, 7);
    auto* n = b.node("RoiAlign", {"x", "rois", "idx"}, {"y"}, "align");
    if (mode) {
      auto* a = n->add_attribute();
      a->set_name("coordinate_transformation_mode");
      a->set_type(::onnx::AttributeProto::STRING);
      a->set_s(mode);
    }
    b.output("y");
    return b;
  };
  const Graph g10 = model(10, nullptr).load();
  REQUIRE(g10.nodes.size() == 1);
  CHECK(g10.nodes[0].attr_string("coordinate_transformation_mode", "") == "output_half_pixel");
  CHECK(g10.type_of("y").shape == Shape{3, 2, 1, 1});
  CHECK_THROWS_WITH_AS(model(10, "half_pixel").load(),
                       "[RoiAlign 'align'] attribute 'coordinate_transformation_mode' exists from "
                       "opset 16; the model uses opset 10",
                       GraphError);
  const Graph g16 = model(16, nullptr).load();
  CHECK_FALSE(g16.nodes[0].has_attr("coordinate_transformation_mode"));  // half_pixel by default
}

TEST_CASE(
    "Attention: opset 24's nonpad_kv_seqlen and opset 25's window attributes are refused before") {
  auto model = [](int opset, bool nonpad, bool window) {
    ModelBuilder b(opset);
    b.input("q", {1, 2, 3, 4});
    b.input("k", {1, 2, 5, 4});
    b.input("v", {1, 2, 5, 4});
    b.input("lens", {1}, 7);
    auto* n = b.node("Attention",
                     nonpad ? std::vector<std::string>{"q", "k", "v", "", "", "", "lens"}
                            : std::vector<std::string>{"q", "k", "v"},
                     {"y"}, "attn");
    if (window) ModelBuilder::integer(n, "left_window_size", 2);
    b.output("y");
    return b;
  };
  CHECK_THROWS_WITH_AS(
      model(23, true, false).load(),
      "[Attention 'attn'] input 6 (nonpad_kv_seqlen) exists from opset 24; the model uses opset 23",
      GraphError);
  CHECK_THROWS_WITH_AS(model(24, true, true).load(),
                       "[Attention 'attn'] attribute 'left_window_size' exists from opset 25; the "
                       "model uses opset 24",
                       GraphError);
  const Graph g = model(25, true, true).load();
  CHECK(g.type_of("y").shape == Shape{1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(model(22, false, false).load(), doctest::Contains("exists in opsets 23 to"),
                       UnsupportedError);
}
