// Detection ops on the GPU: RoiAlign (Mask R-CNN's, as ONNX defines it) and MaxRoiPool (Caffe's
// ROI pooling), one thread per output element, computing in f32 with the CPU reference's order of
// operations (src/reference/detection.cpp says the rules). A roi whose batch index is outside X
// gives NaN outputs (the CPU reference refuses it with its message; a kernel cannot stop there).
// NonMaxSuppression: each (batch, class) row's scores sorted by CUB's segmented radix sort, then
// one block per row walks them greedily, 256 candidates at a time, in double as the reference.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

struct RoiAlignArgs {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0, rois = 0;
  std::int64_t out_h = 1, out_w = 1, sampling_ratio = 0;
  float spatial_scale = 1.f;
  bool max_mode = false, half_pixel = true;
  const void* x = nullptr;                      // [batch, channels, height, width], element type
  const void* boxes = nullptr;                  // [rois, 4] x1, y1, x2, y2, element type
  const std::int64_t* batch_indices = nullptr;  // [rois]
  void* y = nullptr;                            // [rois, channels, out_h, out_w]
};

cudaError_t roi_align(Elem elem, const RoiAlignArgs& a, cudaStream_t stream);

struct MaxRoiPoolArgs {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0, rois = 0;
  std::int64_t pooled_h = 1, pooled_w = 1;
  float spatial_scale = 1.f;
  const void* x = nullptr;      // [batch, channels, height, width]
  const void* boxes = nullptr;  // [rois, 5] batch, x1, y1, x2, y2
  void* y = nullptr;            // [rois, channels, pooled_h, pooled_w]
};

cudaError_t max_roi_pool(Elem elem, const MaxRoiPoolArgs& a, cudaStream_t stream);

/// ONNX NonMaxSuppression of boxes [batches, boxes, 4] and scores [batches, classes, boxes]: per
/// (batch, class), the boxes whose score is above the threshold (when given) by descending score
/// (ties: the lower index first; NaN scores count as -inf, -0 as +0), each kept unless its IoU
/// (computed in double) with a box kept before it is above iou_threshold, at most max_out kept.
/// The selected (batch, class, box) rows, in that order, and their count are left in the
/// workspace (nms_rows, nms_count) for the caller to copy out: their number is known only then.
struct NmsArgs {
  std::int64_t batches = 0, classes = 0, boxes = 0;
  std::int64_t max_out = 0;  ///< per batch and class; 0 keeps nothing
  /// The largest max_out the workspace is sized for (max_out is clamped to it): the step knows
  /// max_out when it is a constant, else only when it runs.
  std::int64_t capacity = 0;
  double iou_threshold = 0;
  bool has_score_threshold = false;
  double score_threshold = 0;
  bool center = false;  ///< center_point_box 1: [x, y, w, h], else two corners [y, x, y, x]
  const void* box_data = nullptr;
  const void* scores = nullptr;
  void* workspace = nullptr;  ///< nms_workspace() bytes
};
/// Workspace bytes of nms(a) (0 on a bad argument: 2^31 scores or more; asks CUB). It depends
/// on the sizes and the capacity only.
std::size_t nms_workspace(const NmsArgs& a);
cudaError_t nms(Elem elem, const NmsArgs& a, cudaStream_t stream);
/// Where nms() left the selected rows ([count, 3], int64) and their count (one int64).
const std::int64_t* nms_rows(const NmsArgs& a);
const std::int64_t* nms_count(const NmsArgs& a);

}  // namespace kiln::kernels
