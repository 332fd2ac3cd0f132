// INT8 calibration: ranges, TensorRT's calibrators and cache format, and the Q/DQ graph.
#include "kiln/build/calibration.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"

namespace kiln::build {

namespace {
bool is_int8_op(const std::string& op) { return op == "Conv" || op == "Gemm" || op == "MatMul"; }
constexpr double kTiny = 1e-12;
}  // namespace

const char* calibrator_name(Calibrator c) {
  switch (c) {
    case Calibrator::entropy: return "entropy";
    case Calibrator::minmax: return "minmax";
    case Calibrator::percentile: return "percentile";
  }
  return "?";
}

Calibrator parse_calibrator(const std::string& name) {
  if (name == "entropy") return Calibrator::entropy;
  if (name == "minmax") return Calibrator::minmax;
  if (name == "percentile") return Calibrator::percentile;
  throw Error(fmt::format("calibrator '{}': expected entropy, minmax or percentile", name));
}

std::vector<std::string> tensors_to_calibrate(const Graph& g) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& n : g.nodes) {
    if (!is_int8_op(n.op)) continue;
    for (std::size_t i = 0; i < 2 && i < n.inputs.size(); ++i) {
      const std::string& v = n.inputs[i];
      if (v.empty() || g.weights.count(v) || g.known_value(v)) continue;
      if (seen.insert(v).second) out.push_back(v);
    }
  }
  return out;
}

RangeCollector::RangeCollector(Calibrator c, double percentile, int bins)
    : calibrator_(c), percentile_(percentile), bins_(bins) {
  if (!(percentile > 0 && percentile <= 100))
    throw Error(fmt::format("percentile {} is outside (0, 100]", percentile));
  if (bins < 128)
    throw Error(fmt::format("a calibration histogram needs at least 128 bins, got {}", bins));
}

void RangeCollector::observe(const std::string& name, const Tensor& t) {
  if (!histograms_) {
    double m = amax_.count(name) ? amax_[name] : 0.0;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const double v = t.get(i);
      if (!std::isfinite(v))
        throw Error(fmt::format("calibration: tensor '{}' holds {} (element {} of {}{})", name, v,
                                i, dtype_name(t.dtype()), dims_to_string(t.dims())));
      m = std::max(m, std::abs(v));
    }
    amax_[name] = m;
    return;
  }
  auto it = amax_.find(name);
  if (it == amax_.end())
    throw Error(fmt::format("calibration: tensor '{}' was not seen in the first pass", name));
  auto& h = hist_[name];
  h.resize(static_cast<std::size_t>(bins_), 0.0);
  const double width = std::max(it->second, kTiny) / bins_;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double a = std::abs(t.get(i));
    if (!std::isfinite(a))
      throw Error(fmt::format("calibration: tensor '{}' holds a NaN or Inf", name));
    const auto b = std::min<std::size_t>(static_cast<std::size_t>(a / width),
                                         static_cast<std::size_t>(bins_ - 1));
    h[b] += 1;
  }
}

void RangeCollector::start_histograms() { histograms_ = true; }

