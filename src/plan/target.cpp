#include "kiln/plan/target.hpp"

#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"

namespace kiln::plan {

std::string layout_name(Layout l) { return l == Layout::NCHW ? "NCHW" : "NHWC"; }

std::vector<Layout> Target::layouts_of(const std::string& op) const {
  auto it = layouts.find(op);
  return it == layouts.end() ? std::vector<Layout>{Layout::NCHW} : it->second;
}

std::string Target::describe() const {
  std::string s = fmt::format("target {}\n", name);
  s += fmt::format("  fusions: {}\n",
                   fusions.empty() ? "none" : fmt::format("{}", fmt::join(fusions, ", ")));
  s += fmt::format("  pointwise ops: {} (at most {} in one step)\n", pointwise_ops.size(),
                   max_pointwise_chain);
  for (const auto& [op, ls] : layouts) {
    std::vector<std::string> names;
    for (auto l : ls) names.push_back(layout_name(l));
    s += fmt::format("  layouts {}: {}\n", op, fmt::join(names, ", "));
  }
  auto yn = [](bool b) { return b ? "yes" : "no"; };
  s += fmt::format(
      "  concat in place: {}, split in place: {}, strided output: {}, strided input: {}, "
      "in place: {}, views: {}, alignment: {}\n",
      yn(concat_in_place), yn(split_in_place), yn(strided_output),
      strided_input || strided_input_ops.empty()
          ? std::string(yn(strided_input))
          : fmt::format("{} only", fmt::join(strided_input_ops, ", ")),
      yn(in_place), yn(view_ops), alignment);
  return s;
}

namespace {
/// The ONNX ops of include/kiln/ir/pointwise_ops.def; `activations`: those a convolution or matrix
/// product may fuse as its activation.
std::set<std::string> table_ops(bool activations) {
  std::set<std::string> s;
  auto add = [&](const char* onnx, int activation) {
    if (*onnx && (!activations || activation)) s.insert(onnx);
  };
#define KILN_POINTWISE_UNARY(op, onnx, activation, ...) add(onnx, activation);
#define KILN_POINTWISE_BINARY(op, onnx, variadic, activation, ...) \
  add(onnx, activation), add(variadic, activation);
#include "kiln/ir/pointwise_ops.def"
  return s;
}
}  // namespace

const std::set<std::string>& activation_ops() {
  static const std::set<std::string> s = table_ops(true);
  return s;
}

const std::set<std::string>& elementwise_ops() {
  static const std::set<std::string> s = table_ops(false);
  return s;
}

namespace {

Target make_cpu_reference() {
  Target t;
  t.name = "cpu-reference";
  t.fusions = {fusion::kConvActivation, fusion::kGemmActivation, fusion::kConvResidual,
               fusion::kPointwiseChain, fusion::kHorizontalConv, fusion::kHorizontalMatMul,
               fusion::kLayerNorm,      fusion::kGelu,           fusion::kAttention,
               fusion::kResidualNorm,   fusion::kQdqPropagation, fusion::kInt8};
  t.pointwise_ops = elementwise_ops();
  t.max_pointwise_chain = 16;
  // The reference computes convolutions and pooling in NCHW only.
  for (const char* op : {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
                         "GlobalMaxPool", "LRN", "BatchNormalization", "InstanceNormalization"})
    t.layouts[op] = {Layout::NCHW};
  t.strided_output = true;
  t.strided_input = true;
  t.in_place = true;
  t.concat_in_place = true;
  t.split_in_place = true;
  t.view_ops = true;
  t.alignment = 64;
  return t;
}

Target make_plain() {
  Target t;
  t.name = "plain";
  t.alignment = 64;
  return t;
}

/// The CUDA runtime (kiln/runtime/engine.hpp). Its steps write contiguous outputs only (no
/// strided slices: a concat is elided only where each input's slice is contiguous), never in
/// place (cuDNN's convolution cannot write over the residual it adds), and views cost nothing.
/// FP32 computes in NCHW; FP16 and BF16 take NHWC for convolutions, pooling and concat (tensor
/// cores want channels last) and convert with kiln.ToLayout steps where a step needs the other.
/// The plan is the same for both 16-bit formats: only the engine's storage differs.
Target make_cuda(const char* name, const char* precision) {
  const bool half_width = std::string(precision) != "fp32";
  Target t;
  t.name = name;
  t.precision = precision;
  t.fusions = {fusion::kConvActivation,
               fusion::kGemmActivation,
               fusion::kConvResidual,
               fusion::kPointwiseChain,
               fusion::kLayerNorm,
               fusion::kGelu,
               fusion::kAttention,
               fusion::kResidualNorm,
               fusion::kQdqPropagation,
               fusion::kHorizontalMatMul,
               fusion::kInt8};
  t.pointwise_ops = elementwise_ops();
  t.max_pointwise_chain = 8;  // kernels::kMaxChainSteps
  if (half_width) {
    // INT8 too: an INT8 convolution reads patch rows along C (a 1x1 one reads its input as it
    // is), and quantizing is elementwise (per channel along C in either layout).
    for (const char* op :
         {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
          "Concat", "ConvInteger", "QuantizeLinear", "DequantizeLinear"})
      t.layouts[op] = {Layout::NHWC, Layout::NCHW};
  }
  t.strided_output = false;
  t.strided_input = false;
  t.in_place = false;
  t.concat_in_place = !half_width;  // NHWC slices along C are never contiguous
  // The Q, K and V slices of a horizontal product are read in place by Attention (any row
  // stride); a Split whose slices another step reads stays a copy.
  t.split_in_place = true;
  t.strided_input_ops = {"Attention"};
  t.view_ops = true;
  t.alignment = 256;
  return t;
}

struct Targets {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const Target>> by_name;
  std::vector<std::shared_ptr<const Target>> replaced;  // kept: references to them stay valid
  Targets() {
    for (Target t : {make_cpu_reference(), make_plain(), make_cuda(kCudaTarget, "fp32"),
                     make_cuda(kCudaFp16Target, "fp16"), make_cuda(kCudaBf16Target, "bf16")}) {
      const std::string name = t.name;
      by_name[name] = std::make_shared<const Target>(std::move(t));
    }
  }
};
Targets& targets() {
  static Targets t;
  return t;
}

}  // namespace

const Target& cpu_reference_target() { return target_by_name("cpu-reference"); }
const Target& plain_target() { return target_by_name("plain"); }
const Target& cuda_target(bool fp16) {
  return target_by_name(fp16 ? kCudaFp16Target : kCudaTarget);
}

const Target& target_by_name(const std::string& name) {
  auto& t = targets();
  std::lock_guard lock(t.mu);
  auto it = t.by_name.find(name);
  if (it == t.by_name.end()) {
    std::vector<std::string> names;
    for (const auto& [k, _] : t.by_name) names.push_back(k);
    throw UnsupportedError(
        fmt::format("unknown target '{}' (known: {})", name, fmt::join(names, ", ")));
  }
  return *it->second;  // targets are never removed, only replaced while nobody builds
}

void register_target(Target t) {
  auto& ts = targets();
  std::lock_guard lock(ts.mu);
  const std::string name = t.name;
  if (auto it = ts.by_name.find(name); it != ts.by_name.end()) ts.replaced.push_back(it->second);
  ts.by_name[name] = std::make_shared<const Target>(std::move(t));
}

}  // namespace kiln::plan
