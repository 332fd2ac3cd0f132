// The runtime's view of the pointwise table (include/kiln/ir/pointwise_ops.def): which kernel op
// a node runs, and with which alpha and beta. Host only; needs no GPU.
#pragma once

#include <optional>
#include <span>

#include "kiln/ir/graph.hpp"
#include "pointwise.cuh"

namespace kiln::runtime::detail {

/// One unary row of the table.
struct UnaryRow {
  kernels::PointwiseOp op;
  const char* onnx;
  bool activation;
  const char* a_attr;
  float a_default;
  int a_input;
  const char* b_attr;
  float b_default;
  int b_input;
  const char* when_attr;
  const char* when_value;
};
/// One binary row of the table.
struct BinaryRow {
  kernels::PointwiseOp op;
  const char* onnx;
  const char* variadic;
  bool activation;
  const char* when_attr;
  const char* when_value;
};
std::span<const UnaryRow> unary_rows();
std::span<const BinaryRow> binary_rows();

/// The unary row that runs `n` (a matching `when` row before an unconditional one); nullptr
/// when `n` is no unary op of the table.
const UnaryRow* unary_row(const Node& n);
/// The binary row that runs `n` (two-input or variadic); nullptr when there is none.
const BinaryRow* binary_row(const Node& n);
/// Whether `n`'s attribute `attr` is `value` (a string, or an int in decimal); true for "".
bool attr_is(const Node& n, const char* attr, const char* value);

}  // namespace kiln::runtime::detail
