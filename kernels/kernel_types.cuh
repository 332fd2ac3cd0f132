// Types shared by every kernel launcher: element types and strided views. Plain data, no kiln
// headers, so that host C++ and nvcc both include it.
#pragma once

#include <cstdint>

namespace kiln::kernels {

/// Element type of a floating-point tensor on the device (compute is always in float).
enum class Elem : int { f32 = 0, f16 = 1, bf16 = 2 };

/// Bytes of one element of `e`.
inline constexpr int elem_bytes(Elem e) { return e == Elem::f32 ? 4 : 2; }

inline constexpr int kMaxDims = 8;

/// Dims of a tensor (row-major) and, per operand, element strides over those dims. A stride of 0
/// broadcasts that dim; negative strides walk backwards.
struct Dims {
  int rank = 0;
  std::int64_t d[kMaxDims] = {};
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= d[i];
    return n;
  }
};
struct Strides {
  std::int64_t s[kMaxDims] = {};
};

/// Row-major contiguous strides of `dims`.
inline Strides contiguous_strides(const Dims& dims) {
  Strides st;
  std::int64_t s = 1;
  for (int i = dims.rank - 1; i >= 0; --i) {
    st.s[i] = s;
    s *= dims.d[i];
  }
  return st;
}

}  // namespace kiln::kernels
