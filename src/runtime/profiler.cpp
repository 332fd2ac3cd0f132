// The profiler: what each step must compute and move (a FLOP and byte model), rooflines, and the
// per-layer table.
#include <algorithm>

#include "check.hpp"
#include "engine_impl.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/runtime/engine.hpp"
#include "kiln/runtime/matmul.hpp"

namespace kiln::runtime {

using detail::i64;

namespace detail {

std::pair<double, double> step_cost(const detail::EngineState& st, const Node& step, i64 batch,
                                    std::byte* arena) {
  double bytes = 0, flops = 0;
  auto numel = [&](const std::string& name) -> double {
    if (name.empty()) return 0;
    const auto v = st.value(name, batch, arena);
    return static_cast<double>(v.numel());
  };
  auto size = [&](const std::string& name) -> double {
    if (name.empty()) return 0;
    const auto v = st.value(name, batch, arena);
    return static_cast<double>(v.numel()) * static_cast<double>(v.elem_size());
  };
  for (const auto& in : step.inputs) bytes += size(in);
  for (const auto& out : step.outputs) bytes += size(out);
  const FusedBody body = as_body(step);
  const Node& a = body.parts.at(0);
  const double out = step.outputs.empty() ? 0 : numel(step.outputs[0]);
  if ((a.op == "Conv" || a.op == "ConvTranspose" || a.op == "ConvInteger") && a.inputs.size() > 1) {
    const auto w = st.value(fused_input_name(step.inputs, a.inputs[1]), batch, arena);
    double per = 1;
    for (std::size_t d = 1; d < w.dims.size(); ++d) per *= static_cast<double>(w.dims[d]);
    if (a.op != "ConvTranspose")
      flops = 2 * out * per;
    else
      flops = 2 * numel(fused_input_name(step.inputs, a.inputs[0])) *
              per;  // each input element meets (K/g)*kh*kw weights
  } else if ((a.op == "Gemm" || a.op == "MatMul" || a.op == "MatMulInteger") &&
             a.inputs.size() > 1) {
    const auto x = st.value(fused_input_name(step.inputs, a.inputs[0]), batch, arena);
    const bool ta = a.op == "Gemm" && a.attr_int("transA", 0) != 0;
    const double k =
        static_cast<double>(x.dims.empty() ? 1 : (ta ? x.dims.front() : x.dims.back()));
    flops = 2 * out * k;
  } else if (a.op == "LSTM" || a.op == "GRU" || a.op == "RNN") {
    const auto x = st.value(fused_input_name(step.inputs, a.inputs[0]), batch, arena);
    const auto r = st.value(fused_input_name(step.inputs, a.inputs[2]), batch, arena);
    if (x.dims.size() == 3 && r.dims.size() == 3)  // r [dirs, G*H, H]
      flops = 2.0 * static_cast<double>(x.dims[0] * x.dims[1] * r.dims[0] * r.dims[1]) *
              static_cast<double>(x.dims[2] + r.dims[2]);
  } else if (a.op == "Attention" && a.inputs.size() > 2) {
    // Q K^T and P V: 2 T (D + Dv) per query row and head = 2 T (numel(Q) + numel(Y)), with T the
    // keys of K ([B, Hkv, T, D] or [B, T, Hkv*D]); a causal mask's savings are not counted.
    const auto k = st.value(fused_input_name(step.inputs, a.inputs[1]), batch, arena);
    const double t = k.dims.size() == 4   ? static_cast<double>(k.dims[2])
                     : k.dims.size() == 3 ? static_cast<double>(k.dims[1])
                                          : 1.0;
    flops = 2 * t * (numel(fused_input_name(step.inputs, a.inputs[0])) + out);
  } else {
    flops = out;
  }
  flops += out * static_cast<double>(body.parts.size() - 1);
  return {flops, bytes};
}

}  // namespace detail

// ---- profiler -----------------------------------------------------------------------------

double Roofline::ms(double flops, double bytes) const {
  if (flops_per_s <= 0 || bytes_per_s <= 0) return 0;
  return 1e3 * std::max(flops / flops_per_s, bytes / bytes_per_s);
}

Roofline measure_roofline(Precision precision, int n) {
  Roofline r;
  Library lib;
  MatmulShape shape;
  shape.m = shape.n = shape.k = n;
  MatmulOptions o;
  o.precision = precision;
  Matmul mm(lib, shape, o);
  const MatmulTactic t = mm.tune();
  r.flops_per_s = 2.0 * n * static_cast<double>(n) * n / (t.ms * 1e-3);
  const std::size_t bytes = std::size_t{512} << 20;
  DeviceBuffer a(bytes), b(bytes);
  a.fill_bytes(0x3c);
  const float ms = detail::time_ms([&] {
    KILN_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr));
  });
  r.bytes_per_s = 2.0 * static_cast<double>(bytes) / (ms * 1e-3);  // read and write
  return r;
}

