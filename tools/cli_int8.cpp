#include "cli_int8.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <unistd.h>

#include <fmt/format.h>

#include "kiln/build/calibration.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"
#include "run_io.hpp"

namespace kiln::tools {
namespace fs = std::filesystem;

namespace {

bool stderr_is_terminal() { return isatty(fileno(stderr)) != 0; }

std::vector<std::string> tensor_files(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(fmt::format("{}: '{}' is not a directory", what, dir.string()));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".npy" || ext == ".pb")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw Error(fmt::format("{}: '{}' holds no .npy or .pb files", what, dir.string()));
  return files;
}

/// One batch per entry: input name -> file.
std::vector<std::map<std::string, std::string>> calibration_batches(const std::string& dir,
                                                                    const Graph& g) {
  std::vector<std::map<std::string, std::string>> batches;
  if (g.inputs.size() == 1) {
    for (auto& f : tensor_files(dir, "--calib-data")) batches.push_back({{g.inputs[0].name, f}});
    return batches;
  }
  std::size_t count = 0;
  for (const auto& vi : g.inputs) {
    const auto files =
        tensor_files(fs::path(dir) / vi.name, fmt::format("--calib-data (input '{}')", vi.name));
    if (batches.empty()) {
      count = files.size();
      batches.resize(count);
    } else if (files.size() != count) {
      throw Error(fmt::format(
          "--calib-data: '{}/{}' holds {} files, '{}/{}' {}; every input needs one per batch", dir,
          g.inputs[0].name, count, dir, vi.name, files.size()));
    }
    for (std::size_t i = 0; i < count; ++i) batches[i][vi.name] = files[i];
  }
  return batches;
}

reference::TensorMap load_batch(const std::map<std::string, std::string>& files, const Graph& g) {
  reference::TensorMap m;
  for (const auto& vi : g.inputs) {
    const std::string& file = files.at(vi.name);
    Tensor t = load_tensor_file(file);
    const Shape& want = vi.type.shape;
    bool fits = t.rank() == want.rank();
    for (std::size_t d = 0; fits && d < want.rank(); ++d)
      fits = !want[d].is_fixed() || want[d].value() == t.dim(static_cast<std::int64_t>(d));
    if (!fits)
      throw Error(fmt::format("--calib-data: '{}' holds {}{}; input '{}' is {}", file,
                              dtype_name(t.dtype()), dims_to_string(t.dims()), vi.name,
                              vi.type.to_string()));
    if (is_float(vi.type.dtype) != is_float(t.dtype()))
      throw Error(fmt::format("--calib-data: '{}' holds {} values; input '{}' takes {}", file,
                              dtype_name(t.dtype()), vi.name, dtype_name(vi.type.dtype)));
    for (std::int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t.get(i)))
        throw Error(fmt::format("--calib-data: '{}' holds {} at element {}", file, t.get(i), i));
    m[vi.name] = t.dtype() == vi.type.dtype ? t : t.cast(vi.type.dtype);
  }
  return m;
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".kiln-tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error(fmt::format("--calib-cache: cannot write '{}'", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(fmt::format("--calib-cache: cannot write '{}': {}", path, ec.message()));
  }
}

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
  const auto needed = build::tensors_to_calibrate(g);
  const build::Calibrator kind = build::parse_calibrator(args.get("--calibrator", "entropy"));
  const std::string cache = args.get("--calib-cache");
  std::map<std::string, float> scales;
  std::error_code ec;
  if (!cache.empty() && fs::exists(cache, ec)) {
    std::ifstream f(cache, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    scales = build::parse_calibration_cache(ss.str(), cache);
    build::check_cache_covers(scales, needed, cache);
    fmt::print("int8: {} scales read from {} (not calibrated)\n", needed.size(), cache);
  } else {
    if (!args.has("--calib-data"))
      throw Error(
          "kiln build --int8: give --calib-data DIR (or --calib-cache FILE of an earlier "
          "calibration)");
    const auto batches = calibration_batches(args.get("--calib-data"), g);
    build::RangeCollector collector(kind, args.number("--percentile", 99.99));
    Graph probe = g;
    probe.outputs = needed;
    reference::Executor exec(probe);
    const auto t0 = std::chrono::steady_clock::now();
    const int passes = collector.needs_histograms() ? 2 : 1;
    for (int pass = 0; pass < passes; ++pass) {
      if (pass == 1) collector.start_histograms();
      for (std::size_t b = 0; b < batches.size(); ++b) {
        const auto out = exec.run(load_batch(batches[b], g));
        for (const auto& name : needed) collector.observe(name, out.at(name));
        if (stderr_is_terminal())
          fmt::print(stderr, "\r\033[Kcalibrating ({}, pass {}/{}): batch {}/{}",
                     build::calibrator_name(kind), pass + 1, passes, b + 1, batches.size());
      }
    }
    if (stderr_is_terminal()) fmt::print(stderr, "\r\033[K");
    scales = collector.scales();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(
        "int8: calibrated {} tensors on {} batches with the {} calibrator in {:.1f} s (CPU "
        "reference)\n",
        needed.size(), batches.size(), build::calibrator_name(kind), s);
    fmt::print("{:<40} {:>12} {:>12} {:>12}\n", "tensor", "max |x|", "threshold", "scale");
    for (const auto& [name, r] : collector.ranges())
      fmt::print("{:<40} {:>12.5g} {:>12.5g} {:>12.5g}\n", name, r.amax, r.threshold, scales[name]);
    if (!cache.empty()) {
      write_atomically(cache, build::calibration_cache_text(kind, scales));
      fmt::print("calibration cache written to {}\n", cache);
    }
  }
  return build::quantize_graph(g, scales);
}

}  // namespace kiln::tools
