#include "kiln/ir/dtype.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <iterator>
#include <limits>
#include <string>

namespace kiln {

DType parse_dtype(std::string_view n) {
  struct Alias {
    std::string_view name;
    DType t;
  };
  static constexpr Alias aliases[] = {{"f32", DType::f32},
                                      {"float32", DType::f32},
                                      {"float", DType::f32},
                                      {"f64", DType::f64},
                                      {"float64", DType::f64},
                                      {"double", DType::f64},
                                      {"f16", DType::f16},
                                      {"float16", DType::f16},
                                      {"half", DType::f16},
                                      {"bf16", DType::bf16},
                                      {"bfloat16", DType::bf16},
                                      {"i8", DType::i8},
                                      {"int8", DType::i8},
                                      {"u8", DType::u8},
                                      {"uint8", DType::u8},
                                      {"i16", DType::i16},
                                      {"int16", DType::i16},
                                      {"u16", DType::u16},
                                      {"uint16", DType::u16},
                                      {"i32", DType::i32},
                                      {"int32", DType::i32},
                                      {"u32", DType::u32},
                                      {"uint32", DType::u32},
                                      {"i64", DType::i64},
                                      {"int64", DType::i64},
                                      {"u64", DType::u64},
                                      {"uint64", DType::u64},
                                      {"bool", DType::boolean},
                                      {"f8e4m3fn", DType::f8e4m3fn},
                                      {"float8e4m3fn", DType::f8e4m3fn},
                                      {"f8e4m3fnuz", DType::f8e4m3fnuz},
                                      {"float8e4m3fnuz", DType::f8e4m3fnuz},
                                      {"f8e5m2", DType::f8e5m2},
                                      {"float8e5m2", DType::f8e5m2},
                                      {"f8e5m2fnuz", DType::f8e5m2fnuz},
                                      {"float8e5m2fnuz", DType::f8e5m2fnuz},
                                      {"f8e8m0", DType::f8e8m0},
                                      {"float8e8m0", DType::f8e8m0},
                                      {"i4", DType::i4},
                                      {"int4", DType::i4},
                                      {"u4", DType::u4},
                                      {"uint4", DType::u4},
                                      {"i2", DType::i2},
                                      {"int2", DType::i2},
                                      {"u2", DType::u2},
                                      {"uint2", DType::u2},
                                      {"f4e2m1", DType::f4e2m1},
                                      {"float4e2m1", DType::f4e2m1}};
  for (const auto& a : aliases)
    if (a.name == n) return a.t;
  std::string all;
  for (DType t : kAllDTypes) all += (all.empty() ? "" : ", ") + std::string(dtype_name(t));
  for (DType t : kFloat8DTypes) all += ", " + std::string(dtype_name(t));
  for (DType t : kSubByteDTypes) all += ", " + std::string(dtype_name(t));
  throw UnsupportedError("unknown dtype '" + std::string(n) + "'; supported: " + all);
}

namespace {
constexpr const char* kOnnxTypeNames[] = {
    "UNDEFINED",      "FLOAT",      "UINT8",          "INT8",       "UINT16",    "INT16",
    "INT32",          "INT64",      "STRING",         "BOOL",       "FLOAT16",   "DOUBLE",
    "UINT32",         "UINT64",     "COMPLEX64",      "COMPLEX128", "BFLOAT16",  "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4",      "INT4",      "FLOAT4E2M1",
    "FLOAT8E8M0",     "UINT2",      "INT2",           "FLOAT6E2M3", "FLOAT6E3M2"};
}  // namespace

std::string onnx_type_name(int code) {
  if (code >= 0 && code < static_cast<int>(std::size(kOnnxTypeNames))) return kOnnxTypeNames[code];
  return "type code " + std::to_string(code);
}

DType dtype_from_onnx(int code) {
  switch (code) {
    case 1: return DType::f32;
    case 2: return DType::u8;
    case 3: return DType::i8;
    case 4: return DType::u16;
    case 5: return DType::i16;
    case 6: return DType::i32;
    case 7: return DType::i64;
    case 9: return DType::boolean;
    case 10: return DType::f16;
    case 11: return DType::f64;
    case 12: return DType::u32;
    case 13: return DType::u64;
    case 16: return DType::bf16;
    case 17: return DType::f8e4m3fn;
    case 18: return DType::f8e4m3fnuz;
    case 19: return DType::f8e5m2;
    case 20: return DType::f8e5m2fnuz;
    case 24: return DType::f8e8m0;
    case 21: return DType::u4;
    case 22: return DType::i4;
    case 23: return DType::f4e2m1;
    case 25: return DType::u2;
    case 26: return DType::i2;
    default: break;
  }
  throw UnsupportedError("ONNX data type " + std::to_string(code) + " (" + onnx_type_name(code) +
                         ") is not supported; supported: FLOAT, DOUBLE, FLOAT16, BFLOAT16, "
                         "INT8/16/32/64, UINT8/16/32/64, BOOL, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, "
                         "FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT8E8M0, INT4, UINT4, INT2, UINT2, "
                         "FLOAT4E2M1");
}

namespace {

/// The layout of a sign-exponent-mantissa float8 type (OCP / Graphcore, as ONNX defines them).
struct Float8Layout {
  int mbits;              ///< mantissa bits
  int bias;               ///< exponent bias
  std::uint8_t max_code;  ///< the largest finite magnitude's code
  std::uint8_t nan;       ///< the NaN code written
  bool fnuz;              ///< 0x80 is NaN, no negative zero, no infinity
  bool inf;               ///< 0x7C is infinity (f8e5m2)
};

Float8Layout layout_of(DType t) {
  switch (t) {
    case DType::f8e4m3fn: return {3, 7, 0x7E, 0x7F, false, false};
    case DType::f8e4m3fnuz: return {3, 8, 0x7F, 0x80, true, false};
    case DType::f8e5m2: return {2, 15, 0x7B, 0x7E, false, true};
    case DType::f8e5m2fnuz: return {2, 16, 0x7F, 0x80, true, false};
    default: break;
  }
  throw UnsupportedError(std::string(dtype_name(t)) + " is not a sign-exponent-mantissa float8");
}

/// ONNX's FLOAT8E8M0 conversion (numpy_helper.to_float8e8m0): the float's exponent field, rounded
/// by the mantissa; the sign is dropped; NaN and infinity become 0xFF.
std::uint8_t e8m0_from_float(float f, bool saturate, E8m0Rounding rounding) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  std::uint32_t exponent = (bits >> 23) & 0xFFu;
  if (exponent == 0xFFu) return 0xFF;
  bool up = false;
  switch (rounding) {
    case E8m0Rounding::nearest: {
      const bool guard = bits & 0x400000u, round = bits & 0x200000u, sticky = bits & 0x1FFFFFu;
      up = guard && (round || sticky || exponent > 0);
      break;
    }
    case E8m0Rounding::up: up = (bits & 0x7FFFFFu) != 0; break;
    case E8m0Rounding::down: break;
  }
  if (up && !(saturate && exponent == 0xFEu)) ++exponent;
  return static_cast<std::uint8_t>(exponent);
}

}  // namespace

