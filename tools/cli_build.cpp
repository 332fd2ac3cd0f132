#include "cli_build.hpp"
#include "run_io.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>

#include <fmt/format.h>

#include "cli_args.hpp"
#include "cli_examples.hpp"
#include "cli_gpu.hpp"
#include "cli_int8.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/specializer.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/plan/profile.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "kiln/runtime/engine.hpp"

namespace kiln::tools {
namespace {

using Argv = std::vector<std::string>;

/// Every --shape NAME=DxDx... (or NAME:DxDx..., or several separated by commas): the dims of NAME,
/// parsed as --shapes is (plan::parse_shape_list).
std::map<std::string, std::vector<std::int64_t>> parse_shapes(const Args& args) {
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& spec : args.all("--shape"))
    for (auto& [name, dims] : plan::parse_shape_list(spec, "--shape"))
      shapes[name] = std::move(dims);
  return shapes;
}

build::BuildOptions options_from(const Args& args) {
  build::BuildOptions o;
  o.target = &target_from(args);
  o.evaluator = &reference::constant_evaluator();
  o.input_dims = parse_shapes(args);
  return o;
}

Graph load(const std::string& path) { return load_onnx(path); }

bool is_cuda_target(const plan::Target& t) { return runtime::target_precision(t.name).has_value(); }

void write_dot(const std::string& dir, const std::string& stem, const std::string& dot) {
  std::filesystem::create_directories(dir);
  const auto path = (std::filesystem::path(dir) / (stem + ".dot")).string();
  write_text_file(path, dot, "kiln inspect --dot-dir");
  std::string line = "graph: " + path;
  if (std::system("command -v dot >/dev/null 2>&1") == 0) {
    const auto svg = (std::filesystem::path(dir) / (stem + ".svg")).string();
    if (std::system(fmt::format("dot -Tsvg '{}' -o '{}'", path, svg).c_str()) == 0)
      line += ", " + svg;
  } else {
    line += " (no `dot` installed: no SVG)";
  }
  fmt::print("{}\n", line);
}

}  // namespace

plan::Plan specialize_for_run(const Args& args, const plan::Plan& dynamic, const std::string& path,
                              std::map<std::string, std::string>* bucket_tactics) {
  // The exact shape: --shapes, else the input files' dims, else the opt dims of --profile (0).
  plan::ShapeMap shapes = shapes_option(args, dynamic.source->inputs);
  for (const auto& [name, t] : input_files(args))
    if (!shapes.count(name)) shapes[name] = t.dims();
  const double asked = args.number("--profile", 0);
  if (asked < 0 || asked >= static_cast<double>(dynamic.profiles.size()) ||
      asked != std::floor(asked))
    throw Error(fmt::format("--profile {}: plan '{}' has profiles 0 to {}", args.get("--profile"),
                            path, dynamic.profiles.size() - 1));
  const auto profile = static_cast<std::size_t>(asked);
  for (const auto& [name, dims] : dynamic.profiles[profile].opt())
    if (!shapes.count(name)) shapes[name] = dims;
  build::Specializer sp(dynamic, &reference::constant_evaluator(), 1);
  const std::size_t use = args.has("--profile") ? profile : sp.profile_for(shapes);
  auto p = sp.plan_for(shapes, use);
  fmt::print("specialized for {} (profile {}) in {:.1f} ms: {} steps, arena {} bytes\n",
             plan::format_shape_list(shapes), use, sp.stats().build_ms, p->steps.size(),
             p->memory.arena_bytes);
  if (bucket_tactics) *bucket_tactics = dynamic.bucket_step_tactics(shapes, use);
  return *p;
}

bool is_plan_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  return f.gcount() == 8 && std::string(magic, 8) == "KILNPLAN";
}

Graph load_onnx(const std::string& path) {
  return onnx::load_model(path, {.evaluator = &reference::constant_evaluator()});
}

void add_shape_option(Command& c) {
  c.repeatable("--shape", "NAME=DxDx...",
               "concrete dims for input NAME (dynamic dims default to 1)");
}

