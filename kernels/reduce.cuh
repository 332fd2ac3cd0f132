// Reductions (ONNX Reduce*) over any set of axes: each output element reduces the elements that
// `red_dims`/`red_strides` walk, starting at the offset that its kept coordinates give.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

enum class Reduction : int {
  sum = 0,
  mean,
  max,
  min,
  prod,
  l1,
  l2,
  log_sum,
  log_sum_exp,
  sum_square,
  count_
};

struct ReduceDesc {
  Dims out_dims;        ///< the kept dims (the output is contiguous over them)
  Strides out_strides;  ///< input strides of the kept dims
  Dims red_dims;        ///< the reduced dims (rank 0: every output reduces one element)
  Strides red_strides;  ///< input strides of the reduced dims
};

/// Reduces x into y (y has out_dims.numel() elements). Accumulates in float.
cudaError_t reduce(Elem elem, Reduction op, const ReduceDesc& d, const void* x, void* y,
                   cudaStream_t stream);

/// The ReduceDesc of reducing `axes` (a bit mask over dims) of a contiguous tensor.
ReduceDesc reduce_desc(const Dims& dims, unsigned axes_mask);

}  // namespace kiln::kernels
