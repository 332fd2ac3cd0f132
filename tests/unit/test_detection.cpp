// The detection op family: NonMaxSuppression, RoiAlign, MaxRoiPool. Shape rules (errors name the
// node and the numbers), the reference on cases worked by hand, and laws: NMS keeps every box
// when nothing overlaps and the top one when all are the same box, and its two box formats agree;
// RoiAlign of a constant image is that constant; MaxRoiPool of a whole image is the max of each
// bin. The ONNX node tests (test_nonmaxsuppression_*, test_roialign_*) run in the conformance
// suite.
#include <doctest/doctest.h>

#include <limits>
#include <random>

#include "expect_error.hpp"
#include "kiln/dsl/dsl.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/run.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using kiln::test::expect_error;
using kiln::test::node;
using kiln::test::run;
using i64 = std::int64_t;

namespace {

Tensor tf32(std::vector<i64> dims, std::vector<double> v) {
  return Tensor::from_doubles(DType::f32, std::move(dims), v);
}
std::vector<i64> values(const Tensor& t) { return t.to_int64s(); }

/// NMS of one batch and class.
Tensor nms(const Tensor& boxes, const Tensor& scores, i64 max_out, double iou,
           std::optional<double> score_min = std::nullopt, i64 center = 0) {
  std::vector<Tensor> in{boxes, scores, Tensor::from<i64>({1}, {max_out}), tf32({1}, {iou})};
  in.push_back(score_min ? tf32({1}, {*score_min}) : Tensor());
  return run(node("NonMaxSuppression", 5, {{"center_point_box", center}}), in)[0];
}

}  // namespace

TEST_CASE("NonMaxSuppression: by score, suppressed by IoU, capped, per batch and class") {
  // Three boxes: 0 and 1 overlap with IoU 0.9 / 1.1 = 0.82, box 2 is apart.
  const Tensor boxes = tf32({1, 3, 4}, {0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, 5, 1, 6});
  const Tensor scores = tf32({1, 1, 3}, {0.8, 0.9, 0.7});
  CHECK(values(nms(boxes, scores, 10, 0.5)) == std::vector<i64>{0, 0, 1, 0, 0, 2});
  CHECK(values(nms(boxes, scores, 10, 0.9)) == std::vector<i64>{0, 0, 1, 0, 0, 0, 0, 0, 2});
  CHECK(values(nms(boxes, scores, 1, 0.5)) == std::vector<i64>{0, 0, 1});
  CHECK(nms(boxes, scores, 0, 0.5).dims() == std::vector<i64>{0, 3});
  CHECK(values(nms(boxes, scores, 10, 0.5, 0.75)) == std::vector<i64>{0, 0, 1});
  // Exporters pass INT64_MAX for "no limit" (it does not survive a trip through a double).
  CHECK(values(nms(boxes, scores, std::numeric_limits<i64>::max(), 0.5)) ==
        std::vector<i64>{0, 0, 1, 0, 0, 2});
  // The same boxes as [x_center, y_center, w, h] select the same.
  const Tensor centers = tf32({1, 3, 4}, {0.5, 0.5, 1, 1, 0.6, 0.5, 1, 1, 5.5, 0.5, 1, 1});
  CHECK(values(nms(centers, scores, 10, 0.5, std::nullopt, 1)) ==
        std::vector<i64>{0, 0, 1, 0, 0, 2});
  // Two batches, two classes: (batch, class, box) in that order; equal scores by box index.
  const Tensor b2 = tf32({2, 2, 4}, {0, 0, 1, 1, 0, 2, 1, 3, 0, 0, 1, 1, 0, 0, 1, 1});
  const Tensor s2 = tf32({2, 2, 2}, {0.5, 0.5, 0.1, 0.9, 0.3, 0.4, 0.6, 0.6});
  CHECK(values(nms(b2, s2, 5, 0.5)) ==
        std::vector<i64>{0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0});
}

