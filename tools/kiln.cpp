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
#include "conformance.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/reference/executor.hpp"
#include "ops_table.hpp"
#include "run_io.hpp"

namespace kiln::tools {
namespace {

using Argv = std::vector<std::string>;

int cmd_ops(const Argv& argv) {
  Command c("ops",
            "Lists every supported op (ONNX names) with the columns cpu (CPU reference), gpu (CUDA "
            "runtime),\n"
            "onnx (importer, with opsets), dsl (typed DSL layer).\n");
  c.flag("--json", "print the table as JSON");
  const auto args = c.parse(argv);
  if (!args) return 0;
  const auto rows = ops_table();
  if (args->has("--json")) {
    fmt::print("{}", ops_json(rows));
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
  Command c("conformance",
            "Runs every ONNX backend test under DIR on the CPU reference: folders holding "
            "model.onnx and\n"
            "test_data_set_*/{input,output}_N.pb, or light_X.onnx files beside light_X_output_0.pb "
            "(input\n"
            "arange(n)/n). Each test runs in its own process; a crash or a timeout is a FAIL. One "
            "line per\n"
            "test (pass, FAIL with the largest errors, unsupported with the reason), then\n"
            "\"N passed, N failed, N unsupported\". Tolerance: rtol 1e-3, atol 1e-7 (ONNX's).\n"
            "Exit status: 0 when nothing failed.\n");
  c.positionals("DIR", "the folder of tests")
      .option("--filter", "TEXT", "only the tests whose name contains TEXT")
      .number("--timeout", "SECONDS", "the longest a test may run (default 120)")
      .number("-j", "N", "tests run at once (default: one per core)")
      .flag("--verbose", "print more about each test")
      .flag("--quiet", "print only failures and the summary");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
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
    if (a == "--gpu" || a == "--fp16" || a == "--bf16") return cmd_run_gpu(argv);
  for (const auto& a : argv)
    if (a == "--plan" || a.rfind("--plan=", 0) == 0) return cmd_run_plan(argv);
  Command c("run",
            "Runs an ONNX model on the CPU reference. Inputs not given with --input are random "
            "(uniform in\n"
            "[-1, 1], dynamic dims taken as 1, seeded by --seed), or input_N.pb of --expected-dir. "
            "Prints\n"
            "each output's shape, a checksum (sum of values) and its first values.\n"
            "Or: kiln run --plan FILE [...]       (see kiln run --plan --help)\n"
            "    kiln run MODEL.onnx --gpu [...]  (see kiln run --gpu --help)\n");
  c.positionals("MODEL.onnx", "the ONNX model");
  add_input_options(c);
  add_output_options(c);
  add_expected_options(c, "1e-4");
  c.footer(
      "Exit status 1 when an output differs from its expected one by more than the tolerance.\n");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  const std::string path = args.one_positional("model file");
  if (args.has("--profile"))
    throw Error(
        "kiln run: --profile selects a profile of a dynamic plan (kiln run --plan FILE); an ONNX "
        "model "
        "runs at the shapes of its inputs (--shapes)");
  Graph g = onnx::load_model(path, {.evaluator = &reference::constant_evaluator()});
  reference::Executor exec(g);
  const auto outputs = exec.run(run_inputs(args, g.inputs));
  report_outputs(args, g.outputs, outputs);
  std::vector<TensorType> output_types;
  for (const auto& o : g.outputs) output_types.push_back(g.type_of(o));
  const auto expected = expected_outputs(args, g.outputs, output_types);
  if (!expected.empty() && !check_expected(expected, outputs, args.number("--tolerance", 1e-4))) {
    std::fflush(stdout);
    fmt::print(stderr,
               "kiln run: an output differs by more than the tolerance (see the OVER lines)\n");
    return 1;
  }
  return 0;
}

/// The commands: name, arguments and a line for `kiln help`; each describes its options itself
/// (`kiln CMD --help`).
struct CommandEntry {
  const char* name;
  const char* args;
  const char* summary;
  int (*run)(const Argv&);
};

constexpr CommandEntry kCommands[] = {
    {"build", "MODEL",
     "optimize a model into a fused plan (--save FILE writes it; --gpu, --fp16, --bf16 for the "
     "GPU)",
     cmd_build},
    {"run", "MODEL", "run a model on the CPU reference (or --plan FILE; --gpu on the GPU)",
     cmd_run},
    {"bench", "MODEL", "throughput and latency on the GPU (trtexec-like summary, --json)",
     cmd_bench},
    {"profile", "MODEL", "per-layer GPU times (a table) and a Chrome trace", cmd_profile},
    {"inspect", "MODEL", "layers before and after fusion, fused steps, memory plan", cmd_inspect},
    {"conformance", "DIR", "run ONNX backend tests under DIR on the CPU reference",
     cmd_conformance},
    {"wts", "inspect FILE", "list the weights of a WTS file (every dialect)", cmd_wts},
    {"ops", "", "list the supported ops and where each runs", cmd_ops},
};

std::string usage() {
  std::string s =
      "kiln: build, run and check neural networks\n\nusage: kiln <command> "
      "[options]\n\ncommands:\n";
  for (const auto& c : kCommands)
    s += fmt::format("  {:<18} {}\n", fmt::format("{} {}", c.name, c.args), c.summary);
  s += fmt::format("  {:<18} {}\n", "help", "this text");
  return s + "\n`kiln <command> --help` describes a command's options.\n";
}

}  // namespace

int main_impl(int argc, char** argv) {
  Argv args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    fmt::print("{}", usage());
    return args.empty() ? 2 : 0;
  }
  const Argv rest(args.begin() + 1, args.end());
  for (const auto& c : kCommands)
    if (c.name == args[0]) return c.run(rest);
  fmt::print(stderr, "kiln: unknown command '{}'\n\n{}", args[0], usage());
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
