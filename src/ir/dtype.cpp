#include "kiln/ir/dtype.hpp"

#include <iterator>
#include <string>

namespace kiln {

DType parse_dtype(std::string_view n) {
  struct Alias {
    std::string_view name;
    DType t;
  };
  static constexpr Alias aliases[] = {
      {"f32", DType::f32},     {"float32", DType::f32},   {"float", DType::f32},
      {"f64", DType::f64},     {"float64", DType::f64},   {"double", DType::f64},
      {"f16", DType::f16},     {"float16", DType::f16},   {"half", DType::f16},
      {"bf16", DType::bf16},   {"bfloat16", DType::bf16}, {"i8", DType::i8},
      {"int8", DType::i8},     {"u8", DType::u8},         {"uint8", DType::u8},
      {"i16", DType::i16},     {"int16", DType::i16},     {"u16", DType::u16},
      {"uint16", DType::u16},  {"i32", DType::i32},       {"int32", DType::i32},
      {"u32", DType::u32},     {"uint32", DType::u32},    {"i64", DType::i64},
      {"int64", DType::i64},   {"u64", DType::u64},       {"uint64", DType::u64},
      {"bool", DType::boolean}};
  for (const auto& a : aliases)
    if (a.name == n) return a.t;
  std::string all;
  for (DType t : kAllDTypes) all += (all.empty() ? "" : ", ") + std::string(dtype_name(t));
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

int dtype_to_onnx(DType t) {
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
  }
  return 0;
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
    default: break;
  }
  throw UnsupportedError("ONNX data type " + std::to_string(code) + " (" + onnx_type_name(code) +
                         ") is not supported; supported: FLOAT, DOUBLE, FLOAT16, BFLOAT16, "
                         "INT8/16/32/64, UINT8/16/32/64, BOOL");
}

}  // namespace kiln
