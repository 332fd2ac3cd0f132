// The builder's pipeline: the passes in order, layer counts, and the plan at the end.
#include "kiln/build/builder.hpp"
#include "kiln/ir/weights.hpp"

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/plan/plan.hpp"
#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

const std::vector<Pass>& pipeline() {
  static const std::vector<Pass> p = {
      {"verify", verify_graph, false},
      {"fold-constants", fold_constants, false},
      {"inline-if", inline_if, false},
      {"eliminate-dead", eliminate_dead, false},
      {"elide-identity", elide_identity, true},
      {"fold-batchnorm", fold_batchnorm, true},
      {"propagate-qdq", propagate_qdq, true},
      {"fuse-int8", fuse_int8, true},
      {"fuse-layernorm", fuse_layer_norm, true},
      {"fuse-gelu", fuse_gelu, true},
      {"fuse-attention", fuse_attention, true},
      {"fuse-residual-norm", fuse_residual_norm, true},
      {"fuse-conv-residual", fuse_conv_residual, true},
      {"fuse-gemm-bias", fuse_gemm_bias, true},
      {"fuse-conv-activation", fuse_conv_activation, true},
      {"fuse-pointwise", fuse_pointwise, true},
      {"fuse-horizontal", fuse_horizontal, true},
      {"eliminate-dead-weights", eliminate_dead, true},
      {"mark-views", mark_views, true},
      {"elide-concat", elide_concat, true},
      {"choose-layout", choose_layout, true},
      {"elide-split", elide_split, true},
      {"verify-result", verify_graph, true},
  };
  return p;
}

int count_layers(const Graph& g) {
  int n = 0;
  for (const auto& node : g.nodes) {
    if (node.op == "Constant" || node.op == "ConstantOfShape" || node.op == "Identity" ||
        node.op == "Dropout")
      continue;
    if (plan::marked_elided(node)) continue;
    ++n;
  }
  return n;
}

void make_static(Graph& g, const BuildOptions& o) {
  bool changed = false;
  for (auto& vi : g.inputs) {
    auto it = o.input_dims.find(vi.name);
    if (it != o.input_dims.end()) {
      if (it->second.size() != vi.type.shape.rank())
        throw ShapeError(
            fmt::format("input '{}' has shape {}; the dims given for it, {}, have "
                        "another rank",
                        vi.name, vi.type.shape.to_string(), dims_to_string(it->second)));
      for (std::size_t d = 0; d < it->second.size(); ++d) {
        const Dim& want = vi.type.shape[d];
        if (want.is_fixed() && want.value() != it->second[d])
          throw ShapeError(fmt::format("input '{}' has shape {}; dim {} cannot be {}", vi.name,
                                       vi.type.shape.to_string(), d, it->second[d]));
      }
      const Shape s = Shape::of(it->second);
      changed |= !(s == vi.type.shape);
      vi.type.shape = s;
      continue;
    }
    for (std::size_t d = 0; d < vi.type.shape.rank(); ++d)
      if (!vi.type.shape[d].is_fixed()) {
        vi.type.shape[d] = Dim(o.dynamic_default);
        changed = true;
      }
  }
  for (const auto& [name, _] : o.input_dims)
    if (!is_graph_input(g, name))
      throw GraphError(fmt::format("'{}' is not an input of graph '{}'", name, g.name));
  bool typed = true;
  for (const auto& n : g.nodes)
    for (const auto& out : n.outputs) typed &= out.empty() || g.has_type(out);
  if (changed || !typed) g.infer(o.evaluator);
}

plan::Plan build_plan(Graph g, const BuildOptions& o, BuildReport* report) {
  const plan::Target& target = o.target ? *o.target : plan::cpu_reference_target();
  const std::uint64_t hash = hash_weights(g.weights);
  make_static(g, o);
  plan::require_tensor_values(g);  // before the passes, which expect tensors
  PassContext ctx{&target, o.evaluator};
  BuildReport local;
  BuildReport& r = report ? *report : local;
  r = BuildReport{};
  bool counted = false;
  for (const Pass& p : pipeline()) {
    if (p.fusion && !counted) {
      r.layers_before = count_layers(g);
      r.before_fusion = g;
      counted = true;
    }
    Graph before;
    if (o.after_pass) before = g;
    const int changes = p.run(g, ctx);
    r.pass_changes.push_back({p.name, changes});
    if (o.after_pass) o.after_pass(p.name, before, g);
  }
  r.after_fusion = g;
  plan::Plan plan = plan::make_plan(g, target, hash);
  r.layers_after = static_cast<int>(plan.steps.size());
  return plan;
}

std::string BuildReport::summary() const {
  std::string s;
  s += fmt::format("layers before fusion: {}\n", layers_before);
  s += fmt::format("layers after fusion: {}\n", layers_after);
  s += "passes:";
  for (const auto& [name, n] : pass_changes) s += fmt::format(" {}={}", name, n);
  s += "\n";
  int fused = 0;
  for (const auto& n : after_fusion.nodes)
    if (is_fused(n)) {
      if (fused++ == 0) s += "fused steps:\n";
      std::vector<std::string> absorbed;
      for (const auto& a : fused_absorbed(n)) absorbed.push_back("'" + a + "'");
      s += fmt::format("  {} '{}' ({}) absorbed {}\n", n.attr_string("pattern", "?"), n.name,
                       n.attr_string(plan::kLayoutAttr, "-"), fmt::join(absorbed, ", "));
    }
  int elided = 0;
  for (const auto& n : after_fusion.nodes)
    if (plan::marked_elided(n)) {
      if (elided++ == 0) s += "no step (views, concats and splits done in place):\n";
      s += fmt::format("  {} '{}'\n", n.op, n.name);
    }
  return s;
}

}  // namespace kiln::build
