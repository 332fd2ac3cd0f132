#include "kiln/ir/op_registry.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
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

const OpSchema* OpRegistry::find(std::string_view op) const {
  for (const auto& s : schemas_)
    if (s.name == op) return &s;
  return nullptr;
}

std::vector<std::string> OpRegistry::names() const {
  std::vector<std::string> v;
  for (const auto& s : schemas_) v.push_back(s.name);
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace kiln
