// Shape rules of the control op family: If, Loop, Scan and SequenceMap, with ONNX's semantics;
// bodies are kiln::Subgraph attributes whose captured outer values are the node's last inputs
// (include/kiln/ir/control.hpp):
//   If: cond (bool, one element), captured... -> the outputs of then_branch or else_branch. A cond
//     known while inferring picks its branch's types (the other branch is not inferred: it may
//     not fit these shapes); otherwise both branches must agree in output count and dtypes (a
//     GraphError) and in ranks (ONNX allows them to differ, kiln does not: an UnsupportedError),
//     and a dim where they differ is dynamic. Sequences' and optionals' tensors may differ in
//     rank (it becomes unknown); a value and an optional of it give the optional.
//   Loop: M (i64 trip count, optional), cond (bool, optional), v_initial..., captured...
//     body (iteration_num i64[], cond bool[], v...) -> (cond bool, v..., scan_outputs...)
//     -> final v..., each scan output stacked on a new leading dim (dynamic: the trip count is
//     known when the loop ends). A carried value whose shape the body changes gets dynamic dims
//     where they differ.
//   Scan (opset 9+): states..., scan_inputs..., captured...; num_scan_inputs scan inputs, each
//     sliced along scan_input_axes[i] (default 0); all have the same length L.
//     body (states..., slices...) -> (states..., scan_output elements...)
//     -> final states..., each scan output's elements stacked along scan_output_axes[j] (L).
//   SequenceMap: input_sequence, additional inputs (sequences of its length, or tensors passed
//     whole), captured... ; body (a tensor of each sequence, the tensors...) -> tensors, each
//     output's tensors making one output sequence.
#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"
#include "kiln/ir/control.hpp"

