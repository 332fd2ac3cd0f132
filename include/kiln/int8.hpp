// INT8 for any network in one call, written in the DSL or imported: the scales read from a
// calibration cache, or found by running the network over calibration batches
// (kiln/import/calib_data.hpp) with one of TensorRT's calibrators, on the CPU reference or with
// the runner Int8Options::runner makes (`kiln build` gives one running an FP32 GPU engine); then
// the graph with Q/DQ pairs before every Conv, Gemm and MatMul (kiln/build/calibration.hpp).
//
//   kiln::Int8Options o;
//   o.calib_data = "calib";          // calib/*.npy, one file per batch
//   o.calib_cache = "net.calib";     // read when it exists, else written
//   const kiln::Int8Result q = kiln::int8_from_calibration(net.graph(), o);
//   auto out = kiln::reference::Executor(q.graph).run(inputs);   // or build a plan of q.graph
//
// This header sits above the importers, the passes and the reference executor (like run.hpp).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kiln/build/calibration.hpp"
#include "kiln/import/calib_data.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln {

/// Runs a graph on one batch of inputs and returns its outputs (calibration's engine).
using CalibrationRunner = std::function<reference::TensorMap(const reference::TensorMap&)>;
/// Makes the runner of a graph (Int8Options::runner).
using CalibrationRunnerFactory = std::function<CalibrationRunner(const Graph&)>;

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
  /// Layers pinned to a precision, by the names build::int8_layers gives: "fp32", "fp16" or
  /// "bf16" keep the layer in the plan's float precision, "int8" quantizes it whatever its error.
  std::map<std::string, std::string> layer_precision;
  /// > 0: every INT8 layer is compared with its FP32 output on the calibration data (fed the FP32
  /// network's values), and a layer whose error max|int8 - fp32| / max|fp32| exceeds this stays
  /// in float. Needs calibration data.
  double int8_tolerance = 0;
  /// Calibration batches the per-layer errors are measured on (the first ones).
  std::size_t error_batches = 4;
  /// The 8-bit format: DType::i8 (INT8) or DType::f8e4m3fn (FP8 E4M3, `--fp8`: the same
  /// calibration and cache, scales amax / 448).
  DType format = DType::i8;
  /// > 0: a convolution with fewer input channels than this stays in float unless pinned (a
  /// network's first layer: 3 channels break the GPU's 8-bit kernels' 4- and 16-byte rows, so
  /// its patches go through a byte-wise gather; TensorRT runs such layers in FP16 too). `kiln
  /// build` sets 4 for the GPU targets.
  int float_below_channels = 0;
  /// Where calibration runs the network: given the probe graph (the network with every tensor to
  /// calibrate as an output), a function that runs it on one batch. Empty: the CPU reference.
  /// `kiln build` gives one that runs an FP32 engine on the GPU when there is one.
  CalibrationRunnerFactory runner;
  std::string runner_name = "CPU reference";  ///< where `runner` runs, for messages
};

/// "int8" or "fp8": how layer tables and layer_precision name an 8-bit format.
inline std::string format_precision(DType format) {
  return format == DType::f8e4m3fn ? "fp8" : "int8";
}

/// One quantizable layer: its precision in the result and why.
struct LayerPrecision {
  std::string layer, op;
  std::string precision;  ///< "int8", or the float format it was pinned to ("fp32" by tolerance)
  double error = -1;  ///< max|int8 - fp32| / max|fp32| on the calibration data; -1: not measured
  std::string why;    ///< "", "pinned", "error over the tolerance"
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
  double seconds = 0;                  ///< spent calibrating
  std::vector<LayerPrecision> layers;  ///< every layer INT8 applies to, in graph order
  std::set<std::string> keep_float;    ///< the layers `graph` keeps in float
};

