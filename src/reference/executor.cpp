#include "kiln/reference/executor.hpp"

#include <fmt/format.h>

#include "families.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/plugin.hpp"

namespace kiln::reference {

const Tensor& KernelContext::in(std::size_t i) const {
  if (!has(i)) fail(fmt::format("input {} is required but absent", i));
  return *inputs_[i];
}
void KernelContext::fail(const std::string& message) const { throw Error(node.where() + message); }
void KernelContext::unsupported(const std::string& message) const {
  throw UnsupportedError(node.where() + message);
}

KernelRegistry& KernelRegistry::instance() {
  static KernelRegistry r;
  return r;
}
KernelRegistry::KernelRegistry() { register_all(*this); }
void KernelRegistry::add(const std::string& op, Kernel k) {
  if (!kernels_.emplace(op, std::move(k)).second)
    throw Error("reference kernel for '" + op + "' registered twice");
}
const Kernel* KernelRegistry::find(const std::string& op) const {
  auto it = kernels_.find(op);
  if (it != kernels_.end()) return &it->second;
  if (!plugin::is_plugin_op(op)) return nullptr;
  std::lock_guard lock(plugins_mu_);
  if (auto p = plugins_.find(op); p != plugins_.end()) return &p->second;
  const plugin::Entry* e = plugin::find(op);
  if (!e) return nullptr;
  // A plugin's reference fills every output; one it leaves undefined is its error, named.
  Kernel k = [e](KernelContext& ctx) {
    std::vector<const Tensor*> in(ctx.num_inputs(), nullptr);
    for (std::size_t i = 0; i < in.size(); ++i)
      if (ctx.has(i)) in[i] = &ctx.in(i);
    std::vector<Tensor> out(static_cast<std::size_t>(e->outputs));
    e->reference(ctx.node, in, out);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (!out[i].defined())
        ctx.fail(fmt::format("the reference of plugin '{}' left output {} unset", e->name(), i));
      ctx.set(i, std::move(out[i]));
    }
  };
  return &plugins_.emplace(op, std::move(k)).first->second;
}
std::vector<std::string> KernelRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : kernels_) v.push_back(k);
  return v;
}

std::vector<Tensor> run_node(const Node& node, const std::vector<const Tensor*>& inputs) {
  const Kernel* k = KernelRegistry::instance().find(node.op);
  if (!k)
    throw UnsupportedError(node.where() + "the CPU reference has no kernel for op '" + node.op +
                           "'");
  KernelContext ctx(node, inputs);
  try {
    (*k)(ctx);
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind(node.where(), 0) == 0) throw;
    if (dynamic_cast<const UnsupportedError*>(&e)) throw UnsupportedError(node.where() + msg);
    if (dynamic_cast<const ShapeError*>(&e)) throw ShapeError(node.where() + msg);
    if (dynamic_cast<const MemoryLimitError*>(&e)) throw MemoryLimitError(node.where() + msg);
    throw Error(node.where() + msg);
  } catch (const std::bad_alloc&) {  // scratch memory of a kernel (tensors are counted)
    throw MemoryLimitError(node.where() + "the system could not allocate the kernel's memory");
  } catch (const std::length_error&) {
    throw MemoryLimitError(node.where() + "a kernel's scratch size does not fit in memory");
  }
  for (std::size_t i = 0; i < node.outputs.size(); ++i)
    if (node.has_output(i) && !ctx.outputs()[i].defined())
      throw Error(fmt::format("{}kernel did not produce output {} ('{}')", node.where(), i,
                              node.outputs[i]));
  return std::move(ctx.outputs());
}

namespace {
class ReferenceEvaluator final : public ConstantEvaluator {
 public:
  std::vector<Tensor> evaluate(const Node& node,
                               const std::vector<const Tensor*>& inputs) const override {
    return run_node(node, inputs);
  }
};
}  // namespace

const ConstantEvaluator& constant_evaluator() {
  static const ReferenceEvaluator e;
  return e;
}

namespace {
// The process's default evaluator (kiln/ir/graph.hpp): control-flow bodies fold with it, the
// GPU runtime's host steps run with it.
[[maybe_unused]] const bool evaluator_registered =
    (set_default_evaluator(&constant_evaluator()), true);
}  // namespace

Executor::Executor(const Graph& graph) : graph_(graph) {
  for (const auto& n : graph_.nodes)
    if (!KernelRegistry::instance().find(n.op)) {
      if (plugin::is_plugin_op(n.op)) plugin::missing(n);
      throw UnsupportedError(n.where() + "the CPU reference has no kernel for op '" + n.op + "'");
    }
}

TensorMap Executor::run(const TensorMap& inputs) const { return execute(inputs, false); }
TensorMap Executor::run_all(const TensorMap& inputs) const { return execute(inputs, true); }
TensorMap Executor::run_body(const TensorMap& inputs) const {
  return execute(inputs, false, false);
}

