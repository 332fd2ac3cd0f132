// The reference kernels of the builder's internal steps: "kiln.Fused" runs the parts one after
// another with their own kernels; "kiln.ToLayout" copies.
#include <map>

#include <fmt/format.h>

#include "families.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::reference {

void register_fused(KernelRegistry& r) {
  r.add(kFusedOp, [](KernelContext& ctx) {
    const FusedBody body = fused_body(ctx.node);
    std::map<std::string, Tensor> local;
    for (const Node& p : body.parts) {
      std::vector<const Tensor*> ins;
      for (const auto& name : p.inputs) {
        if (name.empty())
          ins.push_back(nullptr);
        else if (const auto k = fused_input_index(name)) {
          ins.push_back(ctx.has(*k) ? &ctx.in(*k) : nullptr);
        } else {
          ins.push_back(&local.at(name));
        }
      }
      auto outs = run_node(p, ins);
      for (std::size_t o = 0; o < p.outputs.size(); ++o)
        if (p.has_output(o)) local[p.outputs[o]] = std::move(outs[o]);
    }
    for (std::size_t i = 0; i < body.results.size(); ++i) ctx.set(i, local.at(body.results[i]));
  });
  // The physical layout is a back end's business; logically a conversion is a copy.
  r.add(plan::kToLayoutOp, [](KernelContext& ctx) {
    const std::string to = ctx.node.attr_string(plan::kToLayoutAttr, "");
    if (to != "NCHW" && to != "NHWC")
      ctx.fail(
          fmt::format("attribute '{}' = '{}': expected 'NCHW' or 'NHWC'", plan::kToLayoutAttr, to));
    const Tensor& x = ctx.in(0);
    if (x.dims().size() != 4)
      throw ShapeError(ctx.node.where() +
                       fmt::format("expected a 4-D input [N,C,H,W], got {}", x.type_string()));
    ctx.set(0, x);
  });
}

}  // namespace kiln::reference
