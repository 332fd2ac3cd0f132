// Softmax and log-softmax along one axis of a tensor viewed as [outer, n, inner].
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// y = softmax(x) (or log-softmax) over the middle dim of [outer, n, inner]; x and y may alias.
cudaError_t softmax(Elem elem, bool log, std::int64_t outer, std::int64_t n, std::int64_t inner,
                    const void* x, void* y, cudaStream_t stream);

}  // namespace kiln::kernels
