// `kiln build`, `kiln inspect` and `kiln run --plan`: the builder on the command line, and the
// pieces `kiln bench` / `kiln profile` / `kiln run --gpu` share with it.
#pragma once

#include <string>
#include <vector>

#include "cli_args.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/ir/graph.hpp"

namespace kiln::tools {

/// kiln build MODEL.onnx [--save FILE] [--target NAME | --gpu | --fp16] [--shape NAME=DxDxD]...
///   [--max-batch N] [--workspace MiB] [--timing-cache FILE] [--check]
int cmd_build(const std::vector<std::string>& args);
/// kiln inspect MODEL.onnx|PLAN [--target NAME] [--shape NAME=DxD]... [--dot-dir DIR] [--graph]
int cmd_inspect(const std::vector<std::string>& args);
/// kiln run --plan FILE [--input NAME=FILE.pb]... [--seed N] [--output-dir DIR]
int cmd_run_plan(const std::vector<std::string>& args);

/// True when `path` starts with a plan file's magic.
bool is_plan_file(const std::string& path);
/// A dynamic plan specialized for the shape a run asks for: --shapes, else the dims of the
/// --input files, else the opt dims of --profile N (default 0); under --profile N when given,
/// else the first profile that accepts the shape. Prints what it made and how long it took.
/// `bucket_tactics`, when given, receives the tactics by step of the bucket the shape falls in
/// (plan::Plan::bucket_step_tactics: what EngineOptions::step_tactics takes).
plan::Plan specialize_for_run(const Args& args, const plan::Plan& dynamic, const std::string& path,
                              std::map<std::string, std::string>* bucket_tactics = nullptr);
/// Loads an ONNX model (constants folded by the CPU reference's evaluator).
Graph load_onnx(const std::string& path);

/// Declares the options of `kiln build` that build_graph reads: --target, --gpu, --fp16, --shape,
/// --min/--opt/--max-shapes, --buckets-between, the INT8 options and --max-batch (not --save,
/// --example, --weights, --check or the engine options).
void add_build_options(Command& c);
/// What `kiln build` does with a loaded graph (also for the Python module): INT8 calibration
/// (int8_graph), then a dynamic plan when --min/--opt/--max-shapes are given, else a static one;
/// for a CUDA target the plan is checked for the GPU and, with a GPU, its tactics are timed
/// (--workspace, --timing-cache) and recorded. With `print`, prints the build report and the memory
/// line (or the bucket table) as `kiln build` does; `report` receives the report.
plan::Plan build_graph(const Args& args, Graph g, bool print, build::BuildReport* report = nullptr);
/// What `kiln inspect` prints for a model: the build report (layers before and after fusion, each
/// fused step with what it absorbed), the target, and the plan's steps and memory plan.
std::string inspect_text(Graph g, const build::BuildOptions& opts,
                         build::BuildReport* report = nullptr);

/// Declares --shape NAME=DxDx... (repeatable), which build_options reads.
void add_shape_option(Command& c);

/// The target named by --fp16 ("cuda-fp16"), --gpu ("cuda") or --target (default
/// `fallback`); an error when they disagree.
const plan::Target& target_from(const Args& args, const std::string& fallback = "cpu-reference");

/// Build options for `g`: the target (target_from), --shape NAME=DxDx..., and dim 0 of every
/// input set to `batch` when it is > 0 (--max-batch, --batch). Concrete dims of `given` tensors
/// (input files) are used for inputs that --shape does not name.
build::BuildOptions build_options(const Args& args, const Graph& g, std::int64_t batch,
                                  const std::map<std::string, Tensor>& given = {});

}  // namespace kiln::tools