namespace kiln::ops {
namespace {

using i64 = std::int64_t;

std::vector<const TensorType*> captured_types(const InferContext& ctx) {
  std::vector<const TensorType*> t;
  for (std::size_t i = control::formal_inputs(ctx.node); i < ctx.node.inputs.size(); ++i)
    t.push_back(&ctx.input(i));
  return t;
}
std::vector<const Tensor*> captured_constants(const InferContext& ctx) {
  std::vector<const Tensor*> t;
  for (std::size_t i = control::formal_inputs(ctx.node); i < ctx.node.inputs.size(); ++i)
    t.push_back(ctx.constant(i));
  return t;
}

std::vector<TensorType> body_types(const InferContext& ctx, const char* attr,
                                   const std::vector<TensorType>& formal) {
  return control::body_output_types(ctx.node, attr, formal, captured_types(ctx),
                                    captured_constants(ctx), ctx.evaluator());
}

/// A scalar-like input (one element where the shape is known) of dtype `t`.
void require_scalar(const InferContext& ctx, std::size_t i, DType t, const char* what) {
  const TensorType& x = ctx.input(i);
  if (x.dtype != t || !x.is_tensor())
    ctx.fail(fmt::format("{} must be {}, got {}", what, dtype_name(t), x.to_string()));
  if (x.shape.is_static() && product(x.shape.values()) != 1)
    ctx.fail(fmt::format("{} must hold one element, got {}", what, x.to_string()));
}

std::vector<TensorType> infer_if(const InferContext& ctx) {
  if (control::formal_inputs(ctx.node) != 1)
    ctx.fail(fmt::format("takes one input (cond) before its {} captured values, got {}",
                         control::captured_inputs(ctx.node), control::formal_inputs(ctx.node)));
  require_scalar(ctx, 0, DType::boolean, "cond");
  const std::size_t nout = ctx.node.outputs.size();
  auto check_count = [&](const std::vector<TensorType>& t, const char* attr) {
    if (t.size() != nout)
      throw GraphError(
          fmt::format("{}{} has {} outputs, the node {}", ctx.node.where(), attr, t.size(), nout));
  };
  if (const Tensor* c = ctx.constant(0); c && c->numel() == 1) {
    const char* taken = c->get(0) != 0 ? "then_branch" : "else_branch";
    auto t = body_types(ctx, taken, {});
    check_count(t, taken);
    return t;
  }
  auto then_t = body_types(ctx, "then_branch", {});
  auto else_t = body_types(ctx, "else_branch", {});
  if (then_t.size() != else_t.size())
    throw GraphError(
        fmt::format("{}then_branch has {} outputs, else_branch {}: the branches must "
                    "agree",
                    ctx.node.where(), then_t.size(), else_t.size()));
  check_count(then_t, "then_branch");
  std::vector<TensorType> out;
  for (std::size_t i = 0; i < then_t.size(); ++i) {
    const TensorType &a = then_t[i], &b = else_t[i];
    auto m = merge_types(a, b);
    if (m) {
      out.push_back(std::move(*m));
      continue;
    }
    // ONNX allows tensors of two ranks; kiln's tensors have one rank each (a cond known when
    // building picks one branch).
    if (a.dtype == b.dtype && a.is_tensor() && b.is_tensor())
      throw UnsupportedError(
          fmt::format("{}output {} is {} in then_branch and {} in else_branch: "
                      "kiln needs both branches to give it one rank",
                      ctx.node.where(), i, a.to_string(), b.to_string()));
    throw GraphError(
        fmt::format("{}output {} is {} in then_branch and {} in else_branch: the "
                    "branches must agree in dtype and kind",
                    ctx.node.where(), i, a.to_string(), b.to_string()));
  }
  return out;
}

/// A body's scan output `j` (Loop's, Scan's): a tensor, a GraphError naming the node otherwise.
const TensorType& scan_output(const InferContext& ctx, const TensorType& t, std::size_t j) {
  if (!t.is_tensor())
    throw GraphError(fmt::format("{}the body's scan output {} is {}: scan outputs are tensors",
                                 ctx.node.where(), j, t.to_string()));
  return t;
}

/// Loop-carried (and Scan state) values: the body's output must keep the input's dtype and rank;
/// dims it changes become dynamic. Returns whether any dim changed.
bool merge_carried(const InferContext& ctx, std::vector<TensorType>& carried,
                   const std::vector<TensorType>& body_out, std::size_t first, const char* what) {
  bool changed = false;
  for (std::size_t i = 0; i < carried.size(); ++i) {
    const TensorType& o = body_out[first + i];
    auto m = merge_types(carried[i], o);
    if (!m)
      throw GraphError(
          fmt::format("{}{} {} enters the body as {} and leaves it as {}: a body must "
                      "keep its dtype, kind and (for a tensor) rank",
                      ctx.node.where(), what, i, carried[i].to_string(), o.to_string()));
    if (!(*m == carried[i])) {
      carried[i] = std::move(*m);
      changed = true;
    }
  }
  return changed;
}

std::vector<TensorType> infer_loop(const InferContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  if (formal < 2)
    ctx.fail(
        fmt::format("takes M and cond (either may be omitted, \"\") before its loop-carried "
                    "values, got {} inputs",
                    formal));
  if (ctx.has_input(0)) require_scalar(ctx, 0, DType::i64, "the trip count M");
  if (ctx.has_input(1)) require_scalar(ctx, 1, DType::boolean, "cond");
  const std::size_t n = formal - 2;
  std::vector<TensorType> carried;
  for (std::size_t i = 0; i < n; ++i) {
    if (!ctx.has_input(2 + i)) ctx.fail(fmt::format("loop-carried value {} is omitted", i));
    carried.push_back(ctx.input(2 + i));
  }
  auto formal_types = [&] {
    std::vector<TensorType> f{{DType::i64, Shape{}}, {DType::boolean, Shape{}}};
    f.insert(f.end(), carried.begin(), carried.end());
    return f;
  };
  auto out = body_types(ctx, "body", formal_types());
  if (out.size() < 1 + n)
    throw GraphError(
        fmt::format("{}body has {} outputs: it must give cond and the {} loop-carried "
                    "values",
                    ctx.node.where(), out.size(), n));
  if (out[0].dtype != DType::boolean)
    ctx.fail(
        fmt::format("the body's first output (cond) must be bool, got {}", out[0].to_string()));
  if (merge_carried(ctx, carried, out, 1, "loop-carried value")) {
    out = body_types(ctx, "body", formal_types());  // once more, from the merged types
    merge_carried(ctx, carried, out, 1, "loop-carried value");
  }
  const std::size_t k = out.size() - 1 - n;
  if (ctx.node.outputs.size() != n + k)
    throw GraphError(
        fmt::format("{}the node has {} outputs: its {} loop-carried values and the "
                    "body's {} scan outputs",
                    ctx.node.where(), ctx.node.outputs.size(), n, k));
  std::vector<TensorType> result = carried;
  for (std::size_t j = 0; j < k; ++j) {
    TensorType t = scan_output(ctx, out[1 + n + j], j);
    Shape s{Dim::dynamic()};
    for (const Dim& d : t.shape) s.push_back(d);
    result.push_back({t.dtype, std::move(s)});
  }
  return result;
}

std::vector<TensorType> infer_scan(const InferContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  const i64 m = ctx.node.attr_int("num_scan_inputs");
  if (m < 1 || static_cast<std::size_t>(m) > formal)
    ctx.fail(fmt::format("num_scan_inputs is {}: expected 1 to its {} inputs", m, formal));
  const std::size_t n = formal - static_cast<std::size_t>(m);
  auto axes = ctx.node.attr_ints("scan_input_axes", std::vector<i64>(m, 0));
  auto dirs = ctx.node.attr_ints("scan_input_directions", std::vector<i64>(m, 0));
  if (axes.size() != static_cast<std::size_t>(m) || dirs.size() != static_cast<std::size_t>(m))
    ctx.fail(fmt::format("scan_input_axes and scan_input_directions need {} entries, got {} and {}",
                         m, axes.size(), dirs.size()));
  std::vector<TensorType> states, formal_types;
  for (std::size_t i = 0; i < n; ++i) states.push_back(ctx.input(i));
  Dim length = Dim::dynamic();
  std::vector<TensorType> slices;
  for (std::size_t i = 0; i < static_cast<std::size_t>(m); ++i) {
    const TensorType& x = ctx.input(n + i);
    const i64 r = static_cast<i64>(x.shape.rank());
    if (r < 1) ctx.fail(fmt::format("scan input {} is a scalar: it needs an axis to scan", i));
    i64 a = axes[i] < 0 ? axes[i] + r : axes[i];
    if (a < 0 || a >= r)
      ctx.fail(
          fmt::format("scan_input_axes[{}] is {}: out of range for {}", i, axes[i], x.to_string()));
    if (dirs[i] != 0 && dirs[i] != 1)
      ctx.fail(fmt::format("scan_input_directions[{}] is {}: expected 0 or 1", i, dirs[i]));
    const Dim& l = x.shape[static_cast<std::size_t>(a)];
    if (l.is_fixed() && length.is_fixed() && l.value() != length.value())
      ctx.fail(fmt::format("scan input {} has length {} along its axis, an earlier one {}", i,
                           l.value(), length.value()));
    if (!length.is_fixed()) length = l;
    Shape s;
    for (i64 d = 0; d < r; ++d)
      if (d != a) s.push_back(x.shape[static_cast<std::size_t>(d)]);
    slices.push_back({x.dtype, std::move(s)});
  }
  auto all_formal = [&] {
    std::vector<TensorType> f = states;
    f.insert(f.end(), slices.begin(), slices.end());
    return f;
  };
  auto out = body_types(ctx, "body", all_formal());
  if (out.size() < n)
    throw GraphError(fmt::format("{}body has {} outputs, fewer than the {} states",
                                 ctx.node.where(), out.size(), n));
  if (merge_carried(ctx, states, out, 0, "state")) {
    out = body_types(ctx, "body", all_formal());
    merge_carried(ctx, states, out, 0, "state");
  }
  const std::size_t k = out.size() - n;
  if (ctx.node.outputs.size() != n + k)
    throw GraphError(
        fmt::format("{}the node has {} outputs: its {} states and the body's {} scan "
                    "outputs",
                    ctx.node.where(), ctx.node.outputs.size(), n, k));
  auto out_axes = ctx.node.attr_ints("scan_output_axes", std::vector<i64>(k, 0));
  auto out_dirs = ctx.node.attr_ints("scan_output_directions", std::vector<i64>(k, 0));
  if (out_axes.size() != k || out_dirs.size() != k)
    ctx.fail(
        fmt::format("scan_output_axes and scan_output_directions need {} entries, got {} and "
                    "{}",
                    k, out_axes.size(), out_dirs.size()));
  std::vector<TensorType> result = states;
  for (std::size_t j = 0; j < k; ++j) {
    const TensorType& e = scan_output(ctx, out[n + j], j);
    const i64 r = static_cast<i64>(e.shape.rank()) + 1;
    const i64 a = out_axes[j] < 0 ? out_axes[j] + r : out_axes[j];
    if (a < 0 || a >= r)
      ctx.fail(
          fmt::format("scan_output_axes[{}] is {}: out of range for rank {}", j, out_axes[j], r));
    if (out_dirs[j] != 0 && out_dirs[j] != 1)
      ctx.fail(fmt::format("scan_output_directions[{}] is {}: expected 0 or 1", j, out_dirs[j]));
    Shape s;
    for (i64 d = 0; d < r; ++d)
      s.push_back(d == a ? length : e.shape[static_cast<std::size_t>(d < a ? d : d - 1)]);
    result.push_back({e.dtype, std::move(s)});
  }
  return result;
}

/// SequenceMap (input_sequence, additional_inputs..., captured...): the body runs once per
/// tensor of the sequences (all of one length), on those tensors and the tensor inputs whole;
/// each body output's tensors make an output sequence.
std::vector<TensorType> infer_sequence_map(const InferContext& ctx) {
  const std::size_t formal = control::formal_inputs(ctx.node);
  if (formal < 1) ctx.fail("takes a sequence before its captured values");
  std::vector<TensorType> f;
  for (std::size_t i = 0; i < formal; ++i) {
    const TensorType& t = ctx.input(i);
    if (t.kind == ValueKind::sequence) {
      f.push_back(held_tensor_type(ctx, t, fmt::format("input {}", i)));
    } else if (t.is_tensor() && i > 0) {
      f.push_back(t);
    } else {
      ctx.fail(fmt::format("input {} is {}: expected {}", i, t.to_string(),
                           i == 0 ? "a sequence" : "a sequence or a tensor"));
    }
  }
  auto out = body_types(ctx, "body", f);
  if (out.size() != ctx.node.outputs.size())
    throw GraphError(fmt::format("{}body has {} outputs, the node {}", ctx.node.where(), out.size(),
                                 ctx.node.outputs.size()));
  for (auto& t : out) {
    if (!t.is_tensor())
      throw GraphError(fmt::format("{}the body gives {}: its outputs are tensors", ctx.node.where(),
                                   t.to_string()));
    t.kind = ValueKind::sequence;
  }
  return out;
}

}  // namespace

void register_control(OpRegistry& r) {
  const char* fam = "control";
  r.add(any_value_schema("If", fam, 1, -1, 1, 1 << 16, infer_if));
  r.add(any_value_schema("Loop", fam, 2, -1, 1, 1 << 16, infer_loop));
  r.add(schema("Scan", fam, 1, -1, 1, 1 << 16, infer_scan));
  r.add(any_value_schema("SequenceMap", fam, 1, -1, 1, 1 << 16, infer_sequence_map));
}

}  // namespace kiln::ops

