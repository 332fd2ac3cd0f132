// Shape rules of the sequence op family: ONNX's sequences (a list of tensors of one dtype, whose
// shapes may differ) and optionals (a tensor or a sequence, or nothing). Their values are
// kiln::ValueKind types: `dtype` and `shape` are the tensors' (dims where they differ dynamic,
// an unknown rank where their ranks do). SequenceMap, whose body runs per element, is in
// control.cpp.
//   SequenceEmpty (dtype) -> seq, no tensors (their rank unknown)
//   SequenceConstruct (tensors...) -> seq of them
//   SequenceInsert (seq, tensor, position?) -> seq; position in [-n, n], default the end
//   SequenceAt (seq, position) -> tensor; position in [-n, n-1]
//   SequenceErase (seq, position?) -> seq; position in [-n, n-1], default the last
//   SequenceLength (seq) -> i64 scalar
//   ConcatFromSequence (seq; axis, new_axis) -> the tensors concatenated along axis, or stacked
//     along a new axis
//   SplitToSequence (x, split?; axis, keepdims) -> seq of x's pieces along axis
//   Optional (x?; dtype, sequence, shape: the importer's form of ONNX's `type`) -> opt
//   OptionalHasElement (x?) -> bool scalar; OptionalGetElement (opt) -> its value
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {
namespace {

using i64 = std::int64_t;

/// Input i, which must be a sequence (not an optional one).
const TensorType& sequence_input(const InferContext& ctx, std::size_t i) {
  const TensorType& t = ctx.input(i);
  if (t.kind != ValueKind::sequence)
    ctx.fail(fmt::format("input {} must be a sequence, got {}", i, t.to_string()));
  return t;
}

/// Input i, which must be a tensor.
const TensorType& tensor_input(const InferContext& ctx, std::size_t i) {
  const TensorType& t = ctx.input(i);
  if (!t.is_tensor()) ctx.fail(fmt::format("input {} must be a tensor, got {}", i, t.to_string()));
  return t;
}

/// A position input, where given: an int32 or int64 scalar.
void check_position(const InferContext& ctx, std::size_t i) {
  if (!ctx.has_input(i)) return;
  const TensorType& p = tensor_input(ctx, i);
  if (p.dtype != DType::i32 && p.dtype != DType::i64)
    ctx.fail(fmt::format("position must be int32 or int64, got {}", p.to_string()));
  // ONNX says a scalar; its own test data gives one-element 1-D tensors too.
  if (p.shape.rank() > 1 || (p.shape.is_static() && p.shape.numel() != 1))
    ctx.fail(fmt::format("position must hold one element, got {}", p.to_string()));
}

/// A sequence that holds `a`'s tensors and a tensor of type `t` (dtypes checked).
TensorType with_element(const InferContext& ctx, const TensorType& seq, const TensorType& t) {
  if (seq.dtype != t.dtype)
    ctx.fail(fmt::format("a sequence of {} tensors cannot hold a tensor of {}",
                         dtype_name(seq.dtype), t.to_string()));
  return *merge_types(seq, t.as(ValueKind::sequence));
}

std::vector<TensorType> infer_sequence_empty(const InferContext& ctx) {
  const DType t = dtype_from_onnx(static_cast<int>(ctx.node.attr_int("dtype", 1)));
  return {TensorType{t, Shape{}, ValueKind::sequence, false}};
}

std::vector<TensorType> infer_sequence_construct(const InferContext& ctx) {
  TensorType seq = tensor_input(ctx, 0).as(ValueKind::sequence);
  for (std::size_t i = 1; i < ctx.num_inputs(); ++i)
    seq = with_element(ctx, seq, tensor_input(ctx, i));
  return {seq};
}

std::vector<TensorType> infer_sequence_insert(const InferContext& ctx) {
  const TensorType& seq = sequence_input(ctx, 0);
  check_position(ctx, 2);
  return {with_element(ctx, seq, tensor_input(ctx, 1))};
}

std::vector<TensorType> infer_sequence_at(const InferContext& ctx) {
  const TensorType& seq = sequence_input(ctx, 0);
  if (!ctx.has_input(1)) ctx.fail("position is required");
  check_position(ctx, 1);
  return {held_tensor_type(ctx, seq, "the sequence")};
}

std::vector<TensorType> infer_sequence_erase(const InferContext& ctx) {
  const TensorType& seq = sequence_input(ctx, 0);
  check_position(ctx, 1);
  return {seq};
}

std::vector<TensorType> infer_sequence_length(const InferContext& ctx) {
  sequence_input(ctx, 0);
  return {TensorType{DType::i64, Shape{}}};
}

std::vector<TensorType> infer_concat_from_sequence(const InferContext& ctx) {
  const TensorType e = held_tensor_type(ctx, sequence_input(ctx, 0), "the sequence");
  const bool new_axis = ctx.node.attr_int("new_axis", 0) != 0;
  const i64 r = static_cast<i64>(e.shape.rank());
  const i64 out_rank = new_axis ? r + 1 : r;
  if (out_rank == 0) ctx.fail("cannot concatenate scalars without new_axis");
  const i64 axis = ctx.node.attr_int("axis");
  if (axis < -out_rank || axis >= out_rank)
    ctx.fail(fmt::format("axis {} is out of range for {} tensors{}", axis, e.shape.to_string(),
                         new_axis ? " stacked on a new axis" : ""));
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + out_rank : axis);
  Shape s;
  for (std::size_t d = 0, k = 0; d < static_cast<std::size_t>(out_rank); ++d)
    if (d == a) {
      s.push_back(Dim::dynamic());  // the count of tensors, or the sum of their dims
      if (!new_axis) ++k;
    } else {
      s.push_back(e.shape[k++]);
    }
  return {TensorType{e.dtype, std::move(s)}};
}

std::vector<TensorType> infer_split_to_sequence(const InferContext& ctx) {
  const TensorType& x = tensor_input(ctx, 0);
  const i64 r = static_cast<i64>(x.shape.rank());
  const i64 axis = ctx.node.attr_int("axis", 0);
  if (axis < -r || axis >= r)
    ctx.fail(fmt::format("axis {} is out of range for {}", axis, x.to_string()));
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + r : axis);
  Shape s;
  if (ctx.has_input(1)) {
    const TensorType& split = tensor_input(ctx, 1);
    if (split.dtype != DType::i32 && split.dtype != DType::i64)
      ctx.fail(fmt::format("split must be int32 or int64, got {}", split.to_string()));
    if (split.shape.rank() > 1)
      ctx.fail(fmt::format("split must be a scalar or 1-D, got {}", split.to_string()));
    for (std::size_t d = 0; d < x.shape.rank(); ++d)
      s.push_back(d == a ? Dim::dynamic() : x.shape[d]);
  } else {
    const bool keep = ctx.node.attr_int("keepdims", 1) != 0;
    for (std::size_t d = 0; d < x.shape.rank(); ++d)
      if (d != a)
        s.push_back(x.shape[d]);
      else if (keep)
        s.push_back(Dim(1));
  }
  return {TensorType{x.dtype, std::move(s), ValueKind::sequence}};
}

