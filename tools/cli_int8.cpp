#include "cli_int8.hpp"

#include <filesystem>

#include <unistd.h>

#include <fmt/format.h>

#include "kiln/build/calibration.hpp"
#include "kiln/int8.hpp"
#include "kiln/ir/error.hpp"

namespace kiln::tools {
namespace fs = std::filesystem;

namespace {

bool stderr_is_terminal() { return isatty(fileno(stderr)) != 0; }

/// The options that only mean something with --int8.
constexpr const char* kWithInt8[] = {"--calib-data",  "--calibrator",      "--percentile",
                                     "--calib-cache", "--layer-precision", "--int8-tolerance"};

}  // namespace

void add_int8_options(Command& c) {
  c.flag("--int8",
         "quantize convolutions and matrix products to INT8 (calibrated on the CPU reference; "
         "runs there and, with --fp16/--bf16/--gpu, on the GPU)")
      .flag("--fp8",
            "quantize them to FP8 E4M3 instead (the same calibration and cache; scales amax/448, "
            "weights per output channel; the CPU reference runs it exactly, GPU steps keep "
            "the FP8 values and compute the products in the plan's float precision)")
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

Graph int8_graph(const Args& args, const Graph& g, bool gpu_target) {
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
    return r.graph;
  }
  if (terminal) fmt::print(stderr, "\r\033[K");
  fmt::print(
      "{}: calibrated {} tensors on {} batches with the {} calibrator in {:.1f} s (CPU "
      "reference)\n",
      fmt_name, r.tensors.size(), r.batches, build::calibrator_name(o.calibrator), r.seconds);
  fmt::print("{:<40} {:>12} {:>12} {:>12}\n", "tensor", "max |x|", "threshold", "scale");
  for (const auto& [name, range] : r.ranges)
    fmt::print("{:<40} {:>12.5g} {:>12.5g} {:>12.5g}\n", name, range.amax, range.threshold,
               r.scales.at(name));
  if (r.cache_written) fmt::print("calibration cache written to {}\n", o.calib_cache);
  print_layers();
  return r.graph;
}

}  // namespace kiln::tools