void add_profile_options(Command& c) {
  c.repeatable(
       "--min-shapes", "LIST",
       "a dynamic plan: the smallest dims of each input, NAME:DxDx... separated by commas (the "
       "trtexec syntax); each --min/--opt/--max-shapes given again starts another profile")
      .repeatable("--opt-shapes", "LIST", "the dims tactics are tuned for first (default: max)")
      .repeatable("--max-shapes", "LIST", "the largest dims of each input")
      .number("--buckets-between", "N",
              "shapes between min and max, besides opt, min and max, that tactics are timed for "
              "(default 1)");
}

std::vector<plan::Profile> profiles_from(const Args& args, const Graph& g) {
  const auto mins = args.all("--min-shapes");
  const auto opts = args.all("--opt-shapes");
  const auto maxs = args.all("--max-shapes");
  const std::size_t n = std::max({mins.size(), opts.size(), maxs.size()});
  std::vector<plan::Profile> out;
  if (n == 0) return out;
  const std::pair<const char*, const std::vector<std::string>*> given[] = {
      {"--min-shapes", &mins}, {"--opt-shapes", &opts}, {"--max-shapes", &maxs}};
  for (const auto& [flag, v] : given)
    if (!v->empty() && v->size() != n)
      throw Error(fmt::format(
          "{} is given {} times, another of --min/--opt/--max-shapes {} times: give each "
          "once per profile (or leave --min/--opt-shapes out)",
          flag, v->size(), n));
  if (maxs.empty())
    throw Error(
        "a dynamic plan needs --max-shapes (and --min-shapes; --opt-shapes defaults to max)");
  for (std::size_t i = 0; i < n; ++i) {
    const auto list = [&](const std::vector<std::string>& v, const char* flag) {
      return v.empty() ? plan::ShapeMap{} : plan::parse_shape_list(v[i], flag);
    };
    try {
      out.push_back(plan::make_profile(g, list(mins, "--min-shapes"), list(opts, "--opt-shapes"),
                                       list(maxs, "--max-shapes")));
    } catch (const ShapeError& e) {
      throw ShapeError(n > 1 ? fmt::format("profile {}: {}", i, e.what()) : std::string(e.what()));
    }
  }
  return out;
}

const plan::Target& target_from(const Args& args, const std::string& fallback) {
  std::string name = args.get("--target", fallback);
  // --fp16 and --bf16 imply --gpu; each names one CUDA target.
  const char* flag = nullptr;
  std::string want;
  for (const auto& [f, t] : {std::pair{"--fp16", runtime::kCudaFp16Target},
                             std::pair{"--bf16", runtime::kCudaBf16Target}}) {
    if (!args.has(f)) continue;
    if (flag) throw Error(fmt::format("{} and {} ask for different precisions; give one", flag, f));
    flag = f;
    want = t;
  }
  if (!flag && args.has("--gpu")) {
    flag = "--gpu";
    want = runtime::kCudaTarget;
  }
  if (flag) {
    if (args.has("--target") && args.get("--target") != want)
      throw Error(fmt::format("--target {} disagrees with {} (which builds for {})",
                              args.get("--target"), flag, want));
    name = want;
  }
  return plan::target_by_name(name);
}

build::BuildOptions build_options(const Args& args, const Graph& g, std::int64_t batch,
                                  const std::map<std::string, Tensor>& given) {
  build::BuildOptions o = options_from(args);
  for (const auto& [name, dims] : o.input_dims) {
    bool known = false;
    for (const auto& vi : g.inputs) known |= vi.name == name;
    if (!known) {
      std::vector<std::string> names;
      for (const auto& vi : g.inputs) names.push_back(vi.name);
      throw Error(fmt::format("--shape {}: the model has no input '{}' (its inputs: {})", name,
                              name, fmt::join(names, ", ")));
    }
  }
  for (const auto& [name, dims] : shapes_option(args, g.inputs))
    if (!o.input_dims.count(name)) o.input_dims[name] = dims;
  for (const auto& vi : g.inputs) {
    if (!o.input_dims.count(vi.name) && given.count(vi.name))
      o.input_dims[vi.name] = given.at(vi.name).dims();
    if (batch <= 0) continue;
    std::vector<std::int64_t> dims;
    if (o.input_dims.count(vi.name)) {
      dims = o.input_dims[vi.name];
    } else {
      for (const auto& d : vi.type.shape)
        dims.push_back(d.is_fixed() ? d.value() : o.dynamic_default);
    }
    if (dims.empty())
      throw Error(fmt::format("batch {}: input '{}' is a scalar (no dim 0)", batch, vi.name));
    dims[0] = batch;
    o.input_dims[vi.name] = dims;
  }
  return o;
}

