// `kiln conformance DIR`: runs ONNX backend test folders on the CPU reference.
#pragma once

#include <string>
#include <vector>

namespace kiln::tools {

struct ConformanceOptions {
  std::string filter;      ///< only tests whose name contains this
  double timeout_s = 120;  ///< per test
  int jobs = 0;            ///< parallel tests; 0: one per core
  bool verbose = false;    ///< print the error text of failures in full
  bool quiet = false;      ///< print only failures and the summary
};

struct ConformanceSummary {
  int passed = 0, failed = 0, unsupported = 0;
};

/// Runs every test under `dir` (folders holding model.onnx and test_data_set_*, or light_X.onnx
/// files with light_X_output_0.pb), one process per test so that a crash or a hang is a FAIL
/// line and not the end of the run. Prints one line per test and the summary line
/// "N passed, N failed, N unsupported".
ConformanceSummary run_conformance(const std::string& dir, const ConformanceOptions& opts);

}  // namespace kiln::tools