namespace kiln::control {

std::size_t captured_inputs(const Node& node) {
  std::optional<std::size_t> c;
  for (const auto& [k, v] : node.attrs)
    if (const auto* body = std::get_if<Subgraph>(&v)) {
      if (!body->graph)
        throw GraphError(fmt::format("{}graph attribute '{}' is empty", node.where(), k));
      if (c && *c != body->captures)
        throw GraphError(
            fmt::format("{}its bodies capture {} and {} values: they must capture the "
                        "same ones (the node's last inputs)",
                        node.where(), *c, body->captures));
      if (body->captures > body->graph->inputs.size())
        throw GraphError(fmt::format("{}body '{}' captures {} values but has {} inputs",
                                     node.where(), k, body->captures, body->graph->inputs.size()));
      c = body->captures;
    }
  if (c.value_or(0) > node.inputs.size())
    throw GraphError(fmt::format("{}its bodies capture {} values, more than its {} inputs",
                                 node.where(), *c, node.inputs.size()));
  return c.value_or(0);
}

std::size_t formal_inputs(const Node& node) { return node.inputs.size() - captured_inputs(node); }

std::vector<TensorType> body_output_types(const Node& node, const std::string& attr,
                                          const std::vector<TensorType>& formal,
                                          const std::vector<const TensorType*>& captured,
                                          const std::vector<const Tensor*>& captured_constants,
                                          const ConstantEvaluator* evaluator) {
  const Subgraph& s = node.attr_graph(attr);
  const std::size_t body_formal = s.graph->inputs.size() - s.captures;
  if (body_formal != formal.size())
    throw GraphError(
        fmt::format("{}{} takes {} inputs (before its captured values); this op "
                    "gives it {}",
                    node.where(), attr, body_formal, formal.size()));
  if (captured.size() != s.captures)
    throw GraphError(fmt::format("{}{} captures {} values, the node passes {}", node.where(), attr,
                                 s.captures, captured.size()));
  Graph g = *s.graph;  // nodes and weights are shared values; only the types change
  std::vector<ValueInfo> inputs;
  for (std::size_t i = 0; i < formal.size(); ++i) inputs.push_back({g.inputs[i].name, formal[i]});
  for (std::size_t j = 0; j < s.captures; ++j) {
    const std::string& name = g.inputs[body_formal + j].name;
    if (j < captured_constants.size() && captured_constants[j])
      g.weights[name] = *captured_constants[j];  // a known value: the body's rules see it
    else
      inputs.push_back({name, *captured[j]});
  }
  g.inputs = std::move(inputs);
  try {
    g.infer(evaluator ? evaluator : default_evaluator());
  } catch (const Error& e) {
    const std::string msg = fmt::format("{}in {}: {}", node.where(), attr, e.what());
    if (dynamic_cast<const UnsupportedError*>(&e)) throw UnsupportedError(msg);
    if (dynamic_cast<const ShapeError*>(&e)) throw ShapeError(msg);
    throw GraphError(msg);
  }
  std::vector<TensorType> out;
  for (const auto& o : g.outputs) out.push_back(g.type_of(o));
  return out;
}

}  // namespace kiln::control
