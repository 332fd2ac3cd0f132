// INT8 on the GPU against the CPU reference: Q/DQ networks (tests/qdq_graphs.hpp) built for
// cuda, cuda-fp16 and cuda-bf16, whose convolutions and matrix products become fused INT8 steps
// (cuBLASLt's integer product, then kiln's epilogue; or, for NHWC convolutions, cuDNN's graph API
// running the convolution and the whole epilogue), MaxPool of int8 values, and the Quantize/
// DequantizeLinear kernels alone. On the cuBLASLt path the quantized values must equal the
// reference's exactly: every float operation of the epilogue rounds as the reference's does. Each
// INT8 convolution with a cuDNN graph candidate also runs with that candidate forced, then the
// cuBLASLt path forced: cuDNN's epilogue (its own f32 operations, fused multiply-adds among them)
// may round a value lying within one f32 step of a tie the other way, so there at most one output
// in a thousand may be one apart, none further. FP8 networks (the same graphs
// in FP8 E4M3: fused FP8 steps on cuBLASLt's FP8 product) sum in another order, and Hopper's FP8
// tensor cores accumulate with fewer bits than f32 between promotions: their FP8 outputs may
// differ by one FP8 step, on at most 2% of the values, plus 2^-10 of the largest output where the
// sums nearly cancel. Fresh random inputs each run.
#include "../qdq_graphs.hpp"
#include "gpu_check.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

using namespace gpu_test;

