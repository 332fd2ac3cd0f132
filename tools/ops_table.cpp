#include "ops_table.hpp"

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::tools {

std::vector<OpRow> ops_table() {
  const auto& reg = OpRegistry::instance();
  const auto onnx_ops = onnx::supported_ops();
  std::vector<OpRow> rows;
  for (const auto& name : reg.names()) {
    OpRow r;
    r.op = name;
    r.family = reg.find(name)->family;
    r.cpu = reference::KernelRegistry::instance().find(name) != nullptr;
    for (const auto& o : onnx_ops)
      if (o.op == name) {
        r.onnx = true;
        r.onnx_opsets = fmt::format("{}-{}", o.min_opset, o.max_opset);
      }
    rows.push_back(r);
  }
  return rows;
}

}  // namespace kiln::tools