/// Runs `g` over every batch of `data` (on the CPU reference, or with what `runner` makes) and
/// has `collector` observe each tensor of build::tensors_to_calibrate(g): one pass, or two when
/// the calibrator needs histograms. `progress` and `runner` as in Int8Options.
inline void calibrate(const Graph& g, const CalibrationData& data, build::RangeCollector& collector,
                      const std::function<void(int, int, std::size_t, std::size_t)>& progress = {},
                      const CalibrationRunnerFactory& runner = {}) {
  Graph probe = g;
  probe.outputs = build::tensors_to_calibrate(g);
  std::unique_ptr<reference::Executor> exec;
  CalibrationRunner run;
  if (runner) {
    run = runner(probe);
  } else {
    exec = std::make_unique<reference::Executor>(probe);
    run = [&](const reference::TensorMap& in) { return exec->run(in); };
  }
  const int passes = collector.needs_histograms() ? 2 : 1;
  for (int pass = 0; pass < passes; ++pass) {
    if (pass == 1) collector.start_histograms();
    for (std::size_t b = 0; b < data.size(); ++b) {
      const auto out = run(data.batch(b));
      for (const auto& name : probe.outputs) collector.observe(name, out.at(name));
      if (progress) progress(pass + 1, passes, b + 1, data.size());
    }
  }
}

