// Element types of the IR, and the two 16-bit float storage types.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "kiln/ir/error.hpp"

namespace kiln {

/// Every element type that the IR stores and the reference executor computes in.
enum class DType : std::uint8_t {
  f32,
  f64,
  f16,
  bf16,
  i8,
  u8,
  i16,
  u16,
  i32,
  u32,
  i64,
  u64,
  boolean,
  // The float8 storage types (ONNX FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ,
  // FLOAT8E8M0): one byte each. kiln stores, moves and converts them (Cast, CastLike,
  // QuantizeLinear, DequantizeLinear, the data-movement ops, files) but computes in other types:
  // visit_dtype refuses them.
  f8e4m3fn,
  f8e4m3fnuz,
  f8e5m2,
  f8e5m2fnuz,
  f8e8m0,
  // The sub-byte types (ONNX INT4, UINT4, INT2, UINT2, FLOAT4E2M1): one byte per element in
  // memory (as numpy's ml_dtypes holds them), packed two or four to a byte in ONNX files only.
  // Storage types like float8.
  i4,
  u4,
  i2,
  u2,
  f4e2m1
};

inline constexpr DType kAllDTypes[] = {
    DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8,  DType::u8,     DType::i16,
    DType::u16, DType::i32, DType::u32, DType::i64,  DType::u64, DType::boolean};
/// The float8 storage types (not in kAllDTypes, which lists the types kiln computes in).
inline constexpr DType kFloat8DTypes[] = {DType::f8e4m3fn, DType::f8e4m3fnuz, DType::f8e5m2,
                                          DType::f8e5m2fnuz, DType::f8e8m0};
/// The sub-byte storage types (not in kAllDTypes either).
inline constexpr DType kSubByteDTypes[] = {DType::i4, DType::u4, DType::i2, DType::u2,
                                           DType::f4e2m1};

/// IEEE 754 binary16, stored as bits; arithmetic goes through float.
struct f16 {
  std::uint16_t bits = 0;
  f16() = default;
  explicit f16(float v) : bits(from_float(v)) {}
  explicit operator float() const { return to_float(bits); }

  static std::uint16_t from_float(float v) {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(v);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {  // inf or nan
      return static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    }
    if (absx >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
    if (absx < 0x38800000u) {  // subnormal half (or zero)
      // value = absx as float; half subnormal unit is 2^-24.
      const float f = std::bit_cast<float>(absx);
      const float scaled = f * 16777216.0f;  // exact: multiply by 2^24
      // round half to even
      float r = __builtin_nearbyintf(scaled);
      return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(r));
    }
    // normal: rebias exponent 127 -> 15, round mantissa 23 -> 10 bits, half to even
    std::uint32_t mant = absx + 0xfffu + ((absx >> 13) & 1u);
    return static_cast<std::uint16_t>(sign | ((mant - 0x38000000u) >> 13));
  }
  static float to_float(std::uint16_t h) {
    const std::uint32_t sign = (h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
      const float f = static_cast<float>(mant) * (1.0f / 16777216.0f);
      return sign ? -f : f;
    }
    if (exp == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
  }
};

/// bfloat16 (the upper half of a float32), round to nearest even.
struct bf16 {
  std::uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float v) : bits(from_float(v)) {}
  explicit operator float() const { return to_float(bits); }
  static std::uint16_t from_float(float v) {
    std::uint32_t x = std::bit_cast<std::uint32_t>(v);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<std::uint16_t>(x >> 16);
  }
  static float to_float(std::uint16_t b) { return std::bit_cast<float>(std::uint32_t(b) << 16); }
};

template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <>
struct dtype_of<f16> {
  static constexpr DType value = DType::f16;
};
template <>
struct dtype_of<bf16> {
  static constexpr DType value = DType::bf16;
};
template <>
struct dtype_of<std::int8_t> {
  static constexpr DType value = DType::i8;
};
template <>
struct dtype_of<std::uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<std::int16_t> {
  static constexpr DType value = DType::i16;
};
template <>
struct dtype_of<std::uint16_t> {
  static constexpr DType value = DType::u16;
};
template <>
struct dtype_of<std::int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<std::uint32_t> {
  static constexpr DType value = DType::u32;
};
template <>
struct dtype_of<std::int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<std::uint64_t> {
  static constexpr DType value = DType::u64;
};
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::boolean;
};
template <class T>
inline constexpr DType dtype_v = dtype_of<T>::value;

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, f16> || std::is_same_v<T, bf16>;

