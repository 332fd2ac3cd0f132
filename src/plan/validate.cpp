// A plan's promise to its executors: every value lies inside the arena, every name a step reads
// or writes has a place, and every step's planned output types are what its op's shape rule
// computes from its planned input types. Plans read from files are untrusted (a checksum proves
// integrity, not validity), so the loader runs this; make_plan runs it too.
#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/ir/memory.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/ir/plugin.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::plan {

namespace {

using i64 = std::int64_t;

[[noreturn]] void bad(const std::string& m) { throw FormatError("plan is inconsistent: " + m); }

void check_value(const std::string& key, const PlannedValue& v, i64 arena) {
  if (v.name != key) bad(fmt::format("value '{}' is filed under '{}'", v.name, key));
  if (v.sized_at_run_time()) {  // no place in the arena; dims -1 where not known
    if (!v.strides.empty() || v.offset != -1 || v.root != key || v.dims.size() > 32)
      bad(fmt::format("value '{}' is sized at run time but has strides, an offset or a root", key));
    for (i64 d : v.dims)
      if (d < -1 || d > (i64{1} << 40)) bad(fmt::format("value '{}' has dim {}", key, d));
    return;
  }
  if (v.strides.size() != v.dims.size())
    bad(fmt::format("value '{}' has {} dims and {} strides", key, v.dims.size(), v.strides.size()));
  const std::string what = fmt::format("value '{}'", key);
  const std::uint64_t bytes = tensor_bytes(what, v.dtype, v.dims);  // throws on negative dims
  if (bytes > static_cast<std::uint64_t>(kMaxArenaBytes))
    bad(fmt::format("value '{}' {}{} is larger than an arena can be", key, dtype_name(v.dtype),
                    dims_to_string(v.dims)));
  // The last element's byte offset, in 128 bits so that no stride can overflow it.
  __int128 last = 0;
  bool empty = false;
  for (std::size_t d = 0; d < v.dims.size(); ++d) {
    if (v.strides[d] < 0 || v.strides[d] > kMaxArenaBytes)
      bad(fmt::format("value '{}' has stride {} on axis {}", key, v.strides[d], d));
    if (v.dims[d] == 0)
      empty = true;
    else
      last += static_cast<__int128>(v.dims[d] - 1) * v.strides[d];
  }
  const auto es = static_cast<__int128>(dtype_size(v.dtype));
  const __int128 end = static_cast<__int128>(v.offset) + (empty ? 0 : (last + 1) * es);
  if (v.offset < 0 || end > arena)
    bad(fmt::format("value '{}' ({}{} at offset {}) lies outside the arena of {} bytes", key,
                    dtype_name(v.dtype), dims_to_string(v.dims), v.offset, arena));
}

TensorType planned_type(const PlannedValue& v) { return {v.dtype, Shape::of(v.dims)}; }

bool same_type(const TensorType& a, const TensorType& b) {
  return a.dtype == b.dtype && a.shape.values() == b.shape.values();
}

/// Re-infers a step's outputs from its planned inputs and compares them with the planned outputs.
void check_step(const Plan& p, const Node& s, std::size_t index) {
  const std::string where = fmt::format("step #{} '{}' ({})", index, s.name, s.op);
  const OpSchema* schema = OpRegistry::instance().find(s.op);
  if (!schema && plugin::is_plugin_op(s.op)) plugin::missing(s);
  if (!schema) bad(fmt::format("{} has an unknown op", where));
  const auto n_in = static_cast<int>(s.inputs.size()), n_out = static_cast<int>(s.outputs.size());
  if (n_in < schema->min_inputs || (schema->max_inputs >= 0 && n_in > schema->max_inputs) ||
      n_out < schema->min_outputs || n_out > schema->max_outputs)
    bad(fmt::format("{} has {} inputs and {} outputs", where, n_in, n_out));
  if (is_fused(s)) (void)fused_body(s);  // throws GraphError when malformed
  std::vector<TensorType> types(s.inputs.size());
  std::vector<const TensorType*> in(s.inputs.size(), nullptr);
  std::vector<const Tensor*> constants(s.inputs.size(), nullptr);
  for (std::size_t i = 0; i < s.inputs.size(); ++i) {
    const std::string& name = s.inputs[i];
    if (name.empty()) continue;
    if (auto w = p.weights.find(name); w != p.weights.end()) {
      types[i] = {w->second.dtype(), w->second.shape()};
      constants[i] = &w->second;
    } else if (auto v = p.memory.values.find(name); v != p.memory.values.end()) {
      types[i] = planned_type(v->second);
    } else {
      bad(fmt::format("{} reads '{}', which has no place", where, name));
    }
    in[i] = &types[i];
  }
  std::vector<TensorType> outs;
  try {
    outs = schema->infer(InferContext(s, in, constants));
  } catch (const Error& e) {
    bad(fmt::format("{}: {}", where, e.what()));
  }
  for (std::size_t o = 0; o < s.outputs.size(); ++o) {
    if (s.outputs[o].empty()) continue;
    auto v = p.memory.values.find(s.outputs[o]);
    if (v == p.memory.values.end())
      bad(fmt::format("{} writes '{}', which has no place", where, s.outputs[o]));
    if (o >= outs.size() || !same_type(outs[o], planned_type(v->second)))
      bad(fmt::format("{} makes '{}' as {}, the plan places {}{}", where, s.outputs[o],
                      o < outs.size() ? outs[o].to_string() : "nothing",
                      dtype_name(v->second.dtype), dims_to_string(v->second.dims)));
  }
}

/// A dynamic plan: a well-formed source graph, profiles that make_profile accepts for it
/// unchanged, and steps specialized at the first profile's opt shape.
void check_dynamic(const Plan& p) {
  if (!p.source) bad("it has profiles but no source graph");
  const Graph& g = *p.source;
  try {
    g.verify();
  } catch (const Error& e) {
    bad(fmt::format("its source graph: {}", e.what()));
  }
  for (std::size_t i = 0; i < p.profiles.size(); ++i) {
    const Profile& prof = p.profiles[i];
    Profile again;
    try {
      again = make_profile(g, prof.min(), prof.opt(), prof.max());
    } catch (const Error& e) {
      bad(fmt::format("profile {}: {}", i, e.what()));
    }
    if (again.inputs.size() != prof.inputs.size())
      bad(fmt::format("profile {} has {} inputs, its source graph {}", i, prof.inputs.size(),
                      g.inputs.size()));
  }
  const ShapeMap opt = p.profiles[0].opt();
  for (const auto& vi : p.inputs) {
    auto it = opt.find(vi.name);
    if (it == opt.end() || !(Shape::of(it->second) == vi.type.shape))
      bad(fmt::format("input '{}' is {}, not profile 0's opt shape", vi.name, vi.type.to_string()));
  }
}

}  // namespace