/// kiln build with profiles: the plan at profile 0's opt shape, every bucket shape of every
/// profile specialized once (with `print`, a table of steps, arena and host time), and on a GPU
/// the tactics of each bucket timed and recorded.
static plan::Plan build_dynamic(const Args& args, Graph g, const build::BuildOptions& o,
                                const std::vector<plan::Profile>& profiles, bool gpu_target,
                                bool print, build::BuildReport& report) {
  const int between = static_cast<int>(args.number("--buckets-between", 1));
  if (between < 0 || between > 16)
    throw Error(fmt::format("kiln build: --buckets-between expects 0 to 16, got '{}'",
                            args.get("--buckets-between")));
  std::vector<build::BucketPlan> buckets;
  plan::Plan p = build::build_dynamic_plan(g, o, profiles, between, &buckets, &report);
  if (print) {
    fmt::print("{}", report.summary());
    for (std::size_t i = 0; i < profiles.size(); ++i)
      fmt::print("profile {}:\n{}", i, profiles[i].describe());
    fmt::print("{:<8} {:<40} {:>6} {:>12} {:>10}\n", "profile", "bucket shape", "steps",
               "arena bytes", "build ms");
    for (const auto& b : buckets)
      fmt::print("{:<8} {:<40} {:>6} {:>12} {:>10.1f}\n", b.profile,
                 plan::format_shape_list(b.shape), b.plan.steps.size(), b.plan.memory.arena_bytes,
                 b.build_ms);
  }
  if (gpu_target) {
    for (auto& b : buckets) {
      runtime::check_gpu_plan(b.plan);
      fmt::print("bucket {}:\n", plan::format_shape_list(b.shape));
      auto steps = build_engine_report(b.plan, args);
      p.tactics.insert(b.plan.tactics.begin(), b.plan.tactics.end());
      // What each step ran at this bucket: a shape between buckets runs its bucket's tactics.
      if (!steps.empty()) p.buckets.push_back({b.profile, b.shape, std::move(steps)});
    }
  }
  return p;
}

/// --host-fallback: each step with an op the GPU runtime lacks (and the CPU reference has), or
/// with integer or bool values where its GPU step computes in floats (the GPU's steps take
/// integers only as indices: Gather's, Scatter's and RoiAlign's index inputs, TopK's indices and
/// ArgMax's output), is marked to run on the host.
void mark_host_fallback(plan::Plan& p) {
  // Where a GPU step takes integer values: op -> (input positions, output positions).
  static const std::map<std::string, std::pair<std::set<std::size_t>, std::set<std::size_t>>>
      index_positions = {{"Gather", {{1}, {}}},    {"GatherElements", {{1}, {}}},
                         {"GatherND", {{1}, {}}},  {"ScatterElements", {{1}, {}}},
                         {"ScatterND", {{1}, {}}}, {"RoiAlign", {{2}, {}}},
                         {"TopK", {{1}, {1}}},     {"ArgMax", {{}, {0}}},
                         {"ArgMin", {{}, {0}}},    {"NonMaxSuppression", {{2}, {0}}}};
  auto odd = [&](const std::string& v) {
    auto it = p.memory.values.find(v);
    if (it == p.memory.values.end()) return false;  // a weight, or absent
    const DType t = it->second.dtype;
    return t != DType::f32 && t != DType::f16 && t != DType::bf16;
  };
  for (Node& s : p.steps) {
    if (runtime::runs_on_host(p, s)) continue;
    bool host = false, reference = true;
    for (const auto& part : as_body(s).parts) {
      host |= !runtime::gpu_supports(part.op);
      reference &= reference::KernelRegistry::instance().find(part.op) != nullptr;
    }
    auto idx = index_positions.find(s.op);
    for (std::size_t i = 0; i < s.inputs.size(); ++i)
      host |= odd(s.inputs[i]) && (idx == index_positions.end() || !idx->second.first.count(i));
    for (std::size_t o = 0; o < s.outputs.size(); ++o)
      host |= odd(s.outputs[o]) && (idx == index_positions.end() || !idx->second.second.count(o));
    if (host && reference) s.attrs[plan::kHostAttr] = std::int64_t{1};
  }
}

