// The GPU step of a plugin node (kiln/ir/plugin.hpp): its inputs and outputs as row-major device
// tensors in the dtypes the engine stores them in (a 16-bit engine's floats are f16 or bf16),
// refused naming the plugin where it does not support one, then its enqueue on the step's stream.
#include "kiln/ir/plugin.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

/// How the engine stores value `v`: a float in its storage precision, anything else as is.
DType stored_dtype(const DeviceValue& v) {
  if (!is_float(v.dtype) || v.fp == Precision::f32) return v.dtype;
  return v.fp == Precision::f16 ? DType::f16 : DType::bf16;
}

class PluginStep final : public Step {
 public:
  explicit PluginStep(const StepEnv& env) : node_(env.node) {
    const Node& n = env.node;
    entry_ = plugin::find(n.op);
    if (!entry_) plugin::missing(n);
    std::vector<TensorType> in_types;
    auto tensor_of = [&](const std::string& name, const char* what, std::size_t i) {
      plugin::DeviceTensor t;
      if (name.empty()) return t;
      const DeviceValue v = env.value(name);
      if (!v.contiguous())
        unsupported(n, fmt::format("plugin '{}' {} {}: {} (plugins take row-major tensors)",
                                   entry_->name(), what, i, v.describe()));
      t.dtype = stored_dtype(v);
      if (!entry_->supports(t.dtype))
        unsupported(n, fmt::format("plugin '{}' {} {} of type {}: the plugin does not support "
                                   "{} (build for a target whose precision it supports)",
                                   entry_->name(), what, i, v.describe(), dtype_name(t.dtype)));
      t.data = const_cast<void*>(pointer_of(env, v));
      t.dims = v.dims;
      return t;
    };
    for (std::size_t i = 0; i < n.inputs.size(); ++i) {
      io_.inputs.push_back(tensor_of(n.inputs[i], "input", i));
      TensorType ty;
      ty.dtype = io_.inputs.back().dtype;
      ty.shape = Shape::of(io_.inputs.back().dims);
      in_types.push_back(ty);
    }
    for (std::size_t i = 0; i < n.outputs.size(); ++i)
      io_.outputs.push_back(tensor_of(n.outputs[i], "output", i));
    workspace_ = entry_->workspace(n, in_types);
  }
  void run(const RunArgs& a) override {
    io_.workspace = a.workspace;
    io_.stream = a.stream;
    entry_->enqueue(node_, io_);
  }
  std::size_t workspace() const override { return workspace_; }
  std::string kind() const override { return "plugin"; }

 private:
  Node node_;
  const plugin::Entry* entry_ = nullptr;
  plugin::DeviceIo io_;
  std::size_t workspace_ = 0;
};

}  // namespace

const StepRegistry::Entry* plugin_step_entry(const std::string& op) {
  static const StepRegistry::Entry entry{step_factory<PluginStep>, false, nullptr};
  return plugin::is_plugin_op(op) && plugin::find(op) ? &entry : nullptr;
}

}  // namespace kiln::runtime::detail
