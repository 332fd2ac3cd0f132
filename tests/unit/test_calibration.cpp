// INT8 calibration (issue 13): the calibrators' thresholds on known distributions, TensorRT's
// cache format both ways and its refusals, the Q/DQ graph against the float graph, and the
// calibration batches of a directory (kiln/import/calib_data.hpp) with what a bad one is told.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "expect_error.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/calibration.hpp"
#include "kiln/import/calib_data.hpp"
#include "kiln/import/npy.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/int8.hpp"
#include "kiln/ir/fused.hpp"
#include "plan_test_util.hpp"

using namespace kiln;
using namespace plan_test;
using kiln::test::expect_error;

namespace {
Tensor samples(std::vector<double> v) {
  Tensor t(DType::f32, {static_cast<i64>(v.size())});
  for (std::size_t i = 0; i < v.size(); ++i) t.set(static_cast<i64>(i), v[i]);
  return t;
}
std::map<std::string, build::RangeCollector::Range> calibrate(build::Calibrator c, const Tensor& t,
                                                              double pct = 99.99) {
  build::RangeCollector rc(c, pct);
  rc.observe("x", t);
  if (rc.needs_histograms()) {
    rc.start_histograms();
    rc.observe("x", t);
  }
  return rc.ranges();
}
}  // namespace

TEST_CASE(
    "the calibrators: min-max takes the largest |x|, percentile and entropy clip rare outliers") {
  std::mt19937_64 rng(5);
  std::normal_distribution<double> n(0, 1);
  std::vector<double> v(200000);
  for (auto& x : v) x = n(rng);
  v[0] = 40;  // one outlier far out
  const Tensor t = samples(v);
  const auto mm = calibrate(build::Calibrator::minmax, t).at("x");
  CHECK(mm.amax == doctest::Approx(40));
  CHECK(mm.threshold == doctest::Approx(40));
  const auto pc = calibrate(build::Calibrator::percentile, t, 99.9).at("x");
  CHECK(pc.threshold > 3.0);  // |x| of a unit normal passes 3.29 with probability 0.1%
  CHECK(pc.threshold < 3.6);
  const auto en = calibrate(build::Calibrator::entropy, t).at("x");
  CHECK(en.threshold > 2.0);
  CHECK(en.threshold < 20.0);  // far below the outlier
  // A uniform distribution has nothing to clip: every calibrator keeps (about) its maximum.
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto& x : v) x = u(rng);
  for (auto c :
       {build::Calibrator::entropy, build::Calibrator::percentile, build::Calibrator::minmax})
    CHECK(calibrate(c, samples(v)).at("x").threshold > 0.97);
  expect_error<Error>(
      [] {
        build::RangeCollector(build::Calibrator::minmax).observe("t", samples({1, NAN}));
      },
      {"tensor 't' holds nan", "element 1"});
  expect_error<Error>([] { build::parse_calibrator("kl"); },
                      {"'kl'", "entropy, minmax or percentile"});
}

TEST_CASE("the calibration cache: TensorRT's text both ways, and what a bad one is told") {
  const std::map<std::string, float> s{{"input", 0.0078740157f}, {"conv1:0", 0.5f}};
  const std::string text = build::calibration_cache_text(build::Calibrator::entropy, s);
  CHECK(text.rfind("TRT-8601-EntropyCalibration2\n", 0) == 0);
  CHECK(text.find("input: 3c010204\n") != std::string::npos);
  CHECK(build::parse_calibration_cache(text, "c.txt") == s);
  // A TensorRT cache (its tensors' names hold ':' and it lists more tensors than needed).
  const auto trt = build::parse_calibration_cache(
      "TRT-8601-EntropyCalibration2\r\ndata: 3c010a14\r\n(Unnamed Layer* 0) [Convolution]_output: "
      "3d5a2b7f\r\n",
      "trt");
  CHECK(trt.at("data") == std::bit_cast<float>(0x3c010a14u));
  CHECK(trt.size() == 2);
  expect_error<FormatError>([] { build::parse_calibration_cache("hello\n", "c.txt"); },
                            {"c.txt: line 1", "TRT-"});
  expect_error<FormatError>([] { build::parse_calibration_cache("TRT-1-X\nx: zz\n", "c.txt"); },
                            {"line 2", "'x: zz'"});
  expect_error<FormatError>(
      [] { build::parse_calibration_cache("TRT-1-X\nx: 7fc00000\n", "c.txt"); },
      {"scale of 'x' is nan"});
  expect_error<FormatError>([] { build::parse_calibration_cache("", "c.txt"); }, {"empty"});
  expect_error<Error>(
      [&] {
        build::check_cache_covers(s, {"input", "fc", "pool"}, "c.txt");
      },
      {"no scale for 2 tensor(s)", "fc, pool"});
}

