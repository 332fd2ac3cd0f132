// Helpers shared by the shape rules of the op families.
#pragma once

#include <vector>

#include "kiln/ir/error.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln::ops {

/// numpy broadcasting of two shapes (symbols kept where they agree).
Shape broadcast_shapes(const Shape& a, const Shape& b);

/// Runs a rule from shape_rules.hpp; a violation is rethrown prefixed with the node.
template <class F>
auto checked(const InferContext& ctx, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ShapeError& e) {
    ctx.fail(e.what());
  }
}

/// The integer values of input i if it is a known constant; nullopt otherwise.
std::optional<std::vector<std::int64_t>> constant_ints(const InferContext& ctx, std::size_t i);

/// The type of a value that has type `a` at some times and `b` at others (If's branches, a
/// loop-carried value entering and leaving its body, a sequence's tensors): dims where they
/// differ are dynamic; a sequence's or optional's tensors of two ranks have an unknown rank; X and
/// an optional of X give the optional. nullopt where the kinds or dtypes differ otherwise, or two
/// tensors' ranks.
std::optional<TensorType> merge_types(const TensorType& a, const TensorType& b);

/// The type of the tensors a sequence or optional of type `t` holds (`t` itself for a tensor);
/// an UnsupportedError naming the node and `what` where their rank is not known (each kiln
/// tensor has one rank).
TensorType held_tensor_type(const InferContext& ctx, const TensorType& t, const std::string& what);

/// A shape with every dim dynamic, of the given rank.
Shape dynamic_shape(std::size_t rank);

/// Same type as input 0 (unary ops).
inline std::vector<TensorType> same_as_input0(const InferContext& ctx) { return {ctx.input(0)}; }

/// The output shape of Conv (nn.cpp's rule, the node's attributes) over inputs of these shapes,
/// whatever their element types: ConvInteger and QLinearConv use it.
Shape float_conv_shape(const Node& node, const TensorType& x, const TensorType& w);
/// The output shape of MatMul over inputs of these shapes (MatMulInteger, QLinearMatMul).
Shape float_matmul_shape(const Node& node, const TensorType& a, const TensorType& b);

/// Shorthand for registering a schema.
inline OpSchema schema(std::string name, std::string family, int min_in, int max_in, int min_out,
                       int max_out, InferFn f) {
  return OpSchema{std::move(name), std::move(family), min_in,      max_in,
                  min_out,         max_out,           std::move(f)};
}
/// The same for an op whose rule takes sequences and optionals (OpSchema::takes_any_value).
inline OpSchema any_value_schema(std::string name, std::string family, int min_in, int max_in,
                                 int min_out, int max_out, InferFn f) {
  OpSchema s =
      schema(std::move(name), std::move(family), min_in, max_in, min_out, max_out, std::move(f));
  s.takes_any_value = true;
  return s;
}

}  // namespace kiln::ops