double entropy_threshold(const std::vector<double>& hist, double amax, int levels) {
  const int bins = static_cast<int>(hist.size());
  const double width = amax / bins;
  double total = 0;
  for (double h : hist) total += h;
  if (total == 0 || amax <= 0) return amax;
  double best_kl = std::numeric_limits<double>::infinity();
  int best = bins;
  for (int i = levels; i <= bins; ++i) {
    // P: the first i bins, with everything beyond clipped into the last of them.
    std::vector<double> p(hist.begin(), hist.begin() + i);
    for (int j = i; j < bins; ++j)
      p[static_cast<std::size_t>(i - 1)] += hist[static_cast<std::size_t>(j)];
    // Q: the first i bins merged into `levels` levels, each level spread evenly over its
    // non-empty bins.
    std::vector<double> q(static_cast<std::size_t>(i), 0.0);
    const double per = static_cast<double>(i) / levels;
    for (int l = 0; l < levels; ++l) {
      const int b0 = static_cast<int>(std::floor(l * per)),
                b1 = std::max(b0 + 1, static_cast<int>(std::floor((l + 1) * per)));
      double sum = 0;
      int nonzero = 0;
      for (int b = b0; b < b1 && b < i; ++b) {
        sum += hist[static_cast<std::size_t>(b)];
        nonzero += hist[static_cast<std::size_t>(b)] != 0;
      }
      for (int b = b0; b < b1 && b < i; ++b)
        if (hist[static_cast<std::size_t>(b)] != 0) q[static_cast<std::size_t>(b)] = sum / nonzero;
    }
    double ps = 0, qs = 0;
    for (int b = 0; b < i; ++b)
      ps += p[static_cast<std::size_t>(b)], qs += q[static_cast<std::size_t>(b)];
    double kl = 0;
    for (int b = 0; b < i; ++b) {
      const double pb = p[static_cast<std::size_t>(b)] / ps;
      if (pb == 0) continue;
      const double qb = q[static_cast<std::size_t>(b)] / qs;
      kl += qb == 0 ? pb * 1e3
                    : pb * std::log(pb / qb);  // an empty Q bin where P has mass: a large penalty
    }
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  return (best + 0.5) * width;
}

double RangeCollector::threshold(const std::string& name) const {
  const double amax = amax_.at(name);
  if (calibrator_ == Calibrator::minmax) return amax;
  auto it = hist_.find(name);
  if (it == hist_.end())
    throw Error(
        fmt::format("calibration: no histogram for tensor '{}' (second pass not run)", name));
  const auto& h = it->second;
  if (calibrator_ == Calibrator::entropy) return std::min(amax, entropy_threshold(h, amax));
  double total = 0;
  for (double v : h) total += v;
  double seen = 0;
  const double width = std::max(amax, kTiny) / bins_;
  for (std::size_t b = 0; b < h.size(); ++b) {
    seen += h[b];
    if (seen >= total * percentile_ / 100)
      return std::min(amax, (static_cast<double>(b) + 1) * width);
  }
  return amax;
}

std::map<std::string, float> RangeCollector::scales() const {
  std::map<std::string, float> s;
  for (const auto& [name, _] : amax_)
    s[name] = static_cast<float>(std::max(threshold(name), kTiny) / 127.0);
  return s;
}

std::map<std::string, RangeCollector::Range> RangeCollector::ranges() const {
  std::map<std::string, Range> r;
  for (const auto& [name, amax] : amax_) r[name] = {amax, threshold(name)};
  return r;
}

// ---- the cache ----------------------------------------------------------------------------

std::string calibration_cache_text(Calibrator c, const std::map<std::string, float>& scales) {
  // TensorRT's headers: "TRT-<version>-EntropyCalibration2", "...-MinMaxCalibration".
  std::string out = c == Calibrator::entropy  ? "TRT-8601-EntropyCalibration2\n"
                    : c == Calibrator::minmax ? "TRT-8601-MinMaxCalibration\n"
                                              : "TRT-8601-PercentileCalibration\n";
  for (const auto& [name, s] : scales)
    out += fmt::format("{}: {:08x}\n", name, std::bit_cast<std::uint32_t>(s));
  return out;
}

std::map<std::string, float> parse_calibration_cache(const std::string& text,
                                                     const std::string& what) {
  std::map<std::string, float> out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (n == 1) {
      if (line.rfind("TRT-", 0) != 0)
        throw FormatError(
            fmt::format("{}: line 1 is '{}'; a calibration cache starts with a TRT-... header",
                        what, line.substr(0, 80)));
      continue;
    }
    if (line.empty()) continue;
    const auto colon = line.rfind(": ");
    const std::string hex = colon == std::string::npos ? "" : line.substr(colon + 2);
    if (colon == std::string::npos || colon == 0 || hex.empty() || hex.size() > 8 ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      throw FormatError(fmt::format("{}: line {} is '{}'; expected 'tensor: hex-float32-scale'",
                                    what, n, line.substr(0, 80)));
    const float s = std::bit_cast<float>(static_cast<std::uint32_t>(std::stoul(hex, nullptr, 16)));
    if (!std::isfinite(s) || s < 0)
      throw FormatError(
          fmt::format("{}: line {}: the scale of '{}' is {}", what, n, line.substr(0, colon), s));
    out[line.substr(0, colon)] = s;
  }
  if (n == 0) throw FormatError(fmt::format("{}: the calibration cache is empty", what));
  return out;
}

std::map<std::string, float> read_calibration_cache(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("calibration cache '{}': cannot open it", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_calibration_cache(ss.str(), path);
}

void write_calibration_cache(const std::string& path, Calibrator c,
                             const std::map<std::string, float>& scales) {
  namespace fs = std::filesystem;
  const std::string tmp = path + ".kiln-tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << calibration_cache_text(c, scales);
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error(fmt::format("calibration cache: cannot write '{}'", path));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(fmt::format("calibration cache: cannot write '{}': {}", path, ec.message()));
  }
}

void check_cache_covers(const std::map<std::string, float>& cache,
                        const std::vector<std::string>& needed, const std::string& what) {
  std::vector<std::string> missing;
  for (const auto& n : needed)
    if (!cache.count(n)) missing.push_back(n);
  if (!missing.empty())
    throw Error(fmt::format(
        "{}: the calibration cache has no scale for {} tensor(s) the network quantizes: {}", what,
        missing.size(), fmt::join(missing, ", ")));
  // Extra entries are allowed (TensorRT's caches list every tensor, kiln's only those it needs).
}

// ---- the Q/DQ graph -----------------------------------------------------------------------

namespace {

/// `w` quantized per output channel along `axis` to `format` (int8 or f8e4m3fn): the quantized
/// tensor and the scales (max|w| / quant_max per channel).
std::pair<Tensor, Tensor> quantize_weight(const Tensor& w, std::int64_t axis, DType format) {
  const double qmax = quant_max(format);
  const std::int64_t channels = w.dim(axis);
  std::int64_t inner = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < w.rank(); ++d)
    inner *= w.dim(static_cast<std::int64_t>(d));
  std::vector<double> amax(static_cast<std::size_t>(channels), 0.0);
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    const auto c = static_cast<std::size_t>((i / inner) % channels);
    amax[c] = std::max(amax[c], std::abs(w.get(i)));
  }
  Tensor scales(DType::f32, {channels});
  for (std::int64_t c = 0; c < channels; ++c)
    scales.set(c, static_cast<float>(std::max(amax[static_cast<std::size_t>(c)], kTiny) / qmax));
  Tensor q(format, w.dims());
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    const float s = static_cast<float>(scales.get((i / inner) % channels));
    const float v = static_cast<float>(w.get(i) / s);  // as QuantizeLinear: x / scale in f32
    if (format == DType::i8)
      q.set(i, std::clamp(static_cast<double>(std::nearbyint(v)), -127.0, 127.0));
    else
      q.raw()[i] = std::byte{float8_from_double(format, v)};
  }
  return {q, scales};
}

}  // namespace