namespace {

kiln::plan::Plan build_for(const kiln::Graph& g, Elem el) {
  kiln::build::BuildOptions o;
  o.target = &kiln::plan::target_by_name(plan_precision(el).target);
  o.evaluator = &kiln::reference::constant_evaluator();
  return kiln::build::build_plan(g, o);
}

/// Runs `g` built for `el` on the GPU and by the reference (on the same inputs, rounded through
/// `el`). The output is DQ(Q(v)) with scale `s`: its values, divided by s, are the quantized
/// integers, which must be equal (f32) or equal after the output's rounding to 16 bits (the
/// DQ's output is stored in f16/bf16 there: within half a step of that format).
void check_outputs(Report& report, const std::string& what, const kiln::Graph& g,
                   const kiln::runtime::Engine& engine,
                   const std::map<std::string, kiln::Tensor>& in, const kiln::Tensor& ref, Elem el,
                   double s, bool fp8, bool cudnn_graph);

int graph_runs = 0;  // cases run with the cuDNN graph candidate forced

void check_int8(Report& report, const std::string& what, const kiln::Graph& g, Elem el, double s,
                const char* anchor) {
  const kiln::plan::Plan p = build_for(g, el);
  const bool fp8 = std::string(anchor) == "fp8";
  int fused = 0;
  for (const auto& st : p.steps)
    fused += fp8 ? st.attr_string("pattern", "").rfind("DequantizeLinear+DequantizeLinear+", 0) == 0
                 : *anchor && kiln::as_body(st).parts.at(0).op == anchor;
  report.expect(fmt::format("{} {}: one fused {} step", elem_name(el), what, anchor),
                !*anchor || fused == 1);
  const std::vector<i64> xd = g.inputs.at(0).type.shape.values();
  const auto x = round_to(random_values(numel(xd), -2.5f, 2.5f), el);
  const std::map<std::string, kiln::Tensor> in{{"x", tensor(xd, x)}};
  const auto ref = kiln::reference::Executor(g).run(in).at(g.outputs[0]);
  // The tuned plan, then (INT8 convolutions with a cuDNN graph candidate, whose tactic keys the
  // tuned engine names) each path forced.
  std::vector<std::string> keys;
  const char* forced[] = {"", "cudnn-graph 0 ws 0 ms 0", "cublaslt 0 ws 0 ms 0"};
  for (const char* force : forced) {
    if (*force && keys.empty()) break;
    kiln::plan::Plan fp = p;
    for (const auto& k : keys) fp.tactics[k] = force;
    kiln::runtime::Engine engine(fp);
    const std::string steps = engine.describe();
    if (!*force) {
      std::printf("  %s %s: %s", elem_name(el), what.c_str(), steps.c_str());
      for (const auto& [k, t] : engine.tactics())
        if (k.rfind("int8-conv|", 0) == 0) keys.push_back(k);
    }
    const bool graph = steps.find("int8-conv-cudnn-graph") != std::string::npos;
    const std::string label = what + (*force ? (graph ? " [cudnn graph]" : " [cublaslt]") : "");
    if (std::string(force).rfind("cudnn-graph", 0) == 0) {
      report.expect(fmt::format("{} {}: the forced cuDNN graph runs", elem_name(el), label), graph);
      graph_runs += graph;
    }
    check_outputs(report, label, g, engine, in, ref, el, s, fp8, graph);
  }
}

void check_outputs(Report& report, const std::string& what, const kiln::Graph& g,
                   const kiln::runtime::Engine& engine,
                   const std::map<std::string, kiln::Tensor>& in, const kiln::Tensor& ref, Elem el,
                   double s, bool fp8, bool cudnn_graph) {
  auto ctx = engine.create_context();
  const kiln::Tensor got = kiln::runtime::run_on_gpu(*ctx, in).at(g.outputs[0]);
  std::vector<float> gv(static_cast<std::size_t>(got.numel()));
  i64 off = 0, nonzero = 0, unequal = 0, one_apart = 0;
  double peak = 0, worst = 0;
  for (i64 i = 0; i < ref.numel(); ++i) peak = std::max(peak, std::abs(ref.get(i) / s));
  // f16/bf16 store the DQ output q*s rounded to 11 or 8 bits of mantissa: |q| * 2^-11 or 2^-9
  // at most, well under the 1 a wrong integer would differ by.
  const double rel = el == Elem::f32 ? 0 : el == Elem::f16 ? 1e-3 : 4e-3;
  for (i64 i = 0; i < got.numel(); ++i) {
    gv[static_cast<std::size_t>(i)] = static_cast<float>(got.get(i));
    const double qg = got.get(i) / s, qr = ref.get(i) / s;
    // FP8: one step of E4M3 is 2^-3 of the value (2^-9 among the subnormals).
    const double step =
        fp8 ? std::max(std::abs(qr), std::abs(qg)) * 0.125 + 0x1p-9 + peak * 0x1p-10 : 0;
    worst = std::max(worst, std::abs(qg - qr));
    const double tol = 1e-3 + std::abs(qr) * rel + step;
    const bool within = std::abs(qg - qr) <= tol;
    // cuDNN's epilogue: one apart (within the 16-bit output's rounding of q +- 1) is counted.
    const bool one = !within && cudnn_graph && std::abs(qg - qr) <= 1 + tol;
    one_apart += one;
    off += !within && !one;
    unequal += !(std::abs(qg - qr) <= 1e-3 + std::abs(qr) * rel);
    nonzero += qr != 0;
  }
  if (fp8) {
    report.expect(fmt::format("{} {}: FP8 outputs within one FP8 step of the reference's ({} of {} "
                              "further; {} differ by a step, at most 2%; {} nonzero; largest "
                              "difference {:.3g} of the largest output)",
                              elem_name(el), what, off, got.numel(), unequal, nonzero,
                              worst / std::max(peak, 1e-30)),
                  off == 0 && unequal <= got.numel() / 50 && nonzero > 0);
    return;  // one FP8 step is more than report.check's float tolerances
  }
  if (cudnn_graph) {
    report.expect(fmt::format("{} {}: quantized outputs equal the reference's or are one apart, "
                              "at most 1 in 1000 ({} of {} one apart, {} further; {} nonzero)",
                              elem_name(el), what, one_apart, got.numel(), off, nonzero),
                  off == 0 && one_apart * 1000 <= got.numel() && nonzero > 0);
    return;
  }
  report.expect(fmt::format("{} {}: quantized outputs equal the reference's ({} of {} differ; "
                            "{} nonzero)",
                            elem_name(el), what, off, got.numel(), nonzero),
                off == 0 && nonzero > 0);
  report.check(fmt::format("{} values", what), gv, ref, el);
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  using kiln::test::qdq_conv;
  constexpr kiln::DType kFp8 = kiln::DType::f8e4m3fn;
  for (int e = 0; e < kNumPlanPrecisions; ++e) {
    const Elem el = static_cast<Elem>(e);
    struct Case {
      std::string what;
      kiln::Graph g;
      double s;
      const char* anchor;
    };
    const Case cases[] = {
        {"conv 3x3 16->16 + residual + relu, batch 2", qdq_conv(2, 16, 16, 12, 3, 1, true), 0.05,
         "ConvInteger"},
        {"conv 3x3 3->10 stride 2 (patch 27, channels 10: padded rows)",
         qdq_conv(3, 3, 10, 17, 3, 2, false), 0.05, "ConvInteger"},
        {"conv 1x1 64->32 (NHWC: the input rows as they are)", qdq_conv(2, 64, 32, 7, 1, 1, false),
         0.05, "ConvInteger"},
        {"conv 1x1 32->64 stride 2", qdq_conv(2, 32, 64, 9, 1, 2, false), 0.05, "ConvInteger"},
        {"conv 5x5 8->24 (batch 1)", qdq_conv(1, 8, 24, 15, 5, 1, false), 0.05, "ConvInteger"},
        // A float output (no output Q): stored in the engine's float precision (16-bit there).
        {"conv 3x3 16->32, float output",
         qdq_conv(2, 16, 32, 10, 3, 1, false, kiln::DType::i8, 1, false), 1.0, "ConvInteger"},
        {"matmul 37 -> 10 (k padded)", kiln::test::qdq_matmul(33, 37, 10), 0.04, "MatMulInteger"},
        {"matmul 256 -> 96", kiln::test::qdq_matmul(64, 256, 96), 0.04, "MatMulInteger"},
        {"maxpool of int8", kiln::test::qdq_maxpool(2, 8, 10), 0.02, ""},
        // FP8 E4M3: rows of 16 bytes (patch 27 and 10 channels padded), 1x1 over NHWC rows.
        {"fp8 conv 3x3 16->16 + residual + relu, batch 2",
         qdq_conv(2, 16, 16, 12, 3, 1, true, kFp8), 0.05, "fp8"},
        {"fp8 conv 3x3 3->10 stride 2 (patch 27, channels 10: padded rows)",
         qdq_conv(3, 3, 10, 17, 3, 2, false, kFp8), 0.05, "fp8"},
        {"fp8 conv 1x1 64->32 (NHWC: the input rows as they are)",
         qdq_conv(2, 64, 32, 7, 1, 1, false, kFp8), 0.05, "fp8"},
        {"fp8 conv 5x5 8->24 (batch 1)", qdq_conv(1, 8, 24, 15, 5, 1, false, kFp8), 0.05, "fp8"},
        {"fp8 matmul 37 -> 10 (k padded)", kiln::test::qdq_matmul(33, 37, 10, 2, kFp8), 0.04,
         "fp8"},
        {"fp8 matmul 256 -> 96", kiln::test::qdq_matmul(64, 256, 96, 2, kFp8), 0.04, "fp8"},
    };
    for (const auto& c : cases)
      report.run(c.what, [&] { check_int8(report, c.what, c.g, el, c.s, c.anchor); });
  }
  // The 16-bit targets run INT8 convolutions over NHWC: cuDNN's graph takes those of 4n channels.
  report.expect(fmt::format("the cuDNN INT8 graph ran forced in {} cases", graph_runs),
                graph_runs > 0);
  return report.finish("gpu-int8");
}
