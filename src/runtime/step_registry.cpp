// The step registry: which step runs which op, filled by the steps files, and what is derived
// from it (make_step(), gpu_ops(), check_gpu_plan()).
#include <algorithm>
#include <set>

#include "kiln/ir/plugin.hpp"
#include "steps_util.hpp"

namespace kiln::runtime {

namespace detail {

void StepRegistry::add(const std::string& op, StepFactory make, bool fused) {
  if (by_op_.count(op)) throw Error(fmt::format("two GPU steps registered for op '{}'", op));
  by_op_[op] = Entry{make, fused};
}

void StepRegistry::add_check(const std::string& op, StepCheck check) {
  auto it = by_op_.find(op);
  if (it == by_op_.end()) throw Error(fmt::format("a check for op '{}', which has no step", op));
  it->second.check = check;
}

void StepRegistry::add_pattern(const std::string& pattern, StepFactory make) {
  if (by_pattern_.count(pattern))
    throw Error(fmt::format("two GPU steps registered for the fused pattern '{}'", pattern));
  by_pattern_[pattern] = Entry{make, true};
}

const StepRegistry::Entry* StepRegistry::find_pattern(const std::string& pattern) const {
  auto it = by_pattern_.find(pattern);
  return it == by_pattern_.end() ? nullptr : &it->second;
}

const StepRegistry::Entry* StepRegistry::find(const std::string& op) const {
  auto it = by_op_.find(op);
  return it == by_op_.end() ? plugin_step_entry(op) : &it->second;
}

std::vector<std::string> StepRegistry::ops() const {
  std::vector<std::string> v;
  for (const auto& [op, _] : by_op_) v.push_back(op);
  return v;  // sorted: a std::map's keys
}

const StepRegistry& step_registry() {
  static const StepRegistry r = [] {
    StepRegistry r;
    register_conv_steps(r);
    register_pointwise_steps(r);
    register_data_steps(r);
    register_rnn_steps(r);
    register_attention_steps(r);
    register_detection_steps(r);
    register_int8_steps(r);
    return r;
  }();
  return r;
}

}  // namespace detail

bool runs_on_host(const plan::Plan& p, const Node& s) {
  static const std::set<std::string> host_ops = {"If",      "Loop",   "Scan",
                                                 "NonZero", "Unique", "Compress"};
  if (s.attr_int(plan::kHostAttr, 0) != 0) return true;
  for (const auto& part : as_body(s).parts)
    if (host_ops.count(part.op)) return true;
  for (const auto& v : s.inputs)
    if (sized_at_run_time(p, v)) return true;
  return !sizes_on_gpu(s) && std::any_of(s.outputs.begin(), s.outputs.end(),
                                         [&](const auto& v) { return sized_at_run_time(p, v); });
}

bool sizes_on_gpu(const Node& s) {
  // The GPU steps that learn their outputs' size by waiting for the stream.
  return !is_fused(s) && s.op == "NonMaxSuppression";
}

bool sized_at_run_time(const plan::Plan& p, const std::string& value) {
  auto it = p.memory.values.find(value);
  return it != p.memory.values.end() && it->second.sized_at_run_time();
}

bool waits_for_stream(const plan::Plan& p, const Node& s) {
  if (runs_on_host(p, s)) return true;
  return std::any_of(s.outputs.begin(), s.outputs.end(),
                     [&](const auto& v) { return sized_at_run_time(p, v); });
}

namespace detail {

std::unique_ptr<Step> make_step(const StepEnv& env) {
  const Node& n = env.node;
  const FusedBody body = as_body(n);
  const std::string& anchor = body.parts.at(0).op;
  if (env.engine.step_on_host(n)) return make_host_step(env);
  try {
    if (is_fused(n))
      if (const auto* p = step_registry().find_pattern(n.attr_string("pattern", "")))
        return p->make(env, body);
    const StepRegistry::Entry* e = step_registry().find(anchor);
    if (!e && plugin::is_plugin_op(anchor)) plugin::missing(body.parts.at(0));
    if (!e) unsupported(n, fmt::format("op '{}'", anchor));
    if (is_fused(n) && !e->fused)
      unsupported(n, fmt::format("the fused pattern '{}'", n.attr_string("pattern", "")));
    return e->make(env, body);
  } catch (const UnsupportedError&) {
    throw;
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind("[", 0) == 0) throw;
    throw Error(n.where() + msg);
  }
}

}  // namespace detail

const std::vector<std::string>& gpu_ops() {
  static const std::vector<std::string> ops = detail::step_registry().ops();
  return ops;
}

bool gpu_supports(const std::string& op) { return detail::step_registry().find(op) != nullptr; }

void check_gpu_plan(const plan::Plan& p) {
  for (const Node& s : p.steps) {
    if (runs_on_host(p, s)) {  // the CPU reference runs it: any op it has
      for (const auto& part : as_body(s).parts)
        if (plugin::is_plugin_op(part.op) && !plugin::find(part.op)) plugin::missing(part);
      continue;
    }
    const FusedBody body = as_body(s);
    for (const auto& part : body.parts)
      if (!gpu_supports(part.op)) {
        if (plugin::is_plugin_op(part.op)) plugin::missing(part);
        throw UnsupportedError(fmt::format(
            "{}the GPU runtime has no kernel for op '{}'{}{}", s.where(), part.op,
            is_fused(s) ? fmt::format(" (in fused step {})", s.attr_string("pattern", "")) : "",
            plugin::is_plugin_op(part.op) ? ""
                                          : " (kiln build --host-fallback runs such steps on the "
                                            "host with the CPU reference)"));
      }
    if (const auto* e = detail::step_registry().find(body.parts.at(0).op); e && e->check)
      e->check(p, s, body);
  }
}

}  // namespace kiln::runtime
