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

}  // namespace

void add_int8_options(Command& c) {
  c.flag(
       "--int8",
       "quantize convolutions and matrix products to INT8 (calibrated; runs on the CPU reference)")
      .option(
          "--calib-data", "DIR",
          "calibration batches: DIR/*.npy|*.pb for one input, DIR/<input>/*.npy|*.pb for several")
      .option("--calibrator", "NAME",
              "entropy (default, TensorRT's KL divergence), minmax or percentile")
      .number("--percentile", "P", "the percentile calibrator's percentile of |x| (default 99.99)")
      .option("--calib-cache", "FILE",
              "read the scales from FILE when it exists (TensorRT's cache format), else calibrate "
              "and write it");
}

Graph int8_graph(const Args& args, const Graph& g) {
  for (const char* f : {"--calib-data", "--calibrator", "--percentile", "--calib-cache"})
    if (args.has(f) && !args.has("--int8"))
      throw Error(fmt::format("kiln build: {} goes with --int8", f));
  Int8Options o;
  o.calib_data = args.get("--calib-data");
  o.calibrator = build::parse_calibrator(args.get("--calibrator", "entropy"));
  o.percentile = args.number("--percentile", 99.99);
  o.calib_cache = args.get("--calib-cache");
  o.data_name = "--calib-data";
  o.cache_name = "--calib-cache";
  std::error_code ec;
  if (o.calib_data.empty() && (o.calib_cache.empty() || !fs::exists(o.calib_cache, ec)))
    throw Error(
        "kiln build --int8: give --calib-data DIR (or --calib-cache FILE of an earlier "
        "calibration)");
  const bool terminal = stderr_is_terminal();
  if (terminal)
    o.progress = [&](int pass, int passes, std::size_t batch, std::size_t batches) {
      fmt::print(stderr, "\r\033[Kcalibrating ({}, pass {}/{}): batch {}/{}",
                 build::calibrator_name(o.calibrator), pass, passes, batch, batches);
    };
  const Int8Result r = int8_from_calibration(g, o);
  if (r.from_cache) {
    fmt::print("int8: {} scales read from {} (not calibrated)\n", r.tensors.size(), o.calib_cache);
    return r.graph;
  }
  if (terminal) fmt::print(stderr, "\r\033[K");
  fmt::print(
      "int8: calibrated {} tensors on {} batches with the {} calibrator in {:.1f} s (CPU "
      "reference)\n",
      r.tensors.size(), r.batches, build::calibrator_name(o.calibrator), r.seconds);
  fmt::print("{:<40} {:>12} {:>12} {:>12}\n", "tensor", "max |x|", "threshold", "scale");
  for (const auto& [name, range] : r.ranges)
    fmt::print("{:<40} {:>12.5g} {:>12.5g} {:>12.5g}\n", name, range.amax, range.threshold,
               r.scales.at(name));
  if (r.cache_written) fmt::print("calibration cache written to {}\n", o.calib_cache);
  return r.graph;
}

}  // namespace kiln::tools
