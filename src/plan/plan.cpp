#include "kiln/plan/plan.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"

namespace kiln::plan {

void require_tensor_values(const Graph& g) {
  auto check = [&](const std::string& name, const std::string& where) {
    if (name.empty() || !g.has_type(name)) return;
    const TensorType& type = g.type_of(name);
    if (!type.is_tensor())
      throw UnsupportedError(fmt::format(
          "{}value '{}' is {}: plans hold tensors; sequences and optionals run on the CPU "
          "reference (`kiln run MODEL.onnx`)",
          where, name, type.to_string()));
  };
  for (const auto& i : g.inputs) check(i.name, "[input] ");
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs) check(o, n.where());
}

Plan make_plan(const Graph& g, const Target& t, std::uint64_t weights_hash) {
  require_tensor_values(g);
  Plan p;
  p.target = t.name;
  p.graph_name = g.name;
  p.weights_hash = weights_hash;
  std::vector<std::size_t> steps;
  p.memory = plan_memory(g, t, &steps);
  for (const auto& i : g.inputs) p.inputs.push_back({i.name, g.type_of(i.name)});
  for (const auto& o : g.outputs) p.outputs.push_back({o, g.type_of(o)});
  std::set<std::string> used;
  for (std::size_t i : steps) {
    p.steps.push_back(g.nodes[i]);
    for (const auto& in : g.nodes[i].inputs) used.insert(in);
  }
  for (const auto& o : g.outputs) used.insert(o);
  for (const auto& [name, w] : g.weights)
    if (used.count(name)) p.weights[name] = w;
  validate_plan(p);
  return p;
}

namespace {

std::string dims_str(const PlannedValue& v) {
  if (v.sized_at_run_time())
    return fmt::format("{}{}", dtype_name(v.dtype), Shape::of(v.dims).to_string());
  return fmt::format("{}{}", dtype_name(v.dtype), dims_to_string(v.dims));
}

std::string step_line(const Node& n, std::size_t index, const std::string& precision) {
  std::vector<std::string> ins;
  for (const auto& i : n.inputs) ins.push_back(i.empty() ? "_" : i);
  std::string what = n.op;
  std::string absorbed;
  if (is_fused(n)) {
    what = n.attr_string("pattern", "?");
    absorbed = fmt::format(" absorbs [{}]", fmt::join(fused_absorbed(n), ", "));
  }
  std::string layout = n.attr_string(kLayoutAttr, "");
  return fmt::format("  #{} {} '{}'({}) -> {}{}{} {}\n", index, what, n.name, fmt::join(ins, ", "),
                     fmt::join(n.outputs, ", "), absorbed,
                     layout.empty() ? "" : " [" + layout + "]", precision);
}

}  // namespace

std::string Plan::memory_report() const {
  std::string s = fmt::format(
      "memory: arena {} bytes, naive sum {} bytes ({:.1f}%), {} buffers "
      "for {} values ({} in place, {} views, {} concat slices)\n",
      memory.arena_bytes, memory.naive_bytes,
      memory.naive_bytes ? 100.0 * static_cast<double>(memory.arena_bytes) /
                               static_cast<double>(memory.naive_bytes)
                         : 0.0,
      memory.buffers, memory.values.size(), memory.in_place, memory.views, memory.slices);
  // Values by offset, then name: reads as a map of the arena.
  std::vector<const PlannedValue*> vs;
  for (const auto& [_, v] : memory.values) vs.push_back(&v);
  std::sort(vs.begin(), vs.end(), [](const PlannedValue* a, const PlannedValue* b) {
    return a->offset != b->offset ? a->offset < b->offset : a->name < b->name;
  });
  for (const PlannedValue* v : vs)
    s += fmt::format("  @{:<10} {:>10} B  steps {:>3}..{:<3} {} {}{}\n", v->offset, v->bytes(),
                     v->first, v->last, v->name, dims_str(*v),
                     v->how == "own" ? "" : " (" + v->how + ")");
  return s;
}