double float8_to_double(DType t, std::uint8_t b) {
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  if (t == DType::f8e8m0) return b == 0xFF ? nan : std::ldexp(1.0, int{b} - 127);
  const Float8Layout f = layout_of(t);
  if (f.fnuz && b == 0x80) return nan;
  const bool neg = b & 0x80;
  const int c = b & 0x7F;
  if (!f.fnuz && !f.inf && c == 0x7F) return nan;
  if (f.inf && c >= 0x7C)
    return c == 0x7C ? (neg ? -1 : 1) * std::numeric_limits<double>::infinity() : nan;
  const int field = c >> f.mbits, mant = c & ((1 << f.mbits) - 1);
  const double v = field == 0 ? std::ldexp(mant, 1 - f.bias - f.mbits)
                              : std::ldexp(mant + (1 << f.mbits), field - f.bias - f.mbits);
  return neg ? -v : v;
}

std::uint8_t float8_from_double(DType t, double v, bool saturate, E8m0Rounding rounding) {
  if (t == DType::f8e8m0) return e8m0_from_float(static_cast<float>(v), saturate, rounding);
  const Float8Layout f = layout_of(t);
  if (std::isnan(v)) return f.nan;
  const std::uint8_t sign = std::signbit(v) ? 0x80 : 0x00;
  const auto overflow = [&]() -> std::uint8_t {
    if (saturate) return sign | f.max_code;
    return f.inf ? (sign | 0x7C) : f.nan;
  };
  const double a = std::fabs(v);
  const int emin = 1 - f.bias;  // the smallest normal's exponent
  // Far out of range (infinity included): no rounding can bring it back.
  if (a >= std::ldexp(1.0, 17)) return overflow();
  int e = 0;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  long code = 0;
  if (a == 0) {
    code = 0;
  } else if (e - 1 < emin) {  // subnormal: a whole number of 2^(emin - mbits)
    code = std::lrint(std::ldexp(a, f.mbits - emin));
  } else {  // normal: 1.m * 2^(e-1); a mantissa that rounds up to 2.0 carries into the exponent
    const long m = std::lrint(std::ldexp(a, f.mbits - (e - 1)));
    code = (static_cast<long>(e - 1 - emin + 1) << f.mbits) + m - (1L << f.mbits);
  }
  if (code > f.max_code) return overflow();
  if (code == 0 && f.fnuz) return 0;  // no negative zero
  return static_cast<std::uint8_t>(sign | code);
}

}  // namespace kiln