namespace {

/// Sums the step times of the profiled runs it receives.
class StepSums : public Profiler {
 public:
  void report(std::int64_t /*batch*/, const std::vector<StepTime>& steps) override {
    for (const auto& t : steps) sums[t.name] += t.ms;
    ++runs;
  }
  std::map<std::string, double> sums;
  int runs = 0;
};

}  // namespace

EngineTiming time_engine(const Engine& engine, int runs) {
  runs = std::max(runs, 1);
  auto ctx = engine.create_context();
  std::vector<DeviceBuffer> buffers;
  Bindings bindings;
  auto bind = [&](const ValueInfo& vi, bool input) {
    std::size_t n = dtype_size(vi.type.dtype);
    for (std::size_t d = 0; d < vi.type.shape.rank(); ++d)
      n *= static_cast<std::size_t>(vi.type.shape[d].is_fixed() ? vi.type.shape[d].value()
                                    : d == 0                    ? engine.max_batch()
                                                                : 1);
    buffers.emplace_back(std::max<std::size_t>(n, 1));
    // 0x3c in every byte: about 1.06 in FP16, 0.0115 in FP32, 60 in INT8; finite everywhere.
    if (input) buffers.back().fill_bytes(0x3c);
    bindings[vi.name] = buffers.back().get();
  };
  for (const auto& vi : engine.inputs()) bind(vi, true);
  for (const auto& vi : engine.outputs()) bind(vi, false);
  EngineTiming t;
  ctx->execute(bindings);  // warm up (and time any tactic not timed yet)
  StepSums sums;
  ctx->set_profiler(&sums);
  for (int i = 0; i < runs; ++i) ctx->execute(bindings);
  ctx->set_profiler(nullptr);
  for (const auto& [name, ms] : sums.sums) t.step_ms[name] = ms / std::max(sums.runs, 1);
  ctx->set_cuda_graph(true);
  const auto stream = reinterpret_cast<cudaStream_t>(ctx->stream());
  for (int i = 0; i < 3; ++i) ctx->execute(bindings);
  cudaEvent_t start = nullptr, stop = nullptr;
  KILN_CHECK(cudaEventCreate(&start));
  KILN_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(static_cast<std::size_t>(runs), 0.f);
  for (auto& m : ms) {
    cudaEventRecord(start, stream);
    ctx->enqueue(bindings, ctx->stream());
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    cudaEventElapsedTime(&m, start, stop);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  t.ms = ms[ms.size() / 2];
  return t;
}

void TraceProfiler::report(std::int64_t /*batch*/, const std::vector<StepTime>& steps) {
  runs_.push_back(steps);
}

std::string TraceProfiler::table(std::size_t top) const {
  if (runs_.empty()) return "no profiled runs\n";
  const auto& first = runs_.front();
  std::vector<double> mean(first.size(), 0.0);
  for (const auto& r : runs_)
    for (std::size_t i = 0; i < r.size() && i < mean.size(); ++i) mean[i] += r[i].ms;
  double total = 0;
  for (auto& m : mean) total += (m /= static_cast<double>(runs_.size()));
  std::vector<std::size_t> order(mean.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return mean[a] > mean[b]; });
  if (top != 0 && order.size() > top) order.resize(top);
  const bool roof = roofline_.flops_per_s > 0 && roofline_.bytes_per_s > 0;
  std::string s = fmt::format("{:>4}  {:<32} {:<26} {:<12} {:>10} {:>7}", "step", "name", "op",
                              "kind", "mean ms", "share");
  if (roof) s += fmt::format(" {:>9} {:>9} {:>11} {:>8}", "GFLOP", "MB", "roofline ms", "x roof");
  s += "\n";
  double roof_total = 0;
  for (std::size_t i = 0; i < first.size(); ++i)
    roof_total += roofline_.ms(first[i].flops, first[i].bytes);
  for (auto i : order) {
    s += fmt::format("{:>4}  {:<32} {:<26} {:<12} {:>10.4f} {:>6.1f}%", i,
                     first[i].name.substr(0, 32), first[i].op.substr(0, 26), first[i].kind, mean[i],
                     total > 0 ? 100.0 * mean[i] / total : 0.0);
    if (roof) {
      const double r = roofline_.ms(first[i].flops, first[i].bytes);
      s += fmt::format(" {:>9.4f} {:>9.3f} {:>11.4f} {:>7.1f}x", first[i].flops / 1e9,
                       first[i].bytes / 1e6, r, r > 0 ? mean[i] / r : 0.0);
    }
    s += "\n";
  }
  if (roof)
    s += fmt::format(
        "roofline: {:.1f} TFLOP/s (matrix product), {:.0f} GB/s (device copy); all steps at the "
        "roofline "
        "{:.4f} ms\n",
        roofline_.flops_per_s / 1e12, roofline_.bytes_per_s / 1e9, roof_total);
  s += fmt::format("total {:.4f} ms over {} steps (mean of {} runs)\n", total, mean.size(),
                   runs_.size());
  return s;
}

}  // namespace kiln::runtime