std::string int8_layer_name(const Node& n) {
  return n.name.empty() && !n.outputs.empty() ? n.outputs[0] : n.name;
}

std::vector<std::string> int8_layers(const Graph& g) {
  std::vector<std::string> v;
  for (const auto& n : g.nodes)
    if (is_int8_op(n.op)) v.push_back(int8_layer_name(n));
  return v;
}

namespace {

/// Per layer, its share of the steps' time (see layer_times).
std::map<std::string, double> charge_layers(const std::vector<std::string>& layers,
                                            const std::vector<Node>& steps,
                                            const std::map<std::string, double>& ms) {
  const std::set<std::string> wanted(layers.begin(), layers.end());
  // The layers each step runs.
  std::vector<std::vector<std::string>> runs(steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i) {
    std::set<std::string> names{steps[i].name};
    if (is_fused(steps[i])) {
      for (const auto& a : fused_absorbed(steps[i])) names.insert(a);
      for (const auto& part : fused_body(steps[i]).parts)
        if (is_int8_op(part.op) && !part.outputs.empty()) names.insert(part.outputs[0]);
    } else if (is_int8_op(steps[i].op) && !steps[i].outputs.empty()) {
      names.insert(steps[i].outputs[0]);
    }
    for (const auto& n : names)
      if (wanted.count(n)) runs[i].push_back(n);
  }
  auto is_glue = [](const Node& s) {
    for (const auto& part : as_body(s).parts)
      if (part.op != "QuantizeLinear" && part.op != "DequantizeLinear" && part.op != kToLayoutOp)
        return false;
    return true;
  };
  std::map<std::string, std::size_t> producer;
  std::map<std::string, std::vector<std::size_t>> consumers;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    for (const auto& o : steps[i].outputs) producer[o] = i;
    for (const auto& in : steps[i].inputs)
      if (!in.empty()) consumers[in].push_back(i);
  }
  // The layer step a glue step serves: the first found reading its output (through glue), else
  // the one that made its input (likewise).
  auto served = [&](std::size_t g) -> std::optional<std::size_t> {
    std::vector<std::size_t> todo{g};
    std::set<std::size_t> seen{g};
    while (!todo.empty()) {
      const std::size_t s = todo.front();
      todo.erase(todo.begin());
      for (const auto& o : steps[s].outputs)
        for (std::size_t c : consumers[o]) {
          if (!seen.insert(c).second) continue;
          if (!runs[c].empty()) return c;
          if (is_glue(steps[c])) todo.push_back(c);
        }
    }
    std::size_t s = g;
    for (int hops = 0; hops < 64; ++hops) {
      const Node& n = steps[s];
      if (n.inputs.empty() || !producer.count(n.inputs[0])) return std::nullopt;
      s = producer.at(n.inputs[0]);
      if (!runs[s].empty()) return s;
      if (!is_glue(steps[s])) return std::nullopt;
    }
    return std::nullopt;
  };
  std::map<std::string, double> out;
  auto charge = [&](std::size_t step, double t) {
    for (const auto& l : runs[step]) out[l] += t / static_cast<double>(runs[step].size());
  };
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto t = ms.find(steps[i].name);
    if (t == ms.end()) continue;
    if (!runs[i].empty())
      charge(i, t->second);
    else if (is_glue(steps[i]))
      if (const auto s = served(i)) charge(*s, t->second);
  }
  return out;
}

}  // namespace

