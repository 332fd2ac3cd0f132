// INT8 for any network in one call, written in the DSL or imported: the scales read from a
// calibration cache, or found by running the network on the CPU reference over calibration
// batches (kiln/import/calib_data.hpp) with one of TensorRT's calibrators; then the graph with
// Q/DQ pairs before every Conv, Gemm and MatMul (kiln/build/calibration.hpp).
//
//   kiln::Int8Options o;
//   o.calib_data = "calib";          // calib/*.npy, one file per batch
//   o.calib_cache = "net.calib";     // read when it exists, else written
//   const kiln::Int8Result q = kiln::int8_from_calibration(net.graph(), o);
//   auto out = kiln::reference::Executor(q.graph).run(inputs);   // or build a plan of q.graph
//
// This header sits above the importers, the passes and the reference executor (like run.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/build/calibration.hpp"
#include "kiln/import/calib_data.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln {

struct Int8Options {
  /// The directory of calibration batches; needed unless `calib_cache` names an existing file.
  std::string calib_data;
  build::Calibrator calibrator = build::Calibrator::entropy;
  double percentile = 99.99;  ///< of |x|, for the percentile calibrator
  /// A calibration cache (TensorRT's text format): read instead of calibrating when the file
  /// exists, else written after calibrating. Empty: none.
  std::string calib_cache;
  /// How messages name `calib_data` and `calib_cache` (e.g. the options that gave them).
  std::string data_name = "calibration data", cache_name = "calibration cache";
  /// Called after each batch with the pass (from 1), the passes, the batch (from 1), the batches.
  std::function<void(int, int, std::size_t, std::size_t)> progress;
};

struct Int8Result {
  Graph graph;                          ///< the network with Q/DQ pairs (build::quantize_graph)
  std::map<std::string, float> scales;  ///< per calibrated tensor
  std::vector<std::string> tensors;     ///< build::tensors_to_calibrate of the network
  bool from_cache = false;              ///< the scales were read from `calib_cache`
  bool cache_written = false;           ///< the scales were written to `calib_cache`
  std::size_t batches = 0;              ///< calibration batches (0 when read from the cache)
  /// The largest |x| and the chosen threshold per tensor (empty when read from the cache).
  std::map<std::string, build::RangeCollector::Range> ranges;
  double seconds = 0;  ///< spent calibrating
};

/// Runs `g` on the CPU reference over every batch of `data` and has `collector` observe each
/// tensor of build::tensors_to_calibrate(g): one pass, or two when the calibrator needs
/// histograms. `progress` as in Int8Options.
inline void calibrate(
    const Graph& g, const CalibrationData& data, build::RangeCollector& collector,
    const std::function<void(int, int, std::size_t, std::size_t)>& progress = {}) {
  Graph probe = g;
  probe.outputs = build::tensors_to_calibrate(g);
  reference::Executor exec(probe);
  const int passes = collector.needs_histograms() ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    if (pass == 1) collector.start_histograms();
    for (std::size_t b = 0; b < data.size(); ++b) {
      const auto out = exec.run(data.batch(b));
      for (const auto& name : probe.outputs) collector.observe(name, out.at(name));
      if (progress) progress(pass + 1, passes, b + 1, data.size());
    }
  }
}

/// `g` quantized to INT8 with the scales of `o.calib_cache` when that file exists (checked to
/// cover every tensor to calibrate), else calibrated on `o.calib_data` (and written to
/// `o.calib_cache` when given). Throws Error naming what is missing or wrong: no data and no
/// cache, a bad batch file (CalibrationData), a cache that lacks a tensor.
inline Int8Result int8_from_calibration(const Graph& g, const Int8Options& o) {
  Int8Result r;
  r.tensors = build::tensors_to_calibrate(g);
  std::error_code ec;
  if (!o.calib_cache.empty() && std::filesystem::exists(o.calib_cache, ec)) {
    r.scales = build::read_calibration_cache(o.calib_cache);
    build::check_cache_covers(r.scales, r.tensors, o.calib_cache);
    r.from_cache = true;
  } else {
    if (o.calib_data.empty())
      throw Error(o.calib_cache.empty()
                      ? o.data_name + ": no directory of calibration batches given (and no " +
                            o.cache_name + " of an earlier calibration to read instead)"
                      : o.data_name + ": no directory of calibration batches given, and " +
                            o.cache_name + " '" + o.calib_cache +
                            "' does not exist yet (it is written after a calibration)");
    const CalibrationData data(o.calib_data, g, o.data_name);
    build::RangeCollector collector(o.calibrator, o.percentile);
    const auto t0 = std::chrono::steady_clock::now();
    calibrate(g, data, collector, o.progress);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.batches = data.size();
    r.scales = collector.scales();
    r.ranges = collector.ranges();
    if (!o.calib_cache.empty()) {
      build::write_calibration_cache(o.calib_cache, o.calibrator, r.scales);
      r.cache_written = true;
    }
  }
  r.graph = build::quantize_graph(g, r.scales);
  return r;
}

}  // namespace kiln
