// `kiln build`, `kiln inspect` and `kiln run --plan`: the builder on the command line.
#pragma once

#include <string>
#include <vector>

namespace kiln::tools {

/// kiln build MODEL.onnx [--save FILE] [--target NAME] [--shape NAME=DxDxD]... [--check]
int cmd_build(const std::vector<std::string>& args);
/// kiln inspect MODEL.onnx|PLAN [--target NAME] [--shape NAME=DxD]... [--dot-dir DIR] [--graph]
int cmd_inspect(const std::vector<std::string>& args);
/// kiln run --plan FILE [--input NAME=FILE.pb]... [--seed N] [--output-dir DIR]
int cmd_run_plan(const std::vector<std::string>& args);

}  // namespace kiln::tools
