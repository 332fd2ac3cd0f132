// The GPU side of the kiln command line, in the manner of trtexec: `kiln bench`, `kiln profile`,
// `kiln run --gpu`, and the engine `kiln build --gpu|--fp16` makes when a GPU is present. Every
// command that needs a GPU and finds none prints "no GPU: <reason>" and exits 1.
#pragma once

#include <string>
#include <vector>

#include "cli_args.hpp"
#include "kiln/int8.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::runtime {
struct EngineOptions;
}

namespace kiln::tools {

/// kiln bench MODEL.onnx|PLAN [--fp16] [--batch N] [--warmup N] [--iterations N] [--duration S]
///   [--cuda-graph] [--json FILE] ...: latency, throughput, enqueue, GPU and copy times, memory.
int cmd_bench(const std::vector<std::string>& args);
/// kiln profile MODEL.onnx|PLAN [--iterations N] [--trace FILE.json] [--top N] ...: per-step
/// times (a table) and a Chrome trace.
int cmd_profile(const std::vector<std::string>& args);
/// kiln run MODEL.onnx|--plan FILE --gpu [--fp16] ...: runs on the GPU, compares with expected
/// outputs (--expected, --expected-dir) and with the CPU reference (--compare-reference).
int cmd_run_gpu(const std::vector<std::string>& args);

/// Declares --workspace MiB and --timing-cache FILE, the options of the engine that the GPU
/// commands (and `kiln build --gpu`) make.
void add_engine_options(Command& c);

/// The engine options of --workspace MiB and --timing-cache FILE (progress on stderr when it is a
/// terminal; KILN_CONV_API=legacy and KILN_CHECK_FINITE from the environment). `specialized`: the
/// engine runs a dynamic plan's shape, whose untimed problems are timed only with
/// --tune-new-shapes.
runtime::EngineOptions engine_options(const Args& args, bool specialized = false);

/// After `kiln build` for a CUDA target: with a GPU, makes an Engine of `p` (tactics timed, with
/// progress on a terminal; --workspace MiB, --timing-cache FILE), prints its steps and memory and
/// records its tactics in `p` (so that a saved plan carries them) and returns the problem each
/// step ran (Engine::step_problems: a dynamic plan's bucket records them); without one, says
/// that the tactics were not timed and returns nothing.
std::map<std::string, std::string> build_engine_report(plan::Plan& p, const Args& args);

/// For `kiln build --int8|--fp8` with a GPU: runs calibration's probe graph in an FP32 engine
/// (a plan for target cuda per input shape, with --workspace and --timing-cache), or on the CPU
/// reference, saying why, when the GPU runtime cannot run the network; then `*runs_on` (where
/// the calibration line says it ran) is set to say so. It must outlive the runners.
CalibrationRunnerFactory gpu_calibration_runner(const Args& args, std::string* runs_on);

}  // namespace kiln::tools
