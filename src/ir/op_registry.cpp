#include "kiln/ir/op_registry.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/plugin.hpp"
#include "ops/families.hpp"

namespace kiln {

const TensorType& InferContext::input(std::size_t i) const {
  if (!has_input(i)) fail(fmt::format("input {} is required but absent", i));
  return *in_[i];
}

void InferContext::fail(const std::string& message) const {
  throw ShapeError(node.where() + message);
}

OpRegistry& OpRegistry::instance() {
  static OpRegistry r;
  return r;
}

OpRegistry::OpRegistry() { ops::register_all(*this); }

void OpRegistry::add(OpSchema s) {
  if (find(s.name)) throw Error("op '" + s.name + "' registered twice");
  schemas_.push_back(std::move(s));
}

namespace {

/// A plugin's schema: its input and output counts, and a shape rule that checks the input dtypes
/// against what it supports and runs its shape function, naming the plugin when that throws.
OpSchema plugin_schema(const plugin::Entry& e) {
  OpSchema s;
  s.name = e.name();
  s.family = "plugin";
  s.min_inputs = e.min_inputs;
  s.max_inputs = e.max_inputs;
  s.min_outputs = s.max_outputs = e.outputs;
  s.infer = [&e](const InferContext& ctx) {
    std::vector<TensorType> in(ctx.num_inputs());
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (!ctx.has_input(i)) continue;
      in[i] = ctx.input(i);
      if (!e.supports(in[i].dtype))
        ctx.fail(fmt::format("plugin '{}' does not take input {} of type {}", e.name(), i,
                             in[i].to_string()));
    }
    std::vector<TensorType> out;
    try {
      out = e.shape(ctx.node, in);
    } catch (const std::exception& err) {
      ctx.fail(fmt::format("the shape function of plugin '{}' failed: {}", e.name(), err.what()));
    }
    if (static_cast<int>(out.size()) != e.outputs)
      ctx.fail(fmt::format("the shape function of plugin '{}' gave {} outputs, the plugin has {}",
                           e.name(), out.size(), e.outputs));
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!e.supports(out[i].dtype))
        ctx.fail(fmt::format("plugin '{}' makes output {} of type {}, which it does not support",
                             e.name(), i, out[i].to_string()));
    return out;
  };
  return s;
}

}  // namespace

const OpSchema* OpRegistry::find(std::string_view op) const {
  for (const auto& s : schemas_)
    if (s.name == op) return &s;
  if (!plugin::is_plugin_op(std::string(op))) return nullptr;
  std::lock_guard lock(plugins_mu_);
  if (auto it = plugins_.find(op); it != plugins_.end()) return &it->second;
  const plugin::Entry* e = plugin::find(std::string(op));
  if (!e) return nullptr;
  return &plugins_.emplace(std::string(op), plugin_schema(*e)).first->second;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& s : schemas_) v.push_back(s.name);
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace kiln
