// Q/DQ propagation (explicit quantization, issue 13 item 2), the first of TensorRT's documented
// rules for Q/DQ networks: a DequantizeLinear moves forward through the ops that commute with it
// exactly, and a QuantizeLinear that then reads a DequantizeLinear of the same scale and zero
// point cancels with it. What was
//   ... -> Q -> DQ -> MaxPool -> Q -> DQ -> Conv
// becomes
//   ... -> Q -> MaxPool (on the 8-bit values) -> DQ -> Conv
// so the data-movement ops run on 8-bit tensors and each quantized operation is left with its
// input DQ and output Q next to it, the form the fused INT8 steps start from.
//
// Exactness: with a per-tensor scale s > 0 and zero point z, DQ(x) = (x - z) * s is increasing in
// x, so it commutes with data movement (Reshape, Transpose, Flatten, Squeeze, Unsqueeze,
// Identity) and with MaxPool (padding never wins a max). Concat commutes when every input has
// the same s and z. Q(DQ(x)) = x for the same s, z and integer type (|x - z| < 2^16, so the f32
// product and quotient round back to x). Every rewrite is therefore exact on the reference.
#include <cmath>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

bool is_q(const Node& n) { return n.op == "QuantizeLinear"; }
bool is_dq(const Node& n) { return n.op == "DequantizeLinear"; }

/// A per-tensor DequantizeLinear (or QuantizeLinear) whose scale and zero point are weights: its
/// scale (> 0), zero point (0 when absent) and integer dtype.
struct QParams {
  double scale = 0;
  double zero = 0;
  DType type = DType::u8;
  bool operator==(const QParams&) const = default;
};

/// The parameters of node `n` (a Q or DQ), if per tensor, constant and positive. `integer` is
/// the type of the 8-bit side (DQ's input, Q's output).
std::optional<QParams> params(const Graph& g, const Node& n, DType integer) {
  if (n.inputs.size() < 2 || n.outputs.size() != 1) return std::nullopt;
  if (integer != DType::i8 && integer != DType::u8) return std::nullopt;
  if (n.attr_int("block_size", 0) != 0) return std::nullopt;
  const Tensor* s = weight(g, n.inputs[1]);
  if (!s || s->numel() != 1) return std::nullopt;
  QParams p;
  p.scale = s->get(0);
  if (!(p.scale > 0) || !std::isfinite(p.scale)) return std::nullopt;
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
    const Tensor* z = weight(g, n.inputs[2]);
    if (!z || z->numel() != 1 || z->dtype() != integer) return std::nullopt;
    p.zero = z->get(0);
  }
  p.type = integer;
  return p;
}

std::optional<QParams> dq_params(const Graph& g, const Node& dq) {
  if (!is_dq(dq) || dq.inputs.empty()) return std::nullopt;
  const TensorType& out = g.type_of(dq.outputs.at(0));
  if (out.dtype != DType::f32) return std::nullopt;  // the float side kiln computes in
  return params(g, dq, g.type_of(dq.inputs[0]).dtype);
}

/// Ops that commute with a per-tensor DQ: their first input is the data, the rest constants.
bool moves_data(const Graph& g, const Node& n) {
  static const std::set<std::string> ops = {"Reshape",   "Transpose", "Flatten", "Squeeze",
                                            "Unsqueeze", "Identity",  "MaxPool"};
  if (!ops.count(n.op) || n.inputs.empty()) return false;
  if (n.op == "MaxPool") {
    // Indices (output 1) would not change, but keep it simple: Y only.
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) return false;
  } else if (n.outputs.size() != 1) {
    return false;
  }
  for (std::size_t k = 1; k < n.inputs.size(); ++k)
    if (!n.inputs[k].empty() && !weight(g, n.inputs[k])) return false;
  return true;
}