/// Per layer of build::int8_layers(g): max|int8 - fp32| / max|fp32| of its output over the first
/// `max_batches` batches of `data`, the layer fed the FP32 network's values and computed alone
/// with its inputs quantized by `scales` and its weights per output channel (its own error, not
/// the network's accumulated one).
inline std::map<std::string, double> int8_layer_errors(const Graph& g,
                                                       const std::map<std::string, float>& scales,
                                                       const CalibrationData& data,
                                                       std::size_t max_batches,
                                                       DType format = DType::i8) {
  const auto names = build::int8_layers(g);
  const std::set<std::string> layer_set(names.begin(), names.end());
  std::vector<const Node*> layers;
  std::set<std::string> wanted;
  for (const auto& n : g.nodes) {
    if (!layer_set.count(build::int8_layer_name(n))) continue;
    layers.push_back(&n);
    for (const auto& in : n.inputs)
      if (!in.empty() && !g.weights.count(in) && !g.known_value(in)) wanted.insert(in);
    wanted.insert(n.outputs.at(0));
  }
  Graph probe = g;
  probe.outputs.assign(wanted.begin(), wanted.end());
  reference::Executor fp32(probe);
  // Each layer alone, quantized: its activation inputs are the mini graph's inputs. (An Executor
  // keeps a reference to its graph: the graphs live in `graphs`.)
  std::vector<std::unique_ptr<Graph>> graphs;
  std::vector<std::unique_ptr<reference::Executor>> alone;
  for (const Node* n : layers) {
    Graph mini;
    mini.name = build::int8_layer_name(*n);
    for (const auto& in : n->inputs) {
      if (in.empty()) continue;
      if (auto w = g.weights.find(in); w != g.weights.end())
        mini.weights[in] = w->second;
      else if (const Tensor* k = g.known_value(in))
        mini.weights[in] = *k;
      else if (std::none_of(mini.inputs.begin(), mini.inputs.end(),
                            [&](const ValueInfo& v) { return v.name == in; }))
        mini.inputs.push_back({in, g.type_of(in)});
    }
    mini.nodes = {*n};
    mini.outputs = {n->outputs.at(0)};
    mini.infer();
    graphs.push_back(std::make_unique<Graph>(build::quantize_graph(mini, scales, {}, format)));
    alone.push_back(std::make_unique<reference::Executor>(*graphs.back()));
  }
  std::vector<double> worst(layers.size(), 0.0), peak(layers.size(), 0.0);
  for (std::size_t b = 0; b < std::min(max_batches, data.size()); ++b) {
    const auto values = fp32.run(data.batch(b));
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::map<std::string, Tensor> in;
      for (const auto& v : graphs[i]->inputs) in[v.name] = values.at(v.name);
      const Tensor y = alone[i]->run(in).at(layers[i]->outputs[0]);
      const Tensor& ref = values.at(layers[i]->outputs[0]);
      for (std::int64_t k = 0; k < ref.numel(); ++k) {
        worst[i] = std::max(worst[i], std::fabs(y.get(k) - ref.get(k)));
        peak[i] = std::max(peak[i], std::fabs(ref.get(k)));
      }
    }
  }
  std::map<std::string, double> err;
  for (std::size_t i = 0; i < layers.size(); ++i)
    err[build::int8_layer_name(*layers[i])] = worst[i] / std::max(peak[i], 1e-12);
  return err;
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
    calibrate(g, data, collector, o.progress, o.runner);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.batches = data.size();
    r.scales = collector.scales();
    r.ranges = collector.ranges();
    if (!o.calib_cache.empty()) {
      build::write_calibration_cache(o.calib_cache, o.calibrator, r.scales);
      r.cache_written = true;
    }
  }
  // Mixed precision: pinned layers, then the tolerance on each layer's own INT8 error.
  const auto layers = build::int8_layers(g);
  const std::set<std::string> known(layers.begin(), layers.end());
  for (const auto& [name, p] : o.layer_precision) {
    if (!known.count(name)) {
      std::string some;
      for (std::size_t i = 0; i < layers.size() && i < 8; ++i) some += (i ? ", " : "") + layers[i];
      throw Error(fmt::format(
          "layer precision '{}:{}': no layer '{}' that INT8 applies to (a Conv, "
          "Gemm or MatMul; the network's: {}{})",
          name, p, name, some.empty() ? "none" : some, layers.size() > 8 ? ", ..." : ""));
    }
    if (p != "fp32" && p != "fp16" && p != "bf16" && p != format_precision(o.format))
      throw Error(fmt::format("layer precision '{}:{}': expected fp32, fp16, bf16 or {}", name, p,
                              format_precision(o.format)));
  }
  std::map<std::string, double> errors;
  if (!o.calib_data.empty()) {
    const CalibrationData data(o.calib_data, g, o.data_name);
    errors = int8_layer_errors(g, r.scales, data, o.error_batches, o.format);
  } else if (o.int8_tolerance > 0) {
    throw Error(fmt::format("an INT8 tolerance needs {} (each layer is compared with FP32 on it)",
                            o.data_name));
  }
  std::set<std::string> keep_float;
  const auto nodes = [&] {
    std::map<std::string, const Node*> m;
    for (const auto& n : g.nodes) m[build::int8_layer_name(n)] = &n;
    return m;
  }();
  // A convolution's input channels when they are known.
  auto channels = [&](const Node& n) -> std::int64_t {
    if (n.op != "Conv" || n.inputs.empty() || !g.has_type(n.inputs[0])) return -1;
    const Shape& s = g.type_of(n.inputs[0]).shape;
    return s.rank() >= 2 && s[1].is_fixed() ? s[1].value() : -1;
  };
  for (const auto& name : layers) {
    const Node& n = *nodes.at(name);
    LayerPrecision lp{name, n.op, format_precision(o.format), -1, ""};
    if (auto e = errors.find(name); e != errors.end()) lp.error = e->second;
    if (auto p = o.layer_precision.find(name); p != o.layer_precision.end()) {
      lp.precision = p->second;
      lp.why = "pinned";
    } else if (o.int8_tolerance > 0 && lp.error > o.int8_tolerance) {
      lp.precision = "fp32";
      lp.why = "error over the tolerance";
    } else if (const std::int64_t c = channels(n); c > 0 && c < o.float_below_channels) {
      lp.precision = "fp32";
      lp.why = fmt::format("{} input channel{} (the GPU's 8-bit kernels want {} or more)", c,
                           c == 1 ? "" : "s", o.float_below_channels);
    }
    if (lp.precision != format_precision(o.format)) keep_float.insert(name);
    r.layers.push_back(std::move(lp));
  }
  r.graph = build::quantize_graph(g, r.scales, keep_float, o.format);
  r.keep_float = std::move(keep_float);
  return r;
}

}  // namespace kiln
