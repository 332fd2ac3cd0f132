#include "cli_int8.hpp"

#include <filesystem>

#include <unistd.h>

#include <fmt/format.h>

#include "cli_gpu.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/calibration.hpp"
#include "kiln/int8.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/engine.hpp"

namespace kiln::tools {
namespace fs = std::filesystem;

namespace {

bool stderr_is_terminal() { return isatty(fileno(stderr)) != 0; }

/// The options that only mean something with --int8.
constexpr const char* kWithInt8[] = {"--calib-data",  "--calibrator",         "--percentile",
                                     "--calib-cache", "--layer-precision",    "--int8-tolerance",
                                     "--calib-on",    "--no-precision-timing"};

}  // namespace

void add_int8_options(Command& c) {
  c.flag("--int8",
         "quantize convolutions and matrix products to INT8 (runs on the CPU reference and, with "
         "--fp16/--bf16/--gpu, on the GPU, where each layer runs in INT8 or in the plan's float "
         "precision, whichever is faster: see --no-precision-timing)")
      .flag("--fp8",
            "quantize them to FP8 E4M3 instead (the same calibration and cache; scales amax/448, "
            "weights per output channel; on the GPU, cuBLASLt's FP8 products on Hopper)")
      .option("--calib-on", "WHERE",
              "gpu (default for GPU targets on a machine with a GPU: an FP32 engine) or cpu (the "
              "CPU reference) runs the calibration batches")
      .flag("--no-precision-timing",
            "with a GPU: run every layer the calibration quantizes in 8-bit, without timing it "
            "against the float precision (by default the faster of the two is kept per layer, "
            "and the plan is checked against the all-8-bit and all-float ones)")
      .option(
          "--calib-data", "DIR",
          "calibration batches: DIR/*.npy|*.pb for one input, DIR/<input>/*.npy|*.pb for several")
      .option("--calibrator", "NAME",
              "entropy (default, TensorRT's KL divergence), minmax or percentile")
      .number("--percentile", "P", "the percentile calibrator's percentile of |x| (default 99.99)")
      .option("--calib-cache", "FILE",
              "read the scales from FILE when it exists (TensorRT's cache format), else calibrate "
              "and write it")
      .repeatable("--layer-precision", "NAME:PREC",
                  "run layer NAME (a Conv, Gemm or MatMul) in PREC: fp32, fp16 or bf16 (the "
                  "plan's float precision) or int8 / fp8 (whatever its error)")
      .number("--int8-tolerance", "X",
              "keep in float every layer whose INT8 output differs from its FP32 output by more "
              "than X (max|int8 - fp32| / max|fp32| on the calibration data)");
}

bool wants_int8(const Args& args) {
  if (args.has("--int8") || args.has("--fp8")) return true;
  for (const char* f : kWithInt8)
    if (args.has(f)) return true;
  return false;
}

Int8Build int8_graph(const Args& args, const Graph& g, bool gpu_target) {
  const bool fp8 = args.has("--fp8");
  if (fp8 && args.has("--int8"))
    throw Error("kiln build: --int8 and --fp8 are two 8-bit formats; give one");
  for (const char* f : kWithInt8)
    if (args.has(f) && !args.has("--int8") && !fp8)
      throw Error(fmt::format("kiln build: {} goes with --int8 or --fp8", f));
  Int8Options o;
  o.format = fp8 ? DType::f8e4m3fn : DType::i8;
  o.float_below_channels = gpu_target ? 4 : 0;
  const std::string fmt_name = fp8 ? "fp8" : "int8", FMT = fp8 ? "FP8" : "INT8";
  o.calib_data = args.get("--calib-data");
  o.calibrator = build::parse_calibrator(args.get("--calibrator", "entropy"));
  o.percentile = args.number("--percentile", 99.99);
  o.calib_cache = args.get("--calib-cache");
  const std::string calib_on = args.get("--calib-on", gpu_target ? "gpu" : "cpu");
  if (calib_on != "gpu" && calib_on != "cpu")
    throw Error(fmt::format("--calib-on '{}': expected gpu or cpu", calib_on));
  if (calib_on == "gpu" && !gpu_target)
    throw Error(
        "--calib-on gpu: calibration runs on the GPU for GPU builds only (add --gpu, --fp16 "
        "or --bf16)");
  if (calib_on == "gpu" && runtime::device_count() > 0) {
    o.runner_name = "GPU, FP32 engine";
    o.runner = gpu_calibration_runner(args, &o.runner_name);
  } else if (calib_on == "gpu" && args.has("--calib-on")) {
    throw Error(fmt::format("--calib-on gpu: no GPU ({})", runtime::no_device_reason()));
  }
  o.data_name = "--calib-data";
  o.cache_name = "--calib-cache";
  for (const auto& lp : args.all("--layer-precision")) {
    const auto colon = lp.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == lp.size())
      throw Error(fmt::format("--layer-precision '{}': expected NAME:PREC (e.g. conv1:fp16)", lp));
    if (!o.layer_precision.emplace(lp.substr(0, colon), lp.substr(colon + 1)).second)
      throw Error(fmt::format("--layer-precision: layer '{}' given twice", lp.substr(0, colon)));
  }
  o.int8_tolerance = args.number("--int8-tolerance", 0);
  if (args.has("--int8-tolerance") && !(o.int8_tolerance > 0))
    throw Error("--int8-tolerance: expected a positive number (a relative error, e.g. 0.02)");
  std::error_code ec;
  if (o.calib_data.empty() && (o.calib_cache.empty() || !fs::exists(o.calib_cache, ec)))
    throw Error(
        fmt::format("kiln build --{}: give --calib-data DIR (or --calib-cache FILE of an earlier "
                    "calibration)",
                    fmt_name));
  const bool terminal = stderr_is_terminal();
  if (terminal)
    o.progress = [&](int pass, int passes, std::size_t batch, std::size_t batches) {
      fmt::print(stderr, "\r\033[Kcalibrating ({}, pass {}/{}): batch {}/{}",
                 build::calibrator_name(o.calibrator), pass, passes, batch, batches);
    };
  const Int8Result r = int8_from_calibration(g, o);
  // Per layer: its precision, and its own INT8 error where calibration data was given.
  auto print_layers = [&] {
    int quantized = 0;
    for (const auto& l : r.layers) quantized += l.precision == fmt_name;
    fmt::print("{}: {} of {} layers in {}{}\n", fmt_name, quantized, r.layers.size(), FMT,
               o.int8_tolerance > 0 ? fmt::format(" (tolerance {:g})", o.int8_tolerance) : "");
    fmt::print("{:<40} {:<8} {:<9} {:>11}  {}\n", "layer", "op", "precision", FMT + " error", "");
    for (const auto& l : r.layers)
      fmt::print("{:<40} {:<8} {:<9} {:>11}  {}\n", l.layer, l.op, l.precision,
                 l.error < 0 ? "-" : fmt::format("{:.3g}", l.error), l.why);
  };
  if (r.from_cache) {
    fmt::print("{}: {} scales read from {} (not calibrated)\n", fmt_name, r.tensors.size(),
               o.calib_cache);
    print_layers();
    return {r, o.format};
  }
  if (terminal) fmt::print(stderr, "\r\033[K");
  fmt::print("{}: calibrated {} tensors on {} batches with the {} calibrator in {:.1f} s ({})\n",
             fmt_name, r.tensors.size(), r.batches, build::calibrator_name(o.calibrator), r.seconds,
             o.runner_name);
  fmt::print("{:<40} {:>12} {:>12} {:>12}\n", "tensor", "max |x|", "threshold", "scale");
  for (const auto& [name, range] : r.ranges)
    fmt::print("{:<40} {:>12.5g} {:>12.5g} {:>12.5g}\n", name, range.amax, range.threshold,
               r.scales.at(name));
  if (r.cache_written) fmt::print("calibration cache written to {}\n", o.calib_cache);
  print_layers();
  return {r, o.format};
}