/// The DQ producing value `v`, when `v` is read only by `reader` and is no graph output.
std::optional<std::size_t> private_dq(const Graph& g,
                                      const std::map<std::string, std::vector<std::size_t>>& r,
                                      const std::string& v, std::size_t reader) {
  const auto p = g.producer(v);
  if (!p || !is_dq(g.nodes[*p])) return std::nullopt;
  if (only_reader(g, r, v) != reader) return std::nullopt;
  return p;
}

/// A DequantizeLinear of `x` with the parameters of `like` (its scale and zero point inputs),
/// writing `out`.
Node dq_like(Graph& g, const Node& like, const std::string& x, const std::string& out) {
  Node d = like;
  d.name = g.unique_name(like.name + "_moved");
  d.inputs[0] = x;
  d.outputs = {out};
  return d;
}

/// op(DQ(x)) -> DQ(op(x)) at node j; true when it rewrote.
bool move_dq_forward(Graph& g, std::size_t j) {
  Node op = g.nodes[j];
  const auto r = readers(g);
  if (moves_data(g, op)) {
    const auto i = private_dq(g, r, op.inputs[0], j);
    if (!i || !dq_params(g, g.nodes[*i])) return false;
    const Node dq = g.nodes[*i];
    const std::string y = op.outputs[0];
    const std::string yq = g.unique_name(y + "_quantized");
    op.inputs[0] = dq.inputs[0];
    op.outputs[0] = yq;
    g.nodes[j] = std::move(op);
    g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(j) + 1, dq_like(g, dq, yq, y));
    drop_nodes(g, {*i});
    return true;
  }
  if (op.op == "Concat" && op.outputs.size() == 1 && !op.inputs.empty()) {
    std::optional<QParams> first;
    std::set<std::size_t> dqs;
    for (const auto& in : op.inputs) {
      const auto i = in.empty() ? std::nullopt : private_dq(g, r, in, j);
      if (!i || dqs.count(*i)) return false;  // an input read twice: keep it simple
      const auto p = dq_params(g, g.nodes[*i]);
      if (!p || (first && !(*p == *first))) return false;
      first = p;
      dqs.insert(*i);
    }
    const Node dq = g.nodes[*dqs.begin()];
    const std::string y = op.outputs[0];
    const std::string yq = g.unique_name(y + "_quantized");
    for (auto& in : op.inputs) in = g.nodes[*g.producer(in)].inputs[0];
    op.outputs[0] = yq;
    g.nodes[j] = std::move(op);
    g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(j) + 1, dq_like(g, dq, yq, y));
    drop_nodes(g, dqs);
    return true;
  }
  return false;
}

/// Q(DQ(x)) -> x at node j (the Q) when both have one scale, zero point and type.
bool cancel_pair(Graph& g, std::size_t j) {
  const Node& q = g.nodes[j];
  if (!is_q(q) || q.outputs.size() != 1 || q.inputs.empty()) return false;
  if (q.attr_int("saturate", 1) != 1) return false;
  const auto i = g.producer(q.inputs[0]);
  if (!i) return false;
  const Node& dq = g.nodes[*i];
  const auto pd = dq_params(g, dq);
  const auto pq = params(g, q, g.type_of(q.outputs[0]).dtype);
  if (!pd || !pq || !(*pd == *pq)) return false;
  const std::string x = dq.inputs[0], y = q.outputs[0];
  // Readers of y read x instead; a graph output named y keeps its name (x takes it), unless x is
  // a graph input or output itself (an output cannot alias another name).
  const bool y_out = is_graph_output(g, y);
  if (y_out && (is_graph_input(g, x) || is_graph_output(g, x))) return false;
  drop_nodes(g, {j});
  if (y_out)
    rename_value(g, x, y);
  else
    rename_uses(g, y, x);
  return true;
}

}  // namespace

int propagate_qdq(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kQdqPropagation)) return 0;
  int n = until_fixed(g, [&](std::size_t j) { return move_dq_forward(g, j); });
  n += until_fixed(g, [&](std::size_t j) { return cancel_pair(g, j); });
  if (n) eliminate_dead(g, ctx);  // DQs left without readers
  return n;
}

}  // namespace kiln::build
