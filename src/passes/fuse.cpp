// Vertical fusions: conv + residual add, conv/gemm + activation, chains of pointwise ops. Each
// joins a node with the only reader of its output into one kiln.Fused node, placed where the
// reader was (every input of both is made before then).
#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

bool is_conv(const std::string& op) { return op == "Conv" || op == "ConvTranspose"; }
bool is_gemm(const std::string& op) { return op == "Gemm" || op == "MatMul"; }

/// Joins node i with node j (the only reader of i's output) and re-infers.
void join(Graph& g, std::size_t i, std::size_t j) {
  g.nodes[j] = fuse_pair(g.nodes[i], g.nodes[j]);
  drop_nodes(g, {i});
}

/// Counts the pointwise parts of a node.
std::size_t pointwise_parts(const Node& n, const plan::Target& t) {
  std::size_t c = 0;
  for (const auto& op : part_ops(n)) c += t.is_pointwise(op);
  return c;
}

/// Every input of `n` other than `link` is a weight (activation parameters: PRelu slope, Clip
/// bounds).
bool only_constant_extras(const Graph& g, const Node& n, const std::string& link) {
  for (const auto& in : n.inputs)
    if (!in.empty() && in != link && !weight(g, in)) return false;
  return true;
}

}  // namespace

int fuse_conv_residual(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  if (!t.can_fuse(plan::fusion::kConvResidual)) return 0;
  return until_fixed(g, [&](std::size_t j) {
    const Node& add = g.nodes[j];
    if (add.op != "Add" && !(add.op == "Sum" && add.inputs.size() == 2)) return false;
    if (add.inputs.size() != 2 || add.inputs[0] == add.inputs[1]) return false;
    const TensorType& out = g.type_of(add.outputs[0]);
    if (g.type_of(add.inputs[0]) != out || g.type_of(add.inputs[1]) != out) return false;
    const auto r = readers(g);
    // The later of the two producers that is a plain convolution read only here.
    std::optional<std::size_t> best;
    for (const auto& in : add.inputs) {
      const auto p = g.producer(in);
      if (!p || g.nodes[*p].op != "Conv" || g.nodes[*p].outputs.size() != 1) continue;
      if (only_reader(g, r, in) != j) continue;
      if (!best || *p > *best) best = p;
    }
    if (!best) return false;
    join(g, *best, j);
    return true;
  });
}

int fuse_gemm_bias(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kGemmActivation)) return 0;
  return until_fixed(g, [&](std::size_t i) {
    const Node& mm = g.nodes[i];
    if (mm.op != "MatMul" || mm.outputs.size() != 1) return false;
    const TensorType& yt = g.type_of(mm.outputs[0]);
    if (yt.shape.rank() < 2 || !yt.shape[yt.shape.rank() - 1].is_fixed()) return false;
    const auto j = only_reader(g, readers(g), mm.outputs[0]);
    if (!j) return false;
    const Node& add = g.nodes[*j];
    if (add.op != "Add" || add.inputs.size() != 2 || add.outputs.size() != 1) return false;
    const std::string& b = add.inputs[0] == mm.outputs[0] ? add.inputs[1] : add.inputs[0];
    const Tensor* t = weight(g, b);
    // A bias row: N values (the output's last dim), every other dim 1, the output's type kept.
    if (!t || t->dtype() != yt.dtype || t->numel() != yt.shape[yt.shape.rank() - 1].value() ||
        t->rank() == 0 || t->dim(t->rank() - 1) != t->numel() || t->rank() > yt.shape.rank())
      return false;
    if (g.type_of(add.outputs[0]) != yt) return false;
    join(g, i, *j);
    return true;
  });
}

int fuse_conv_activation(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  return until_fixed(g, [&](std::size_t i) {
    const Node& a = g.nodes[i];
    if (a.outputs.size() != 1) return false;
    const auto ops = part_ops(a);
    const std::string& anchor = ops[0];
    if (!(is_conv(anchor) && t.can_fuse(plan::fusion::kConvActivation)) &&
        !(is_gemm(anchor) && t.can_fuse(plan::fusion::kGemmActivation)))
      return false;
    if (plan::activation_ops().count(ops.back())) return false;  // one activation per step
    for (std::size_t k = 1; k < ops.size(); ++k)
      if (!t.is_pointwise(ops[k])) return false;
    const auto j = only_reader(g, readers(g), a.outputs[0]);
    if (!j) return false;
    const Node& act = g.nodes[*j];
    if (!plan::activation_ops().count(act.op) || !t.is_pointwise(act.op) || act.outputs.size() != 1)
      return false;
    if (act.inputs.empty() || act.inputs[0] != a.outputs[0] ||
        !only_constant_extras(g, act, a.outputs[0]))
      return false;
    if (g.type_of(act.outputs[0]) != g.type_of(a.outputs[0])) return false;
    join(g, i, *j);
    return true;
  });
}

int fuse_pointwise(Graph& g, const PassContext& ctx) {
  const plan::Target& t = ctx.tgt();
  if (!t.can_fuse(plan::fusion::kPointwiseChain)) return 0;
  return until_fixed(g, [&](std::size_t i) {
    const Node& a = g.nodes[i];
    if (a.outputs.size() != 1) return false;
    for (const auto& op : part_ops(a))
      if (!t.is_pointwise(op)) return false;
    const auto j = only_reader(g, readers(g), a.outputs[0]);
    if (!j) return false;
    const Node& b = g.nodes[*j];
    if (b.outputs.size() != 1) return false;
    for (const auto& op : part_ops(b))
      if (!t.is_pointwise(op)) return false;
    // The chain keeps one shape: b's output is a's (no broadcast grows it).
    if (g.type_of(b.outputs[0]).shape != g.type_of(a.outputs[0]).shape) return false;
    if (pointwise_parts(a, t) + pointwise_parts(b, t) > t.max_pointwise_chain) return false;
    join(g, i, *j);
    return true;
  });
}

}  // namespace kiln::build