/// Names the steps a GPU plan runs on the host, and why that costs.
void report_host_steps(const plan::Plan& p) {
  std::vector<std::string> host;
  for (const Node& s : p.steps)
    if (runtime::runs_on_host(p, s)) host.push_back(fmt::format("{} '{}'", s.op, s.name));
  if (host.empty()) return;
  fmt::print(
      "host steps: {} of {} steps run on the host with the CPU reference (each waits for "
      "the stream and copies its data both ways; CUDA graphs only between them): {}{}\n",
      host.size(), p.steps.size(),
      fmt::join(host.begin(), host.begin() + std::min<std::size_t>(host.size(), 8), ", "),
      host.size() > 8 ? ", ..." : "");
}

void add_build_options(Command& c) {
  c.option("--target", "NAME",
           "cpu-reference (default), plain (no fusion), cuda, cuda-fp16 or cuda-bf16")
      .flag("--gpu", "build for the GPU: target cuda (FP32, NCHW)")
      .flag("--fp16", "build for the GPU in FP16: target cuda-fp16 (implies --gpu)")
      .flag("--bf16",
            "build for the GPU in BF16 (FP32's range, 8 bits of mantissa): target cuda-bf16 "
            "(implies --gpu)")
      .flag("--host-fallback",
            "a GPU plan: steps of ops the GPU runtime lacks run on the host with the CPU "
            "reference (each waits for the stream and copies its data both ways; control flow and "
            "values of data-dependent size always do)");
  add_shape_option(c);
  add_profile_options(c);
  add_int8_options(c);
  c.number("--max-batch", "N", "dim 0 of every input (after --shape)");
}

plan::Plan build_graph(const Args& args, Graph g, bool print, build::BuildReport* report_out) {
  const auto max_batch = static_cast<std::int64_t>(args.number("--max-batch", 0));
  if (args.has("--max-batch") && max_batch < 1)
    throw Error(fmt::format("kiln build: --max-batch expects a positive whole number, got '{}'",
                            args.get("--max-batch")));
  build::BuildOptions o = build_options(args, g, max_batch);
  const bool gpu_target = is_cuda_target(*o.target);
  if (!gpu_target)
    for (const char* f : {"--workspace", "--timing-cache"})
      if (args.has(f))
        throw Error(fmt::format(
            "kiln build: {} applies to GPU builds only (add --gpu, --fp16 or --bf16)", f));
  if (args.has("--check")) {
    o.after_pass = [](const std::string& pass, const Graph& before, const Graph& after) {
      std::mt19937_64 rng(1);
      reference::TensorMap in;
      for (const auto& vi : before.inputs) in[vi.name] = random_tensor(vi.type, rng);
      const auto a = reference::Executor(before).run(in);
      const auto b = reference::Executor(after).run(in);
      double worst = 0;
      for (const auto& [name, t] : a)
        for (std::int64_t i = 0; i < t.numel(); ++i)
          worst =
              std::max(worst, std::abs(t.get(i) - b.at(name).get(i)) / (1.0 + std::abs(t.get(i))));
      fmt::print("check {}: max relative difference {:.3g}{}\n", pass, worst,
                 worst > 1e-4 ? "  FAIL" : "");
      if (worst > 1e-4) throw Error("pass '" + pass + "' changed the outputs");
    };
  }
  std::optional<Int8Build> eight;
  Graph float_graph;
  if (wants_int8(args)) {
    eight = int8_graph(args, g, gpu_target);
    float_graph = std::move(g);
    g = eight->result.graph;
  }
  const auto profiles = profiles_from(args, g);
  build::BuildReport local;
  build::BuildReport& report = report_out ? *report_out : local;
  if (!profiles.empty()) {
    for (const char* f : {"--shape", "--max-batch"})
      if (args.has(f))
        throw Error(fmt::format(
            "kiln build: {} fixes input dims; a dynamic plan takes them from --min-shapes, "
            "--opt-shapes and --max-shapes",
            f));
    return build_dynamic(args, std::move(g), o, profiles, gpu_target, print, report);
  }
  plan::Plan p = build::build_plan(std::move(g), o, &report);
  // 8-bit layers against the float precision, on the GPU (before the summary: the plan kept may
  // be another).
  if (eight && gpu_target)
    p = choose_precisions(args, *eight, float_graph, o, std::move(p), report);
  if (print) {
    fmt::print("{}", report.summary());
    fmt::print("{}", p.memory_report().substr(0, p.memory_report().find('\n') + 1));
  }
  if (gpu_target) {
    // A plan for the GPU with an op the runtime lacks is refused here, not when it is run (unless
    // --host-fallback runs it on the host); with a GPU the engine's timed tactics go into the plan
    // before it is written.
    if (args.has("--host-fallback")) mark_host_fallback(p);
    runtime::check_gpu_plan(p);
    report_host_steps(p);
    build_engine_report(p, args);
  }
  return p;
}

