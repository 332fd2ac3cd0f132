// Reference kernels of the detection op family, computed in double (the ONNX reference's order of
// operations, so ties and thresholds fall the same way) and stored in the output's dtype. Shapes
// are checked by the op's one shape rule (src/ir/ops/detection.cpp), run here on the tensors.
//
// NonMaxSuppression, per batch and class: the boxes whose score is above score_threshold (when
// given), taken by descending score (ties: the lower box index first); a box is kept unless its
// IoU with a box kept before it is above iou_threshold; at most max_output_boxes_per_class (0
// when absent: nothing) are kept. Boxes are corners in any order (center_point_box 0) or
// [x, y, w, h] (1); a box of no area overlaps nothing.
//
// RoiAlign (Mask R-CNN's): each output cell averages (or takes the max of) a grid of bilinear
// samples in its bin of the roi; sampling_ratio 0 takes ceil(bin size) samples a side;
// half_pixel shifts the roi by -0.5 (opset 16's default), output_half_pixel does not and makes
// rois at least 1x1 (opset 10's behaviour). Samples outside [-1, size] count as 0. The max mode
// is ONNX's: the largest of the four weighted corner values of each sample.
//
// MaxRoiPool (Caffe's ROI pooling): rois [batch, x1, y1, x2, y2] scaled and rounded, each
// output cell the max over its bin (floor/ceil bounds, clipped to the image), 0 for an empty bin.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "families.hpp"
#include "kiln/ir/detection.hpp"
#include "kiln/ir/op_registry.hpp"
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

/// The x and y extents of a box (min, max), for either box format.
struct Extent {
  double x0, x1, y0, y1;
};

Extent extent(const double* b, bool center) {
  if (center) return {b[0] - b[2] / 2, b[0] + b[2] / 2, b[1] - b[3] / 2, b[1] + b[3] / 2};
  return {std::min(b[1], b[3]), std::max(b[1], b[3]), std::min(b[0], b[2]), std::max(b[0], b[2])};
}