TEST_CASE("the Q/DQ graph: INT8 values before every quantized op, and close to the float graph") {
  for (std::uint64_t seed : {1, 2, 3, 4}) {
    const Graph g = random_cnn(seed);
    const auto needed = build::tensors_to_calibrate(g);
    const auto in = random_inputs(g, seed);
    Graph probe = g;
    probe.outputs = needed;
    build::RangeCollector rc(build::Calibrator::minmax);
    for (const auto& [name, t] : reference::Executor(probe).run(in)) rc.observe(name, t);
    const Graph q = build::quantize_graph(g, rc.scales());
    int qs = 0, dqs = 0;
    for (const auto& n : q.nodes) {
      qs += n.op == "QuantizeLinear";
      dqs += n.op == "DequantizeLinear";
      if (n.op == "Conv" || n.op == "Gemm" || n.op == "MatMul") {
        const auto p = q.producer(n.inputs[0]);
        REQUIRE(p);
        CHECK(q.nodes[*p].op == "DequantizeLinear");
      }
    }
    CHECK(qs == static_cast<int>(needed.size()));
    CHECK(dqs >= qs);
    for (const auto& [name, w] : q.weights)
      if (w.dtype() == DType::i8 && w.rank() > 0)
        for (i64 i = 0; i < w.numel(); ++i) CHECK(std::abs(w.get(i)) <= 127);
    Graph qi = q;
    qi.infer(&reference::constant_evaluator());
    const auto a = reference::Executor(g).run(in);
    const auto b = reference::Executor(qi).run(in);
    for (const auto& [name, t] : a) {
      double err = 0, mag = 0;
      for (i64 i = 0; i < t.numel(); ++i) {
        err = std::max(err, std::abs(t.get(i) - b.at(name).get(i)));
        mag = std::max(mag, std::abs(t.get(i)));
      }
      CAPTURE(seed);
      CHECK(err <= 0.15 * std::max(mag, 1e-6));  // a few layers of INT8 rounding
    }
  }
  const Graph g = random_cnn(1);
  expect_error<Error>([&] { build::quantize_graph(g, {}); }, {"no INT8 scale for tensor 'x'"});
}

TEST_CASE(
    "the Q/DQ graph: a residual Add reads its calibrated shortcut quantized, and the add joins the "
    "block's last 8-bit step (through a BatchNormalization too)") {
  for (DType format : {DType::i8, DType::f8e4m3fn}) {
    CAPTURE(dtype_name(format));
    plan_test::Builder b;
    const auto x = b.input("x", {2, 8, 6, 6});
    const auto r = b.node("Relu", {b.conv(x, 8, 8, 3)});  // the block's input
    const auto y = b.bn(b.conv(b.node("Relu", {b.conv(r, 8, 8, 1)}), 8, 8, 3, false), 8);
    const auto out = b.node("Relu", {b.node("Add", {y, r})});
    const Graph g = b.finish({b.conv(out, 8, 4, 1)});
    std::map<std::string, float> scales;
    for (const auto& t : build::tensors_to_calibrate(g)) scales[t] = 0.05f;
    const Graph q = build::quantize_graph(g, scales, {}, format);
    for (const auto& n : q.nodes)
      if (n.op == "Add") {
        const auto p = q.producer(n.inputs[1]);
        REQUIRE(p);
        CHECK(q.nodes[*p].op == "DequantizeLinear");  // the shortcut, quantized
        CHECK(q.nodes[*p].inputs[0] == r + ".quantize");
      }
    build::BuildOptions o;
    o.evaluator = &reference::constant_evaluator();
    const plan::Plan plan = build::build_plan(q, o);
    int with_residual = 0;
    for (const auto& st : plan.steps)
      with_residual +=
          st.attr_string("pattern", "").find("DequantizeLinear+Add+Relu+QuantizeLinear") !=
          std::string::npos;
    CHECK(with_residual == 1);
  }
}

