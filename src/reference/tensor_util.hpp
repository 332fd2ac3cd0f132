// Helpers of the tensor-family reference kernels: dtype-agnostic element moves (bytes), index
// iteration and the integer inputs of layout ops.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "kernel_util.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::reference::tensor_detail {

using i64 = std::int64_t;

/// Calls f(idx) for every multi-index of dims in row-major order (idx is reused).
template <class F>
void for_each_index(const std::vector<i64>& dims, F&& f) {
  for (i64 d : dims)
    if (d == 0) return;
  std::vector<i64> idx(dims.size(), 0);
  const i64 n = product(dims);
  for (i64 k = 0; k < n; ++k) {
    f(idx);
    for (std::size_t a = dims.size(); a-- > 0;) {
      if (++idx[a] < dims[a]) break;
      idx[a] = 0;
    }
  }
}

/// out[idx] = in[base + sum idx[k] * strides[k]] for every idx of out_dims (element-size copy,
/// any dtype). Covers transpose, slice, expand and reshape-transpose compositions.
inline Tensor strided_copy(const Tensor& in, const std::vector<i64>& out_dims,
                           const std::vector<i64>& strides, i64 base) {
  Tensor out(in.dtype(), out_dims);
  const std::size_t es = dtype_size(in.dtype());
  const std::byte* src = in.raw();
  std::byte* dst = out.raw();
  for_each_offset(out_dims, strides, base, [&](i64 k, i64 from) {
    std::memcpy(dst + static_cast<std::size_t>(k) * es, src + static_cast<std::size_t>(from) * es,
                es);
  });
  return out;
}

/// `parts` concatenated along `axis`: one dtype and rank, equal dims but along `axis` (the caller
/// checks them, naming its op's inputs). Concat, ConcatFromSequence and the stacking of Loop's and
/// Scan's outputs (parts with a dim of 1 there) copy through it.
inline Tensor concat_along(const std::vector<const Tensor*>& parts, std::size_t axis) {
  std::vector<i64> dims = parts.at(0)->dims();
  dims[axis] = 0;
  for (const Tensor* t : parts) dims[axis] += t->dim(axis);
  Tensor out(parts[0]->dtype(), dims);
  i64 outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= dims[d];
  for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
  const std::size_t es = dtype_size(out.dtype());
  std::byte* dst = out.raw();
  for (i64 o = 0; o < outer; ++o)
    for (const Tensor* t : parts) {
      const std::size_t block = static_cast<std::size_t>(t->dim(axis) * inner) * es;
      if (block) std::memcpy(dst, t->raw() + static_cast<std::size_t>(o) * block, block);
      dst += block;
    }
  return out;
}

/// Copies element `from` of `src` to element `to` of `dst` (same dtype).
inline void copy_element(const Tensor& src, i64 from, Tensor& dst, i64 to) {
  const std::size_t es = dtype_size(src.dtype());
  std::memcpy(dst.raw() + static_cast<std::size_t>(to) * es,
              src.raw() + static_cast<std::size_t>(from) * es, es);
}

/// The integer values of an optional input (nullopt when absent).
inline std::optional<std::vector<i64>> optional_ints(const KernelContext& ctx, std::size_t i) {
  if (!ctx.has(i)) return std::nullopt;
  return ctx.in(i).to_int64s();
}

/// An index in [-n, n) made non-negative; fails naming the op otherwise.
inline i64 wrap_index(const KernelContext& ctx, i64 v, i64 n, const char* what) {
  if (v < -n || v >= n)
    ctx.fail(std::string(what) + " " + std::to_string(v) + " out of range [" + std::to_string(-n) +
             ", " + std::to_string(n) + ")");
  return v < 0 ? v + n : v;
}

}  // namespace kiln::reference::tensor_detail
