// The table behind `kiln ops`: every op the IR knows, and which parts of kiln support it.
#pragma once

#include <string>
#include <vector>

namespace kiln::tools {

struct OpRow {
  std::string op, family;
  bool cpu = false, gpu = false, onnx = false, dsl = false;
  std::string onnx_opsets;  ///< "1-27"
  std::string dsl_layer;    ///< the DSL function(s) that emit the op
};

std::vector<OpRow> ops_table();

/// The rows as a JSON array of objects (`kiln ops --json`), one key per OpRow field.
std::string ops_json(const std::vector<OpRow>& rows);

}  // namespace kiln::tools
