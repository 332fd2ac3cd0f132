// Horizontal fusion: layers that read the same input with the same computation up to their
// output channels become one layer over their weights concatenated along the output channels,
// then a Split into the original outputs.
//  - Convolutions with the same attributes and kernel size (each followed by the same
//    activation, if any): an inception block's 1x1 convolutions. The Split is part of the fused
//    step.
//  - Matrix products by constant 2-D weights [K, N] with the same tail (bias row, activations):
//    a transformer's Q, K and V projections. The product runs over [K, sum N] and a Split of the
//    last axis follows as its own node, whose outputs the planner makes slices of the product
//    where the target's readers take them (build::elide_split): three products become one.
#include <cstring>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

using i64 = std::int64_t;

enum class Kind { conv, matmul };

/// A candidate: a plain or fused Conv/MatMul whose only inputs are (x, W[, B]) with constant W
/// and B, followed by unary activations (and, for MatMul, an Add of the bias row B first).
struct Member {
  std::size_t index;
  Kind kind;
  FusedBody body;
  const Tensor* w;
  const Tensor* b;  // may be null
};

/// The output channels of a member's weight: dim 0 of a filter, the last dim of a [K, N] matrix.
i64 channels(const Member& m) { return m.kind == Kind::conv ? m.w->dim(0) : m.w->dim(1); }

std::optional<Member> candidate(const Graph& g, std::size_t i, const plan::Target& t) {
  const Node& n = g.nodes[i];
  if (n.outputs.size() != 1 || n.inputs.empty()) return std::nullopt;
  FusedBody body = as_body(n);
  const Node& head = body.parts[0];
  Kind kind;
  if (head.op == "Conv" && head.attr_int("group", 1) == 1 &&
      t.can_fuse(plan::fusion::kHorizontalConv))
    kind = Kind::conv;
  else if (head.op == "MatMul" && t.can_fuse(plan::fusion::kHorizontalMatMul))
    kind = Kind::matmul;
  else
    return std::nullopt;
  if (head.inputs.size() < 2 || head.inputs[0] != "$0" || head.inputs[1] != "$1")
    return std::nullopt;
  std::size_t tail = 1;  // the first activation part
  if (kind == Kind::conv) {
    if (head.inputs.size() > 2 && !head.inputs[2].empty() && head.inputs[2] != "$2")
      return std::nullopt;
  } else if (body.parts.size() > 1 && body.parts[1].op == "Add") {
    // The bias row, as fuse_gemm_bias makes it: Add(product, $2).
    const Node& add = body.parts[1];
    if (add.inputs.size() != 2 || add.inputs[0] != head.outputs.at(0) || add.inputs[1] != "$2")
      return std::nullopt;
    tail = 2;
  }
  if (n.inputs.size() > 3) return std::nullopt;
  for (std::size_t k = tail; k < body.parts.size(); ++k) {
    const Node& p = body.parts[k];
    if (!plan::activation_ops().count(p.op) || p.inputs.size() != 1) return std::nullopt;
  }
  const Tensor* w = weight(g, n.inputs[1]);
  const Tensor* b = n.has_input(2) ? weight(g, n.inputs[2]) : nullptr;
  if (!w || (n.has_input(2) && !b) || !is_float(w->dtype())) return std::nullopt;
  if (b && b->dtype() != w->dtype()) return std::nullopt;
  if (kind == Kind::matmul) {
    if (w->rank() != 2 || (tail == 2) != (b != nullptr)) return std::nullopt;
    // Only the output's last dim may grow: the product's input of rank >= 2, the bias a row.
    const TensorType& xt = g.type_of(n.inputs[0]);
    if (xt.shape.rank() < 2 ||
        (b && (b->numel() != w->dim(1) || b->dim(b->rank() - 1) != b->numel())))
      return std::nullopt;
  }
  return Member{i, kind, std::move(body), w, b};
}

/// Same computation up to the output channels.
bool compatible(const Member& a, const Member& b) {
  if (a.kind != b.kind || a.body.parts.size() != b.body.parts.size()) return false;
  for (std::size_t k = 0; k < a.body.parts.size(); ++k) {
    const Node& pa = a.body.parts[k];
    const Node& pb = b.body.parts[k];
    if (pa.op != pb.op || !same_attrs(pa.attrs, pb.attrs)) return false;
  }
  if (a.w->dtype() != b.w->dtype() || a.w->rank() != b.w->rank()) return false;
  if ((a.b == nullptr) != (b.b == nullptr) && a.kind == Kind::matmul) return false;
  if (a.kind == Kind::matmul) return a.w->dim(0) == b.w->dim(0);
  for (std::size_t d = 1; d < a.w->rank(); ++d)
    if (a.w->dim(d) != b.w->dim(d)) return false;
  return true;
}

/// Concatenates along dim 0 (the output channels); missing biases are zeros.
Tensor concat0(const std::vector<const Tensor*>& ts, const std::vector<i64>& rows, DType dtype,
               std::vector<i64> tail) {
  i64 total = 0;
  for (i64 r : rows) total += r;
  std::vector<i64> dims{total};
  dims.insert(dims.end(), tail.begin(), tail.end());
  Tensor out(dtype, dims);
  const i64 inner = product(tail);
  i64 at = 0;
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const i64 n = rows[k] * inner;
    if (ts[k])
      std::memcpy(out.raw() + at * static_cast<i64>(dtype_size(dtype)), ts[k]->raw(),
                  static_cast<std::size_t>(n) * dtype_size(dtype));
    at += n;
  }
  return out;
}