/// The type the reference computes a T in: float for the 16-bit floats, T otherwise.
template <class T>
using compute_t = std::conditional_t<is_half_v<T>, float, T>;

/// The type long sums of T accumulate in: double for floats, 64-bit for integers.
template <class T>
using accum_t = std::conditional_t<
    std::is_floating_point_v<compute_t<T>>, double,
    std::conditional_t<std::is_same_v<T, bool>, std::int64_t,
                       std::conditional_t<std::is_signed_v<T>, std::int64_t, std::uint64_t>>>;

template <class T>
inline compute_t<T> to_compute(T v) {
  if constexpr (is_half_v<T>)
    return static_cast<float>(v);
  else
    return v;
}
template <class T, class U>
inline T from_compute(U v) {
  if constexpr (is_half_v<T>)
    return T(static_cast<float>(v));
  else
    return static_cast<T>(v);
}

constexpr bool is_float8(DType t) {
  return t == DType::f8e4m3fn || t == DType::f8e4m3fnuz || t == DType::f8e5m2 ||
         t == DType::f8e5m2fnuz || t == DType::f8e8m0;
}
constexpr bool is_subbyte(DType t) {
  return t == DType::i4 || t == DType::u4 || t == DType::i2 || t == DType::u2 || t == DType::f4e2m1;
}
/// The types kiln stores and converts but does not compute in: float8 and the sub-byte types.
constexpr bool is_storage_only(DType t) { return is_float8(t) || is_subbyte(t); }
/// Bytes per element in memory (the storage-only types take one byte each).
constexpr std::size_t dtype_size(DType t) {
  if (is_storage_only(t)) return 1;
  switch (t) {
    case DType::f64:
    case DType::i64:
    case DType::u64: return 8;
    case DType::f32:
    case DType::i32:
    case DType::u32: return 4;
    case DType::f16:
    case DType::bf16:
    case DType::i16:
    case DType::u16: return 2;
    case DType::i8:
    case DType::u8:
    case DType::boolean: return 1;
    default: break;  // the storage-only types, above
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::i16: return "i16";
    case DType::u16: return "u16";
    case DType::i32: return "i32";
    case DType::u32: return "u32";
    case DType::i64: return "i64";
    case DType::u64: return "u64";
    case DType::boolean: return "bool";
    case DType::f8e4m3fn: return "f8e4m3fn";
    case DType::f8e4m3fnuz: return "f8e4m3fnuz";
    case DType::f8e5m2: return "f8e5m2";
    case DType::f8e5m2fnuz: return "f8e5m2fnuz";
    case DType::f8e8m0: return "f8e8m0";
    case DType::i4: return "i4";
    case DType::u4: return "u4";
    case DType::i2: return "i2";
    case DType::u2: return "u2";
    case DType::f4e2m1: return "f4e2m1";
  }
  return "?";
}