TEST_CASE("NonMaxSuppression: laws over random boxes") {
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    const i64 n = 1 + static_cast<i64>(rng() % 12);
    std::vector<double> b, s, same;
    for (i64 i = 0; i < n; ++i) {  // disjoint unit boxes along x
      b.insert(b.end(),
               {0.0, 2.0 * static_cast<double>(i), 1.0, 2.0 * static_cast<double>(i) + 1.0});
      same.insert(same.end(), {0.0, 0.0, 1.0, 1.0});
      s.push_back(u(rng));
    }
    const Tensor scores = tf32({1, 1, n}, s);
    // Nothing overlaps: every box, by descending score.
    const auto all = values(nms(tf32({1, n, 4}, b), scores, n, 0.0));
    REQUIRE(static_cast<i64>(all.size()) == 3 * n);
    for (i64 k = 1; k < n; ++k)
      CHECK(s[static_cast<std::size_t>(all[3 * (k - 1) + 2])] >=
            s[static_cast<std::size_t>(all[3 * k + 2])]);
    // All the same box: only the best one.
    const auto one = values(nms(tf32({1, n, 4}, same), scores, n, 0.5));
    REQUIRE(one.size() == 3);
    CHECK(one[2] == std::max_element(s.begin(), s.end()) - s.begin());
  }
}

TEST_CASE("NonMaxSuppression: shape errors name the node and the numbers") {
  const Tensor scores = tf32({1, 1, 3}, {0.8, 0.9, 0.7});
  expect_error<Error>(
      [&] {
        run(node("NonMaxSuppression", 2), {tf32({1, 3, 3}, std::vector<double>(9, 0.0)), scores});
      },
      {"NonMaxSuppression", "expected 4 box coordinates (the last dim), got 3"});
  expect_error<Error>(
      [&] {
        run(node("NonMaxSuppression", 2), {tf32({1, 2, 4}, std::vector<double>(8, 0.0)), scores});
      },
      {"expected 2 boxes in scores (dim 2, as boxes' dim 1), got 3"});
  expect_error<Error>(
      [&] {
        run(node("NonMaxSuppression", 2, {{"center_point_box", i64{2}}}),
            {tf32({1, 3, 4}, std::vector<double>(12, 0.0)), scores});
      },
      {"center_point_box is 2"});
}

TEST_CASE("RoiAlign: a constant image, a hand-worked bilinear sample, max mode, bad batch index") {
  // A constant image averages to the constant in every bin, in both coordinate modes.
  const Tensor x = tf32({1, 2, 4, 4}, std::vector<double>(32, 3.5));
  const Tensor rois = tf32({2, 4}, {0, 0, 3, 3, 1, 1, 2.5, 3});
  const Tensor idx = Tensor::from<i64>({2}, {0, 0});
  for (const char* mode : {"half_pixel", "output_half_pixel"}) {
    const Tensor y = run(node("RoiAlign", 3,
                              {{"output_height", i64{2}},
                               {"output_width", i64{3}},
                               {"coordinate_transformation_mode", std::string(mode)}}),
                         {x, rois, idx})[0];
    CHECK(y.dims() == std::vector<i64>{2, 2, 2, 3});
    for (i64 i = 0; i < y.numel(); ++i) CHECK(y.get(i) == doctest::Approx(3.5));
  }
  // One 1x1 output, one sample (sampling_ratio 1) at the roi's centre: (x, y) = (1.5, 0.5) on
  // an image x + 10 y, so the bilinear value is 1.5 + 5 = 6.5.
  std::vector<double> ramp(16);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) ramp[static_cast<std::size_t>(r * 4 + c)] = c + 10.0 * r;
  const Tensor y =
      run(node("RoiAlign", 3,
               {{"sampling_ratio", i64{1}},
                {"coordinate_transformation_mode", std::string("output_half_pixel")}}),
          {tf32({1, 1, 4, 4}, ramp), tf32({1, 4}, {1, 0, 2, 1}), Tensor::from<i64>({1}, {0})})[0];
  CHECK(y.get(0) == doctest::Approx(6.5));
  expect_error<Error>(
      [&] {
        run(node("RoiAlign", 3), {x, rois, Tensor::from<i64>({2}, {0, 1})});
      },
      {"batch_indices[1] = 1 is outside 0..0"});
  expect_error<Error>(
      [&] {
        run(node("RoiAlign", 3, {{"mode", std::string("median")}}), {x, rois, idx});
      },
      {"mode 'median'"});
}

