// Shape rules of the detection op family:
//   NonMaxSuppression: boxes [B, N, 4], scores [B, C, N], optional scalars
//     max_output_boxes_per_class (i64), iou_threshold and score_threshold (f32)
//     -> selected_indices i64 [K, 3] (batch, class, box), K known only when it runs.
//   RoiAlign: X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2), batch_indices i64 [R]
//     -> Y [R, C, output_height, output_width].
//   MaxRoiPool: X [N, C, H, W], rois [R, 5] (batch, x1, y1, x2, y2), pooled_shape [ph, pw]
//     -> Y [R, C, ph, pw].
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "kiln/ir/detection.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln::ops {
namespace {

using i64 = std::int64_t;

void require_rank(const InferContext& ctx, std::size_t i, std::size_t rank, const char* what,
                  const char* form) {
  const Shape& s = ctx.input(i).shape;
  if (s.rank() != rank)
    ctx.fail(fmt::format("{} must be {}-D {}, got {}", what, rank, form, s.to_string()));
}

void require_float(const InferContext& ctx, std::size_t i, const char* what) {
  const DType t = ctx.input(i).dtype;
  if (!is_float(t))
    throw UnsupportedError(fmt::format("{}{} has dtype {}; this op takes f32, f64, f16 or bf16",
                                       ctx.node.where(), what, dtype_name(t)));
}

/// Input `i` (`what`) holds input 0's float element type (`of`).
void require_float_pair(const InferContext& ctx, std::size_t i, const char* what, const char* of) {
  require_float(ctx, 0, of);
  if (ctx.input(i).dtype != ctx.input(0).dtype)
    ctx.fail(fmt::format("{} have dtype {}, {} {}", what, dtype_name(ctx.input(i).dtype), of,
                         dtype_name(ctx.input(0).dtype)));
}

/// An optional input that must hold one value (a scalar or a 1-element tensor) of dtype `t`.
void require_scalar(const InferContext& ctx, std::size_t i, DType t, const char* what) {
  if (!ctx.has_input(i)) return;
  const TensorType& x = ctx.input(i);
  if (x.dtype != t)
    ctx.fail(fmt::format("{} has dtype {}, expected {}", what, dtype_name(x.dtype), dtype_name(t)));
  if (x.shape.rank() > 1 ||
      (x.shape.rank() == 1 && x.shape[0].is_fixed() && x.shape[0].value() != 1))
    ctx.fail(fmt::format("{} must hold one value, got {}", what, x.shape.to_string()));
}

std::vector<TensorType> infer_nms(const InferContext& ctx) {
  require_rank(ctx, 0, 3, "boxes", "[batches, boxes, 4]");
  require_rank(ctx, 1, 3, "scores", "[batches, classes, boxes]");
  require_float_pair(ctx, 1, "scores", "boxes");
  const Shape& b = ctx.input(0).shape;
  const Shape& s = ctx.input(1).shape;
  checked(ctx, [&] { return rules::box_coordinates(4, b[2].value()); });
  checked(ctx, [&] { return rules::score_batches(b[0].value(), s[0].value()); });
  checked(ctx, [&] { return rules::score_boxes(b[1].value(), s[2].value()); });
  const i64 center = ctx.node.attr_int("center_point_box", 0);
  if (center != 0 && center != 1)
    ctx.fail(fmt::format(
        "center_point_box is {}, expected 0 ([y1, x1, y2, x2]) or 1 ([x, y, w, h])", center));
  require_scalar(ctx, 2, DType::i64, "max_output_boxes_per_class");
  require_scalar(ctx, 3, DType::f32, "iou_threshold");
  require_scalar(ctx, 4, DType::f32, "score_threshold");
  return {{DType::i64, Shape{Dim::dynamic(), Dim(3)}}};
}

std::vector<TensorType> infer_roi_align(const InferContext& ctx) {
  require_rank(ctx, 0, 4, "X", "[N, C, H, W]");
  require_rank(ctx, 1, 2, "rois", "[rois, 4]");
  require_rank(ctx, 2, 1, "batch_indices", "[rois]");
  require_float_pair(ctx, 1, "rois", "X");
  if (ctx.input(2).dtype != DType::i64)
    ctx.fail(
        fmt::format("batch_indices have dtype {}, expected i64", dtype_name(ctx.input(2).dtype)));
  const Shape& r = ctx.input(1).shape;
  checked(ctx, [&] { return rules::box_coordinates(4, r[1].value()); });
  checked(ctx,
          [&] { return rules::roi_batch_indices(r[0].value(), ctx.input(2).shape[0].value()); });
  const std::string mode = ctx.node.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") ctx.fail(fmt::format("mode '{}', expected avg or max", mode));
  const std::string ct = ctx.node.attr_string("coordinate_transformation_mode", "half_pixel");
  if (ct != "half_pixel" && ct != "output_half_pixel")
    ctx.fail(fmt::format(
        "coordinate_transformation_mode '{}', expected half_pixel or output_half_pixel", ct));
  const i64 oh =
      checked(ctx, [&] { return rules::pooled_dim(ctx.node.attr_int("output_height", 1)); });
  const i64 ow =
      checked(ctx, [&] { return rules::pooled_dim(ctx.node.attr_int("output_width", 1)); });
  if (ctx.node.attr_int("sampling_ratio", 0) < 0)
    ctx.fail(fmt::format("sampling_ratio {} is negative", ctx.node.attr_int("sampling_ratio", 0)));
  const Shape& x = ctx.input(0).shape;
  return {{ctx.input(0).dtype, Shape{r[0], x[1], Dim(oh), Dim(ow)}}};
}

std::vector<TensorType> infer_max_roi_pool(const InferContext& ctx) {
  require_rank(ctx, 0, 4, "X", "[N, C, H, W]");
  require_rank(ctx, 1, 2, "rois", "[rois, 5]");
  require_float_pair(ctx, 1, "rois", "X");
  const Shape& r = ctx.input(1).shape;
  checked(ctx, [&] { return rules::box_coordinates(5, r[1].value()); });
  if (!ctx.node.has_attr("pooled_shape")) ctx.fail("the attribute pooled_shape is required");
  const auto ps = ctx.node.attr_ints("pooled_shape");
  if (ps.size() != 2)
    ctx.fail(fmt::format("pooled_shape must be two dims, got [{}]", fmt::join(ps, ", ")));
  for (i64 d : ps) checked(ctx, [&] { return rules::pooled_dim(d); });
  const Shape& x = ctx.input(0).shape;
  return {{ctx.input(0).dtype, Shape{r[0], x[1], Dim(ps[0]), Dim(ps[1])}}};
}

}  // namespace

void register_detection(OpRegistry& r) {
  r.add(schema("NonMaxSuppression", "detection", 2, 5, 1, 1, infer_nms));
  r.add(schema("RoiAlign", "detection", 3, 3, 1, 1, infer_roi_align));
  r.add(schema("MaxRoiPool", "detection", 2, 2, 1, 1, infer_max_roi_pool));
}

}  // namespace kiln::ops

namespace kiln {

NmsLimits nms_limits(const Tensor* max_out, const Tensor* iou, const Tensor* score) {
  auto present = [](const Tensor* t) { return t && t->numel() > 0; };
  NmsLimits l;
  if (present(max_out))
    l.max_out = std::max<std::int64_t>(0, max_out->dtype() == DType::i64
                                              ? max_out->data<std::int64_t>()[0]
                                              : static_cast<std::int64_t>(max_out->get(0)));
  if (present(iou)) l.iou_threshold = iou->get(0);
  if (present(score)) l.score_threshold = score->get(0);
  return l;
}

}  // namespace kiln
