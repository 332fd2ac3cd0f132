// Detection layers of the typed DSL: non_max_suppression, roi_align<H, W> and max_roi_pool<H, W>
// (ONNX NonMaxSuppression, RoiAlign and MaxRoiPool). Their shape rules are kiln::rules'
// (box_coordinates, score_batches, score_boxes, roi_batch_indices, pooled_dim), the IR's too.
//
//   auto keep = non_max_suppression(boxes, scores, {.max_per_class = 100, .iou = 0.5f});
//   auto feat = roi_align<7, 7>(features, rois, batch_indices, {.spatial_scale = 1.f / 16});
//   auto pool = max_roi_pool<6, 6>(features, rois_with_batch, 1.f / 16);
#pragma once

#include <optional>

#include "kiln/dsl/core.hpp"

namespace kiln::dsl {

// ---- NonMaxSuppression --------------------------------------------------------------------------

struct non_max_suppression_layer {
  static constexpr std::string_view kind = "non_max_suppression";
  /// boxes [B, N, 4], scores [B, C, N] -> [K, 3] (batch, class, box) rows; K is known when the
  /// network runs.
  static constexpr std::array<dim_t, 2> rule(std::array<dim_t, 3> boxes,
                                             std::array<dim_t, 3> scores) {
    rules::box_coordinates(4, boxes[2]);
    rules::score_batches(boxes[0], scores[0]);
    rules::score_boxes(boxes[1], scores[2]);
    return {kDynamic, 3};
  }
};

struct NmsOptions {
  dim_t max_per_class = 0;  ///< boxes kept per batch and class (0 keeps none)
  float iou = 0.f;          ///< a box is dropped when its IoU with a kept one is above
  std::optional<float> score_threshold{};  ///< boxes scoring at or below it are not considered
  bool center_point_box = false;  ///< boxes as [x, y, w, h] instead of corners [y1, x1, y2, x2]
};

/// The boxes kept by non-maximum suppression per batch and class, as i64 [K, 3] rows of (batch,
/// class, box index), best first within each class.
template <class... Os, tensor_expr B, tensor_expr S>
auto non_max_suppression(const B& boxes, const S& scores, const NmsOptions& o,
                         const std::string& given = "") {
  using L = non_max_suppression_layer;
  static_assert(
      B::rank == 3 && S::rank == 3,
      "non_max_suppression: boxes are [batches, boxes, 4] and scores [batches, classes, boxes]");
  static_assert(B::dtype == S::dtype,
                "non_max_suppression: boxes and scores have one element type");
  constexpr bool ok = detail::rules_check<
      L, detail::rule_on<rules::box_coordinates, 4, B::static_dims[2]>,
      detail::rule_on<rules::score_batches, B::static_dims[0], S::static_dims[0]>,
      detail::rule_on<rules::score_boxes, B::static_dims[1], S::static_dims[2]>>::ok;
  using Out = detail::checked_output_t<ok, L, DType::i64, Layout::any, B, S>;
  auto s = detail::unify(boxes.state(), scores.state());
  const std::string name = detail::node_name(*s, L::kind, detail::given_name<Os...>(given));
  const auto dims = detail::run_rule<L>(name, boxes, scores);
  std::vector<std::string> in{
      boxes.value(), scores.value(),
      detail::constant(*s, name + ".max_output_boxes_per_class",
                       kiln::Tensor::scalar(std::int64_t{o.max_per_class})),
      detail::constant(*s, name + ".iou_threshold", kiln::Tensor::scalar(o.iou))};
  if (o.score_threshold)
    in.push_back(
        detail::constant(*s, name + ".score_threshold", kiln::Tensor::scalar(*o.score_threshold)));
  detail::emit(*s, "NonMaxSuppression", name, std::move(in),
               {{"center_point_box", dim_t{o.center_point_box ? 1 : 0}}});
  return Out(s, name, dims);
}

// ---- RoiAlign and MaxRoiPool --------------------------------------------------------------------

template <dim_t H, dim_t W>
struct roi_align_layer {
  static constexpr std::string_view kind = "roi_align";
  /// x [N, C, h, w], rois [R, 4], batch_indices [R] -> [R, C, H, W]
  static constexpr std::array<dim_t, 4> rule(std::array<dim_t, 4> x, std::array<dim_t, 2> rois,
                                             std::array<dim_t, 1> batch_indices) {
    rules::box_coordinates(4, rois[1]);
    rules::roi_batch_indices(rois[0], batch_indices[0]);
    return {rois[0], x[1], rules::pooled_dim(H), rules::pooled_dim(W)};
  }
};

struct RoiAlignOptions {
  float spatial_scale = 1.f;  ///< roi coordinates times this are x's pixels
  dim_t sampling_ratio = 0;   ///< samples per bin side (0: ceil of the bin size)
  bool max = false;           ///< the max of the samples instead of their mean
  bool half_pixel = true;     ///< shift rois by -0.5 pixel (opset 16's default)
};

/// Mask R-CNN's RoiAlign of NCHW features: each roi [x1, y1, x2, y2] of image batch_indices[r]
/// bilinearly pooled to H x W.
template <dim_t H, dim_t W, class... Os, tensor_expr X, tensor_expr R, tensor_expr I>
auto roi_align(const X& x, const R& rois, const I& batch_indices, const RoiAlignOptions& o = {},
               const std::string& given = "") {
  using L = roi_align_layer<H, W>;
  static_assert(X::rank == 4 && R::rank == 2 && I::rank == 1,
                "roi_align: x is [N, C, H, W], rois [rois, 4] and batch_indices [rois]");
  static_assert(R::dtype == X::dtype, "roi_align: rois have x's element type");
  static_assert(I::dtype == DType::i64, "roi_align: batch_indices are i64");
  constexpr bool ok = detail::rules_check<
      L, detail::rule_on<rules::pooled_dim, H>, detail::rule_on<rules::pooled_dim, W>,
      detail::rule_on<rules::box_coordinates, 4, R::static_dims[1]>,
      detail::rule_on<rules::roi_batch_indices, R::static_dims[0], I::static_dims[0]>>::ok;
  using Out = detail::checked_output_t<ok, L, X::dtype, Layout::any, X, R, I>;
  auto s = detail::unify(detail::unify(x.state(), rois.state()), batch_indices.state());
  const std::string name = detail::node_name(*s, L::kind, detail::given_name<Os...>(given));
  const auto dims = detail::run_rule<L>(name, x, rois, batch_indices);
  detail::emit(*s, "RoiAlign", name, {x.value(), rois.value(), batch_indices.value()},
               {{"output_height", H},
                {"output_width", W},
                {"sampling_ratio", o.sampling_ratio},
                {"spatial_scale", static_cast<double>(o.spatial_scale)},
                {"mode", std::string(o.max ? "max" : "avg")},
                {"coordinate_transformation_mode",
                 std::string(o.half_pixel ? "half_pixel" : "output_half_pixel")}});
  return Out(s, name, dims);
}

template <dim_t H, dim_t W>
struct max_roi_pool_layer {
  static constexpr std::string_view kind = "max_roi_pool";
  /// x [N, C, h, w], rois [R, 5] -> [R, C, H, W]
  static constexpr std::array<dim_t, 4> rule(std::array<dim_t, 4> x, std::array<dim_t, 2> rois) {
    rules::box_coordinates(5, rois[1]);
    return {rois[0], x[1], rules::pooled_dim(H), rules::pooled_dim(W)};
  }
};

/// Caffe's ROI max pooling of NCHW features: each roi [batch, x1, y1, x2, y2] (scaled by
/// spatial_scale, rounded) max-pooled to H x W.
template <dim_t H, dim_t W, class... Os, tensor_expr X, tensor_expr R>
auto max_roi_pool(const X& x, const R& rois, float spatial_scale = 1.f,
                  const std::string& given = "") {
  using L = max_roi_pool_layer<H, W>;
  static_assert(X::rank == 4 && R::rank == 2, "max_roi_pool: x is [N, C, H, W] and rois [rois, 5]");
  static_assert(R::dtype == X::dtype, "max_roi_pool: rois have x's element type");
  constexpr bool ok =
      detail::rules_check<L, detail::rule_on<rules::pooled_dim, H>,
                          detail::rule_on<rules::pooled_dim, W>,
                          detail::rule_on<rules::box_coordinates, 5, R::static_dims[1]>>::ok;
  using Out = detail::checked_output_t<ok, L, X::dtype, Layout::any, X, R>;
  auto s = detail::unify(x.state(), rois.state());
  const std::string name = detail::node_name(*s, L::kind, detail::given_name<Os...>(given));
  const auto dims = detail::run_rule<L>(name, x, rois);
  detail::emit(*s, "MaxRoiPool", name, {x.value(), rois.value()},
               {{"pooled_shape", std::vector<dim_t>{H, W}},
                {"spatial_scale", static_cast<double>(spatial_scale)}});
  return Out(s, name, dims);
}

}  // namespace kiln::dsl