/// Concatenates [K, N_k] matrices along their columns.
Tensor concat_columns(const std::vector<const Tensor*>& ts) {
  const i64 k = ts[0]->dim(0);
  i64 total = 0;
  for (const Tensor* t : ts) total += t->dim(1);
  const DType dtype = ts[0]->dtype();
  const auto es = static_cast<i64>(dtype_size(dtype));
  Tensor out(dtype, {k, total});
  i64 col = 0;
  for (const Tensor* t : ts) {
    const i64 n = t->dim(1);
    for (i64 r = 0; r < k; ++r)
      std::memcpy(out.raw() + (r * total + col) * es, t->raw() + r * n * es,
                  static_cast<std::size_t>(n * es));
    col += n;
  }
  return out;
}

}  // namespace

int fuse_horizontal(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  if (!t.can_fuse(plan::fusion::kHorizontalConv) && !t.can_fuse(plan::fusion::kHorizontalMatMul))
    return 0;
  int merged = 0;
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<Member> members;
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
      if (auto m = candidate(g, i, t)) members.push_back(std::move(*m));
    for (std::size_t a = 0; a < members.size() && !changed; ++a) {
      std::vector<const Member*> group{&members[a]};
      const std::string& x = g.nodes[members[a].index].inputs[0];
      for (std::size_t b = a + 1; b < members.size(); ++b)
        if (g.nodes[members[b].index].inputs[0] == x && compatible(members[a], members[b]))
          group.push_back(&members[b]);
      if (group.size() < 2) continue;
      const Kind kind = group[0]->kind;

      // The merged node: the product (+ tail) over all output channels, then Split.
      const Node& first = g.nodes[group[0]->index];
      std::vector<const Tensor*> ws, bs;
      std::vector<i64> rows;
      std::vector<std::string> outputs, names;
      bool any_bias = false;
      for (const Member* m : group) {
        ws.push_back(m->w);
        bs.push_back(m->b);
        any_bias |= m->b != nullptr;
        rows.push_back(channels(*m));
        outputs.push_back(g.nodes[m->index].outputs[0]);
        names.push_back(g.nodes[m->index].name);
      }
      const std::string base = fmt::format("{}_h{}", first.name, group.size());
      const std::string wn = g.unique_name(base + "_w");
      if (kind == Kind::conv) {
        const std::vector<i64> tail(ws[0]->dims().begin() + 1, ws[0]->dims().end());
        g.weights[wn] = concat0(ws, rows, ws[0]->dtype(), tail);
      } else {
        g.weights[wn] = concat_columns(ws);
      }
      std::string bn;
      if (any_bias) {
        bn = g.unique_name(base + "_b");
        g.weights[bn] = concat0(bs, rows, ws[0]->dtype(), {});
      }
      const std::string sn = g.unique_name(base + "_split");
      g.weights[sn] = Tensor::from<i64>({static_cast<i64>(rows.size())}, rows);

      FusedBody body = group[0]->body;
      Node& head = body.parts[0];
      head.name = fmt::format("{}", fmt::join(names, "|"));
      head.inputs = {"$0", "$1"};
      if (any_bias && kind == Kind::conv) head.inputs.push_back("$2");
      for (std::size_t k = 1; k < body.parts.size(); ++k) {
        std::vector<std::string> part_names;
        for (const Member* m : group) part_names.push_back(m->body.parts[k].name);
        body.parts[k].name = fmt::format("{}", fmt::join(part_names, "|"));
      }
      Node split;
      split.op = "Split";
      split.name = base + " split";
      split.attrs["axis"] = kind == Kind::conv ? i64{1} : i64{-1};
      std::vector<std::string> inputs{x, wn};
      if (any_bias) inputs.push_back(bn);
      std::set<std::size_t> drop;
      for (std::size_t k = 1; k < group.size(); ++k) drop.insert(group[k]->index);
      if (kind == Kind::conv) {
        // The Split inside the fused step, whose outputs are the members' outputs.
        split.inputs = {body.results[0], any_bias ? "$3" : "$2"};
        body.results.clear();
        for (std::size_t k = 0; k < group.size(); ++k) {
          split.outputs.push_back(fmt::format("{}:split{}", base, k));
          body.results.push_back(split.outputs.back());
        }
        body.parts.push_back(std::move(split));
        inputs.push_back(sn);
        // Placed at the first member: x and the weights exist there.
        g.nodes[group[0]->index] = make_fused_node(base, inputs, outputs, body);
      } else {
        // The product, then the Split as a node of its own (the planner may make it no step).
        const std::string product = g.unique_name(base);
        Node fused =
            body.parts.size() == 1 ? body.parts[0] : make_fused_node(base, inputs, {product}, body);
        if (body.parts.size() == 1) {
          fused.name = base;
          fused.inputs = inputs;
          fused.outputs = {product};
        }
        split.inputs = {product, sn};
        split.outputs = outputs;
        g.nodes[group[0]->index] = std::move(fused);
        g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(group[0]->index) + 1,
                       std::move(split));
        std::set<std::size_t> shifted;  // indices after the insertion moved by one
        for (std::size_t d : drop) shifted.insert(d > group[0]->index ? d + 1 : d);
        drop = std::move(shifted);
      }
      drop_nodes(g, drop);
      g.infer();
      ++merged;
      changed = true;
    }
  }
  return merged;
}

}  // namespace kiln::build