std::vector<LayerTime> layer_times(const std::vector<std::string>& layers,
                                   const std::vector<Node>& eight_steps,
                                   const std::map<std::string, double>& eight_ms,
                                   const std::vector<Node>& float_steps,
                                   const std::map<std::string, double>& float_ms) {
  const auto e = charge_layers(layers, eight_steps, eight_ms);
  const auto f = charge_layers(layers, float_steps, float_ms);
  std::vector<LayerTime> v;
  for (const auto& l : layers) {
    LayerTime t{l};
    if (auto i = e.find(l); i != e.end()) t.ms_8bit = i->second;
    if (auto i = f.find(l); i != f.end()) t.ms_float = i->second;
    v.push_back(t);
  }
  return v;
}

double quant_max(DType format) {
  if (format == DType::i8) return 127;
  if (format == DType::f8e4m3fn) return 448;
  throw UnsupportedError(
      fmt::format("quantizing networks to {} (kiln quantizes them to int8 "
                  "or f8e4m3fn)",
                  dtype_name(format)));
}

Graph quantize_graph(const Graph& g, const std::map<std::string, float>& scales,
                     const std::set<std::string>& keep_float, DType format) {
  // Calibrated scales are INT8's (amax / 127); another format spreads the same range over its own.
  const double rescale = 127.0 / quant_max(format);
  const char* suffix = format == DType::i8 ? ".int8" : ".fp8";
  Graph out = g;
  out.nodes.clear();
  std::map<std::string, std::string> dq_of;   // activation -> its dequantized copy
  std::map<std::string, std::string> wdq_of;  // weight -> its dequantized copy
  auto add = [&](const std::string& op, const std::string& name, std::vector<std::string> in,
                 std::map<std::string, Attribute> attrs) {
    Node n;
    n.op = op;
    n.name = out.unique_name(name);
    n.inputs = std::move(in);
    n.outputs = {n.name};
    n.attrs = std::move(attrs);
    return out.add_node(std::move(n)).outputs[0];
  };
  // An activation's dequantized copy: Q then DQ with its calibrated scale, made once, before its
  // first reader.
  auto dequantized = [&](const std::string& v, const Node& reader) {
    if (!dq_of.count(v)) {
      auto s = scales.find(v);
      if (s == scales.end())
        throw Error(fmt::format("quantize_graph: no INT8 scale for tensor '{}' (read by {})", v,
                                reader.where()));
      const std::string sn = out.unique_name(v + ".scale"), zn = out.unique_name(v + ".zero_point");
      out.weights[sn] = Tensor::from<float>({}, {static_cast<float>(s->second * rescale)});
      out.weights[zn] = Tensor(format, {});  // zero point 0 (all-zero bytes in both formats)
      const std::string qv = add("QuantizeLinear", v + ".quantize", {v, sn, zn}, {});
      dq_of[v] = add("DequantizeLinear", v + ".dequantize", {qv, sn, zn}, {});
    }
    return dq_of[v];
  };
  // Whether `v` is a quantized layer's output (through a BatchNormalization the builder folds).
  auto quantized_layer = [&](const std::string& v) {
    auto p = g.producer(v);
    if (p && g.nodes[*p].op == "BatchNormalization" && !g.nodes[*p].inputs.empty())
      p = g.producer(g.nodes[*p].inputs[0]);
    return p && is_int8_op(g.nodes[*p].op) && !keep_float.count(int8_layer_name(g.nodes[*p]));
  };
  auto computed = [&](const std::string& v) {
    return !v.empty() && !g.weights.count(v) && !g.known_value(v);
  };
  for (const auto& n : g.nodes) {
    // A residual connection: the Add of a quantized layer's output and an activation that is
    // calibrated (a layer's input elsewhere) reads that activation quantized, as TensorRT
    // places Q/DQ for residual adds, so that the add joins the layer's 8-bit step.
    if (n.op == "Add" && n.inputs.size() == 2 && n.outputs.size() == 1 &&
        n.inputs[0] != n.inputs[1]) {
      Node a = n;
      for (std::size_t i = 0; i < 2; ++i) {
        const std::string &r = n.inputs[i], &other = n.inputs[1 - i];
        if (quantized_layer(other) && !quantized_layer(r) && computed(r) && scales.count(r) &&
            g.has_type(r) && g.has_type(n.outputs[0]) && g.type_of(r) == g.type_of(n.outputs[0])) {
          a.inputs[i] = dequantized(r, n);
          break;
        }
      }
      out.nodes.push_back(std::move(a));
      continue;
    }
    if (!is_int8_op(n.op) || keep_float.count(int8_layer_name(n))) {
      out.nodes.push_back(n);
      continue;
    }
    Node q = n;
    for (std::size_t i = 0; i < 2 && i < n.inputs.size(); ++i) {
      const std::string& v = n.inputs[i];
      if (v.empty()) continue;
      if (auto w = g.weights.find(v);
          w != g.weights.end() && is_float(w->second.dtype()) && w->second.rank() >= 1) {
        // Weights: per output channel (Conv's dim 0; Gemm's B by transB; MatMul's B by column).
        std::int64_t axis = 0;
        if (n.op == "Gemm")
          axis = i == 1 ? (n.attr_int("transB", 0) ? 0 : 1) : (n.attr_int("transA", 0) ? 1 : 0);
        if (n.op == "MatMul") axis = static_cast<std::int64_t>(w->second.rank()) - (i == 1 ? 1 : 2);
        if (axis < 0) axis = 0;
        const std::string key = v + "#" + std::to_string(axis);
        if (!wdq_of.count(key)) {
          auto [qw, ws] = quantize_weight(w->second, axis, format);
          const std::string qn = out.unique_name(v + suffix), sn = out.unique_name(v + ".scale");
          out.weights[qn] = qw;
          out.weights[sn] = ws;
          wdq_of[key] = add("DequantizeLinear", v + ".dequantize", {qn, sn}, {{"axis", axis}});
        }
        q.inputs[i] = wdq_of[key];
        continue;
      }
      if (!computed(v)) continue;  // other constants stay float
      q.inputs[i] = dequantized(v, n);
    }
    out.nodes.push_back(q);
  }
  // Weights now only read in INT8 form are dropped (the builder's dead-weight pass would too).
  std::set<std::string> read;
  for (const auto& n : out.nodes)
    for (const auto& i : n.inputs) read.insert(i);
  for (const auto& o : out.outputs) read.insert(o);
  for (auto it = out.weights.begin(); it != out.weights.end();)
    it = read.count(it->first) ? std::next(it) : out.weights.erase(it);
  return out;
}

}  // namespace kiln::build