int cmd_build(const Argv& argv) {
  Command c(
      "build",
      R"(Builds a plan: constant folding, dead-layer elimination, BatchNorm/Scale folding, fusions
(conv+bias+activation, conv+residual add, pointwise chains, horizontal convolutions; the
LayerNorm, GELU and attention patterns into their ops; MatMul+bias+activation), views,
in-place concats, layout choice, and liveness-based memory planning. Prints the layer counts and
the fused steps; --save writes the plan file (run it with `kiln run --plan FILE`, or on the GPU
with `kiln run --plan FILE --gpu` and `kiln bench FILE`).
Or: kiln build --example NAME [--weights FILE.wts] [same options]
)");
  c.positionals("MODEL.onnx", "the ONNX model (none with --example)")
      .option("--save", "FILE", "write the plan file");
  add_build_options(c);
  c.option("--example", "NAME",
           fmt::format("build an example network of examples/ ({}) instead of a model",
                       fmt::join(example_names(), ", ")))
      .option("--weights", "FILE.wts", "the example's weights (random, seed 42, when not given)")
      .flag("--check", "run every pass's result on the CPU reference against the previous one");
  add_engine_options(c);
  c.footer(
      R"(For a GPU target, when a GPU is present, the engine is made as well: the tactics of every
convolution and matrix product are timed (progress on stderr when it is a terminal) and the
steps, tactics and device memory are printed. The plan file holds no tactics; they live in the
timing cache (--workspace, --timing-cache). Without a GPU the plan is still built and written;
the tactics are not timed.
)");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  if (args.has("--save")) {
    std::vector<std::pair<std::string, std::string>> inputs;
    for (const auto& m : args.positional()) inputs.push_back({m, "the model"});
    if (args.has("--weights")) inputs.push_back({args.get("--weights"), "the weights file"});
    refuse_to_overwrite(args.get("--save"), "--save", inputs);
  }
  Graph g;
  if (args.has("--example")) {
    if (!args.positional().empty())
      throw Error(fmt::format("kiln build: --example {} takes no model file (got '{}')",
                              args.get("--example"), args.positional()[0]));
    g = example_graph(args.get("--example"), args.get("--weights"));
  } else {
    if (args.has("--weights"))
      throw Error(
          "kiln build: --weights goes with --example NAME (an ONNX model holds its weights)");
    g = load(args.one_positional("model file"));
  }
  const plan::Plan p = build_graph(args, std::move(g), true);
  if (args.has("--save")) {
    plan::save_plan(p, args.get("--save"));
    if (p.is_dynamic())
      fmt::print("dynamic plan written to {} (target {}, {} profile{}, {} steps at opt{})\n",
                 args.get("--save"), p.target, p.profiles.size(), p.profiles.size() == 1 ? "" : "s",
                 p.steps.size(),
                 p.tactics.empty() ? "" : fmt::format(", {} tactics", p.tactics.size()));
    else
      fmt::print("plan written to {} (target {}, {} steps{})\n", args.get("--save"), p.target,
                 p.steps.size(),
                 p.tactics.empty() ? "" : fmt::format(", {} tactics", p.tactics.size()));
  }
  return 0;
}

