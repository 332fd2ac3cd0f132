// Horizontal fusion: convolutions that read the same input with the same attributes and kernel
// size (each followed by the same activation, if any) become one convolution over their weights
// concatenated along the output channels, then a Split into the original outputs. An inception
// block's 1x1 convolutions are the case it is for.
#include <cstring>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

using i64 = std::int64_t;

/// A candidate: a plain Conv, or a fused Conv + unary activations whose only inputs are
/// (x, W[, B]) with constant W and B.
struct Member {
  std::size_t index;
  FusedBody body;
  const Tensor* w;
  const Tensor* b;  // may be null
};

std::optional<Member> candidate(const Graph& g, std::size_t i) {
  const Node& n = g.nodes[i];
  if (n.outputs.size() != 1 || n.inputs.empty()) return std::nullopt;
  FusedBody body = as_body(n);
  const Node& conv = body.parts[0];
  if (conv.op != "Conv" || conv.attr_int("group", 1) != 1) return std::nullopt;
  if (conv.inputs.size() < 2 || conv.inputs[0] != "$0" || conv.inputs[1] != "$1")
    return std::nullopt;
  if (conv.inputs.size() > 2 && !conv.inputs[2].empty() && conv.inputs[2] != "$2")
    return std::nullopt;
  if (n.inputs.size() > 3) return std::nullopt;
  for (std::size_t k = 1; k < body.parts.size(); ++k) {
    const Node& p = body.parts[k];
    if (!plan::activation_ops().count(p.op) || p.inputs.size() != 1) return std::nullopt;
  }
  const Tensor* w = weight(g, n.inputs[1]);
  const Tensor* b = n.has_input(2) ? weight(g, n.inputs[2]) : nullptr;
  if (!w || (n.has_input(2) && !b) || !is_float(w->dtype())) return std::nullopt;
  if (b && b->dtype() != w->dtype()) return std::nullopt;
  return Member{i, std::move(body), w, b};
}

/// Same computation up to the output channels.
bool compatible(const Member& a, const Member& b) {
  if (a.body.parts.size() != b.body.parts.size()) return false;
  for (std::size_t k = 0; k < a.body.parts.size(); ++k) {
    const Node& pa = a.body.parts[k];
    const Node& pb = b.body.parts[k];
    if (pa.op != pb.op || !same_attrs(pa.attrs, pb.attrs)) return false;
  }
  if (a.w->dtype() != b.w->dtype() || a.w->rank() != b.w->rank()) return false;
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

}  // namespace

int fuse_horizontal(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kHorizontalConv)) return 0;
  int merged = 0;
  for (bool changed = true; changed;) {
    changed = false;
    std::vector<Member> members;
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
      if (auto m = candidate(g, i)) members.push_back(std::move(*m));
    for (std::size_t a = 0; a < members.size() && !changed; ++a) {
      std::vector<const Member*> group{&members[a]};
      const std::string& x = g.nodes[members[a].index].inputs[0];
      for (std::size_t b = a + 1; b < members.size(); ++b)
        if (g.nodes[members[b].index].inputs[0] == x && compatible(members[a], members[b]))
          group.push_back(&members[b]);
      if (group.size() < 2) continue;

      // The merged node: Conv (+ activations) over all output channels, then Split.
      const Node& first = g.nodes[group[0]->index];
      std::vector<const Tensor*> ws, bs;
      std::vector<i64> rows;
      std::vector<std::string> outputs, names;
      bool any_bias = false;
      for (const Member* m : group) {
        ws.push_back(m->w);
        bs.push_back(m->b);
        any_bias |= m->b != nullptr;
        rows.push_back(m->w->dim(0));
        outputs.push_back(g.nodes[m->index].outputs[0]);
        names.push_back(g.nodes[m->index].name);
      }
      const std::vector<i64> tail(ws[0]->dims().begin() + 1, ws[0]->dims().end());
      const std::string base = fmt::format("{}_h{}", first.name, group.size());
      const std::string wn = g.unique_name(base + "_w");
      g.weights[wn] = concat0(ws, rows, ws[0]->dtype(), tail);
      std::string bn;
      if (any_bias) {
        bn = g.unique_name(base + "_b");
        g.weights[bn] = concat0(bs, rows, ws[0]->dtype(), {});
      }
      const std::string sn = g.unique_name(base + "_split");
      g.weights[sn] = Tensor::from<i64>({static_cast<i64>(rows.size())}, rows);

      FusedBody body = group[0]->body;
      Node& conv = body.parts[0];
      conv.name = fmt::format("{}", fmt::join(names, "|"));
      conv.inputs = {"$0", "$1"};
      if (any_bias) conv.inputs.push_back("$2");
      for (std::size_t k = 1; k < body.parts.size(); ++k) {
        std::vector<std::string> part_names;
        for (const Member* m : group) part_names.push_back(m->body.parts[k].name);
        body.parts[k].name = fmt::format("{}", fmt::join(part_names, "|"));
      }
      const std::string last = body.results[0];
      Node split;
      split.op = "Split";
      split.name = base + " split";
      split.inputs = {last, any_bias ? "$3" : "$2"};
      split.attrs["axis"] = i64{1};
      body.results.clear();
      for (std::size_t k = 0; k < group.size(); ++k) {
        split.outputs.push_back(fmt::format("{}:split{}", base, k));
        body.results.push_back(split.outputs.back());
      }
      body.parts.push_back(std::move(split));
      std::vector<std::string> inputs{x, wn};
      if (any_bias) inputs.push_back(bn);
      inputs.push_back(sn);
      Node fused = make_fused_node(base, inputs, outputs, body);
      // Placed at the first member: x and the weights exist there.
      std::set<std::size_t> drop;
      for (std::size_t k = 1; k < group.size(); ++k) drop.insert(group[k]->index);
      g.nodes[group[0]->index] = std::move(fused);
      drop_nodes(g, drop);
      g.infer();
      ++merged;
      changed = true;
    }
  }
  return merged;
}

}  // namespace kiln::build
