// kiln: the command line. Subcommands in the manner of trtexec.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli_args.hpp"
#include "cli_build.hpp"
#include "cli_gpu.hpp"
#include "cli_wts.hpp"
#include "run_io.hpp"
#include "conformance.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/reference/executor.hpp"
#include "ops_table.hpp"

namespace kiln::tools {
namespace {

using Argv = std::vector<std::string>;

constexpr const char* kUsage = R"(kiln: build, run and check neural networks

usage: kiln <command> [options]

commands:
  build MODEL        optimize a model into a fused plan (--save FILE writes it; --gpu, --fp16
                     build for the GPU and time its tactics)
  run MODEL          run an ONNX model on the CPU reference (or --plan FILE; --gpu on the GPU),
                     compared with expected outputs (--expected, --expected-dir)
  bench MODEL        throughput and latency on the GPU (trtexec-like summary, --json)
  profile MODEL      per-layer GPU times (a table) and a Chrome trace
  inspect MODEL      layers before and after fusion, fused steps, memory plan
  conformance DIR    run ONNX backend tests under DIR on the CPU reference
  wts inspect FILE   list the weights of a WTS file (every dialect)
  ops                list the supported ops and where each runs
  help               this text

`kiln <command> --help` describes a command's options.
)";

// ---- ops ---------------------------------------------------------------------------------

int cmd_ops(const Argv& argv) {
  if (wants_help(argv)) {
    fmt::print("usage: kiln ops [--json]\n\nLists every supported op (ONNX names) with the columns "
               "cpu (CPU reference), gpu (CUDA runtime), onnx (importer, with opsets), dsl (typed "
               "DSL layer).\n");
    return 0;
  }
  Args args(argv, "ops", {}, {"--json"});
  const auto rows = ops_table();
  if (args.has("--json")) {
    fmt::print("[\n");
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      fmt::print("  {{\"op\": \"{}\", \"family\": \"{}\", \"cpu\": {}, \"gpu\": {}, \"onnx\": {}, "
                 "\"onnx_opsets\": \"{}\", \"dsl\": {}, \"dsl_layer\": \"{}\"}}{}\n",
                 r.op, r.family, r.cpu, r.gpu, r.onnx, r.onnx_opsets, r.dsl, r.dsl_layer,
                 i + 1 < rows.size() ? "," : "");
    }
    fmt::print("]\n");
    return 0;
  }
  auto mark = [](bool b) { return b ? "yes" : "-"; };
  fmt::print("{:<26} {:<12} {:<4} {:<4} {:<8} {}\n", "op", "family", "cpu", "gpu", "onnx", "dsl");
  for (const auto& r : rows)
    fmt::print("{:<26} {:<12} {:<4} {:<4} {:<8} {}\n", r.op, r.family, mark(r.cpu), mark(r.gpu),
               r.onnx ? r.onnx_opsets : "-", r.dsl ? r.dsl_layer : "-");
  fmt::print("{} ops\n", rows.size());
  return 0;
}

// ---- conformance -------------------------------------------------------------------------