/// Whether box a suppresses box b: IoU above the threshold (boxes of no area suppress nothing).
bool suppresses(const Extent& a, const Extent& b, double iou_threshold) {
  const double ix0 = std::max(a.x0, b.x0), ix1 = std::min(a.x1, b.x1);
  if (ix1 <= ix0) return false;
  const double iy0 = std::max(a.y0, b.y0), iy1 = std::min(a.y1, b.y1);
  if (iy1 <= iy0) return false;
  const double inter = (ix1 - ix0) * (iy1 - iy0);
  const double area_a = (a.x1 - a.x0) * (a.y1 - a.y0), area_b = (b.x1 - b.x0) * (b.y1 - b.y0);
  const double uni = area_a + area_b - inter;
  if (inter <= 0 || area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

void non_max_suppression(KernelContext& ctx) {
  check_shapes(ctx);
  const Tensor& boxes_t = ctx.in(0);
  const Tensor& scores_t = ctx.in(1);
  const i64 batches = boxes_t.dim(0), n = boxes_t.dim(1), classes = scores_t.dim(1);
  const bool center = ctx.node.attr_int("center_point_box", 0) == 1;
  auto input = [&](std::size_t i) { return ctx.has(i) ? &ctx.in(i) : nullptr; };
  const NmsLimits limits = nms_limits(input(2), input(3), input(4));
  const i64 max_out = limits.max_out;
  const double iou = limits.iou_threshold;
  const std::optional<double> score_min = limits.score_threshold;
  const std::vector<double> boxes = to_f64(boxes_t), scores = to_f64(scores_t);
  std::vector<i64> selected;  // (batch, class, box) triples
  std::vector<i64> order;
  std::vector<Extent> kept;
  for (i64 b = 0; b < batches; ++b)
    for (i64 c = 0; c < classes; ++c) {
      const double* s = scores.data() + (b * classes + c) * n;
      order.clear();
      for (i64 i = 0; i < n; ++i)
        if (!score_min || s[i] > *score_min) order.push_back(i);
      std::stable_sort(order.begin(), order.end(), [&](i64 x, i64 y) { return s[x] > s[y]; });
      kept.clear();
      for (i64 i : order) {
        if (static_cast<i64>(kept.size()) >= max_out) break;
        const Extent e = extent(boxes.data() + (b * n + i) * 4, center);
        if (std::any_of(kept.begin(), kept.end(),
                        [&](const Extent& k) { return suppresses(k, e, iou); }))
          continue;
        kept.push_back(e);
        selected.insert(selected.end(), {b, c, i});
      }
    }
  const i64 k = static_cast<i64>(selected.size()) / 3;
  Tensor out(DType::i64, {k, 3});
  std::copy(selected.begin(), selected.end(), out.data<i64>());
  ctx.set(0, out);
}

/// One bilinear sample of a [H, W] plane: four positions and weights (all 0 outside [-1, size]).
struct Sample {
  i64 pos[4] = {0, 0, 0, 0};
  double w[4] = {0, 0, 0, 0};
};

Sample bilinear(double y, double x, i64 h, i64 w) {
  Sample s;
  if (y < -1.0 || y > static_cast<double>(h) || x < -1.0 || x > static_cast<double>(w)) return s;
  y = std::max(y, 0.0);
  x = std::max(x, 0.0);
  i64 y0 = static_cast<i64>(y), x0 = static_cast<i64>(x), y1, x1;
  if (y0 >= h - 1)
    y1 = y0 = h - 1, y = static_cast<double>(y0);
  else
    y1 = y0 + 1;
  if (x0 >= w - 1)
    x1 = x0 = w - 1, x = static_cast<double>(x0);
  else
    x1 = x0 + 1;
  const double ly = y - static_cast<double>(y0), lx = x - static_cast<double>(x0);
  const double hy = 1.0 - ly, hx = 1.0 - lx;
  s.pos[0] = y0 * w + x0, s.pos[1] = y0 * w + x1, s.pos[2] = y1 * w + x0, s.pos[3] = y1 * w + x1;
  s.w[0] = hy * hx, s.w[1] = hy * lx, s.w[2] = ly * hx, s.w[3] = ly * lx;
  return s;
}

void roi_align(KernelContext& ctx) {
  const TensorType out_type = check_shapes(ctx)[0];
  const Tensor& xt = ctx.in(0);
  const i64 batch = xt.dim(0), channels = xt.dim(1), h = xt.dim(2), w = xt.dim(3);
  const i64 rois_n = ctx.in(1).dim(0);
  const i64 oh = ctx.node.attr_int("output_height", 1), ow = ctx.node.attr_int("output_width", 1);
  const i64 ratio = ctx.node.attr_int("sampling_ratio", 0);
  const double scale = ctx.node.attr_float("spatial_scale", 1.0);
  const bool max_mode = ctx.node.attr_string("mode", "avg") == "max";
  const bool half_pixel =
      ctx.node.attr_string("coordinate_transformation_mode", "half_pixel") == "half_pixel";
  const std::vector<double> x = to_f64(xt), rois = to_f64(ctx.in(1));
  const std::vector<i64> batch_of = ctx.in(2).to_int64s();
  std::vector<double> y(static_cast<std::size_t>(rois_n * channels * oh * ow), 0.0);
  std::vector<Sample> samples;
  for (i64 r = 0; r < rois_n; ++r) {
    const i64 b = batch_of[static_cast<std::size_t>(r)];
    if (b < 0 || b >= batch)
      ctx.fail(
          fmt::format("batch_indices[{}] = {} is outside 0..{} (the batch of X)", r, b, batch - 1));
    const double off = half_pixel ? 0.5 : 0.0;
    const double* roi = rois.data() + r * 4;
    const double x0 = roi[0] * scale - off, y0 = roi[1] * scale - off;
    double rw = roi[2] * scale - off - x0, rh = roi[3] * scale - off - y0;
    if (!half_pixel) rw = std::max(rw, 1.0), rh = std::max(rh, 1.0);
    const double bin_h = rh / static_cast<double>(oh), bin_w = rw / static_cast<double>(ow);
    const i64 gh = ratio > 0 ? ratio : static_cast<i64>(std::ceil(rh / static_cast<double>(oh)));
    const i64 gw = ratio > 0 ? ratio : static_cast<i64>(std::ceil(rw / static_cast<double>(ow)));
    const double count = static_cast<double>(std::max<i64>(gh * gw, 1));
    samples.clear();
    for (i64 ph = 0; ph < oh; ++ph)
      for (i64 pw = 0; pw < ow; ++pw)
        for (i64 iy = 0; iy < gh; ++iy)
          for (i64 ix = 0; ix < gw; ++ix)
            samples.push_back(
                bilinear(y0 + static_cast<double>(ph) * bin_h +
                             (static_cast<double>(iy) + 0.5) * bin_h / static_cast<double>(gh),
                         x0 + static_cast<double>(pw) * bin_w +
                             (static_cast<double>(ix) + 0.5) * bin_w / static_cast<double>(gw),
                         h, w));
    for (i64 c = 0; c < channels; ++c) {
      const double* plane = x.data() + (b * channels + c) * h * w;
      double* out = y.data() + (r * channels + c) * oh * ow;
      std::size_t at = 0;
      for (i64 cell = 0; cell < oh * ow; ++cell) {
        double v = 0.0;
        for (i64 k = 0; k < gh * gw; ++k, ++at) {
          const Sample& s = samples[at];
          if (max_mode) {
            double m = s.w[0] * plane[s.pos[0]];
            for (int q = 1; q < 4; ++q) m = std::max(m, s.w[q] * plane[s.pos[q]]);
            v = k == 0 ? m : std::max(v, m);
          } else {
            for (int q = 0; q < 4; ++q) v += s.w[q] * plane[s.pos[q]];
          }
        }
        out[cell] = max_mode ? v : v / count;
      }
    }
  }
  ctx.set(0, from_f64(out_type.dtype, {rois_n, channels, oh, ow}, y));
}

void max_roi_pool(KernelContext& ctx) {
  const TensorType out_type = check_shapes(ctx)[0];
  const Tensor& xt = ctx.in(0);
  const i64 batch = xt.dim(0), channels = xt.dim(1), h = xt.dim(2), w = xt.dim(3);
  const i64 rois_n = ctx.in(1).dim(0);
  const auto pooled = ctx.node.attr_ints("pooled_shape");
  const i64 ph_n = pooled[0], pw_n = pooled[1];
  const double scale = ctx.node.attr_float("spatial_scale", 1.0);
  const std::vector<double> x = to_f64(xt), rois = to_f64(ctx.in(1));
  std::vector<double> y(static_cast<std::size_t>(rois_n * channels * ph_n * pw_n), 0.0);
  for (i64 r = 0; r < rois_n; ++r) {
    const double* roi = rois.data() + r * 5;
    const i64 b = static_cast<i64>(roi[0]);
    if (roi[0] != static_cast<double>(b) || b < 0 || b >= batch)
      ctx.fail(fmt::format("rois[{}][0] = {} is not a batch index in 0..{}", r, roi[0], batch - 1));
    const i64 x0 = static_cast<i64>(std::round(roi[1] * scale)),
              y0 = static_cast<i64>(std::round(roi[2] * scale));
    const i64 x1 = static_cast<i64>(std::round(roi[3] * scale)),
              y1 = static_cast<i64>(std::round(roi[4] * scale));
    const double bin_h =
        static_cast<double>(std::max<i64>(y1 - y0 + 1, 1)) / static_cast<double>(ph_n);
    const double bin_w =
        static_cast<double>(std::max<i64>(x1 - x0 + 1, 1)) / static_cast<double>(pw_n);
    for (i64 c = 0; c < channels; ++c) {
      const double* plane = x.data() + (b * channels + c) * h * w;
      double* out = y.data() + (r * channels + c) * ph_n * pw_n;
      for (i64 ph = 0; ph < ph_n; ++ph)
        for (i64 pw = 0; pw < pw_n; ++pw) {
          const auto clip = [](i64 v, i64 hi) { return std::clamp<i64>(v, 0, hi); };
          const i64 hs =
              clip(static_cast<i64>(std::floor(static_cast<double>(ph) * bin_h)) + y0, h);
          const i64 he =
              clip(static_cast<i64>(std::ceil(static_cast<double>(ph + 1) * bin_h)) + y0, h);
          const i64 ws =
              clip(static_cast<i64>(std::floor(static_cast<double>(pw) * bin_w)) + x0, w);
          const i64 we =
              clip(static_cast<i64>(std::ceil(static_cast<double>(pw + 1) * bin_w)) + x0, w);
          double m = 0.0;
          bool any = false;
          for (i64 yy = hs; yy < he; ++yy)
            for (i64 xx = ws; xx < we; ++xx) {
              const double v = plane[yy * w + xx];
              m = any ? std::max(m, v) : v;
              any = true;
            }
          out[ph * pw_n + pw] = m;
        }
    }
  }
  ctx.set(0, from_f64(out_type.dtype, {rois_n, channels, ph_n, pw_n}, y));
}

}  // namespace

void register_detection(KernelRegistry& r) {
  r.add("NonMaxSuppression", non_max_suppression);
  r.add("RoiAlign", roi_align);
  r.add("MaxRoiPool", max_roi_pool);
}

}  // namespace kiln::reference
