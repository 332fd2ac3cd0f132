// What NonMaxSuppression's optional scalar inputs mean: read in one place for the CPU reference
// (src/reference/detection.cpp) and the GPU step (src/runtime/steps_detection.cpp).
#pragma once

#include <cstdint>
#include <optional>

#include "kiln/ir/tensor.hpp"

namespace kiln {

struct NmsLimits {
  std::int64_t max_out = 0;  ///< max_output_boxes_per_class; absent or empty: 0 (keep nothing)
  double iou_threshold = 0;  ///< absent or empty: 0
  std::optional<double> score_threshold;  ///< absent or empty: none
};

/// The limits from inputs 2 to 4 (nullptr: absent). max_output_boxes_per_class is read as an
/// integer (exporters pass INT64_MAX, "no limit", which no double holds), at least 0.
NmsLimits nms_limits(const Tensor* max_out, const Tensor* iou, const Tensor* score);

}  // namespace kiln
