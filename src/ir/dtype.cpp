#include "kiln/ir/dtype.hpp"

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
                                      {"float8e8m0", DType::f8e8m0}};
  for (const auto& a : aliases)
    if (a.name == n) return a.t;
  std::string all;
  for (DType t : kAllDTypes) all += (all.empty() ? "" : ", ") + std::string(dtype_name(t));
  for (DType t : kFloat8DTypes) all += ", " + std::string(dtype_name(t));
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
    default: break;
  }
  throw UnsupportedError("ONNX data type " + std::to_string(code) + " (" + onnx_type_name(code) +
                         ") is not supported; supported: FLOAT, DOUBLE, FLOAT16, BFLOAT16, "
                         "INT8/16/32/64, UINT8/16/32/64, BOOL, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, "
                         "FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT8E8M0");
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
