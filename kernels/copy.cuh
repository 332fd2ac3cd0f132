// Data movement: strided copies (transpose, slice with steps, concat and split through offsets,
// expand through stride 0), padding (constant, reflect, edge, wrap) and gather. Elements are
// moved as raw bits of 1, 2, 4 or 8 bytes, so every dtype goes through the same kernels.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// dst[dst_strides . idx] = src[src_strides . idx] for every idx over `dims`; the pointers
/// already include any start offset (slices, concat positions). Strides are in elements.
cudaError_t strided_copy(std::size_t elem_size, const Dims& dims, const void* src,
                         const Strides& src_strides, void* dst, const Strides& dst_strides,
                         cudaStream_t stream);

enum class PadMode : int { constant = 0, reflect, edge, wrap };

/// Pads a contiguous tensor of `in_dims` into a contiguous one of `out_dims`, where
/// out_dims[k] = pad_begin[k] + in_dims[k] + pad_end[k]; negative pads crop. `value_bits` is
/// the constant's bit pattern in the element type (the low elem_size bytes).
cudaError_t pad(std::size_t elem_size, PadMode mode, const Dims& in_dims, const Dims& out_dims,
                const std::int64_t* pad_begin, std::uint64_t value_bits, const void* x, void* y,
                cudaStream_t stream);

/// ONNX Gather over x viewed as [outer, axis_n, inner]: y[o, j, i] = x[o, idx[j], i] for the
/// `count` indices (int64 or int32, negative ones count from the end; out-of-range ones are
/// clamped, so callers validate them).
cudaError_t gather(std::size_t elem_size, std::int64_t outer, std::int64_t axis_n,
                   std::int64_t inner, const void* indices, bool indices_are_int64,
                   std::int64_t count, const void* x, void* y, cudaStream_t stream);

}  // namespace kiln::kernels
