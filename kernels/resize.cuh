// ONNX Resize (nearest and linear) over the last two dims of [outer, H, W]; 1-D resizes use
// H = 1 with scale_h = 1.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

enum class ResizeMode : int { nearest = 0, linear };
enum class CoordMode : int {
  half_pixel = 0,
  half_pixel_symmetric,
  pytorch_half_pixel,
  align_corners,
  asymmetric,
  tf_half_pixel_for_nn
};
enum class NearestMode : int { round_prefer_floor = 0, round_prefer_ceil, floor, ceil };

struct Resize2d {
  std::int64_t outer = 1;
  int in_h = 1, in_w = 1, out_h = 1, out_w = 1;
  double scale_h = 1.0, scale_w = 1.0;  ///< output over input, as the node gives it
  ResizeMode mode = ResizeMode::nearest;
  CoordMode coord = CoordMode::half_pixel;
  NearestMode nearest = NearestMode::round_prefer_floor;
};

cudaError_t resize2d(Elem elem, const Resize2d& r, const void* x, void* y, cudaStream_t stream);

}  // namespace kiln::kernels
