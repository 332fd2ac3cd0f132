// Detection ops on the GPU: RoiAlign (Mask R-CNN's, as ONNX defines it) and MaxRoiPool (Caffe's
// ROI pooling), one thread per output element, computing in f32 with the CPU reference's order of
// operations (src/reference/detection.cpp says the rules). A roi whose batch index is outside X
// gives NaN outputs (the CPU reference refuses it with its message; a kernel cannot stop there).
#pragma once

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

}  // namespace kiln::kernels