plan::Plan choose_precisions(const Args& args, const Int8Build& q, const Graph& float_graph,
                             const build::BuildOptions& o, plan::Plan eight,
                             build::BuildReport& report) {
  const std::string fmt_name = format_precision(q.format);
  // The layers free to run either way: quantized, and not pinned.
  std::vector<std::string> free;
  for (const auto& l : q.result.layers)
    if (l.precision == fmt_name && l.why.empty()) free.push_back(l.layer);
  if (free.empty() || args.has("--no-precision-timing")) return eight;
  if (runtime::device_count() == 0) {
    fmt::print(
        "no GPU ({}): the {} layers were not timed against {} (every layer the calibration "
        "quantizes stays in {}; with a GPU the faster precision of each is kept)\n",
        runtime::no_device_reason(), fmt_name, eight.target, fmt_name);
    return eight;
  }
  const runtime::EngineOptions eo = engine_options(args);
  struct Candidate {
    std::string what;
    plan::Plan plan;
    build::BuildReport report;
    runtime::EngineTiming timing;
    std::map<std::string, std::string> tactics;
  };
  auto timed = [&](std::string what, plan::Plan p, build::BuildReport r) {
    runtime::check_gpu_plan(p);
    const runtime::Engine engine(p, eo);
    Candidate c{std::move(what), std::move(p), std::move(r), runtime::time_engine(engine), {}};
    c.tactics = engine.tactics();
    return c;
  };
  auto quantized = [&](const std::set<std::string>& keep, build::BuildReport& r) {
    return build::build_plan(build::quantize_graph(float_graph, q.result.scales, keep, q.format), o,
                             &r);
  };
  std::vector<Candidate> c;
  c.push_back(timed("every free layer in " + fmt_name, std::move(eight), report));
  std::set<std::string> all_float = q.result.keep_float;
  all_float.insert(free.begin(), free.end());
  {
    build::BuildReport r;
    plan::Plan p = quantized(all_float, r);
    c.push_back(timed("every free layer in float", std::move(p), std::move(r)));
  }
  const auto times = build::layer_times(free, c[0].plan.steps, c[0].timing.step_ms, c[1].plan.steps,
                                        c[1].timing.step_ms);
  std::set<std::string> keep = q.result.keep_float;
  for (const auto& t : times)
    if (t.ms_8bit >= 0 && t.ms_float >= 0 && t.ms_float < t.ms_8bit) keep.insert(t.layer);
  if (keep != q.result.keep_float && keep != all_float) {
    build::BuildReport r;
    plan::Plan p = quantized(keep, r);
    c.push_back(timed("each layer in its faster precision", std::move(p), std::move(r)));
  }
  std::size_t best = 0;
  for (std::size_t i = 1; i < c.size(); ++i)
    if (c[i].timing.ms < c[best].timing.ms) best = i;

  const auto precision = runtime::target_precision(c[0].plan.target);
  const std::string float_name = precision ? runtime::precision_name(*precision) : "float";
  std::string at;
  for (const auto& vi : c[0].plan.inputs)
    at += (at.empty() ? "" : ", ") + vi.name + vi.type.shape.to_string();
  fmt::print(
      "{} or {} per layer, timed on the GPU at {} (ms; Q/DQ and layout steps charged to the "
      "layer they serve):\n",
      fmt_name, float_name, at);
  fmt::print("{:<40} {:>10} {:>10}  {}\n", "layer", fmt_name, "float", "faster");
  for (const auto& t : times)
    fmt::print("{:<40} {:>10} {:>10}  {}\n", t.layer,
               t.ms_8bit < 0 ? "-" : fmt::format("{:.4f}", t.ms_8bit),
               t.ms_float < 0 ? "-" : fmt::format("{:.4f}", t.ms_float),
               keep.count(t.layer) ? "float" : fmt_name);
  for (std::size_t i = 0; i < c.size(); ++i)
    fmt::print("plan with {}: {} steps, {:.4f} ms{}\n", c[i].what, c[i].plan.steps.size(),
               c[i].timing.ms, i == best ? "  <- kept" : "");
  report = std::move(c[best].report);
  c[best].plan.tactics = std::move(c[best].tactics);
  return std::move(c[best].plan);
}

}  // namespace kiln::tools
