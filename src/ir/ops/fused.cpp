// The fused op "kiln.Fused" (include/kiln/ir/fused.hpp): its encoding and its shape rule, which
// applies the parts' own rules in order. Also the shape rule of the layout conversion
// "kiln.ToLayout", the builder's other internal step.
#include "kiln/ir/fused.hpp"

#include <map>

#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"

namespace kiln {

namespace {
std::string key(std::size_t i, const char* what) { return fmt::format("p{}.{}", i, what); }
}  // namespace

Node make_fused_node(std::string name, std::vector<std::string> inputs,
                     std::vector<std::string> outputs, const FusedBody& body) {
  Node n;
  n.op = kFusedOp;
  n.name = std::move(name);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  std::string pattern;
  for (std::size_t i = 0; i < body.parts.size(); ++i) {
    const Node& p = body.parts[i];
    pattern += (i ? "+" : "") + p.op;
    n.attrs[key(i, "op")] = p.op;
    n.attrs[key(i, "name")] = p.name;
    n.attrs[key(i, "in")] = p.inputs;
    n.attrs[key(i, "out")] = p.outputs;
    for (const auto& [k, v] : p.attrs) n.attrs[fmt::format("p{}.a.{}", i, k)] = v;
  }
  n.attrs["pattern"] = pattern;
  n.attrs["parts"] = static_cast<std::int64_t>(body.parts.size());
  n.attrs["results"] = body.results;
  return n;
}

FusedBody fused_body(const Node& f) {
  if (!is_fused(f)) return as_body(f);
  const std::int64_t count = f.attr_int("parts");
  if (count <= 0 || count > 4096)
    throw GraphError(fmt::format("{}attribute 'parts' = {} is out of range", f.where(), count));
  FusedBody b;
  std::map<std::string, bool> defined;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto idx = static_cast<std::size_t>(i);
    Node p;
    p.op = f.attr_string(key(idx, "op"), "");
    p.name = f.attr_string(key(idx, "name"), "");
    if (p.op.empty()) throw GraphError(fmt::format("{}part {} has no op", f.where(), i));
    if (p.op == kFusedOp) throw GraphError(fmt::format("{}part {} is itself fused", f.where(), i));
    p.inputs = f.attr_strings(key(idx, "in"));
    p.outputs = f.attr_strings(key(idx, "out"));
    const std::string prefix = fmt::format("p{}.a.", i);
    for (auto it = f.attrs.lower_bound(prefix);
         it != f.attrs.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
      p.attrs[it->first.substr(prefix.size())] = it->second;
    for (const auto& in : p.inputs) {
      if (in.empty()) continue;
      if (in[0] == '$') {
        std::size_t k = 0;
        try {
          k = std::stoul(in.substr(1));
        } catch (const std::exception&) {
          throw GraphError(
              fmt::format("{}part {} has a bad input reference '{}'", f.where(), i, in));
        }
        if (k >= f.inputs.size())
          throw GraphError(
              fmt::format("{}part {} refers to input {} of {}", f.where(), i, k, f.inputs.size()));
      } else if (!defined.count(in)) {
        throw GraphError(
            fmt::format("{}part {} reads '{}' before any part makes it", f.where(), i, in));
      }
    }
    for (const auto& o : p.outputs)
      if (!o.empty()) defined[o] = true;
    b.parts.push_back(std::move(p));
  }
  b.results = f.attr_strings("results");
  if (b.results.size() != f.outputs.size())
    throw GraphError(
        fmt::format("{}{} results for {} outputs", f.where(), b.results.size(), f.outputs.size()));
  for (const auto& r : b.results)
    if (!defined.count(r))
      throw GraphError(fmt::format("{}result '{}' is made by no part", f.where(), r));
  return b;
}

std::vector<std::string> fused_absorbed(const Node& f) {
  std::vector<std::string> names;
  for (const auto& p : fused_body(f).parts) names.push_back(p.name);
  return names;
}

FusedBody as_body(const Node& n) {
  if (is_fused(n)) return fused_body(n);
  FusedBody b;
  Node p = n;
  for (std::size_t k = 0; k < p.inputs.size(); ++k)
    if (!p.inputs[k].empty()) p.inputs[k] = fused_input_ref(k);
  for (std::size_t o = 0; o < p.outputs.size(); ++o)
    if (!p.outputs[o].empty()) p.outputs[o] = fmt::format("{}:{}", n.name, o);
  for (const auto& o : p.outputs) b.results.push_back(o);
  b.parts.push_back(std::move(p));
  return b;
}

namespace ops {

void register_fused(OpRegistry& r) {
  r.add(schema(kFusedOp, "fused", 0, -1, 1, 1 << 20, [](const InferContext& ctx) {
    const FusedBody body = fused_body(ctx.node);
    const auto& reg = OpRegistry::instance();
    std::map<std::string, TensorType> local;
    for (const Node& p : body.parts) {
      const OpSchema* s = reg.find(p.op);
      if (!s) ctx.fail(fmt::format("part '{}' has the unknown op '{}'", p.name, p.op));
      const int nin = static_cast<int>(p.input_count());
      if (nin < s->min_inputs || (s->max_inputs >= 0 && nin > s->max_inputs))
        ctx.fail(fmt::format("part '{}' ({}) has {} inputs", p.name, p.op, nin));
      std::vector<const TensorType*> in;
      std::vector<const Tensor*> consts;
      for (const auto& name : p.inputs) {
        if (name.empty()) {
          in.push_back(nullptr);
          consts.push_back(nullptr);
        } else if (const auto k = fused_input_index(name)) {
          in.push_back(&ctx.input(*k));
          consts.push_back(ctx.constant(*k));
        } else {
          in.push_back(&local.at(name));
          consts.push_back(nullptr);
        }
      }
      InferContext pc(p, in, consts);
      const auto out = s->infer(pc);
      for (std::size_t o = 0; o < p.outputs.size() && o < out.size(); ++o)
        if (!p.outputs[o].empty()) local[p.outputs[o]] = out[o];
    }
    std::vector<TensorType> result;
    for (const auto& r : body.results) result.push_back(local.at(r));
    return result;
  }));
  // The layout pass's conversion step (kiln/ir/fused.hpp): same logical type in and out.
  r.add(schema(kToLayoutOp, "fused", 1, 1, 1, 1, [](const InferContext& ctx) {
    const std::string to = ctx.node.attr_string(kToLayoutAttr, "");
    if (to != "NCHW" && to != "NHWC")
      ctx.fail(fmt::format("attribute '{}' = '{}': expected 'NCHW' or 'NHWC'", kToLayoutAttr, to));
    const TensorType& x = ctx.input(0);
    if (x.shape.rank() != 4)
      ctx.fail(fmt::format("expected a 4-D input [N,C,H,W], got {}", x.to_string()));
    return std::vector<TensorType>{x};
  }));
}

}  // namespace ops
}  // namespace kiln