namespace kiln {

namespace {
/// The magnitudes of f4e2m1's codes 0..7 (1 sign, 2 exponent, 1 mantissa bit, bias 1).
constexpr double kF4[] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};

}  // namespace

double narrow_to_double(DType t, std::uint8_t b) {
  if (is_float8(t)) return float8_to_double(t, b);
  if (t == DType::f4e2m1) return (b & 0x8 ? -1 : 1) * kF4[b & 0x7];
  if (t == DType::i4 || t == DType::i2) return static_cast<std::int8_t>(b);
  if (t == DType::u4 || t == DType::u2) return b;
  throw UnsupportedError(std::string(dtype_name(t)) + " is not a storage-only type");
}

std::uint8_t narrow_from_double(DType t, double v, bool saturate, E8m0Rounding rounding) {
  if (is_float8(t)) return float8_from_double(t, v, saturate, rounding);
  if (t == DType::f4e2m1) {
    if (std::isnan(v)) return 0;
    const std::uint8_t sign = std::signbit(v) ? 0x8 : 0;
    const double a = std::fabs(v);
    std::uint8_t code = 7;  // past the last midpoint: saturated to 6
    for (std::uint8_t c = 0; c < 7; ++c) {
      const double mid = (kF4[c] + kF4[c + 1]) / 2;
      if (a < mid || (a == mid && c % 2 == 0)) {  // a tie goes to the even code
        code = c;
        break;
      }
    }
    return static_cast<std::uint8_t>(sign | code);
  }
  if (!is_subbyte(t)) throw UnsupportedError(std::string(dtype_name(t)) + " is not sub-byte");
  const auto [lo, hi] = subbyte_int_range(t);
  if (std::isnan(v)) return 0;
  if (saturate)
    return static_cast<std::uint8_t>(
        static_cast<int>(std::clamp(v, static_cast<double>(lo), static_cast<double>(hi))));
  // Cast: toward zero, then the low bits (two's complement), sign-extended for the signed types.
  const double tr = std::trunc(std::clamp(v, -9.2e18, 9.2e18));
  const int bits = onnx_bits(t);
  const std::uint64_t low =
      static_cast<std::uint64_t>(static_cast<std::int64_t>(tr)) & ((1u << bits) - 1);
  std::int64_t value = static_cast<std::int64_t>(low);
  if (lo < 0 && low >= (1u << (bits - 1))) value -= std::int64_t{1} << bits;
  return static_cast<std::uint8_t>(value);
}

std::vector<std::uint8_t> pack_subbyte(DType t, const std::uint8_t* elems, std::size_t n) {
  const int bits = onnx_bits(t), per = 8 / bits;
  std::vector<std::uint8_t> out((n + per - 1) / per, 0);
  for (std::size_t i = 0; i < n; ++i)
    out[i / per] |=
        static_cast<std::uint8_t>((elems[i] & ((1u << bits) - 1)) << (bits * (i % per)));
  return out;
}

void unpack_subbyte(DType t, const std::uint8_t* packed, std::size_t n, std::uint8_t* elems) {
  const int bits = onnx_bits(t), per = 8 / bits;
  const bool sign = t == DType::i4 || t == DType::i2;
  for (std::size_t i = 0; i < n; ++i) {
    int v = (packed[i / per] >> (bits * (i % per))) & ((1 << bits) - 1);
    if (sign && v >= (1 << (bits - 1))) v -= 1 << bits;
    elems[i] = static_cast<std::uint8_t>(v);
  }
}

}  // namespace kiln
