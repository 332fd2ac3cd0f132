#include "infer_util.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace kiln::ops {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.rank(), b.rank());
  std::vector<Dim> out(r);
  for (std::size_t i = 0; i < r; ++i) {
    const bool ha = i < a.rank(), hb = i < b.rank();
    const Dim da = ha ? a[a.rank() - 1 - i] : Dim(1);
    const Dim db = hb ? b[b.rank() - 1 - i] : Dim(1);
    Dim d;
    if (da.is_fixed() && da.value() == 1)
      d = db;
    else if (db.is_fixed() && db.value() == 1)
      d = da;
    else if (da.is_fixed() && db.is_fixed()) {
      if (da.value() != db.value())
        throw ShapeError("cannot broadcast " + a.to_string() + " with " + b.to_string() +
                         ": dims " + da.to_string() + " and " + db.to_string() + " differ");
      d = da;
    } else if (da.is_fixed())
      d = da;
    else if (db.is_fixed())
      d = db;
    else
      d = da.same_as(db) ? da : Dim::dynamic();
    out[r - 1 - i] = d;
  }
  return Shape(std::move(out));
}

std::optional<std::vector<std::int64_t>> constant_ints(const InferContext& ctx, std::size_t i) {
  const Tensor* t = ctx.constant(i);
  if (!t) return std::nullopt;
  return t->to_int64s();
}

std::optional<TensorType> merge_types(const TensorType& a, const TensorType& b) {
  auto optional_of = [](ValueKind k) {
    return k == ValueKind::tensor     ? ValueKind::optional_tensor
           : k == ValueKind::sequence ? ValueKind::optional_sequence
                                      : k;
  };
  ValueKind kind = a.kind;
  if (a.kind != b.kind) {
    if (optional_of(a.kind) != optional_of(b.kind)) return std::nullopt;
    kind = optional_of(a.kind);
  }
  if (a.dtype != b.dtype) return std::nullopt;
  TensorType t{a.dtype, Shape{}, kind};
  if (!a.rank_known || !b.rank_known || a.shape.rank() != b.shape.rank()) {
    if (kind == ValueKind::tensor) return std::nullopt;
    t.rank_known = false;
    return t;
  }
  for (std::size_t d = 0; d < a.shape.rank(); ++d)
    t.shape.push_back(a.shape[d].same_as(b.shape[d]) || a.shape[d] == b.shape[d] ? a.shape[d]
                                                                                 : Dim::dynamic());
  return t;
}

TensorType held_tensor_type(const InferContext& ctx, const TensorType& t, const std::string& what) {
  if (!t.rank_known)
    throw UnsupportedError(
        fmt::format("{}{} is {}: its tensors' rank is not known here (a sequence's tensors may "
                    "differ in rank), and each kiln tensor has one rank",
                    ctx.node.where(), what, t.to_string()));
  return {t.dtype, t.shape};
}

Shape dynamic_shape(std::size_t rank) {
  Shape s;
  for (std::size_t i = 0; i < rank; ++i) s.push_back(Dim::dynamic());
  return s;
}

}  // namespace kiln::ops