std::vector<TensorType> infer_optional(const InferContext& ctx) {
  if (ctx.has_input(0)) {
    const TensorType& x = ctx.input(0);
    if (x.is_optional())
      ctx.fail(fmt::format("input is {}: an optional cannot hold an optional", x.to_string()));
    return {x.as(x.is_tensor() ? ValueKind::optional_tensor : ValueKind::optional_sequence)};
  }
  if (!ctx.node.has_attr("dtype"))
    ctx.fail("an Optional without an input needs its type (the attributes dtype and sequence)");
  TensorType t{dtype_from_onnx(static_cast<int>(ctx.node.attr_int("dtype"))), Shape{},
               ctx.node.attr_int("sequence", 0) != 0 ? ValueKind::optional_sequence
                                                     : ValueKind::optional_tensor};
  if (ctx.node.has_attr("shape"))
    for (i64 d : ctx.node.attr_ints("shape")) t.shape.push_back(Dim(d));
  else
    t.rank_known = false;
  return {t};
}

std::vector<TensorType> infer_optional_has_element(const InferContext&) {
  return {TensorType{DType::boolean, Shape{}}};
}

std::vector<TensorType> infer_optional_get_element(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.is_sequence()) return {x.as(ValueKind::sequence)};
  return {held_tensor_type(ctx, x, "the optional")};
}

}  // namespace

void register_sequence(OpRegistry& r) {
  const char* fam = "sequence";
  r.add(any_value_schema("SequenceEmpty", fam, 0, 0, 1, 1, infer_sequence_empty));
  r.add(any_value_schema("SequenceConstruct", fam, 1, -1, 1, 1, infer_sequence_construct));
  r.add(any_value_schema("SequenceInsert", fam, 2, 3, 1, 1, infer_sequence_insert));
  r.add(any_value_schema("SequenceAt", fam, 2, 2, 1, 1, infer_sequence_at));
  r.add(any_value_schema("SequenceErase", fam, 1, 2, 1, 1, infer_sequence_erase));
  r.add(any_value_schema("SequenceLength", fam, 1, 1, 1, 1, infer_sequence_length));
  r.add(any_value_schema("ConcatFromSequence", fam, 1, 1, 1, 1, infer_concat_from_sequence));
  r.add(any_value_schema("SplitToSequence", fam, 1, 2, 1, 1, infer_split_to_sequence));
  r.add(any_value_schema("Optional", fam, 0, 1, 1, 1, infer_optional));
  r.add(any_value_schema("OptionalHasElement", fam, 0, 1, 1, 1, infer_optional_has_element));
  r.add(any_value_schema("OptionalGetElement", fam, 1, 1, 1, 1, infer_optional_get_element));
}

}  // namespace kiln::ops
