// Index-driven ops on the GPU that detection networks use: TopK (a segmented radix sort of each
// row, CUB's), GatherND and ScatterElements. Values move as raw bits; TopK and the scatter
// reductions read them as `ValueType`.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"

namespace kiln::kernels {

/// The element types TopK sorts and ScatterElements reduces in.
enum class ValueType : int { f32 = 0, f16, bf16, i32, i64 };

/// TopK over rows of x viewed as [outer, n, inner], the k largest (or smallest) of each row in
/// order, ties by the lower index first (ONNX's rule); values [outer, k, inner] (x's type) and
/// indices [outer, k, inner] (int64). `workspace` holds topk_workspace(...) bytes.
struct TopKArgs {
  ValueType type = ValueType::f32;
  std::int64_t outer = 1, n = 1, inner = 1, k = 1;
  bool largest = true;
  const void* x = nullptr;
  void* values = nullptr;
  std::int64_t* indices = nullptr;
  void* workspace = nullptr;
};
/// Workspace bytes of topk(a) (0 on a bad argument; asks CUB, so needs a device).
std::size_t topk_workspace(const TopKArgs& a);
cudaError_t topk(const TopKArgs& a, cudaStream_t stream);

/// ONNX GatherND: data viewed as [batch, dims[0..m), inner] (dims[] the m indexed dims), indices
/// as [batch, rows, m] (int64; negative ones count from the end, out-of-range ones are clamped:
/// callers validate); y[b, r, i] = data[b, indices[b, r, :], i].
cudaError_t gather_nd(std::size_t elem_size, std::int64_t batch, std::int64_t rows,
                      const Dims& indexed, std::int64_t inner, const std::int64_t* indices,
                      const void* data, void* y, cudaStream_t stream);

enum class ScatterReduction : int { none = 0, add, mul, max, min };
/// ONNX ScatterElements on y (which already holds data, `data_dims`): for every position p of
/// indices (`index_dims`, contiguous, int64 or int32), y[p with p[axis] = indices[p]] =
/// updates[p], or combined with it by `reduction` (atomically; `type` says how to read the
/// bits). Negative indices count from the end; out-of-range ones are skipped (callers validate).
cudaError_t scatter_elements(std::size_t elem_size, ValueType type, ScatterReduction reduction,
                             const Dims& data_dims, const Dims& index_dims, int axis,
                             const void* indices, bool indices_are_int64, const void* updates,
                             void* y, cudaStream_t stream);

}  // namespace kiln::kernels
