#include "kiln/ir/dtype.hpp"

#include <string>

namespace kiln {

DType parse_dtype(std::string_view n) {
  struct Alias { std::string_view name; DType t; };
  static constexpr Alias aliases[] = {
      {"f32", DType::f32},   {"float32", DType::f32}, {"float", DType::f32},
      {"f64", DType::f64},   {"float64", DType::f64}, {"double", DType::f64},
      {"f16", DType::f16},   {"float16", DType::f16}, {"half", DType::f16},
      {"bf16", DType::bf16}, {"bfloat16", DType::bf16},
      {"i8", DType::i8},     {"int8", DType::i8},     {"u8", DType::u8},   {"uint8", DType::u8},
      {"i16", DType::i16},   {"int16", DType::i16},   {"u16", DType::u16}, {"uint16", DType::u16},
      {"i32", DType::i32},   {"int32", DType::i32},   {"u32", DType::u32}, {"uint32", DType::u32},
      {"i64", DType::i64},   {"int64", DType::i64},   {"u64", DType::u64}, {"uint64", DType::u64},
      {"bool", DType::boolean}};
  for (const auto& a : aliases)
    if (a.name == n) return a.t;
  std::string all;
  for (DType t : kAllDTypes) all += (all.empty() ? "" : ", ") + std::string(dtype_name(t));
  throw UnsupportedError("unknown dtype '" + std::string(n) + "'; supported: " + all);
}

}  // namespace kiln