int cmd_conformance(const Argv& argv) {
  if (wants_help(argv)) {
    fmt::print(R"(usage: kiln conformance DIR [--filter TEXT] [--timeout SECONDS] [-j N] [--verbose] [--quiet]

Runs every ONNX backend test under DIR on the CPU reference: folders holding model.onnx and
test_data_set_*/{{input,output}}_N.pb, or light_X.onnx files beside light_X_output_0.pb (input
arange(n)/n). Each test runs in its own process; a crash or a timeout is a FAIL. One line per
test (pass, FAIL with the largest errors, unsupported with the reason), then
"N passed, N failed, N unsupported". Tolerance: rtol 1e-3, atol 1e-7 (ONNX's).
Exit status: 0 when nothing failed.
)");
    return 0;
  }
  Args args(argv, "conformance", {"--filter", "--timeout", "-j"}, {"--verbose", "--quiet"});
  ConformanceOptions o;
  o.filter = args.get("--filter");
  o.timeout_s = args.number("--timeout", 120);
  o.jobs = static_cast<int>(args.number("-j", 0));
  o.verbose = args.has("--verbose");
  o.quiet = args.has("--quiet");
  const auto s = run_conformance(args.one_positional("test folder"), o);
  return s.failed == 0 ? 0 : 1;
}

// ---- run / inspect -----------------------------------------------------------------------

int cmd_run(const Argv& argv) {
  for (const auto& a : argv)
    if (a == "--gpu" || a == "--fp16") return cmd_run_gpu(argv);
  for (const auto& a : argv)
    if (a == "--plan" || a.rfind("--plan=", 0) == 0) return cmd_run_plan(argv);
  if (wants_help(argv)) {
    fmt::print(R"(usage: kiln run MODEL.onnx [--input NAME=FILE.pb|.npy]... [--seed N] [--output-dir DIR]
                [--output-format pb|npy] [--expected NAME=FILE]... [--expected-dir DIR] [--tolerance T]
       kiln run --plan FILE [...]        (see kiln run --plan --help)
       kiln run MODEL.onnx --gpu [...]   (see kiln run --gpu --help)

Runs an ONNX model on the CPU reference. Inputs not given with --input are random (uniform in
[-1, 1], dynamic dims taken as 1, seeded by --seed), or input_N.pb of --expected-dir. Prints
each output's shape, a checksum (sum of values) and its first values; --output-dir writes each
output as NAME.pb (TensorProto), or NAME.npy with --output-format npy. --expected NAME=FILE and
--expected-dir DIR (output_N.pb) compare outputs by max|out-exp|/max|exp| against --tolerance
(default 1e-4); exit status 1 when one is over.
)");
    return 0;
  }
  Args args(argv, "run", {"--input", "--seed", "--output-dir", "--output-format", "--expected", "--expected-dir",
                          "--tolerance"}, {});
  const std::string path = args.one_positional("model file");
  Graph g = onnx::load_model(path, {.evaluator = &reference::constant_evaluator()});
  reference::Executor exec(g);
  const auto outputs = exec.run(run_inputs(args, g.inputs));
  report_outputs(args, g.outputs, outputs);
  const auto expected = expected_outputs(args, g.outputs);
  if (!expected.empty() && !check_expected(expected, outputs, args.number("--tolerance", 1e-4))) {
    std::fflush(stdout);
    fmt::print(stderr, "kiln run: an output differs by more than the tolerance (see the OVER lines)\n");
    return 1;
  }
  return 0;
}

/// `kiln wts ...`: wts_main takes argv with the subcommand's own name first.
int cmd_wts(const Argv& argv) {
  std::vector<std::string> storage = {"wts"};
  storage.insert(storage.end(), argv.begin(), argv.end());
  std::vector<char*> ptrs;
  for (auto& s : storage) ptrs.push_back(s.data());
  ptrs.push_back(nullptr);
  return wts_main(static_cast<int>(storage.size()), ptrs.data());
}

}  // namespace

int main_impl(int argc, char** argv) {
  Argv args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    fmt::print("{}", kUsage);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  const Argv rest(args.begin() + 1, args.end());
  const std::vector<std::pair<std::string, std::function<int(const Argv&)>>> commands = {
      {"ops", cmd_ops}, {"conformance", cmd_conformance}, {"run", cmd_run}, {"build", cmd_build}, {"inspect", cmd_inspect},
      {"bench", cmd_bench}, {"profile", cmd_profile},
      {"wts", cmd_wts}};
  for (const auto& [name, fn] : commands)
    if (name == cmd) return fn(rest);
  fmt::print(stderr, "kiln: unknown command '{}'\n\n{}", cmd, kUsage);
  return 2;
}

}  // namespace kiln::tools

int main(int argc, char** argv) {
  try {
    return kiln::tools::main_impl(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}
