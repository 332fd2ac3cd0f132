#include "ops_table.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kiln/dsl/ops.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

namespace kiln::tools {

std::vector<OpRow> ops_table() {
  const auto& reg = OpRegistry::instance();
  const auto onnx_ops = onnx::supported_ops();
  std::vector<OpRow> rows;
  for (const auto& name : reg.names()) {
    if (reg.find(name)->family == "fused") continue;  // the builder's internal steps
    OpRow r;
    r.op = name;
    r.family = reg.find(name)->family;
    r.cpu = reference::KernelRegistry::instance().find(name) != nullptr;
    r.gpu = runtime::gpu_supports(name);
    for (const auto& o : onnx_ops)
      if (o.op == name) {
        r.onnx = true;
        r.onnx_opsets = fmt::format("{}-{}", o.min_opset, o.max_opset);
      }
    for (const auto& d : dsl::kDslOps)
      if (d.op == name) {
        r.dsl = true;
        r.dsl_layer = std::string(d.layer);
      }
    rows.push_back(r);
  }
  return rows;
}

std::string ops_json(const std::vector<OpRow>& rows) {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const auto& r : rows)
    j.push_back({{"op", r.op},
                 {"family", r.family},
                 {"cpu", r.cpu},
                 {"gpu", r.gpu},
                 {"onnx", r.onnx},
                 {"onnx_opsets", r.onnx_opsets},
                 {"dsl", r.dsl},
                 {"dsl_layer", r.dsl_layer}});
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace kiln::tools