std::string Plan::step_precision(const Node& s) const {
  static const std::set<std::string> integer_ops = {"ConvInteger", "MatMulInteger", "QLinearConv",
                                                    "QLinearMatMul"};
  const FusedBody body = is_fused(s) ? fused_body(s) : as_body(s);
  bool int8 = integer_ops.count(body.parts.at(0).op) != 0;
  // An FP8 product: the product of DequantizeLinear of x and of the weight (build::fuse_int8).
  bool fp8 = body.parts.size() > 2 && body.parts[0].op == "DequantizeLinear" &&
             body.parts[1].op == "DequantizeLinear";
  for (const auto& o : s.outputs)
    if (auto v = memory.values.find(o); v != memory.values.end()) {
      int8 |= v->second.dtype == DType::i8 || v->second.dtype == DType::u8;
      fp8 |= v->second.dtype == DType::f8e4m3fn || v->second.dtype == DType::f8e5m2;
    }
  if (fp8) return "fp8";
  if (int8) return "int8";
  try {
    return target_by_name(target).precision;
  } catch (const Error&) {
    return "?";  // a target this build does not know (the plan's loader names it)
  }
}

std::string Plan::dump() const {
  std::string s = fmt::format("plan '{}' for target {}\n", graph_name, target);
  for (const auto& i : inputs) s += fmt::format("input {}: {}\n", i.name, i.type.to_string());
  for (const auto& o : outputs) s += fmt::format("output {}: {}\n", o.name, o.type.to_string());
  std::int64_t wbytes = 0;
  for (const auto& [_, w] : weights) wbytes += static_cast<std::int64_t>(w.nbytes());
  s += fmt::format("weights: {} tensors, {} bytes\n", weights.size(), wbytes);
  for (const auto& [name, w] : weights) s += fmt::format("  {}: {}\n", name, w.type_string());
  s += fmt::format("steps: {}\n", steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i)
    s += step_line(steps[i], i, step_precision(steps[i]));
  s += memory_report();
  if (!tactics.empty()) {
    s += fmt::format("tactics: {}\n", tactics.size());
    for (const auto& [key, value] : tactics) s += fmt::format("  {} -> {}\n", key, value);
  }
  if (is_dynamic()) {
    std::vector<std::string> ins;
    for (const auto& vi : source->inputs) ins.push_back(vi.name + " " + vi.type.to_string());
    s += fmt::format(
        "dynamic: specialized per shape from '{}' ({}), {} nodes; steps above at profile 0's opt\n",
        source->name, fmt::join(ins, ", "), source->nodes.size());
    for (std::size_t i = 0; i < profiles.size(); ++i) {
      s += fmt::format("profile {}:\n", i);
      for (const auto& [name, r] : profiles[i].inputs)
        s += fmt::format("  {}: min {} opt {} max {}\n", name, dims_to_string(r.min),
                         dims_to_string(r.opt), dims_to_string(r.max));
    }
    for (const auto& b : buckets)
      s += fmt::format("bucket of profile {} at {}: {} steps with problems\n", b.profile,
                       format_shape_list(b.shape), b.steps.size());
  }
  return s;
}

std::map<std::string, std::string> Plan::bucket_step_tactics(const ShapeMap& s,
                                                             std::size_t profile) const {
  std::vector<const BucketTactics*> mine;
  std::vector<ShapeMap> shapes;
  for (const auto& b : buckets)
    if (b.profile == profile) mine.push_back(&b), shapes.push_back(b.shape);
  std::map<std::string, std::string> out;
  if (mine.empty()) return out;
  std::size_t at = 0;
  try {
    at = bucket_for(shapes, s);
  } catch (const ShapeError&) {
    return out;  // none covers it (a plan recording only some buckets)
  }
  for (const auto& [step, key] : mine[at]->steps)
    if (auto t = tactics.find(key); t != tactics.end()) out.emplace(step, t->second);
  return out;
}

}  // namespace kiln::plan