TensorMap Executor::execute(const TensorMap& inputs, bool keep_all, bool check_inputs) const {
  std::map<std::string, Tensor> values;
  std::map<std::string, std::int64_t> symbols;
  for (const auto& vi : graph_.inputs) {
    auto it = inputs.find(vi.name);
    if (it == inputs.end())
      throw Error(fmt::format("missing input '{}' ({})", vi.name, vi.type.to_string()));
    const Tensor& t = it->second;
    values[vi.name] = t;
    if (!check_inputs) continue;
    const TensorType& type = vi.type;
    auto mismatch = [&](const std::string& got) {
      return Error(fmt::format("input '{}' expects {}, got {}", vi.name, type.to_string(), got));
    };
    if (t.dtype() != type.dtype)
      throw Error(fmt::format("input '{}' expects dtype {}, got {}", vi.name,
                              dtype_name(type.dtype), dtype_name(t.dtype())));
    // A tensor's dims against the type's: fixed dims equal; a symbol binds across the inputs
    // (a sequence's tensors may differ from each other: they bind none).
    auto check_dims = [&](const Tensor& x, bool bind) {
      if (!type.rank_known) return;
      auto wrong = [&] {
        if (!bind)  // a sequence's tensor
          return ShapeError(fmt::format("input '{}' expects {}, got a tensor of {}", vi.name,
                                        type.to_string(), dims_to_string(x.dims())));
        return ShapeError(fmt::format("input '{}' expects shape {}, got {}", vi.name,
                                      type.shape.to_string(), dims_to_string(x.dims())));
      };
      if (x.rank() != type.shape.rank()) throw wrong();
      for (std::size_t d = 0; d < x.rank(); ++d) {
        const Dim& want = type.shape[d];
        bool ok = true;
        if (want.is_fixed())
          ok = want.value() == x.dim(d);
        else if (want.is_symbolic() && bind) {
          auto [s, fresh] = symbols.emplace(want.symbol_name(), x.dim(d));
          ok = fresh || s->second == x.dim(d);
        }
        if (!ok) throw wrong();
      }
    };
    if (t.is_none()) {
      if (!type.is_optional()) throw mismatch("an empty optional");
    } else if (t.is_sequence()) {
      if (!type.is_sequence()) throw mismatch(t.type_string());
      for (const Tensor& e : t.elements()) check_dims(e, false);
    } else {
      if (type.is_sequence()) throw mismatch(t.type_string());
      check_dims(t, true);
    }
  }
  for (const auto& [name, _] : inputs)
    if (!values.count(name)) {
      bool known = false;
      for (const auto& vi : graph_.inputs) known |= vi.name == name;
      if (!known) throw Error(fmt::format("'{}' is not an input of graph '{}'", name, graph_.name));
    }

  // Last use of each value, so that intermediates are freed as soon as they are dead.
  std::map<std::string, std::size_t> last_use;
  for (std::size_t i = 0; i < graph_.nodes.size(); ++i)
    for (const auto& in : graph_.nodes[i].inputs)
      if (!in.empty()) last_use[in] = i;
  for (const auto& o : graph_.outputs) last_use[o] = graph_.nodes.size();

  auto lookup = [&](const std::string& name) -> const Tensor* {
    if (auto it = values.find(name); it != values.end()) return &it->second;
    if (auto it = graph_.weights.find(name); it != graph_.weights.end()) return &it->second;
    return nullptr;
  };
  for (std::size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    std::vector<const Tensor*> ins;
    for (const auto& name : n.inputs) {
      if (name.empty()) {
        ins.push_back(nullptr);
        continue;
      }
      const Tensor* t = lookup(name);
      if (!t) throw GraphError(fmt::format("{}input '{}' has no value", n.where(), name));
      ins.push_back(t);
    }
    auto outs = run_node(n, ins);
    for (std::size_t o = 0; o < n.outputs.size(); ++o) {
      if (!n.has_output(o)) continue;
      // An output nobody reads (an unused optional output) is dropped at once.
      if (!keep_all && !last_use.count(n.outputs[o])) continue;
      values[n.outputs[o]] = std::move(outs[o]);
    }
    if (!keep_all)
      for (const auto& name : n.inputs)
        if (!name.empty() && last_use.at(name) == i && !inputs.count(name)) values.erase(name);
  }
  if (keep_all) return values;
  TensorMap out;
  for (const auto& o : graph_.outputs) {
    const Tensor* t = lookup(o);
    if (!t) throw GraphError(fmt::format("graph output '{}' has no value", o));
    out[o] = *t;
  }
  return out;
}

}  // namespace kiln::reference