constexpr bool is_float(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
/// The smallest and largest value of a sub-byte integer type (i4, u4, i2, u2); {0, 0} otherwise.
constexpr std::pair<int, int> subbyte_int_range(DType t) {
  switch (t) {
    case DType::i4: return {-8, 7};
    case DType::u4: return {0, 15};
    case DType::i2: return {-2, 1};
    case DType::u2: return {0, 3};
    default: return {0, 0};
  }
}
/// Bits per element in an ONNX file: 4 or 2 for the sub-byte types, else the size in bits.
constexpr int onnx_bits(DType t) {
  if (t == DType::i2 || t == DType::u2) return 2;
  if (t == DType::i4 || t == DType::u4 || t == DType::f4e2m1) return 4;
  return static_cast<int>(dtype_size(t)) * 8;
}
constexpr bool is_integer(DType t) {
  return !is_float(t) && !is_float8(t) && t != DType::f4e2m1 && t != DType::boolean;
}
constexpr bool is_signed_integer(DType t) {
  return t == DType::i8 || t == DType::i16 || t == DType::i32 || t == DType::i64;
}

/// How a float becomes f8e8m0 (a power of two): ONNX Cast's round_mode ("up" by default).
enum class E8m0Rounding { up, down, nearest };

/// The value of one float8 byte of type `t` (NaN for its NaN codes).
double float8_to_double(DType t, std::uint8_t bits);
/// The value of an element of a storage-only type (float8, sub-byte) as kiln holds it in one
/// byte (i4/i2 sign-extended, u4/u2 and f4e2m1's code in the low bits).
double narrow_to_double(DType t, std::uint8_t bits);
/// `v` as an element of a storage-only type: float8 as float8_from_double; f4e2m1 rounded to
/// nearest even and saturated to +-6 (NaN becomes 0: the type has none); the sub-byte integers
/// clamped to their range when `saturate` (QuantizeLinear), else as ONNX Cast converts them:
/// truncated toward zero, then wrapped to the type's bits.
std::uint8_t narrow_from_double(DType t, double v, bool saturate = true,
                                E8m0Rounding rounding = E8m0Rounding::up);
/// A sub-byte tensor's elements (one byte each, as kiln holds them) packed as ONNX files hold
/// them: 8 / onnx_bits(t) to a byte, the first in the low bits; and the reverse (`n` elements).
std::vector<std::uint8_t> pack_subbyte(DType t, const std::uint8_t* elems, std::size_t n);
void unpack_subbyte(DType t, const std::uint8_t* packed, std::size_t n, std::uint8_t* elems);
/// `v` as float8 type `t`, rounded to nearest even (f8e8m0: by `rounding`, from v as a float).
/// Out of range, `saturate` gives the largest finite value of v's sign, else infinity (f8e5m2)
/// or NaN (the others), as ONNX Cast's saturate attribute. NaN stays NaN.
std::uint8_t float8_from_double(DType t, double v, bool saturate = true,
                                E8m0Rounding rounding = E8m0Rounding::up);

/// Parses "f32", "float16", "int64", ... ; throws UnsupportedError naming the accepted names.
DType parse_dtype(std::string_view name);

/// The DType of an ONNX TensorProto data type code (1 float, 2 uint8, ... 16 bfloat16); throws
/// UnsupportedError for the codes kiln does not compute in (string, complex, float8, int4, ...).
DType dtype_from_onnx(int code);
/// The ONNX TensorProto.DataType code of a dtype.
constexpr int dtype_to_onnx(DType t) {
  switch (t) {
    case DType::f32: return 1;
    case DType::u8: return 2;
    case DType::i8: return 3;
    case DType::u16: return 4;
    case DType::i16: return 5;
    case DType::i32: return 6;
    case DType::i64: return 7;
    case DType::boolean: return 9;
    case DType::f16: return 10;
    case DType::f64: return 11;
    case DType::u32: return 12;
    case DType::u64: return 13;
    case DType::bf16: return 16;
    case DType::f8e4m3fn: return 17;
    case DType::f8e4m3fnuz: return 18;
    case DType::f8e5m2: return 19;
    case DType::f8e5m2fnuz: return 20;
    case DType::f8e8m0: return 24;
    case DType::u4: return 21;
    case DType::i4: return 22;
    case DType::f4e2m1: return 23;
    case DType::u2: return 25;
    case DType::i2: return 26;
  }
  return 0;
}

/// "FLOAT", "STRING", ... for an ONNX data type code ("type code N" when unknown).
std::string onnx_type_name(int code);

/// Calls f(T{}) with the C++ type of `t`: the one closed switch from a run-time dtype to a type.
template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::f16: return f(f16{});
    case DType::bf16: return f(bf16{});
    case DType::i8: return f(std::int8_t{});
    case DType::u8: return f(std::uint8_t{});
    case DType::i16: return f(std::int16_t{});
    case DType::u16: return f(std::uint16_t{});
    case DType::i32: return f(std::int32_t{});
    case DType::u32: return f(std::uint32_t{});
    case DType::i64: return f(std::int64_t{});
    case DType::u64: return f(std::uint64_t{});
    case DType::boolean: return f(bool{});
    default: break;
  }
  if (is_storage_only(t))
    throw UnsupportedError(std::string("dtype ") + std::string(dtype_name(t)) +
                           ": kiln stores and converts float8 and sub-byte types (Cast, "
                           "QuantizeLinear, DequantizeLinear, data movement) but does not "
                           "compute in them");
  throw UnsupportedError("unknown dtype code " + std::to_string(static_cast<int>(t)));
}

}  // namespace kiln