std::string inspect_text(Graph g, const build::BuildOptions& opts, build::BuildReport* report_out) {
  build::BuildReport local;
  build::BuildReport& report = report_out ? *report_out : local;
  const plan::Plan p = build::build_plan(std::move(g), opts, &report);
  return report.summary() + opts.target->describe() + p.dump();
}

int cmd_inspect(const Argv& argv) {
  Command c(
      "inspect",
      R"(For an ONNX model: builds it and prints "layers before fusion: N" and "layers after fusion: M"
(a layer is a compute node after import and constant folding; Constant, ConstantOfShape,
Identity and Dropout are not layers), each fused step with what it absorbed, the plan's steps and
memory plan. For a plan file: prints the plan.
)");
  c.positionals("MODEL.onnx|PLAN", "the ONNX model or plan file")
      .option("--target", "NAME",
              "cpu-reference (default), plain (no fusion), cuda, cuda-fp16 or cuda-bf16");
  add_shape_option(c);
  c.option("--dot-dir", "DIR",
           "write Graphviz pictures of the graph before and after fusion into DIR (rendered to SVG "
           "when `dot` is installed)")
      .flag("--graph", "also print the imported IR graph");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  const std::string path = args.one_positional("model or plan file");
  if (is_plan_file(path)) {
    fmt::print("{}", plan::load_plan(path).dump());
    return 0;
  }
  Graph g = load(path);
  if (args.has("--graph")) fmt::print("{}", g.dump());
  build::BuildReport report;
  fmt::print("{}", inspect_text(std::move(g), options_from(args), &report));
  const std::string stem = std::filesystem::path(path).stem().string();
  if (args.has("--dot-dir")) {  // only where asked: never write over files in the current folder
    const std::string dir = args.get("--dot-dir");
    write_dot(dir, stem + ".before", build::to_dot(report.before_fusion, stem + " before fusion"));
    write_dot(dir, stem + ".after", build::to_dot(report.after_fusion, stem + " after fusion"));
  }
  return 0;
}

int cmd_run_plan(const Argv& argv) {
  Command c(
      "run",
      "Runs a plan file on the CPU reference, every activation in one arena at its planned "
      "offset.\n"
      "Inputs not given with --input are random. Prints each output's shape, a checksum (sum of\n"
      "values) and its first values.\n",
      "run --plan");
  c.option("--plan", "FILE", "the plan file")
      .option("--weights", "FILE.wts|MODEL.onnx",
              "run the plan only if it was built from exactly these weights (the hash it records); "
              "refused with both hashes otherwise");
  add_input_options(c);
  add_output_options(c);
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  if (!args.positional().empty())
    throw Error("kiln run --plan takes no model file (the plan holds the network)");
  plan::LoadExpectations expect{.target = "cpu-reference"};
  if (args.has("--weights")) {
    const std::string w = args.get("--weights");
    expect.weights_hash = std::filesystem::path(w).extension() == ".onnx"
                              ? hash_weights(onnx::load_model(w, {.infer = false}).weights)
                              : weights_hash(load_wts(w));
  }
  plan::Plan p = plan::load_plan(args.get("--plan"), expect);
  if (p.is_dynamic())
    p = specialize_for_run(args, p, args.get("--plan"));
  else if (args.has("--profile"))
    throw Error(
        fmt::format("--profile: plan '{}' is static (built without profiles)", args.get("--plan")));
  std::vector<std::string> names;
  for (const auto& o : p.outputs) names.push_back(o.name);
  reference::PlanExecutor exec(p);
  report_outputs(args, names, exec.run(run_inputs(args, p.inputs)));
  return 0;
}

}  // namespace kiln::tools