namespace {
namespace fs = std::filesystem;

/// A fresh empty directory under the system's temporary folder.
fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("kiln_test_calibration_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// A graph that only declares inputs (all CalibrationData looks at).
Graph inputs_only(std::vector<std::pair<std::string, std::vector<i64>>> inputs,
                  DType dt = DType::f32) {
  Graph g;
  for (auto& [name, dims] : inputs) g.inputs.push_back({name, {dt, Shape::of(dims)}});
  return g;
}

Tensor filled(DType dt, std::vector<i64> dims, double v) {
  Tensor t(dt, dims);
  for (i64 i = 0; i < t.numel(); ++i) t.set(i, v + static_cast<double>(i % 7));
  return t;
}
}  // namespace

TEST_CASE("calibration data: batches in sorted order, any batch size, cast to the input's dtype") {
  const fs::path d = fresh_dir("good");
  const Graph g = inputs_only({{"x", {-1, 2, 3}}});
  // Written out of order, two formats, two batch sizes, f64 and f32; other files are ignored.
  write_npy(filled(DType::f64, {4, 2, 3}, 2), (d / "b_2.npy").string());
  write_npy(filled(DType::f32, {1, 2, 3}, 0), (d / "b_0.npy").string());
  onnx::save_tensor(filled(DType::f32, {3, 2, 3}, 1), (d / "b_1.pb").string());
  std::ofstream(d / "README.txt") << "not a batch";
  fs::create_directories(d / "sub.npy");
  const CalibrationData data(d.string(), g);
  REQUIRE(data.size() == 3);
  for (std::size_t b = 0; b < 3; ++b) {
    CAPTURE(b);
    const auto m = data.batch(b);
    REQUIRE(m.count("x") == 1);
    const Tensor& t = m.at("x");
    CHECK(t.dtype() == DType::f32);
    CHECK(t.dims() == std::vector<i64>{b == 0 ? 1 : b == 1 ? 3 : 4, 2, 3});
    CHECK(t.get(0) == static_cast<double>(b));
    CHECK(fs::path(data.files(b).at("x")).stem() == "b_" + std::to_string(b));
  }

  // Several inputs: a folder each, batch i is the i-th file of every folder.
  const fs::path m = fresh_dir("multi");
  const Graph g2 = inputs_only({{"a", {-1, 2}}, {"b", {-1, 3}}});
  fs::create_directories(m / "a");
  fs::create_directories(m / "b");
  for (int i = 0; i < 2; ++i) {
    write_npy(filled(DType::f32, {1, 2}, 10 * i), (m / "a" / fmt::format("{}.npy", i)).string());
    write_npy(filled(DType::f32, {1, 3}, 10 * i + 5),
              (m / "b" / fmt::format("{}.npy", i)).string());
  }
  const CalibrationData data2(m.string(), g2);
  REQUIRE(data2.size() == 2);
  CHECK(data2.batch(1).at("a").get(0) == 10);
  CHECK(data2.batch(1).at("b").get(0) == 15);
  fs::remove_all(d);
  fs::remove_all(m);
}

TEST_CASE("calibration data: each bad directory or batch is refused naming the file and the rule") {
  const Graph g = inputs_only({{"x", {-1, 2, 3}}});
  const fs::path d = fresh_dir("bad");
  expect_error<Error>([&] { CalibrationData((d / "none").string(), g, "--calib-data"); },
                      {"--calib-data: '", "none' is not a directory"});
  expect_error<Error>([&] { CalibrationData(d.string(), g, "--int8"); },
                      {"--int8: '", "' holds no .npy or .pb files"});

  auto one_file = [&](const Tensor& t) {
    fs::remove_all(d);
    fs::create_directories(d);
    write_npy(t, (d / "batch.npy").string());
    return CalibrationData(d.string(), g, "--calib-data");
  };
  // The rank, a fixed dim, the dtype's kind.
  expect_error<Error>(
      [&] {
        one_file(filled(DType::f32, {2, 6}, 0)).batch(0);
      },
      {"batch.npy' holds f32[2,6]; input 'x' is f32[?,2,3]"});
  expect_error<Error>(
      [&] {
        one_file(filled(DType::f32, {2, 2, 4}, 0)).batch(0);
      },
      {"batch.npy' holds f32[2,2,4]; input 'x' is f32[?,2,3]"});
  expect_error<Error>(
      [&] {
        one_file(filled(DType::i32, {2, 2, 3}, 0)).batch(0);
      },
      {"batch.npy' holds i32 values; input 'x' takes f32"});
  // NaN and Inf, with the element's index.
  for (const double bad :
       {std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::infinity()}) {
    Tensor t = filled(DType::f32, {1, 2, 3}, 0);
    t.set(4, bad);
    expect_error<Error>([&] { one_file(t).batch(0); },
                        {"--calib-data: '", "batch.npy' holds", "at element 4"});
  }
  // A file that is not .npy at all: the npy reader's FormatError, naming the file.
  fs::remove_all(d);
  fs::create_directories(d);
  std::ofstream(d / "junk.npy") << "not numpy";
  expect_error<FormatError>([&] { CalibrationData(d.string(), g).batch(0); },
                            {"junk.npy", "no \\x93NUMPY magic"});

  // Several inputs: a missing folder, and folders of different counts.
  const Graph g2 = inputs_only({{"a", {-1, 2}}, {"b", {-1, 3}}});
  fs::remove_all(d);
  fs::create_directories(d / "a");
  write_npy(filled(DType::f32, {1, 2}, 0), (d / "a" / "0.npy").string());
  write_npy(filled(DType::f32, {1, 2}, 0), (d / "a" / "1.npy").string());
  expect_error<Error>([&] { CalibrationData(d.string(), g2, "--calib-data"); },
                      {"--calib-data (input 'b'): '", "b' is not a directory"});
  fs::create_directories(d / "b");
  write_npy(filled(DType::f32, {1, 3}, 0), (d / "b" / "0.npy").string());
  expect_error<Error>([&] { CalibrationData(d.string(), g2, "--calib-data"); },
                      {"/a' holds 2 files", "/b' 1; every input needs one per batch"});
  fs::remove_all(d);
}

TEST_CASE("int8_from_calibration: calibrates and writes the cache, then reads it instead") {
  const Graph g = random_cnn(3);
  const fs::path d = fresh_dir("int8");
  const auto in = random_inputs(g, 9);
  for (int i = 0; i < 3; ++i) {
    const auto b = random_inputs(g, 20 + static_cast<std::uint64_t>(i));
    write_npy(b.at(g.inputs[0].name), (d / fmt::format("batch_{}.npy", i)).string());
  }
  Int8Options o;
  o.calib_cache = (d / "cache.txt").string();
  expect_error<Error>([&] { int8_from_calibration(g, o); },
                      {"calibration data: no directory of calibration batches given",
                       "cache.txt' does not exist yet"});
  o.calib_data = d.string();
  o.calibrator = build::Calibrator::percentile;
  int calls = 0;
  o.progress = [&](int pass, int passes, std::size_t batch, std::size_t batches) {
    CHECK(passes == 2);
    CHECK(batches == 3);
    CHECK(static_cast<int>(batch) == calls % 3 + 1);
    CHECK(pass == calls / 3 + 1);
    ++calls;
  };
  const Int8Result a = int8_from_calibration(g, o);
  CHECK(calls == 6);  // two passes over three batches
  CHECK(!a.from_cache);
  CHECK(a.cache_written);
  CHECK(a.batches == 3);
  CHECK(a.tensors == build::tensors_to_calibrate(g));
  CHECK(a.scales.size() == a.tensors.size());
  CHECK(a.ranges.size() == a.tensors.size());
  REQUIRE(fs::exists(o.calib_cache));

  // The cache alone (no data): the same scales and graph.
  Int8Options c;
  c.calib_cache = o.calib_cache;
  const Int8Result b = int8_from_calibration(g, c);
  CHECK(b.from_cache);
  CHECK(!b.cache_written);
  CHECK(b.scales == a.scales);
  CHECK(b.ranges.empty());
  Graph qa = a.graph, qb = b.graph;
  qa.infer(&reference::constant_evaluator());
  qb.infer(&reference::constant_evaluator());
  CHECK(max_error(reference::Executor(qa).run(in), reference::Executor(qb).run(in)) == 0);

  // A cache of another network: the tensors it lacks are named.
  const Graph other = random_cnn(4);
  expect_error<Error>([&] { int8_from_calibration(other, c); },
                      {"cache.txt: the calibration cache has no scale for"});
  fs::remove_all(d);
}

TEST_CASE(
    "for the GPU, a convolution of fewer than 4 input channels stays in float unless pinned") {
  plan_test::Builder b;
  const auto x = b.input("x", {1, 3, 8, 8});
  const Graph g = b.finish({b.conv(b.node("Relu", {b.conv(x, 3, 8, 3)}), 8, 4, 1)});
  const fs::path d = fresh_dir("int8_channels");
  std::map<std::string, float> scales;
  for (const auto& t : build::tensors_to_calibrate(g)) scales[t] = 0.05f;
  build::write_calibration_cache((d / "cache.txt").string(), build::Calibrator::minmax, scales);
  Int8Options o;
  o.calib_cache = (d / "cache.txt").string();
  o.float_below_channels = 4;
  for (DType format : {DType::i8, DType::f8e4m3fn}) {
    o.format = format;
    const Int8Result r = int8_from_calibration(g, o);
    REQUIRE(r.layers.size() == 2);
    CHECK(r.layers[0].precision == "fp32");
    CHECK(r.layers[0].why == "3 input channels (the GPU's 8-bit kernels want 4 or more)");
    CHECK(r.layers[1].precision == format_precision(format));
  }
  o.format = DType::i8;
  o.layer_precision[build::int8_layers(g).at(0)] =
      "int8";  // pinned: quantized whatever its channels
  CHECK(int8_from_calibration(g, o).layers[0].precision == "int8");
  o.layer_precision.clear();
  o.float_below_channels = 0;  // off (the CPU reference's default)
  CHECK(int8_from_calibration(g, o).layers[0].precision == "int8");
  fs::remove_all(d);
}

TEST_CASE("mixed precision: layers pinned by name, and kept in float by their own INT8 error") {
  const Graph g = random_cnn(3);
  const fs::path d = fresh_dir("mixed");
  for (int i = 0; i < 3; ++i)
    write_npy(random_inputs(g, 40 + static_cast<std::uint64_t>(i)).at(g.inputs[0].name),
              (d / fmt::format("batch_{}.npy", i)).string());
  Int8Options o;
  o.calib_data = d.string();
  o.calibrator = build::Calibrator::minmax;
  const auto layers = build::int8_layers(g);
  REQUIRE(layers.size() >= 2);
  // Every layer's own error is measured; nothing is pinned or over a tolerance: all INT8.
  const Int8Result all = int8_from_calibration(g, o);
  REQUIRE(all.layers.size() == layers.size());
  for (const auto& l : all.layers) {
    CHECK(l.precision == "int8");
    CHECK(l.error > 0);
    CHECK(l.error < 0.2);
  }
  // Pinned: that layer keeps its float weight and reads float values.
  o.layer_precision = {{layers[0], "fp16"}};
  const Int8Result pinned = int8_from_calibration(g, o);
  CHECK(pinned.layers[0].precision == "fp16");
  CHECK(pinned.layers[0].why == "pinned");
  int dq = 0;
  for (const auto& n : pinned.graph.nodes) dq += n.op == "DequantizeLinear";
  int dq_all = 0;
  for (const auto& n : all.graph.nodes) dq_all += n.op == "DequantizeLinear";
  CHECK(dq < dq_all);
  // A tolerance below the smallest error keeps every layer not pinned to int8 in float.
  double least = 1;
  for (const auto& l : all.layers) least = std::min(least, l.error);
  o.layer_precision = {{layers[1], "int8"}};
  o.int8_tolerance = least / 2;
  const Int8Result tol = int8_from_calibration(g, o);
  for (std::size_t i = 0; i < tol.layers.size(); ++i) {
    CHECK(tol.layers[i].precision == (i == 1 ? "int8" : "fp32"));
    if (i != 1) CHECK(tol.layers[i].why == "error over the tolerance");
  }
  // Wrong names and precisions are refused naming them; a tolerance needs the data.
  o.layer_precision = {{"nope", "fp16"}};
  expect_error<Error>([&] { int8_from_calibration(g, o); },
                      {"layer precision 'nope:fp16': no layer 'nope'", layers[0]});
  o.layer_precision = {{layers[0], "int4"}};
  expect_error<Error>([&] { int8_from_calibration(g, o); },
                      {"'" + layers[0] + ":int4': expected fp32, fp16, bf16 or int8"});
  o.layer_precision.clear();
  o.calib_cache = (d / "cache.txt").string();
  int8_from_calibration(g, o);  // writes the cache
  Int8Options c;
  c.calib_cache = o.calib_cache;
  c.int8_tolerance = 0.01;
  expect_error<Error>([&] { int8_from_calibration(g, c); },
                      {"an INT8 tolerance needs calibration data"});
  fs::remove_all(d);
}

TEST_CASE("calibration runs the probe graph wherever Int8Options::runner says") {
  const Graph g = random_cnn(3);
  const fs::path d = fresh_dir("int8_runner");
  for (int i = 0; i < 2; ++i)
    write_npy(random_inputs(g, 40 + static_cast<std::uint64_t>(i)).at(g.inputs[0].name),
              (d / fmt::format("batch_{}.npy", i)).string());
  Int8Options o;
  o.calib_data = d.string();
  o.calibrator = build::Calibrator::minmax;
  const Int8Result cpu = int8_from_calibration(g, o);
  // A runner that scales every output by 2: the maxima (and the scales) double, so the ranges
  // come from it, not from the reference.
  int made = 0, runs = 0;
  std::unique_ptr<reference::Executor> exec;
  std::unique_ptr<Graph> probe;
  o.runner = [&](const Graph& p) -> CalibrationRunner {
    ++made;
    CHECK(p.outputs == build::tensors_to_calibrate(g));
    probe = std::make_unique<Graph>(p);
    exec = std::make_unique<reference::Executor>(*probe);
    return [&](const reference::TensorMap& in) {
      ++runs;
      auto out = exec->run(in);
      for (auto& [name, t] : out)
        for (std::int64_t k = 0; k < t.numel(); ++k) t.set(k, 2 * t.get(k));
      return out;
    };
  };
  const Int8Result doubled = int8_from_calibration(g, o);
  CHECK(made == 1);
  CHECK(runs == 2);  // minmax: one pass over two batches
  REQUIRE(doubled.scales.size() == cpu.scales.size());
  for (const auto& [name, s] : cpu.scales) CHECK(doubled.scales.at(name) == doctest::Approx(2 * s));
  fs::remove_all(d);
}

TEST_CASE("layer_times: each layer's step plus the Q/DQ and layout steps that serve it") {
  auto node = [](std::string op, std::string name, std::vector<std::string> in,
                 std::vector<std::string> out) {
    Node n;
    n.op = std::move(op);
    n.name = std::move(name);
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    return n;
  };
  // The 8-bit plan: x -Q-> conv1 (fused, quantized) -DQ-> pool -> conv2 (float) ; a ToLayout that
  // feeds only the Q counts for conv1 too.
  FusedBody b1;
  b1.parts = {node("DequantizeLinear", "dq_x", {"$0", "$1"}, {"xf"}),
              node("Conv", "conv1", {"xf", "$2"}, {"c"}), node("Relu", "relu1", {"c"}, {"r"}),
              node("QuantizeLinear", "q_r", {"r", "$1"}, {"rq"})};
  b1.results = {"rq"};
  FusedBody qdq;
  qdq.parts = {node("QuantizeLinear", "q_a", {"$0", "$1"}, {"a"}),
               node(kToLayoutOp, "lay", {"a"}, {"b"})};
  qdq.results = {"b"};
  const std::vector<Node> eight = {
      node(kToLayoutOp, "to_nhwc", {"x"}, {"xn"}),
      make_fused_node("q_x", {"xn", "s"}, {"xq"}, qdq),
      make_fused_node("conv1", {"xq", "s", "w1"}, {"y1q"}, b1),
      node("DequantizeLinear", "dq_y", {"y1q", "s"}, {"y1"}),
      node("MaxPool", "pool", {"y1"}, {"p"}),
      node("Conv", "conv2", {"p", "w2"}, {"out"}),
  };
  const std::map<std::string, double> eight_ms = {{"to_nhwc", 0.5}, {"q_x", 0.25}, {"conv1", 1.0},
                                                  {"dq_y", 0.125},  {"pool", 8.0}, {"conv2", 2.0}};
  // The float plan: conv1 and a horizontal sibling conv3 in one step, conv2 alone.
  FusedBody h;
  h.parts = {node("Conv", "conv1", {"$0", "$1"}, {"c1"}),
             node("Conv", "conv3", {"$0", "$2"}, {"c3"})};
  h.results = {"c1", "c3"};
  const std::vector<Node> flt = {make_fused_node("conv1", {"x", "w1", "w3"}, {"y1", "y3"}, h),
                                 node("MaxPool", "pool", {"y1"}, {"p"}),
                                 node("Conv", "conv2", {"p", "w2"}, {"out"})};
  const std::map<std::string, double> flt_ms = {{"conv1", 3.0}, {"pool", 8.0}, {"conv2", 2.5}};
  const auto t =
      build::layer_times({"conv1", "conv2", "conv3", "absent"}, eight, eight_ms, flt, flt_ms);
  REQUIRE(t.size() == 4);
  CHECK(t[0].layer == "conv1");
  CHECK(t[0].ms_8bit == doctest::Approx(0.5 + 0.25 + 1.0 + 0.125));  // layout, Q, step, DQ
  CHECK(t[0].ms_float == doctest::Approx(1.5));                      // half the shared step
  CHECK(t[1].ms_8bit == doctest::Approx(2.0));                       // the pool is its own
  CHECK(t[1].ms_float == doctest::Approx(2.5));
  CHECK(t[2].ms_8bit == -1);  // no step of the 8-bit plan runs it
  CHECK(t[2].ms_float == doctest::Approx(1.5));
  CHECK(t[3].ms_8bit == -1);
  CHECK(t[3].ms_float == -1);
}
