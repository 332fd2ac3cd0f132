// Reference kernels of the sequence op family (shapes and semantics in src/ir/ops/sequence.cpp).
// A sequence is a kiln::Tensor::sequence (its tensors shared, never changed in place: an insert
// makes a new list of the same tensors); an empty optional is Tensor::none; an optional that
// holds a value is that value. Positions out of range are errors naming the node, the position
// and the length.
#include <fmt/format.h>

#include "families.hpp"
#include "tensor_util.hpp"

namespace kiln::reference {
namespace {

using namespace tensor_detail;

const Tensor& sequence_in(const KernelContext& ctx, std::size_t i) {
  const Tensor& s = ctx.in(i);
  if (!s.is_sequence())
    ctx.fail(fmt::format("input {} must be a sequence, got {}", i, s.type_string()));
  return s;
}

const Tensor& tensor_in(const KernelContext& ctx, std::size_t i) {
  const Tensor& t = ctx.in(i);
  if (!t.is_tensor())
    ctx.fail(fmt::format("input {} must be a tensor, got {}", i, t.type_string()));
  return t;
}

/// Position input i as an index into a sequence of `n` tensors: in [-n, n-1], or [-n, n] where
/// `end_allowed` (an insert's); `fallback` where the input is absent.
std::size_t position(const KernelContext& ctx, std::size_t i, std::size_t n, bool end_allowed,
                     std::size_t fallback) {
  if (!ctx.has(i)) return fallback;
  const Tensor& p = tensor_in(ctx, i);
  if (p.numel() != 1)
    ctx.fail(fmt::format("position must hold one element, got {}", p.type_string()));
  const i64 v = p.to_int64s()[0];
  const i64 len = static_cast<i64>(n);
  const i64 hi = end_allowed ? len : len - 1;
  if (v < -len || v > hi)
    ctx.fail(
        fmt::format("position {} is out of range for a sequence of {} tensors (expected {} "
                    "to {})",
                    v, len, -len, hi));
  return static_cast<std::size_t>(v < 0 ? v + len : v);
}

void sequence_empty(KernelContext& ctx) {
  ctx.set(0,
          Tensor::sequence(dtype_from_onnx(static_cast<int>(ctx.node.attr_int("dtype", 1))), {}));
}

void sequence_construct(KernelContext& ctx) {
  std::vector<Tensor> e;
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i) e.push_back(tensor_in(ctx, i));
  for (std::size_t i = 1; i < e.size(); ++i)
    if (e[i].dtype() != e[0].dtype())
      ctx.fail(fmt::format("input {} is {}, input 0 {}: a sequence's tensors have one dtype", i,
                           e[i].type_string(), e[0].type_string()));
  const DType t = e[0].dtype();
  ctx.set(0, Tensor::sequence(t, std::move(e)));
}

void sequence_insert(KernelContext& ctx) {
  const Tensor& s = sequence_in(ctx, 0);
  const Tensor& x = tensor_in(ctx, 1);
  if (x.dtype() != s.dtype())
    ctx.fail(fmt::format("a sequence of {} tensors cannot hold a tensor of {}",
                         dtype_name(s.dtype()), x.type_string()));
  std::vector<Tensor> e = s.elements();
  const std::size_t at = position(ctx, 2, e.size(), true, e.size());
  e.insert(e.begin() + static_cast<std::ptrdiff_t>(at), x);
  ctx.set(0, Tensor::sequence(s.dtype(), std::move(e)));
}

void sequence_at(KernelContext& ctx) {
  const Tensor& s = sequence_in(ctx, 0);
  ctx.set(0, s.elements()[position(ctx, 1, s.elements().size(), false, 0)]);
}

void sequence_erase(KernelContext& ctx) {
  const Tensor& s = sequence_in(ctx, 0);
  std::vector<Tensor> e = s.elements();
  if (e.empty()) ctx.fail("cannot erase from an empty sequence");
  const std::size_t at = position(ctx, 1, e.size(), false, e.size() - 1);
  e.erase(e.begin() + static_cast<std::ptrdiff_t>(at));
  ctx.set(0, Tensor::sequence(s.dtype(), std::move(e)));
}

void concat_from_sequence(KernelContext& ctx) {
  const Tensor& s = sequence_in(ctx, 0);
  const auto& e = s.elements();
  if (e.empty()) ctx.fail("cannot concatenate an empty sequence (the result's shape is unknown)");
  const bool new_axis = ctx.node.attr_int("new_axis", 0) != 0;
  const i64 r = static_cast<i64>(e[0].rank()) + (new_axis ? 1 : 0);
  const i64 axis = ctx.node.attr_int("axis");
  if (r == 0 || axis < -r || axis >= r)
    ctx.fail(fmt::format("axis {} is out of range for the sequence's tensors, {}", axis,
                         e[0].type_string()));
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + r : axis);
  // Each tensor, with the new axis as a dim of 1 where stacking (a view: no copy).
  std::vector<Tensor> parts;
  for (const Tensor& x : e) {
    std::vector<i64> d = x.dims();
    if (new_axis) d.insert(d.begin() + static_cast<std::ptrdiff_t>(a), 1);
    parts.push_back(x.reshaped(std::move(d)));
  }
  std::vector<const Tensor*> ins;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Tensor& p = parts[i];
    bool ok = static_cast<i64>(p.rank()) == r;
    for (std::size_t k = 0; ok && k < p.rank(); ++k) ok = k == a || p.dim(k) == parts[0].dim(k);
    if (!ok)
      ctx.fail(fmt::format("tensor {} is {}, tensor 0 {}: they must agree but along axis {}{}", i,
                           e[i].type_string(), e[0].type_string(), axis,
                           new_axis ? " (stacked: in every dim)" : ""));
    ins.push_back(&p);
  }
  ctx.set(0, concat_along(ins, a));
}