TEST_CASE("MaxRoiPool: bins of a ramp, empty and clipped bins, bad rois") {
  std::vector<double> ramp(36);
  for (int i = 0; i < 36; ++i) ramp[static_cast<std::size_t>(i)] = i;  // x + 6 y on 6x6
  const Tensor x = tf32({1, 1, 6, 6}, ramp);
  // The whole image in 2x2 bins of 3x3: each bin's max is its bottom-right pixel.
  Tensor y = run(node("MaxRoiPool", 2, {{"pooled_shape", std::vector<i64>{2, 2}}}),
                 {x, tf32({1, 5}, {0, 0, 0, 5, 5})})[0];
  CHECK(y.dims() == std::vector<i64>{1, 1, 2, 2});
  CHECK(y.get(0) == 14);
  CHECK(y.get(1) == 17);
  CHECK(y.get(2) == 32);
  CHECK(y.get(3) == 35);
  // spatial_scale 0.5 maps [2, 2, 6, 6] to [1, 1, 3, 3]: one bin, max at (3, 3).
  y = run(node("MaxRoiPool", 2, {{"pooled_shape", std::vector<i64>{1, 1}}, {"spatial_scale", 0.5}}),
          {x, tf32({1, 5}, {0, 2, 2, 6, 6})})[0];
  CHECK(y.get(0) == 21);
  // A roi beyond the image: its bins clip to nothing and are 0.
  y = run(node("MaxRoiPool", 2, {{"pooled_shape", std::vector<i64>{1, 1}}}),
          {x, tf32({1, 5}, {0, 10, 10, 12, 12})})[0];
  CHECK(y.get(0) == 0);
  expect_error<Error>(
      [&] {
        run(node("MaxRoiPool", 2, {{"pooled_shape", std::vector<i64>{1, 1}}}),
            {x, tf32({1, 5}, {1, 0, 0, 1, 1})});
      },
      {"rois[0][0] = 1 is not a batch index in 0..0"});
  expect_error<Error>(
      [&] {
        run(node("MaxRoiPool", 2), {x, tf32({1, 5}, {0, 0, 0, 1, 1})});
      },
      {"pooled_shape is required"});
}

TEST_CASE("the DSL's detection layers emit the ops the reference runs") {
  namespace d = kiln::dsl;
  auto boxes = d::input<"boxes", d::f32>(d::dyn, d::fix<3>, d::fix<4>);
  auto scores = d::input<"scores", d::f32>(d::dyn, d::fix<1>, d::fix<3>);
  d::Tensor<d::i64, d::Any, -1, 3> keep = d::non_max_suppression(
      boxes, scores, {.max_per_class = 10, .iou = 0.5f, .score_threshold = 0.1f}, "nms");
  auto x = d::input<"x", d::f32>(d::dyn, d::fix<2>, d::fix<4>, d::fix<4>);
  auto rois = d::input<"rois", d::f32>(d::dyn, d::fix<4>);
  auto idx = d::input<"idx", d::i64>(d::dyn);
  d::Tensor<d::f32, d::Any, -1, 2, 2, 3> aligned =
      d::roi_align<2, 3>(x, rois, idx, {.spatial_scale = 1.f, .half_pixel = false}, "align");
  auto rois5 = d::input<"rois5", d::f32>(d::dyn, d::fix<5>);
  d::Tensor<d::f32, d::Any, -1, 2, 2, 2> pooled = d::max_roi_pool<2, 2>(x, rois5, 1.f, "pool");
  d::Network n = d::network(keep, aligned, pooled);
  kiln::reference::TensorMap in{
      {"boxes", tf32({1, 3, 4}, {0, 0, 1, 1, 0, 0.1, 1, 1.1, 0, 5, 1, 6})},
      {"scores", tf32({1, 1, 3}, {0.8, 0.9, 0.7})},
      {"x", tf32({1, 2, 4, 4}, std::vector<double>(32, 2.0))},
      {"rois", tf32({1, 4}, {0, 0, 3, 3})},
      {"idx", Tensor::from<i64>({1}, {0})},
      {"rois5", tf32({1, 5}, {0, 0, 0, 3, 3})}};
  const auto out = kiln::run(n, in);
  CHECK(values(out.at("nms")) == std::vector<i64>{0, 0, 1, 0, 0, 2});
  const Tensor& a = out.at("align");
  CHECK(a.dims() == std::vector<i64>{1, 2, 2, 3});
  for (i64 i = 0; i < a.numel(); ++i) CHECK(a.get(i) == doctest::Approx(2.0));
  CHECK(out.at("pool").dims() == std::vector<i64>{1, 2, 2, 2});
  // Dims the compiler cannot check are checked when the network runs, naming the layer.
  auto b = d::input<"b", d::f32>(d::dyn, d::dyn, d::fix<4>);
  auto sc = d::input<"s", d::f32>(d::dyn, d::fix<1>, d::dyn);
  d::Network dynamic = d::network(non_max_suppression(b, sc, {.max_per_class = 1}, "nms_dyn"));
  expect_error<Error>(
      [&] {
        kiln::run(dynamic, {{"b", tf32({1, 3, 4}, std::vector<double>(12, 0.0))},
                            {"s", tf32({1, 1, 2}, {0.5, 0.6})}});
      },
      {"nms_dyn", "expected 3 boxes in scores (dim 2, as boxes' dim 1), got 2"});
}

