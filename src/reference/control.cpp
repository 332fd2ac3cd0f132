// Reference kernels of the control op family (If, Loop, Scan; shapes in src/ir/ops/control.cpp):
// each runs its body with the reference executor, its formal inputs first, then the node's
// captured inputs under the body's names for them (kiln::Subgraph).
//
// Loop follows ONNX's reference: while (M absent or i < M) and cond (true when absent), run the
// body; its first output is the next cond. Each scan output's per-iteration values must keep one
// shape, and are stacked on a new leading dim; a loop that runs no iteration gives empty scan
// outputs of the dims its body's inference gives (0 where a dim is not known). A loop that would
// pass control::kMaxLoopIterations is an error naming the node.
//
// Scan slices each scan input along its axis (from the end where its direction is 1), and stacks
// each scan output's elements along its output axis (in reverse where its direction is 1).
#include <cstring>

#include <fmt/format.h>

#include "families.hpp"
#include "kiln/ir/control.hpp"
#include "tensor_util.hpp"

namespace kiln::reference {
namespace {

using i64 = std::int64_t;

/// Runs body `attr` of the node on its formal inputs and the node's captured inputs; returns
/// the body's outputs in order.
std::vector<Tensor> run_body(const KernelContext& ctx, const char* attr,
                             const std::vector<Tensor>& formal) {
  const Subgraph& s = ctx.node.attr_graph(attr);
  const Graph& g = *s.graph;
  const std::size_t body_formal = g.inputs.size() - s.captures;
  if (body_formal != formal.size())
    ctx.fail(fmt::format("{} takes {} inputs before its captured values; this op gives it {}", attr,
                         body_formal, formal.size()));
  const std::size_t first_captured = control::formal_inputs(ctx.node);
  TensorMap in;
  for (std::size_t i = 0; i < formal.size(); ++i) in[g.inputs[i].name] = formal[i];
  for (std::size_t j = 0; j < s.captures; ++j)
    in[g.inputs[body_formal + j].name] = ctx.in(first_captured + j);
  TensorMap out;
  try {
    out = Executor(g).run_body(in);
  } catch (const UnsupportedError& e) {
    ctx.unsupported(fmt::format("in {}: {}", attr, e.what()));
  } catch (const Error& e) {
    ctx.fail(fmt::format("in {}: {}", attr, e.what()));
  }
  std::vector<Tensor> result;
  for (const auto& o : g.outputs) result.push_back(out.at(o));
  return result;
}

bool truth(const KernelContext& ctx, const Tensor& t, const char* what) {
  if (t.numel() != 1)
    ctx.fail(fmt::format("{} must hold one element, got {}", what, t.type_string()));
  return t.get(0) != 0;
}

/// Element `t` of `x` along `axis`: x's dims without that axis.
Tensor slice_along(const Tensor& x, std::size_t axis, i64 t) {
  std::vector<i64> dims;
  i64 outer = 1, inner = 1;
  for (std::size_t d = 0; d < x.rank(); ++d) {
    if (d < axis) outer *= x.dim(d);
    if (d > axis) inner *= x.dim(d);
    if (d != axis) dims.push_back(x.dim(d));
  }
  Tensor out(x.dtype(), dims);
  const std::size_t row = static_cast<std::size_t>(inner) * dtype_size(x.dtype());
  const i64 len = x.dim(axis);
  for (i64 o = 0; o < outer; ++o)
    if (row)
      std::memcpy(out.raw() + static_cast<std::size_t>(o) * row,
                  x.raw() + static_cast<std::size_t>(o * len + t) * row, row);
  return out;
}

/// Stacks `parts` (one or more, of one shape) along a new `axis`; `reverse` puts the first part
/// last.
Tensor stack_along(const KernelContext& ctx, const std::vector<Tensor>& parts,
                   const std::vector<i64>& elem_dims, DType dtype, std::size_t axis, bool reverse,
                   const char* what) {
  const i64 len = static_cast<i64>(parts.size());
  for (std::size_t t = 0; t < parts.size(); ++t)
    if (parts[t].dims() != elem_dims || parts[t].dtype() != dtype)
      ctx.fail(fmt::format(
          "{} is {} at iteration {}, {}{} at the first: each iteration must give "
          "one shape",
          what, parts[t].type_string(), t, dtype_name(dtype), dims_to_string(elem_dims)));
  // Each part with a dim of 1 at `axis` (a view), concatenated there in order or reversed.
  std::vector<i64> one = elem_dims;
  one.insert(one.begin() + static_cast<std::ptrdiff_t>(axis), 1);
  std::vector<Tensor> views;
  for (i64 t = 0; t < len; ++t)
    views.push_back(parts[static_cast<std::size_t>(reverse ? len - 1 - t : t)].reshaped(one));
  std::vector<const Tensor*> ins;
  for (const Tensor& v : views) ins.push_back(&v);
  return tensor_detail::concat_along(ins, axis);
}

void if_kernel(KernelContext& ctx) {
  const char* branch = truth(ctx, ctx.in(0), "cond") ? "then_branch" : "else_branch";
  auto out = run_body(ctx, branch, {});
  if (out.size() != ctx.node.outputs.size())
    ctx.fail(fmt::format("{} gave {} outputs, the node has {}", branch, out.size(),
                         ctx.node.outputs.size()));
  for (std::size_t i = 0; i < out.size(); ++i) ctx.set(i, std::move(out[i]));
}

/// The scan outputs of a loop that ran no iteration: empty, of the dtypes and dims the body's
/// inference gives (0 where a dim is not known).
std::vector<Tensor> empty_scan_outputs(const KernelContext& ctx, std::size_t n, std::size_t k,
                                       const std::vector<Tensor>& carried) {
  std::vector<TensorType> formal{{DType::i64, Shape{}}, {DType::boolean, Shape{}}};
  for (const auto& c : carried) formal.push_back(type_of_value(c));
  std::vector<TensorType> captured;
  std::vector<const Tensor*> captured_values;
  for (std::size_t i = control::formal_inputs(ctx.node); i < ctx.num_inputs(); ++i) {
    captured.push_back(type_of_value(ctx.in(i)));
    captured_values.push_back(ctx.in(i).is_tensor() ? &ctx.in(i) : nullptr);
  }
  std::vector<const TensorType*> captured_types;
  for (const auto& t : captured) captured_types.push_back(&t);
  auto types = control::body_output_types(ctx.node, "body", formal, captured_types, captured_values,
                                          nullptr);
  std::vector<Tensor> out;
  for (std::size_t j = 0; j < k && 1 + n + j < types.size(); ++j) {
    std::vector<i64> d{0};
    for (const Dim& x : types[1 + n + j].shape) d.push_back(x.is_fixed() ? x.value() : 0);
    out.emplace_back(types[1 + n + j].dtype, std::move(d));
  }
  return out;
}

void loop_kernel(KernelContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  const std::size_t n = formal - 2;
  const bool has_m = ctx.has(0);
  if (has_m && ctx.in(0).numel() != 1)
    ctx.fail(
        fmt::format("the trip count M must hold one element, got {}", ctx.in(0).type_string()));
  const i64 m = has_m ? ctx.in(0).to_int64s()[0] : 0;
  bool cond = ctx.has(1) ? truth(ctx, ctx.in(1), "cond") : true;
  std::vector<Tensor> carried;
  for (std::size_t i = 0; i < n; ++i) carried.push_back(ctx.in(2 + i));
  std::vector<std::vector<Tensor>> scans;
  i64 it = 0;
  for (; cond && (!has_m || it < m); ++it) {
    if (it >= control::kMaxLoopIterations)
      ctx.fail(
          fmt::format("ran {} iterations and its trip count and condition allow more: kiln "
                      "stops a loop there (control::kMaxLoopIterations)",
                      it));
    std::vector<Tensor> formal_in{Tensor::scalar<i64>(it), Tensor::scalar<bool>(cond)};
    formal_in.insert(formal_in.end(), carried.begin(), carried.end());
    auto out = run_body(ctx, "body", formal_in);
    if (out.size() < 1 + n)
      ctx.fail(fmt::format("the body gave {} outputs, fewer than cond and {} loop-carried values",
                           out.size(), n));
    cond = truth(ctx, out[0], "the body's cond");
    for (std::size_t i = 0; i < n; ++i) carried[i] = std::move(out[1 + i]);
    const std::size_t k = out.size() - 1 - n;
    scans.resize(k);
    for (std::size_t j = 0; j < k; ++j) scans[j].push_back(std::move(out[1 + n + j]));
  }
  for (std::size_t i = 0; i < n; ++i) ctx.set(i, carried[i]);
  const std::size_t k = ctx.node.outputs.size() - n;
  if (it == 0) {
    auto empty = empty_scan_outputs(ctx, n, k, carried);
    for (std::size_t j = 0; j < empty.size(); ++j) ctx.set(n + j, std::move(empty[j]));
    return;
  }
  for (std::size_t j = 0; j < k; ++j) {
    const auto& parts = scans[j];
    ctx.set(n + j, stack_along(ctx, parts, parts[0].dims(), parts[0].dtype(), 0, false,
                               fmt::format("scan output {}", j).c_str()));
  }
}

void scan_kernel(KernelContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  const auto m = static_cast<std::size_t>(ctx.node.attr_int("num_scan_inputs"));
  const std::size_t n = formal - m;
  auto axes = ctx.node.attr_ints("scan_input_axes", std::vector<i64>(m, 0));
  auto dirs = ctx.node.attr_ints("scan_input_directions", std::vector<i64>(m, 0));
  i64 len = -1;
  std::vector<std::size_t> axis(m);
  for (std::size_t i = 0; i < m; ++i) {
    const Tensor& x = ctx.in(n + i);
    const i64 r = static_cast<i64>(x.rank());
    axis[i] = static_cast<std::size_t>(axes[i] < 0 ? axes[i] + r : axes[i]);
    const i64 l = x.dim(axis[i]);
    if (len >= 0 && l != len)
      ctx.fail(
          fmt::format("scan input {} has length {} along its axis, an earlier one {}", i, l, len));
    len = l;
  }
  std::vector<Tensor> states;
  for (std::size_t i = 0; i < n; ++i) states.push_back(ctx.in(i));
  const std::size_t k = ctx.node.outputs.size() - n;
  std::vector<std::vector<Tensor>> scans(k);
  for (i64 t = 0; t < len; ++t) {
    std::vector<Tensor> formal_in = states;
    for (std::size_t i = 0; i < m; ++i)
      formal_in.push_back(slice_along(ctx.in(n + i), axis[i], dirs[i] == 1 ? len - 1 - t : t));
    auto out = run_body(ctx, "body", formal_in);
    if (out.size() != n + k)
      ctx.fail(fmt::format("the body gave {} outputs, the node has {}", out.size(), n + k));
    for (std::size_t i = 0; i < n; ++i) states[i] = std::move(out[i]);
    for (std::size_t j = 0; j < k; ++j) scans[j].push_back(std::move(out[n + j]));
  }
  for (std::size_t i = 0; i < n; ++i) ctx.set(i, states[i]);
  auto out_axes = ctx.node.attr_ints("scan_output_axes", std::vector<i64>(k, 0));
  auto out_dirs = ctx.node.attr_ints("scan_output_directions", std::vector<i64>(k, 0));
  for (std::size_t j = 0; j < k; ++j) {
    if (scans[j].empty()) ctx.unsupported("a Scan over a length of 0 (its outputs' dims unknown)");
    const Tensor& first = scans[j][0];
    const i64 r = static_cast<i64>(first.rank()) + 1;
    const auto a = static_cast<std::size_t>(out_axes[j] < 0 ? out_axes[j] + r : out_axes[j]);
    ctx.set(n + j, stack_along(ctx, scans[j], first.dims(), first.dtype(), a, out_dirs[j] == 1,
                               fmt::format("scan output {}", j).c_str()));
  }
}

void sequence_map_kernel(KernelContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  std::size_t len = 0;
  for (std::size_t i = 0; i < formal; ++i)
    if (const Tensor& x = ctx.in(i); x.is_sequence()) {
      if (i > 0 && x.elements().size() != len)
        ctx.fail(
            fmt::format("input {} holds {} tensors, input 0 {}: the sequences must have one "
                        "length",
                        i, x.elements().size(), len));
      len = x.elements().size();
    } else if (i == 0 || !x.is_tensor()) {
      ctx.fail(fmt::format("input {} is {}: expected a sequence{}", i, x.type_string(),
                           i == 0 ? "" : " or a tensor"));
    }
  if (len == 0)
    ctx.unsupported("a SequenceMap over empty sequences (the dtypes of its outputs are unknown)");
  const std::size_t k = ctx.node.outputs.size();
  std::vector<std::vector<Tensor>> outs(k);
  for (std::size_t t = 0; t < len; ++t) {
    std::vector<Tensor> formal_in;
    for (std::size_t i = 0; i < formal; ++i)
      formal_in.push_back(ctx.in(i).is_sequence() ? ctx.in(i).elements()[t] : ctx.in(i));
    auto out = run_body(ctx, "body", formal_in);
    if (out.size() != k)
      ctx.fail(fmt::format("the body gave {} outputs, the node has {}", out.size(), k));
    for (std::size_t j = 0; j < k; ++j) {
      if (!out[j].is_tensor())
        ctx.fail(
            fmt::format("the body's output {} is {}: expected a tensor", j, out[j].type_string()));
      outs[j].push_back(std::move(out[j]));
    }
  }
  for (std::size_t j = 0; j < k; ++j) {
    const DType t = outs[j][0].dtype();
    ctx.set(j, Tensor::sequence(t, std::move(outs[j])));
  }
}

}  // namespace

void register_control(KernelRegistry& r) {
  r.add("If", if_kernel);
  r.add("Loop", loop_kernel);
  r.add("Scan", scan_kernel);
  r.add("SequenceMap", sequence_map_kernel);
}

}  // namespace kiln::reference
