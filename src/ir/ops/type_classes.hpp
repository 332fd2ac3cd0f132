// The classes of element types that ops accept (ONNX's type constraints on the IR's dtypes). The
// shape rules check inputs against them (ir/ops/elementwise.cpp) and the reference kernels
// instantiate only the types they admit (reference/elementwise_loops.hpp), so both say the same.
#pragma once

#include <string_view>

#include "kiln/ir/dtype.hpp"

namespace kiln::ops {

enum class Types {
  any,
  numeric,
  floating,
  signed_numeric,
  integer,
  unsigned_integer,
  boolean,
  prelu
};

constexpr bool accepts(Types t, DType d) {
  switch (t) {
    case Types::any: return true;
    case Types::numeric: return d != DType::boolean && !is_storage_only(d);
    case Types::floating: return is_float(d);
    case Types::signed_numeric: return is_float(d) || is_signed_integer(d);
    case Types::integer: return is_integer(d);
    case Types::unsigned_integer: return is_integer(d) && !is_signed_integer(d);
    case Types::boolean: return d == DType::boolean;
    case Types::prelu:
      return is_float(d) || d == DType::i32 || d == DType::i64 || d == DType::u32 ||
             d == DType::u64;
  }
  return false;
}

/// The dtypes of a class, as an error message lists them.
constexpr std::string_view describe(Types t) {
  switch (t) {
    case Types::any: return "any type";
    case Types::numeric: return "numeric types";
    case Types::floating: return "f16, bf16, f32, f64";
    case Types::signed_numeric: return "floats and signed integers";
    case Types::integer: return "integers";
    case Types::unsigned_integer: return "u8, u16, u32, u64";
    case Types::boolean: return "bool";
    case Types::prelu: return "floats, i32, i64, u32, u64";
  }
  return "?";
}

}  // namespace kiln::ops
