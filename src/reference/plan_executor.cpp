#include "kiln/reference/plan_executor.hpp"

#include <cstring>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/plugin.hpp"

namespace kiln::reference {

using i64 = std::int64_t;

PlanExecutor::PlanExecutor(const plan::Plan& plan) : plan_(plan) {
  for (const auto& s : plan_.steps)
    if (!KernelRegistry::instance().find(s.op)) {
      if (plugin::is_plugin_op(s.op)) plugin::missing(s);
      throw UnsupportedError(s.where() + "the CPU reference has no kernel for op '" + s.op + "'");
    }
}

namespace {
/// Calls f(element index within the value, element offset in the arena) for every element.
template <class F>
void for_each_element(const plan::PlannedValue& v, F&& f) {
  const std::size_t rank = v.dims.size();
  const i64 n = product(v.dims);
  std::vector<i64> idx(rank, 0);
  i64 at = 0;
  for (i64 i = 0; i < n; ++i) {
    f(i, at);
    for (std::size_t d = rank; d-- > 0;) {
      at += v.strides[d];
      if (++idx[d] < v.dims[d]) break;
      at -= v.strides[d] * v.dims[d];
      idx[d] = 0;
    }
  }
}
}  // namespace

Tensor PlanExecutor::read(const plan::PlannedValue& v) const {
  if (v.sized_at_run_time()) {
    auto it = sized_.find(v.name);
    if (it == sized_.end())
      throw GraphError(fmt::format("value '{}' is read before it is made", v.name));
    return it->second;
  }
  const std::size_t es = dtype_size(v.dtype);
  Tensor t(v.dtype, v.dims);
  const std::byte* base = arena_.data() + v.offset;
  if (v.contiguous()) {
    if (t.nbytes()) std::memcpy(t.raw(), base, t.nbytes());
  } else {
    for_each_element(v, [&](i64 i, i64 at) {
      std::memcpy(t.raw() + i * static_cast<i64>(es), base + at * static_cast<i64>(es), es);
    });
  }
  return t;
}

void PlanExecutor::write(const plan::PlannedValue& v, const Tensor& t, const std::string& who) {
  if (v.sized_at_run_time()) {  // its known dims must hold; the others are what it made
    bool ok = t.is_tensor() && t.dtype() == v.dtype && t.rank() == v.dims.size();
    for (std::size_t d = 0; ok && d < v.dims.size(); ++d)
      ok = v.dims[d] < 0 || v.dims[d] == t.dim(d);
    if (!ok)
      throw Error(fmt::format("{}made '{}' as {}, the plan expects {}{}", who, v.name,
                              t.type_string(), dtype_name(v.dtype), dims_to_string(v.dims)));
    sized_[v.name] = t;
    return;
  }
  if (!t.is_tensor() || t.dtype() != v.dtype || t.dims() != v.dims)  // plans hold tensors
    throw Error(fmt::format("{}made '{}' as {}, the plan expects {}{}", who, v.name,
                            t.type_string(), dtype_name(v.dtype), dims_to_string(v.dims)));
  const std::size_t es = dtype_size(v.dtype);
  std::byte* base = arena_.data() + v.offset;
  if (v.contiguous()) {
    if (t.nbytes()) std::memmove(base, t.raw(), t.nbytes());
  } else {
    for_each_element(v, [&](i64 i, i64 at) {
      std::memcpy(base + at * static_cast<i64>(es), t.raw() + i * static_cast<i64>(es), es);
    });
  }
}

TensorMap PlanExecutor::run(const TensorMap& inputs) {
  const auto arena_bytes = static_cast<std::uint64_t>(plan_.memory.arena_bytes);
  if (arena_reservation_.bytes() != arena_bytes) {
    arena_reservation_.release();
    arena_.clear();
    arena_.shrink_to_fit();
    arena_reservation_ = HostReservation(
        arena_bytes, fmt::format("the activation arena of plan '{}'", plan_.graph_name));
  }
  arena_.assign(static_cast<std::size_t>(arena_bytes), std::byte{0xff});
  sized_.clear();
  for (const auto& vi : plan_.inputs) {
    auto it = inputs.find(vi.name);
    if (it == inputs.end())
      throw Error(fmt::format("missing input '{}' ({})", vi.name, vi.type.to_string()));
    write(plan_.memory.values.at(vi.name), it->second, fmt::format("[input '{}'] ", vi.name));
  }
  for (const auto& [name, _] : inputs) {
    bool known = false;
    for (const auto& vi : plan_.inputs) known |= vi.name == name;
    if (!known)
      throw Error(fmt::format("'{}' is not an input of plan '{}'", name, plan_.graph_name));
  }
  for (std::size_t index = 0; index < plan_.steps.size(); ++index) {
    const Node& step = plan_.steps[index];
    // Every input is read out of the arena before any output is written: what a kernel that
    // writes in place over an input it reads elementwise would see.
    std::vector<Tensor> held;
    held.reserve(step.inputs.size());
    std::vector<const Tensor*> ins;
    for (const auto& name : step.inputs) {
      if (name.empty()) {
        ins.push_back(nullptr);
        continue;
      }
      if (auto w = plan_.weights.find(name); w != plan_.weights.end()) {
        ins.push_back(&w->second);
        continue;
      }
      auto v = plan_.memory.values.find(name);
      if (v == plan_.memory.values.end())
        throw GraphError(fmt::format("{}input '{}' has no place in the plan", step.where(), name));
      held.push_back(read(v->second));
      ins.push_back(&held.back());
    }
    auto outs = run_node(step, ins);
    for (std::size_t o = 0; o < step.outputs.size(); ++o)
      if (step.has_output(o)) write(plan_.memory.values.at(step.outputs[o]), outs[o], step.where());
    for (const auto& name : step.inputs)  // a value sized at run time is dropped after its last use
      if (auto v = plan_.memory.values.find(name); v != plan_.memory.values.end() &&
                                                   v->second.sized_at_run_time() &&
                                                   v->second.last == static_cast<int>(index))
        sized_.erase(name);
  }
  TensorMap out;
  for (const auto& o : plan_.outputs) {
    if (auto w = plan_.weights.find(o.name); w != plan_.weights.end())
      out[o.name] = w->second.clone();
    else
      out[o.name] = read(plan_.memory.values.at(o.name));
  }
  return out;
}

}  // namespace kiln::reference
