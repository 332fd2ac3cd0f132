// Untrusted input (issue 18): each finding of the fuzzing run, reproduced with the smallest input
// that showed it, must now be a kiln error naming the thing and what was expected -- never a
// crash, a foreign exception or a silent acceptance.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "expect_error.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/memory.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "onnx.pb.h"
#include "onnx_test_util.hpp"
#include "plan_test_util.hpp"

using namespace kiln;
namespace fs = std::filesystem;
using test::expect_error;
using test::ModelBuilder;

namespace {

using i64 = std::int64_t;
constexpr i64 k2e31 = i64{1} << 31, k2e40 = i64{1} << 40, k2e62 = i64{1} << 62;

kiln::onnx::ImportOptions folding() {
  kiln::onnx::ImportOptions o;
  o.evaluator = &reference::constant_evaluator();
  return o;
}

Graph load(const ModelBuilder& b) { return kiln::onnx::load_model_bytes(b.bytes(), "", folding()); }

void int64_initializer(ModelBuilder& b, const std::string& name, std::vector<i64> v) {
  auto* t = b.m.mutable_graph()->add_initializer();
  t->set_name(name);
  t->set_data_type(::onnx::TensorProto::INT64);
  t->add_dims(static_cast<i64>(v.size()));
  for (i64 x : v) t->add_int64_data(x);
}

/// ConstantOfShape of a shape initializer: folded at import, since its input is constant.
ModelBuilder constant_of_shape(std::vector<i64> shape) {
  ModelBuilder b(17);
  int64_initializer(b, "shape", shape);
  b.node("ConstantOfShape", {"shape"}, {"y"}, "cos");
  b.output("y");
  return b;
}

/// Sets the host memory limit for one test and restores the default after it.
struct MemoryLimit {
  explicit MemoryLimit(std::uint64_t bytes) { set_host_memory_limit(bytes); }
  ~MemoryLimit() { set_host_memory_limit(0); }
};

fs::path temp_dir(const std::string& name) {
  const auto dir = fs::temp_directory_path() / ("kiln_untrusted_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

// ---- 1. ConstantOfShape whose element count overflows ------------------------------------------

namespace {
/// What `kiln run` and `kiln build` do with a model: run it on the reference, and build a plan
/// (whose constant folding computes ConstantOfShape of a constant shape).
void run_and_build(const ModelBuilder& b) {
  const Graph g = load(b);
  (void)reference::Executor(g).run({});
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  (void)build::build_plan(g, o);
}
}  // namespace

TEST_CASE(
    "ConstantOfShape whose byte size overflows 64 bits is an error naming the node, not a write "
    "past a buffer") {
  // [2^62] f32: 2^64 bytes, which wrapped to 0 before.
  expect_error<MemoryLimitError>(
      [] { run_and_build(constant_of_shape({k2e62})); },
      {"[ConstantOfShape 'cos']", "f32[4611686018427387904]", "64 bits"});
  expect_error<MemoryLimitError>(
      [] {
        run_and_build(constant_of_shape({k2e31, k2e31}));
      },
      {"[ConstantOfShape 'cos']", "[2147483648,2147483648]"});
}

TEST_CASE("ConstantOfShape past the host memory limit names the node, the dims and the bytes") {
  MemoryLimit limit(std::uint64_t{1} << 30);
  expect_error<MemoryLimitError>(
      [] {
        run_and_build(constant_of_shape({100000, 100000}));
      },
      {"[ConstantOfShape 'cos']", "f32[100000,100000]", "40000000000 bytes", "host memory limit",
       "--max-memory"});
  // Under the limit it still works, and the memory is given back.
  CHECK_NOTHROW(run_and_build(constant_of_shape({2, 3})));
  CHECK(host_memory_in_use() < (std::uint64_t{1} << 20));
}

// ---- 2. Reshape of a rank-0 input; element counts that overflow --------------------------------

TEST_CASE("Reshape of a rank-0 input to [7,13] is a ShapeError naming the node") {
  ModelBuilder b(17);
  b.input("x", {});
  int64_initializer(b, "shape", {7, 13});
  b.node("Reshape", {"x", "shape"}, {"y"}, "rs");
  b.output("y");
  expect_error<ShapeError>([&] { load(b); },
                           {"[Reshape 'rs']", "expected 1 element count, got 91"});
}

TEST_CASE("Reshape to a shape whose element count overflows says so instead of '(0 elements)'") {
  ModelBuilder b(17);
  b.input("x", {2, 3});
  int64_initializer(b, "shape", {k2e40, k2e40});
  b.node("Reshape", {"x", "shape"}, {"y"}, "rs");
  b.output("y");
  expect_error<ShapeError>([&] { load(b); }, {"[Reshape 'rs']", "overflows"});
}

TEST_CASE("element counts overflow as errors, for every rule that multiplies dims") {
  CHECK_THROWS_AS(product({k2e40, k2e40}), ShapeError);
  CHECK_THROWS_AS(Shape::of({k2e31, k2e31, k2e31}).numel(), ShapeError);
  CHECK(product({3, kDynamic}) == -3);  // dynamic dims still pass through
  expect_error<MemoryLimitError>(
      [] {
        Tensor t(DType::f64, {k2e62, 4});
      },
      {"f64[4611686018427387904,4]"});
}

// ---- 3. A plan whose fields are corrupted and whose checksum is recomputed ----------------------

namespace {

plan::Plan small_plan() {
  plan_test::Builder b;
  auto x = b.input("x", {1, 3, 8, 8});
  auto c = b.conv(x, 3, 4, 3);
  auto r = b.node("Relu", {c});
  auto p = b.node("MaxPool", {r},
                  {{"kernel_shape", std::vector<i64>{2, 2}}, {"strides", std::vector<i64>{2, 2}}});
  Graph g = b.finish({p});
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  return build::build_plan(std::move(g), o);
}

/// Loads `bytes` (resealed) and runs the plan: either step may refuse with a kiln error; nothing
/// else may happen.
void load_and_run_never_crashes(std::string bytes, const reference::TensorMap& inputs) {
  plan::reseal_plan(bytes);
  try {
    const plan::Plan p = plan::deserialize_plan(bytes);
    reference::PlanExecutor(p).run(inputs);
  } catch (const Error&) {
  } catch (const std::exception& e) {
    FAIL("foreign exception " << std::string(typeid(e).name()) << ": " << std::string(e.what()));
  }
}

}  // namespace

TEST_CASE(
    "a value's offset outside the arena, with the checksum recomputed, is refused naming the "
    "value") {
  plan::Plan p = small_plan();
  REQUIRE(p.memory.values.count("x"));
  p.memory.values.at("x").offset = std::int64_t{1} << 62;  // offset + size overflowed the old check
  std::string bytes = plan::serialize_plan(p);
  expect_error<FormatError>([&] { plan::deserialize_plan(bytes); },
                            {"value 'x'", "outside the arena"});
  p.memory.values.at("x").offset = p.memory.arena_bytes - 4;
  bytes = plan::serialize_plan(p);
  expect_error<FormatError>([&] { plan::deserialize_plan(bytes); },
                            {"value 'x'", "outside the arena"});
}

TEST_CASE(
    "a step whose planned output type disagrees with its shape rule is refused naming the step") {
  plan::Plan p = small_plan();
  REQUIRE(p.steps.size() >= 2);
  auto& v = p.memory.values.at(p.steps[0].outputs[0]);  // an activation, not a graph output
  v.dims.back() -= 1;                                   // what a mutated dims field would say
  v.strides = std::vector<i64>(v.dims.size(), 1);
  expect_error<FormatError>([&] { plan::deserialize_plan(plan::serialize_plan(p)); },
                            {"step #0", p.steps[0].name, "the plan places"});
}

TEST_CASE(
    "every 8-byte field of a plan overwritten with hostile numbers, checksum recomputed, loads and "
    "runs or is refused") {
  const plan::Plan p = small_plan();
  const std::string good = plan::serialize_plan(p);
  const auto inputs = plan_test::random_inputs(p.inputs, 5);
  REQUIRE_NOTHROW(reference::PlanExecutor(plan::deserialize_plan(good)).run(inputs));
  const std::int64_t hostile[] = {-1,
                                  std::int64_t{1} << 62,
                                  std::numeric_limits<std::int64_t>::max(),
                                  std::numeric_limits<std::int64_t>::min(),
                                  1 << 20,
                                  0};
  for (std::size_t at = 20; at + 16 <= good.size(); at += 1) {
    for (std::int64_t h : hostile) {
      std::string bad = good;
      std::memcpy(bad.data() + at, &h, 8);
      load_and_run_never_crashes(bad, inputs);
    }
  }
}

// ---- 4. External data outside the model's folder, or not a file
// ----------------------------------

TEST_CASE("external data through a symlink to a file outside the model's folder is refused") {
  const auto root = temp_dir("symlink");
  const auto model_dir = root / "model";
  fs::create_directories(model_dir);
  {
    std::ofstream secret(root / "secret.bin", std::ios::binary);
    const float v[4] = {1, 2, 3, 4};
    secret.write(reinterpret_cast<const char*>(v), sizeof v);
  }
  fs::create_symlink(root / "secret.bin", model_dir / "w.bin");
  ModelBuilder b(17);
  b.input("x", {4});
  b.external_initializer("w", {4}, "w.bin");
  b.node("Add", {"x", "w"}, {"y"});
  b.output("y");
  expect_error<FormatError>([&] { kiln::onnx::load_model_bytes(b.bytes(), model_dir.string()); },
                            {"tensor 'w'", "'w.bin'", "outside the model's folder"});
  // A symlink that stays inside the folder is fine.
  fs::remove(model_dir / "w.bin");
  fs::copy_file(root / "secret.bin", model_dir / "real.bin");
  fs::create_symlink("real.bin", model_dir / "w.bin");
  CHECK_NOTHROW(kiln::onnx::load_model_bytes(b.bytes(), model_dir.string()));
}

TEST_CASE("external data whose location is a folder is refused instead of reading zeros") {
  const auto dir = temp_dir("folder");
  fs::create_directories(dir / "sub");
  for (const char* location : {".", "sub"}) {
    CAPTURE(location);
    ModelBuilder b(17);
    b.input("x", {4});
    b.external_initializer("w", {4}, location);
    b.node("Add", {"x", "w"}, {"y"});
    b.output("y");
    expect_error<FormatError>([&] { kiln::onnx::load_model_bytes(b.bytes(), dir.string()); },
                              {"tensor 'w'", "not a regular file"});
  }
}

// ---- 5. Fields that were accepted silently
// --------------------------------------------------------

namespace {
ModelBuilder relu_model() {
  ModelBuilder b(17);
  b.input("x", {2, 3});
  b.node("Relu", {"x"}, {"y"});
  b.output("y");
  return b;
}
void set_output_type(ModelBuilder& b, int elem_type) {
  b.m.mutable_graph()->mutable_output(0)->mutable_type()->mutable_tensor_type()->set_elem_type(
      elem_type);
}
}  // namespace

TEST_CASE(
    "graph input and output element types that are not ONNX data types are FormatErrors naming "
    "them") {
  for (int code : {999, 0, -1}) {
    CAPTURE(code);
    ModelBuilder in = relu_model();
    in.m.mutable_graph()->mutable_input(0)->mutable_type()->mutable_tensor_type()->set_elem_type(
        code);
    expect_error<FormatError>([&] { load(in); },
                              {"graph input 'x'", "element type " + std::to_string(code)});
    ModelBuilder out = relu_model();
    set_output_type(out, code);
    expect_error<FormatError>([&] { load(out); },
                              {"graph output 'y'", "element type " + std::to_string(code)});
  }
  ModelBuilder ok = relu_model();
  set_output_type(ok, 1);
  CHECK_NOTHROW(load(ok));
}

TEST_CASE("declared dims below zero are FormatErrors naming the input and the axis") {
  for (i64 d : {i64{-5}, std::numeric_limits<i64>::min()}) {
    CAPTURE(d);
    ModelBuilder b = relu_model();
    b.m.mutable_graph()
        ->mutable_input(0)
        ->mutable_type()
        ->mutable_tensor_type()
        ->mutable_shape()
        ->mutable_dim(1)
        ->set_dim_value(d);
    expect_error<FormatError>([&] { load(b); }, {"graph input 'x'", "dim 1", std::to_string(d)});
  }
}

TEST_CASE("ir_version and opset versions below 1 are FormatErrors naming the field") {
  for (i64 v : {0, -1}) {
    ModelBuilder b = relu_model();
    b.m.set_ir_version(v);
    expect_error<FormatError>([&] { load(b); }, {"ir_version", std::to_string(v)});
  }
  ModelBuilder b = relu_model();
  b.m.mutable_opset_import(0)->set_version(-1);
  expect_error<FormatError>([&] { load(b); }, {"opset_import", "version -1"});
}

TEST_CASE("a graph with no outputs is a FormatError") {
  ModelBuilder b(17);
  b.input("x", {2});
  b.node("Relu", {"x"}, {"y"});
  expect_error<FormatError>([&] { load(b); }, {"has no outputs"});
}

// ---- 6. Memory: every size that a file's numbers choose is checked before it is allocated
// --------

TEST_CASE("a tensor past the host memory limit is a MemoryLimitError naming its dims and bytes") {
  MemoryLimit limit(std::uint64_t{64} << 20);
  expect_error<MemoryLimitError>([] { Tensor t(DType::f32, {k2e31 - 1}); },
                                 {"f32[2147483647]", "8589934588 bytes", "limit of 64.0 MiB"});
  expect_error<MemoryLimitError>([] { Tensor t(DType::f32, {k2e40}); }, {"f32[1099511627776]"});
  // Reservations are given back: many tensors in turn, each under the limit, all succeed.
  for (int i = 0; i < 8; ++i) CHECK_NOTHROW(Tensor(DType::f32, {1 << 22}));  // 16 MiB each
  CHECK(host_memory_in_use() < (std::uint64_t{1} << 20));
}

TEST_CASE("an initializer past the host memory limit names the tensor") {
  MemoryLimit limit(1 << 20);
  ModelBuilder b(17);
  b.input("x", {1 << 19});
  b.initializer("w", {1 << 19}, std::vector<float>(1 << 19, 1.0f));
  b.node("Add", {"x", "w"}, {"y"});
  b.output("y");
  expect_error<MemoryLimitError>([&] { load(b); }, {"tensor 'w'", "f32[524288]", "2097152 bytes"});
}

TEST_CASE("a plan's arena past the host memory limit names the plan") {
  const plan::Plan p = small_plan();
  const auto inputs = plan_test::random_inputs(p.inputs, 1);
  MemoryLimit limit(static_cast<std::uint64_t>(p.memory.arena_bytes) - 1);
  reference::PlanExecutor pe(p);
  expect_error<MemoryLimitError>([&] { pe.run(inputs); },
                                 {"activation arena of plan", "host memory limit"});
}

TEST_CASE("a plan's values larger than an arena can be are refused when the plan is made") {
  for (i64 d : {i64{1} << 20, k2e31}) {  // 4 TiB; 2^62 elements, whose bytes overflow 64 bits
    plan_test::Builder b;
    auto x = b.input("x", {d, d});
    auto r = b.node("Relu", {x});
    Graph g = b.finish({r});
    build::BuildOptions o;
    o.evaluator = &reference::constant_evaluator();
    expect_error<MemoryLimitError>([&] { build::build_plan(std::move(g), o); },
                                   {"value '", fmt::format("f32[{},{}]", d, d),
                                    d == k2e31 ? "64 bits" : "arena holds at most"});
  }
}

TEST_CASE("parse_bytes reads the --max-memory forms and refuses the rest naming the flag") {
  CHECK(parse_bytes("1000", "--max-memory") == 1000);
  CHECK(parse_bytes("512M", "--max-memory") == (std::uint64_t{512} << 20));
  CHECK(parse_bytes("2G", "--max-memory") == (std::uint64_t{2} << 30));
  CHECK(parse_bytes("1.5GiB", "--max-memory") == (std::uint64_t{3} << 29));
  for (const char* bad : {"", "-1", "G", "12X", "0", "nan", "1e30"})
    expect_error<Error>([&] { parse_bytes(bad, "--max-memory"); }, {"--max-memory", bad});
}

TEST_CASE(
    "a value out of an integer type's range saturates when set, as cast does (fuzz_tensor_pb)") {
  // An INT16 TensorProto whose int32_data held -16777216: converting it was undefined behaviour.
  Tensor t(DType::i16, {3});
  t.set(0, -1.67772e7);
  t.set(1, 1e9);
  t.set(2, std::nan(""));
  CHECK(t.get(0) == -32768);
  CHECK(t.get(1) == 32767);
  CHECK(t.get(2) == 0);
  Tensor b(DType::boolean, {2});
  b.set(0, 0.5);
  b.set(1, 0.0);
  CHECK(b.get(0) == 1);
  CHECK(b.get(1) == 0);
}