void split_to_sequence(KernelContext& ctx) {
  const Tensor& x = tensor_in(ctx, 0);
  const i64 r = static_cast<i64>(x.rank());
  const i64 axis = ctx.node.attr_int("axis", 0);
  if (axis < -r || axis >= r)
    ctx.fail(fmt::format("axis {} is out of range for {}", axis, x.type_string()));
  const auto a = static_cast<std::size_t>(axis < 0 ? axis + r : axis);
  const i64 dim = x.dim(a);
  std::vector<i64> lengths;
  bool squeeze = false;
  if (!ctx.has(1)) {
    lengths.assign(static_cast<std::size_t>(dim), 1);
    squeeze = ctx.node.attr_int("keepdims", 1) == 0;
  } else {
    const Tensor& split = tensor_in(ctx, 1);
    const auto v = split.to_int64s();
    if (split.rank() == 0) {
      if (v[0] <= 0) ctx.fail(fmt::format("split is {}: expected a length of 1 or more", v[0]));
      for (i64 at = 0; at < dim; at += v[0]) lengths.push_back(std::min(v[0], dim - at));
    } else {
      i64 sum = 0;
      for (i64 l : v) {
        if (l < 0) ctx.fail(fmt::format("split {} has a negative length", dims_to_string(v)));
        if (l > dim - sum)  // checked before adding: no overflow
          ctx.fail(fmt::format("split {} sums to more than axis {} of {}, {} long",
                               dims_to_string(v), axis, x.type_string(), dim));
        sum += l;
      }
      if (sum != dim)
        ctx.fail(fmt::format("split {} sums to {}, but axis {} of {} is {} long", dims_to_string(v),
                             sum, axis, x.type_string(), dim));
      lengths = v;
    }
  }
  // Each piece as Split makes its outputs: a strided copy from its first slice.
  const auto st = strides_of(x.dims());
  std::vector<Tensor> pieces;
  i64 from = 0;
  for (i64 len : lengths) {
    std::vector<i64> d = x.dims();
    d[a] = len;
    Tensor p = strided_copy(x, d, st, from * st[a]);
    if (squeeze) {
      d.erase(d.begin() + static_cast<std::ptrdiff_t>(a));
      p = p.reshaped(d);
    }
    pieces.push_back(std::move(p));
    from += len;
  }
  ctx.set(0, Tensor::sequence(x.dtype(), std::move(pieces)));
}

void optional(KernelContext& ctx) {
  if (ctx.has(0)) {
    if (ctx.in(0).is_none()) ctx.fail("an optional cannot hold an optional");
    ctx.set(0, ctx.in(0));
    return;
  }
  ctx.set(0, Tensor::none(dtype_from_onnx(static_cast<int>(ctx.node.attr_int("dtype")))));
}

void optional_has_element(KernelContext& ctx) {
  ctx.set(0, Tensor::scalar<bool>(ctx.has(0) && !ctx.in(0).is_none()));
}

void optional_get_element(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (x.is_none()) ctx.fail("the optional holds nothing");
  ctx.set(0, x);
}

}  // namespace

void register_sequence(KernelRegistry& r) {
  r.add("SequenceEmpty", sequence_empty);
  r.add("SequenceConstruct", sequence_construct);
  r.add("SequenceInsert", sequence_insert);
  r.add("SequenceAt", sequence_at);
  r.add("SequenceErase", sequence_erase);
  r.add("SequenceLength", [](KernelContext& ctx) {
    ctx.set(0, Tensor::scalar<i64>(static_cast<i64>(sequence_in(ctx, 0).elements().size())));
  });
  r.add("ConcatFromSequence", concat_from_sequence);
  r.add("SplitToSequence", split_to_sequence);
  r.add("Optional", optional);
  r.add("OptionalHasElement", optional_has_element);
  r.add("OptionalGetElement", optional_get_element);
}

}  // namespace kiln::reference
