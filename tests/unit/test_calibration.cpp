// INT8 calibration (issue 13): the calibrators' thresholds on known distributions, TensorRT's
// cache format both ways and its refusals, and the Q/DQ graph against the float graph.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <random>

#include "expect_error.hpp"
#include "kiln/build/calibration.hpp"
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