TEST_CASE("the DSL's top_k, gather_nd and scatter_elements emit the ops the reference runs") {
  namespace d = kiln::dsl;
  auto x = d::input<"x", d::f32>(d::dyn, d::fix<5>);
  auto [best, which] = d::top_k<2>(x, {}, "best");
  d::Tensor<d::f32, d::Any, -1, 2> b2 = best;
  d::Tensor<d::i64, d::Any, -1, 2> w2 = which;
  auto [low, low_which] = d::top_k<1, 1>(x, {.largest = false}, "low");
  auto data = d::input<"data", d::f32>(d::fix<2>, d::fix<3>, d::fix<2>);
  auto idx = d::input<"idx", d::i64>(d::fix<2>, d::fix<1>, d::fix<1>);
  d::Tensor<d::f32, d::Any, 2, 1, 2> picked = d::gather_nd<1>(data, idx, "picked");
  auto where = d::input<"where", d::i64>(d::fix<2>, d::fix<1>, d::fix<2>);
  auto upd = d::input<"upd", d::f32>(d::fix<2>, d::fix<1>, d::fix<2>);
  d::Tensor<d::f32, d::Any, 2, 3, 2> scattered =
      d::scatter_elements<1>(data, where, upd, d::ScatterReduction::add, "scattered");
  d::Network n = d::network(b2, w2, low, low_which, picked, scattered);
  std::vector<double> dv(12);
  for (std::size_t i = 0; i < dv.size(); ++i) dv[i] = static_cast<double>(i);
  kiln::reference::TensorMap in{{"x", tf32({1, 5}, {3, 9, 1, 9, 4})},
                                {"data", tf32({2, 3, 2}, dv)},
                                {"idx", Tensor::from<i64>({2, 1, 1}, {2, -1})},
                                {"where", Tensor::from<i64>({2, 1, 2}, {0, 2, 1, 1})},
                                {"upd", tf32({2, 1, 2}, {100, 200, 300, 400})}};
  const auto out = kiln::run(n, in);
  CHECK(out.at("best").dims() == std::vector<i64>{1, 2});
  CHECK(out.at("best").get(0) == 9);
  CHECK(out.at("best").get(1) == 9);
  CHECK(values(out.at(n.graph().outputs[1])) == std::vector<i64>{1, 3});  // ties: lower first
  CHECK(out.at("low").get(0) == 1);
  CHECK(values(out.at(n.graph().outputs[3])) == std::vector<i64>{2});
  // batch 0 picks row 2 of data[0], batch 1 row -1 (2) of data[1].
  const Tensor& p = out.at("picked");
  CHECK(p.dims() == std::vector<i64>{2, 1, 2});
  CHECK(p.get(0) == 4);
  CHECK(p.get(1) == 5);
  CHECK(p.get(2) == 10);
  CHECK(p.get(3) == 11);
  const Tensor& s = out.at("scattered");
  CHECK(s.get(0) == 100);  // data[0][0][0] + 100
  CHECK(s.get(5) == 205);  // data[0][2][1] + 200
  CHECK(s.get(8) == 308);  // data[1][1][0] + 300
  CHECK(s.get(9) == 409);  // data[1][1][1] + 400
  CHECK(s.get(1) == 1);
}
