// INT8 post-training calibration: the range of every tensor that an INT8 step reads, found from
// calibration batches, and the graph made explicit with QuantizeLinear/DequantizeLinear pairs.
//
//   RangeCollector c(Calibrator::entropy);
//   for each batch: c.observe(name, tensor) for every tensor to calibrate   (first pass: maxima)
//   c.start_histograms();
//   for each batch: c.observe(name, tensor) again                          (second pass)
//   auto scales = c.scales();                     // name -> threshold / 127
//   Graph q = quantize_graph(g, scales);          // Q/DQ before every Conv/Gemm/MatMul input
//
// The calibrators are TensorRT's: entropy (2048-bin histograms of |x|, the threshold that
// minimizes the KL divergence between the clipped distribution and its 128-level quantization),
// min-max (the largest |x|) and percentile (of |x|, 99.99 by default). The calibration cache is
// TensorRT's text format: a header line naming the calibrator, then `tensor: hex` per line, the
// hex digits being the bits of the float32 scale.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::build {

enum class Calibrator { entropy, minmax, percentile };
/// "entropy", "minmax", "percentile"; parse_calibrator throws Error naming the choices.
const char* calibrator_name(Calibrator c);
Calibrator parse_calibrator(const std::string& name);

/// The tensors an INT8 build quantizes: the activation inputs of every Conv, Gemm and MatMul
/// (in node order, each once), not weights.
std::vector<std::string> tensors_to_calibrate(const Graph& g);

class RangeCollector {
 public:
  explicit RangeCollector(Calibrator c, double percentile = 99.99, int bins = 2048);
  /// Records a batch of `name`. Throws Error for NaN or Inf (naming the tensor).
  void observe(const std::string& name, const Tensor& t);
  /// Ends the first pass (maxima); the calibration batches are observed again to fill the
  /// histograms. Not needed for min-max.
  void start_histograms();
  bool needs_histograms() const { return calibrator_ != Calibrator::minmax; }
  /// Per tensor: the threshold / 127 (the symmetric INT8 scale), at least a tiny positive value.
  std::map<std::string, float> scales() const;
  /// Per tensor: the largest |x| seen and the chosen threshold (for kiln build's table).
  struct Range {
    double amax = 0, threshold = 0;
  };
  std::map<std::string, Range> ranges() const;

 private:
  double threshold(const std::string& name) const;
  Calibrator calibrator_;
  double percentile_;
  int bins_;
  bool histograms_ = false;
  std::map<std::string, double> amax_;
  std::map<std::string, std::vector<double>> hist_;
};

/// The threshold minimizing KL(P || Q) over a histogram of |x| (bins of equal width over
/// [0, amax]), as TensorRT's entropy calibrator chooses it; in units of bins (the threshold is
/// (result + 0.5) * bin width... see the implementation), returned as a value of |x|.
double entropy_threshold(const std::vector<double>& hist, double amax, int levels = 128);

/// TensorRT's calibration cache text for `scales`, and its reverse. read_calibration_cache throws
/// FormatError naming the line for anything it cannot read.
std::string calibration_cache_text(Calibrator c, const std::map<std::string, float>& scales);
std::map<std::string, float> parse_calibration_cache(const std::string& text,
                                                     const std::string& what);
/// The calibration cache file `path` read (parse_calibration_cache). Throws Error when it cannot be
/// opened.
std::map<std::string, float> read_calibration_cache(const std::string& path);
/// Writes calibration_cache_text(c, scales) to `path` through a temporary file renamed over it, so
/// that a failed write leaves no partial cache. Throws Error naming the path.
void write_calibration_cache(const std::string& path, Calibrator c,
                             const std::map<std::string, float>& scales);
/// Throws Error listing the tensors the cache lacks and the ones the network lacks.
void check_cache_covers(const std::map<std::string, float>& cache,
                        const std::vector<std::string>& needed, const std::string& what);

/// `g` with every calibrated tensor quantized to INT8 (QuantizeLinear with its scale, zero point
/// 0, then DequantizeLinear) where a Conv, Gemm or MatMul reads it, and the weights of those ops
/// quantized per output channel (symmetric: max|w| / 127 per channel), kept as int8 weights
/// behind a DequantizeLinear. The result runs on the CPU reference with INT8 numerics: every
/// product of the quantized ops is of values an INT8 kernel sees. A residual Add of a quantized
/// layer's output and a calibrated activation (the input of a layer elsewhere, as a ResNet block's
/// shortcut is) reads the activation through its Q/DQ too, so that the add can join the layer's
/// 8-bit step (TensorRT's placement for residual adds). Throws Error naming a tensor that `scales`
/// lacks.
/// Layers named in `keep_float` (node names, or a nameless node's first output) stay as they are:
/// they run in the plan's float precision (mixed precision on purpose).
/// `format` DType::f8e4m3fn quantizes to FP8 E4M3 instead (`kiln build --fp8`): the same
/// calibrated ranges (INT8 scales, amax / 127, as the cache holds them) become FP8 scales
/// amax / 448, activations and weights (per output channel) are rounded to E4M3, saturating.
Graph quantize_graph(const Graph& g, const std::map<std::string, float>& scales,
                     const std::set<std::string>& keep_float = {}, DType format = DType::i8);

/// The largest magnitude of a quantization format: 127 for int8, 448 for f8e4m3fn. Throws
/// UnsupportedError for the others.
double quant_max(DType format);

/// A layer's name as keep_float and int8_layers give it: the node's, or a nameless node's first
/// output.
std::string int8_layer_name(const Node& n);

/// The layers quantize_graph quantizes (Conv, Gemm, MatMul), by the names keep_float takes, in
/// graph order.
std::vector<std::string> int8_layers(const Graph& g);

/// One layer's GPU time in two plans of the same network (builder precision choice).
struct LayerTime {
  std::string layer;
  double ms_8bit = -1;   ///< in the 8-bit plan; -1: no step of that plan runs it
  double ms_float = -1;  ///< in the float plan; -1: likewise
};

/// The time each of `layers` costs in an 8-bit plan and in a float plan of the same network,
/// from per-step times (by step name, as runtime::time_engine gives them). A layer costs the
/// step that runs it (shared evenly where one step runs several layers) plus the glue steps that
/// exist for it: QuantizeLinear, DequantizeLinear and layout conversions (alone or fused only
/// with each other), each charged to the layer step that reads its output (through other glue),
/// else to the one that made its input.
std::vector<LayerTime> layer_times(const std::vector<std::string>& layers,
                                   const std::vector<Node>& eight_steps,
                                   const std::map<std::string, double>& eight_ms,
                                   const std::vector<Node>& float_steps,
                                   const std::map<std::string, double>& float_ms);

}  // namespace kiln::build