void validate_plan(const Plan& p) {
  const MemoryPlan& m = p.memory;
  if (m.arena_bytes < 0 || m.arena_bytes > kMaxArenaBytes)
    bad(fmt::format("arena of {} bytes (at most {})", m.arena_bytes, kMaxArenaBytes));
  for (const auto& [name, v] : m.values) {
    check_value(name, v, m.arena_bytes);
    if (!v.root.empty() && !m.values.count(v.root))
      bad(fmt::format("value '{}' lives in '{}', which has no place", name, v.root));
  }
  for (const auto& [name, w] : p.weights)
    if (m.values.count(name)) bad(fmt::format("'{}' is both a weight and an activation", name));
  for (const auto& i : p.inputs) {
    auto v = m.values.find(i.name);
    if (v == m.values.end()) bad(fmt::format("input '{}' has no place", i.name));
    if (!same_type(i.type, planned_type(v->second)))
      bad(fmt::format("input '{}' is declared {} but placed as {}{}", i.name, i.type.to_string(),
                      dtype_name(v->second.dtype), dims_to_string(v->second.dims)));
  }
  for (const auto& o : p.outputs) {
    TensorType placed;
    if (auto w = p.weights.find(o.name); w != p.weights.end())
      placed = {w->second.dtype(), w->second.shape()};
    else if (auto v = m.values.find(o.name); v != m.values.end())
      placed = planned_type(v->second);
    else
      bad(fmt::format("output '{}' has no place", o.name));
    if (!same_type(o.type, placed))
      bad(fmt::format("output '{}' is declared {} but placed as {}", o.name, o.type.to_string(),
                      placed.to_string()));
  }
  for (std::size_t i = 0; i < p.steps.size(); ++i) check_step(p, p.steps[i], i);
  if (p.is_dynamic()) check_dynamic(p);
}

}  // namespace kiln::plan
