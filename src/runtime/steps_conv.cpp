// Convolution, deconvolution and matrix-product steps: cuDNN and cuBLASLt with what they fuse
// (bias, ReLU, residual add; bias and ReLU/GELU epilogues), the rest of a fused step's tail as a
// pointwise chain in place over the output.
#include <cinttypes>
#include <cstdlib>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>

#include "check.hpp"
#include "conv.hpp"
#include "copy.cuh"
#include "layout.cuh"
#include "kiln/runtime/matmul.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

std::string prec_name(Precision p) { return p == Precision::f16 ? "f16" : "f32"; }

/// Explicit pads of a spatial op: ONNX pads (begin..., end...) or auto_pad from the output size.
struct Pads {
  std::vector<i64> begin, end;
};
Pads spatial_pads(const Node& n, const std::vector<i64>& in, const std::vector<i64>& out,
                  const std::vector<i64>& kernel, const std::vector<i64>& strides,
                  const std::vector<i64>& dil) {
  const std::size_t r = kernel.size();
  Pads p{std::vector<i64>(r, 0), std::vector<i64>(r, 0)};
  const std::string autopad = n.attr_string("auto_pad", "NOTSET");
  if (autopad == "NOTSET") {
    const auto pads = n.attr_ints("pads", std::vector<i64>(2 * r, 0));
    if (pads.size() != 2 * r) throw ShapeError(fmt::format("{}expected {} pads, got {}", n.where(), 2 * r, pads.size()));
    for (std::size_t d = 0; d < r; ++d) p.begin[d] = pads[d], p.end[d] = pads[r + d];
    return p;
  }
  if (autopad == "VALID") return p;
  for (std::size_t d = 0; d < r; ++d) {
    const i64 total = std::max<i64>(0, (out[d] - 1) * strides[d] + dil[d] * (kernel[d] - 1) + 1 - in[d]);
    const i64 small = total / 2;
    p.begin[d] = autopad == "SAME_LOWER" ? total - small : small;
    p.end[d] = total - p.begin[d];
  }
  return p;
}

/// The tail of a conv or gemm step: what the library fuses and what is left for a chain.
struct Tail {
  bool residual = false;
  std::string residual_name;
  std::optional<Unary> act;
  std::vector<Node> rest;  // parts left for a pointwise chain (in order)
};

/// Splits parts[1..] into [Add of a same-shaped value]? [one unary activation]? and the rest.
Tail split_tail(const StepEnv& env, const FusedBody& body, const DeviceValue& y, bool allow_residual) {
  Tail t;
  std::string running = body.parts[0].outputs.at(0);
  std::size_t i = 1;
  const auto& parts = body.parts;
  if (allow_residual && i < parts.size() && (parts[i].op == "Add" || parts[i].op == "Sum") && parts[i].inputs.size() == 2) {
    const auto& p = parts[i];
    const int at = p.inputs[0] == running ? 0 : (p.inputs[1] == running ? 1 : -1);
    if (at >= 0 && p.inputs[1 - at] != running) {
      const DeviceValue r = env.value(fused_input_name(env.node.inputs, p.inputs[1 - at]));
      if (!r.host && r.dims == y.dims && r.strides == y.strides && r.half == y.half) {
        t.residual = true;
        t.residual_name = r.name;
        running = p.outputs.at(0);
        ++i;
      }
    }
  }
  if (i < parts.size() && parts[i].inputs.size() >= 1 && parts[i].inputs[0] == running) {
    if (auto u = unary_of(env, parts[i])) {
      t.act = u;
      running = parts[i].outputs.at(0);
      ++i;
    }
  }
  for (; i < parts.size(); ++i) t.rest.push_back(parts[i]);
  return t;
}

/// The output name that the tail's first part reads as its running value.
std::string tail_running(const FusedBody& body, const Tail& t) {
  const std::size_t first = body.parts.size() - t.rest.size();
  return body.parts[first - 1].outputs.at(0);
}

// ---- convolution -------------------------------------------------------------------------

class ConvStep final : public Step {
 public:
  ConvStep(const StepEnv& env, const FusedBody& body)
      : env_lib_(env.lib), where_(env.node.where()), log_([&st = env.engine](Severity s, const std::string& m) { st.log(s, m); }) {
    const Node& n = env.node;
    const Node& c = body.parts[0];
    deconv_ = c.op == "ConvTranspose";
    x_ = env.value(fused_input_name(n.inputs, c.inputs.at(0)));
    const DeviceValue w = env.value(fused_input_name(n.inputs, c.inputs.at(1)));
    y_ = env.value(n.outputs.at(0));
    if (!w.host) unsupported(n, "a convolution whose filter is computed at run time");
    const std::size_t r = x_.dims.size();
    if (r != 3 && r != 4) unsupported(n, fmt::format("{}-D convolution", r - 2));
    const bool nhwc = y_.nhwc();
    if (x_.nhwc() != nhwc) throw GraphError(fmt::format("{}input {} and output {} differ in layout (the plan lacks a conversion)", n.where(), x_.describe(), y_.describe()));
    if (!nhwc && !x_.contiguous()) unsupported(n, "a strided convolution input");
    const Precision prec = y_.half ? Precision::f16 : Precision::f32;
    if (x_.half != y_.half) unsupported(n, "a convolution between precisions");

    // Shape (1-D as H = 1).
    const auto& wd = w.dims;
    std::vector<i64> in(x_.dims.begin() + 2, x_.dims.end()), out(y_.dims.begin() + 2, y_.dims.end());
    std::vector<i64> kernel(wd.begin() + 2, wd.end());
    const auto strides = c.attr_ints("strides", std::vector<i64>(r - 2, 1));
    const auto dil = c.attr_ints("dilations", std::vector<i64>(r - 2, 1));
    const i64 groups = c.attr_int("group", 1);
    Pads pads;
    if (deconv_) {
      const auto p = c.attr_ints("pads", std::vector<i64>(2 * (r - 2), 0));
      if (c.attr_string("auto_pad", "NOTSET") != "NOTSET" || !c.attr_ints("output_shape", {}).empty()) {
        // Pads from the output size: total = stride*(in-1) + out_pad + dil*(k-1) + 1 - out.
        const auto op = c.attr_ints("output_padding", std::vector<i64>(r - 2, 0));
        pads = {std::vector<i64>(r - 2), std::vector<i64>(r - 2)};
        for (std::size_t d = 0; d < r - 2; ++d) {
          const i64 total = strides[d] * (in[d] - 1) + op[d] + dil[d] * (kernel[d] - 1) + 1 - out[d];
          pads.begin[d] = c.attr_string("auto_pad", "NOTSET") == "SAME_UPPER" ? total / 2 : total - total / 2;
          pads.end[d] = total - pads.begin[d];
        }
      } else {
        pads = {std::vector<i64>(p.begin(), p.begin() + (r - 2)), std::vector<i64>(p.begin() + (r - 2), p.end())};
      }
    } else {
      pads = spatial_pads(c, in, out, kernel, strides, dil);
    }
    auto at = [&](const std::vector<i64>& v, std::size_t d2) { return r == 3 ? (d2 == 0 ? i64{1} : v[0]) : v[d2]; };
    auto at0 = [&](const std::vector<i64>& v, std::size_t d2) { return r == 3 ? (d2 == 0 ? i64{0} : v[0]) : v[d2]; };
    shape_.n = static_cast<int>(x_.dims[0]);
    shape_.c = static_cast<int>(x_.dims[1]);
    shape_.h = static_cast<int>(at(in, 0));
    shape_.w = static_cast<int>(at(in, 1));
    shape_.k = static_cast<int>(deconv_ ? wd[1] * groups : wd[0]);
    shape_.kh = static_cast<int>(at(kernel, 0));
    shape_.kw = static_cast<int>(at(kernel, 1));
    shape_.stride_h = static_cast<int>(at(strides, 0));
    shape_.stride_w = static_cast<int>(at(strides, 1));
    shape_.dil_h = static_cast<int>(at(dil, 0));
    shape_.dil_w = static_cast<int>(at(dil, 1));
    shape_.groups = static_cast<int>(groups);
    const i64 pt = at0(pads.begin, 0), pl = at0(pads.begin, 1), pb = at0(pads.end, 0), pr = at0(pads.end, 1);
    if (pt == pb && pl == pr) {
      shape_.pad_h = static_cast<int>(pt);
      shape_.pad_w = static_cast<int>(pl);
    } else if (deconv_) {
      unsupported(n, fmt::format("ConvTranspose with asymmetric pads {}", dims_to_string(c.attr_ints("pads", {}))));
    } else {
      // Asymmetric: pad the input explicitly into the workspace, convolve without padding.
      pad_begin_ = {0, 0, pt, pl};
      padded_dims_ = {x_.dims[0], x_.dims[1], shape_.h + pt + pb, shape_.w + pl + pr};
      shape_.h = static_cast<int>(padded_dims_[2]);
      shape_.w = static_cast<int>(padded_dims_[3]);
      pad_bytes_ = static_cast<std::size_t>(product(padded_dims_)) * x_.elem_size();
      pad_bytes_ = (pad_bytes_ + 255) / 256 * 256;
    }
    if (deconv_) {
      const auto op = c.attr_ints("output_padding", std::vector<i64>(r - 2, 0));
      shape_.out_pad_h = static_cast<int>(at0(op, 0));
      shape_.out_pad_w = static_cast<int>(at0(op, 1));
    }

    // Weights: FP16 and channels-last as the step runs.
    const bool half = prec == Precision::f16;
    const Tensor& wt = *w.host;
    const auto wf = host_floats(wt);
    const i64 k0 = wd[0], k1 = wd[1], sp = r == 4 ? wd[2] * wd[3] : wd[2];
    std::vector<float> perm = wf;
    if (nhwc) {  // [k0, k1, sp] -> [k0, sp, k1]
      for (i64 a = 0; a < k0; ++a)
        for (i64 b = 0; b < k1; ++b)
          for (i64 s = 0; s < sp; ++s) perm[(a * sp + s) * k1 + b] = wf[(a * k1 + b) * sp + s];
    }
    auto bytes = to_device_format(perm.data(), wt.numel(), half);
    w_ = env.engine.weights.get(fmt::format("conv:{}:{}:{}", w.name, nhwc, half), bytes.size(),
                                [&](DeviceBuffer& b) { b.upload(bytes.data(), bytes.size()); });
    if (c.inputs.size() > 2 && !c.inputs[2].empty()) {
      const DeviceValue bv = env.value(fused_input_name(n.inputs, c.inputs[2]));
      if (!bv.host) unsupported(n, "a convolution whose bias is computed at run time");
      bias_ = env.engine.weight(bv.name);
    }

    tail_ = split_tail(env, body, y_, !deconv_);
    if (tail_.residual) residual_ = env.value(tail_.residual_name).ptr;
    ConvOptions o;
    o.precision = prec;
    o.layout = nhwc ? Layout::nhwc : Layout::nchw;
    o.allow_tf32 = env.engine.options.allow_tf32;
    o.workspace_limit = env.engine.options.workspace_limit;
    o.residual = tail_.residual;
    if (tail_.act) o.activation = tail_.act->act, o.act_alpha = tail_.act->alpha, o.act_beta = tail_.act->beta;
    opt_ = o;
    if (deconv_) {
      deconv_layer_ = std::make_unique<Deconvolution>(env.lib, shape_, o);
    } else {
      // cuDNN's graph API first (its fused engines), the legacy API where it has none.
      static const char* api = std::getenv("KILN_CONV_API");  // "legacy" or "graph": diagnosis
      const bool graph_allowed = !(api && std::string(api) == "legacy");
      if (graph_allowed && GraphConvolution::fusable(o)) {
        try {
          graph_ = std::make_unique<GraphConvolution>(env.lib, shape_, o, bias_ != nullptr);
        } catch (const UnsupportedError& e) {
          env.engine.log(Severity::verbose, fmt::format("{}legacy cuDNN API: {}", n.where(), e.what()));
        }
      }
      if (!graph_) conv_ = std::make_unique<Convolution>(env.lib, shape_, o);
    }
    const auto od = deconv_ ? deconv_layer_->output_dims() : graph_ ? graph_->output_dims() : conv_->output_dims();
    const std::vector<i64> got = {od[0], od[1], od[2], od[3]};
    const std::vector<i64> want = r == 4 ? y_.dims : std::vector<i64>{y_.dims[0], y_.dims[1], 1, y_.dims[2]};
    if (got != want)
      throw ShapeError(fmt::format("{}cuDNN computes {} for the output, the plan has {}", n.where(), dims_to_string(got), dims_to_string(want)));
    if (!tail_.rest.empty()) chain_ = std::make_unique<Chain>(env, tail_.rest, tail_running(body, tail_), n.inputs, y_);
    key_ = fmt::format("{}|n{} c{} {}x{} k{} {}x{} p{},{} s{},{} d{},{} g{} op{},{}|{}|{}|{}|res{}|tf32 {}|ws {}",
                       deconv_ ? "deconv" : "conv", shape_.n, shape_.c, shape_.h, shape_.w, shape_.k, shape_.kh,
                       shape_.kw, shape_.pad_h, shape_.pad_w, shape_.stride_h, shape_.stride_w, shape_.dil_h,
                       shape_.dil_w, shape_.groups, shape_.out_pad_h, shape_.out_pad_w, prec_name(prec),
                       nhwc ? "nhwc" : "nchw", static_cast<int>(o.activation), o.residual, o.allow_tf32,
                       o.workspace_limit);
  }

  void run(const RunArgs& a) override {
    const void* x = x_.ptr;
    void* ws = a.workspace;
    if (pad_bytes_) {
      const std::vector<i64> in_phys = x_.nhwc() ? std::vector<i64>{x_.dims[0], x_.dims[2], x_.dims[3], x_.dims[1]} : x_.dims;
      const std::vector<i64> out_phys = x_.nhwc() ? std::vector<i64>{padded_dims_[0], padded_dims_[2], padded_dims_[3], padded_dims_[1]} : padded_dims_;
      const std::vector<i64> begin = x_.nhwc() ? std::vector<i64>{0, pad_begin_[2], pad_begin_[3], 0} : pad_begin_;
      KILN_CHECK(kernels::pad(x_.elem_size(), kernels::PadMode::constant, to_dims(in_phys), to_dims(out_phys),
                              begin.data(), 0, x_.ptr, a.workspace, a.stream));
      x = a.workspace;
      ws = static_cast<std::byte*>(a.workspace) + pad_bytes_;
    }
    if (gemm_) run_gemm(x, y_.ptr, ws, a.stream);
    else if (deconv_) deconv_layer_->forward(x, w_, bias_, residual_, y_.ptr, ws, a.stream);
    else if (graph_) graph_->forward(x, w_, bias_, residual_, y_.ptr, ws, a.stream);
    else conv_->forward(x, w_, bias_, residual_, y_.ptr, ws, a.stream);
    if (chain_) chain_->run(nullptr, a.stream);
  }
  std::size_t workspace() const override {
    if (gemm_) return pad_bytes_ + col_bytes() + gemm_->workspace_bytes();
    return pad_bytes_ + (deconv_ ? deconv_layer_->workspace_bytes()
                                 : graph_ ? graph_->workspace_bytes() : conv_->workspace_bytes());
  }
  std::string kind() const override {
    return gemm_ ? (direct_gemm() ? "cublaslt-1x1" : "im2col-cublaslt") : deconv_ ? "cudnn-deconv" : graph_ ? "cudnn-graph" : "cudnn-conv";
  }
  std::string tactic_key() const override { return key_; }

  /// A convolution in NCHW is a batched matrix product over im2col columns,
  /// y[n] (K x OH*OW) = W (K x C*kh*kw) . col[n] (C*kh*kw x OH*OW), and a 1x1 one without padding
  /// or stride needs no columns (col[n] is x[n]). cuBLASLt's split-K kernels beat cuDNN's FP32
  /// kernels where OH*OW is small (batch 1). Bias and activation follow as one pointwise kernel.
  bool direct_gemm() const {
    return shape_.kh == 1 && shape_.kw == 1 && shape_.stride_h == 1 && shape_.stride_w == 1 && shape_.pad_h == 0 &&
           shape_.pad_w == 0;
  }
  std::size_t col_bytes() const {
    if (direct_gemm()) return 0;
    const auto od = out_dims();
    const std::size_t b = std::size_t(shape_.n) * shape_.c * shape_.kh * shape_.kw * od[2] * od[3] * element_size(opt_.precision);
    return (b + 255) / 256 * 256;
  }
  std::array<int, 4> out_dims() const { return graph_ ? graph_->output_dims() : conv_ ? conv_->output_dims() : std::array<int, 4>{}; }
  bool gemm_eligible() const {
    return !deconv_ && !x_.nhwc() && shape_.groups == 1 && !opt_.residual && pad_bytes_ == 0 &&
           (graph_ || conv_) && col_bytes() <= opt_.workspace_limit;
  }
  void make_gemm() {
    const auto od = out_dims();
    MatmulShape m;
    m.batch = shape_.n;
    m.m = shape_.k;
    m.n = std::int64_t{od[2]} * od[3];
    m.k = std::int64_t{shape_.c} * shape_.kh * shape_.kw;
    m.stride_a = 0;
    m.stride_b = m.k * m.n;
    m.stride_c = m.m * m.n;
    MatmulOptions o;
    o.precision = opt_.precision;
    o.allow_tf32 = opt_.allow_tf32;
    o.workspace_limit = std::min<std::size_t>(opt_.workspace_limit, std::size_t{64} << 20);
    gemm_ = std::make_unique<Matmul>(env_lib_, m, o);
    epi_ = kernels::PointwiseChain{};
    epi_.dims = to_dims({shape_.n, shape_.k, m.n});
    epi_.x_strides = kernels::contiguous_strides(epi_.dims);
    if (bias_) {
      auto& st = epi_.step[epi_.steps++];
      st.kind = kernels::PointwiseStep::binary;
      st.op = static_cast<int>(kernels::Binary::add);
      st.operand = bias_;
      st.strides = to_strides({0, 1, 0});
    }
    if (opt_.activation != kernels::Activation::identity) {
      auto& st = epi_.step[epi_.steps++];
      st.op = static_cast<int>(opt_.activation);
      st.alpha = opt_.act_alpha;
      st.beta = opt_.act_beta;
    }
  }
  void run_gemm(const void* x, void* y, void* ws, Stream s) const {
    if (!direct_gemm()) {
      const auto od = out_dims();
      kernels::Im2col g;
      g.n = shape_.n, g.c = shape_.c, g.h = shape_.h, g.w = shape_.w, g.kh = shape_.kh, g.kw = shape_.kw;
      g.pad_h = shape_.pad_h, g.pad_w = shape_.pad_w, g.stride_h = shape_.stride_h, g.stride_w = shape_.stride_w;
      g.dil_h = shape_.dil_h, g.dil_w = shape_.dil_w, g.out_h = od[2], g.out_w = od[3];
      KILN_CHECK(kernels::im2col(element_size(opt_.precision), g, x, ws, s));
      x = ws;
      ws = static_cast<std::byte*>(ws) + col_bytes();
    }
    gemm_->run(w_, x, nullptr, y, ws, s);
    if (epi_.steps) KILN_CHECK(kernels::pointwise_chain(y_.elem(), epi_, y, y, s));
  }

  std::string tune() override {
    std::string best = tune_cudnn();
    if (!gemm_eligible()) return best;
    char kind[16] = {};
    int idx = 0;
    unsigned long long ws = 0;
    float ms = -1;
    std::sscanf(best.c_str(), "%15s %d ws %llu ms %f", kind, &idx, &ws, &ms);
    try {
      make_gemm();
      const MatmulTactic t = gemm_->tune();
      // The whole path (product and epilogue) on scratch buffers.
      const std::size_t es = element_size(opt_.precision);
      DeviceBuffer x(std::size_t(shape_.n) * shape_.c * shape_.h * shape_.w * es), y(std::size_t(shape_.n) * shape_.k * shape_.h * shape_.w * es);
      DeviceBuffer wsb(col_bytes() + gemm_->workspace_bytes());
      x.fill_bytes(0x3c);
      const float total = time_ms([&] { run_gemm(x.get(), y.get(), wsb.get(), nullptr); });
      if (ms < 0 || total < ms) return fmt::format("gemm {} ws {} ms {:.5f}", t.index, t.workspace, total);
    } catch (const Error& e) {
      log_(Severity::info, fmt::format("{}1x1 as a matrix product: {}", where_, e.what()));
    }
    gemm_.reset();
    return best;
  }

  std::string tune_cudnn() {
    if (deconv_) return encode("algo", deconv_layer_->tune());
    if (graph_) {
      // Both APIs' candidates are timed; the faster wins (cuDNN's graph engines win on tensor
      // cores, its legacy FMA kernels can win in FP32).
      std::optional<ConvTactic> g, l;
      std::unique_ptr<Convolution> legacy;
      try {
        legacy = std::make_unique<Convolution>(env_lib_, shape_, opt_);
        // FP32: the legacy FMA kernels compete (they often win without tensor cores). FP16: the
        // legacy API is only the reference that the graph engines are checked against.
        if (opt_.precision == Precision::f32) l = legacy->tune();
      } catch (const Error&) {
        legacy.reset();
      }
      try {
        std::optional<ConvTactic> checked;
        if (legacy) {
          try {
            checked = tune_graph_checked(*legacy);
          } catch (const UnsupportedError&) {
            throw;
          } catch (const Error& e) {
            // The legacy API could not compute the reference (it refuses some large shapes).
            log_(Severity::info, fmt::format("{}graph engines timed unchecked: {}", where_, e.what()));
          }
        }
        g = checked ? *checked : graph_->tune();
      } catch (const UnsupportedError&) {
      }
      if (g && (!l || g->ms <= l->ms)) {
        graph_->set_tactic(*g);
        return encode("graph", *g);
      }
      if (!l && legacy) l = legacy->tune();
      if (!l) throw Error("[Conv] neither cuDNN API has an algorithm for this convolution");
      graph_.reset();
      conv_ = std::move(legacy);
      return encode("algo", *l);
    }
    return encode("algo", conv_->tune());
  }
  void set_tactic(const std::string& text) override {
    ConvTactic t;
    char kind[16] = {};
    unsigned long long ws = 0;
    if (std::sscanf(text.c_str(), "%15s %d ws %llu ms %f", kind, &t.algorithm, &ws, &t.ms) != 4) return;  // keep the heuristic's
    t.workspace = static_cast<std::size_t>(ws);
    if (t.workspace > opt_.workspace_limit) return;
    if (deconv_) return deconv_layer_->set_tactic(t);
    if (std::string(kind) == "gemm" && gemm_eligible()) {
      make_gemm();
      gemm_->set_tactic({t.algorithm, t.workspace, t.ms});
      return;
    }
    if (std::string(kind) == "graph" && graph_) return graph_->set_tactic(t);
    if (std::string(kind) == "algo") {
      use_legacy();
      conv_->set_tactic(t);
    }
  }
  std::string tactic() const override {
    if (gemm_) return fmt::format("cuBLASLt heuristic #{}, workspace {} bytes, {:.4f} ms", gemm_->tactic().index,
                                  gemm_->tactic().workspace, gemm_->tactic().ms);
    if (graph_) {
      const ConvTactic& t = graph_->tactic();
      return fmt::format("graph engine #{}, workspace {} bytes, {:.4f} ms, one graph: conv{}{}{}", t.algorithm,
                         t.workspace, t.ms, bias_ ? "+bias" : "", opt_.residual ? "+add" : "",
                         opt_.activation != kernels::Activation::identity ? "+activation" : "");
    }
    const ConvTactic& t = deconv_ ? deconv_layer_->tactic() : conv_->tactic();
    return t.describe();
  }

 private:
  static std::string encode(const char* kind, const ConvTactic& t) {
    return fmt::format("{} {} ws {} ms {:.5f}", kind, t.algorithm, t.workspace, t.ms);
  }
  /// Times the graph API's engines on random data, each checked against the legacy API's
  /// output on the same data: an engine that computes something else is never chosen.
  ConvTactic tune_graph_checked(const Convolution& legacy) {
    const std::size_t es = element_size(opt_.precision);
    const std::size_t nx = std::size_t(shape_.n) * shape_.c * shape_.h * shape_.w;
    const std::size_t nw = std::size_t(shape_.k) * (shape_.c / shape_.groups) * shape_.kh * shape_.kw;
    const auto od = legacy.output_dims();
    const std::size_t ny = std::size_t(od[0]) * od[1] * od[2] * od[3];
    const double wscale = 1.0 / std::sqrt(static_cast<double>(std::max<std::size_t>(1, nw / std::max(1, shape_.k))));
    auto random = [&](std::size_t n, double scale, std::uint64_t seed) {
      // A block of random values, tiled: distinct enough to catch layout and indexing errors.
      const std::size_t block = std::min<std::size_t>(n, 1 << 20);
      std::vector<float> v(block);
      std::uint64_t st = seed;
      for (auto& f : v) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        f = static_cast<float>(((static_cast<double>(st >> 11) / 9007199254740992.0) * 2 - 1) * scale);
      }
      auto bytes = to_device_format(v.data(), static_cast<i64>(block), opt_.precision == Precision::f16);
      DeviceBuffer b(std::max<std::size_t>(n * es, 16));
      for (std::size_t at = 0; at < n; at += block) {
        const std::size_t take = std::min(block, n - at);
        KILN_CHECK(cudaMemcpy(static_cast<std::byte*>(b.get()) + at * es, bytes.data(), take * es, cudaMemcpyHostToDevice));
      }
      return b;
    };
    DeviceBuffer x = random(nx, 1.0, 1), w = random(nw, wscale, 2), b = random(shape_.k, 0.5, 3);
    DeviceBuffer r = random(ny, 1.0, 4), y(std::max<std::size_t>(ny * es, 16)), yref(std::max<std::size_t>(ny * es, 16));
    DeviceBuffer ws(legacy.workspace_bytes());
    const void* pb = bias_ ? b.get() : nullptr;
    const void* pr = opt_.residual ? r.get() : nullptr;
    legacy.forward(x.get(), w.get(), pb, pr, yref.get(), ws.get(), nullptr);
    KILN_CHECK(cudaDeviceSynchronize());
    // The first images' outputs are compared (enough to catch an engine that indexes wrongly,
    // and cheap at large batches).
    const std::size_t nc = std::min<std::size_t>(ny, std::size_t{1} << 22);
    auto host = [&](const DeviceBuffer& d) { return download_floats(d.get(), static_cast<i64>(nc), es == 2); };
    const std::vector<float> ref = host(yref);
    double scale = 0;
    for (float v : ref) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    const double tol = opt_.precision == Precision::f16 ? 1e-2 : 1e-4;
    GraphConvolution::TuneData data{x.get(), w.get(), pb, pr, y.get(), [&](int candidate) {
      const std::vector<float> got = host(y);
      double err = 0;
      for (std::size_t i = 0; i < nc; ++i) {
        const double e = std::fabs(static_cast<double>(got[i]) - ref[i]);
        err = std::isfinite(e) ? std::max(err, e) : INFINITY;
      }
      const bool ok = err <= tol * std::max(scale, 1e-6);
      if (!ok) log_(Severity::warning, fmt::format("{}cuDNN graph engine candidate {} disagrees with the legacy API "
                                                   "(max|diff| {:.3g}, max|ref| {:.3g}); not used", where_, candidate, err, scale));
      return ok;
    }};
    return graph_->tune(&data);
  }

  void use_legacy() {
    graph_.reset();
    if (!conv_) conv_ = std::make_unique<Convolution>(env_lib_, shape_, opt_);
  }
  const Library& env_lib_;
  std::string where_;
  std::function<void(Severity, const std::string&)> log_;
  bool deconv_ = false;
  DeviceValue x_, y_;
  ConvShape shape_;
  ConvOptions opt_;
  const void* w_ = nullptr;
  const void* bias_ = nullptr;
  const void* residual_ = nullptr;
  Tail tail_;
  std::unique_ptr<Convolution> conv_;
  std::unique_ptr<GraphConvolution> graph_;
  std::unique_ptr<Deconvolution> deconv_layer_;
  std::unique_ptr<Matmul> gemm_;
  kernels::PointwiseChain epi_;
  std::unique_ptr<Chain> chain_;
  std::vector<i64> pad_begin_, padded_dims_;
  std::size_t pad_bytes_ = 0;
  std::string key_;
};

// ---- matrix products ---------------------------------------------------------------------

class GemmStep final : public Step {
 public:
  GemmStep(const StepEnv& env, const FusedBody& body) {
    const Node& n = env.node;
    const Node& g = body.parts[0];
    const DeviceValue a = env.value(fused_input_name(n.inputs, g.inputs.at(0)));
    const DeviceValue b = env.value(fused_input_name(n.inputs, g.inputs.at(1)));
    y_ = env.value(n.outputs.at(0));
    if (a.half != y_.half || b.half != y_.half) unsupported(n, "a matrix product between precisions");
    if (!a.contiguous() || !b.contiguous() || !y_.contiguous()) unsupported(n, "strided matrix operands");
    a_ = pointer_of(env, a);
    b_ = pointer_of(env, b);
    MatmulShape s;
    MatmulOptions o;
    o.precision = y_.half ? Precision::f16 : Precision::f32;
    o.allow_tf32 = env.engine.options.allow_tf32;
    o.workspace_limit = std::min<std::size_t>(env.engine.options.workspace_limit, std::size_t{64} << 20);
    if (g.op == "Gemm") {
      if (a.dims.size() != 2 || b.dims.size() != 2) unsupported(n, "Gemm of other than 2-D operands");
      s.trans_a = g.attr_int("transA", 0) != 0;
      s.trans_b = g.attr_int("transB", 0) != 0;
      s.m = s.trans_a ? a.dims[1] : a.dims[0];
      s.k = s.trans_a ? a.dims[0] : a.dims[1];
      s.n = s.trans_b ? b.dims[0] : b.dims[1];
      o.alpha = static_cast<float>(g.attr_float("alpha", 1.0));
      const double beta = g.attr_float("beta", 1.0);
      if (g.inputs.size() > 2 && !g.inputs[2].empty() && beta != 0.0) {
        const DeviceValue c = env.value(fused_input_name(n.inputs, g.inputs[2]));
        if (c.host && c.numel() == s.n && (c.dims.size() == 1 || c.dims[0] == 1)) {
          // A bias row: the epilogue adds it (scaled by beta on the host).
          auto v = host_floats(*c.host);
          for (auto& x : v) x = static_cast<float>(x * beta);
          auto bytes = to_device_format(v.data(), s.n, y_.half);
          bias_ = env.engine.weights.get(fmt::format("gemm-bias:{}:{}:{}", c.name, beta, y_.half), bytes.size(),
                                         [&](DeviceBuffer& buf) { buf.upload(bytes.data(), bytes.size()); });
          o.bias = true;
        } else {
          // C broadcast into Y first, then Y = alpha A B + beta Y.
          c_ = c;
          c_ptr_ = pointer_of(env, c);
          o.beta = static_cast<float>(beta);
        }
      }
    } else {  // MatMul, NumPy semantics
      std::vector<i64> ad = a.dims, bd = b.dims;
      if (ad.size() == 1) ad.insert(ad.begin(), 1);
      if (bd.size() == 1) bd.push_back(1);
      s.m = ad[ad.size() - 2];
      s.k = ad.back();
      s.n = bd.back();
      const i64 batch_a = product(std::vector<i64>(ad.begin(), ad.end() - 2));
      const i64 batch_b = product(std::vector<i64>(bd.begin(), bd.end() - 2));
      if (batch_b == 1) {
        s.m *= batch_a;  // B shared by every row block: one product
      } else if (batch_a == batch_b && std::vector<i64>(ad.begin(), ad.end() - 2) == std::vector<i64>(bd.begin(), bd.end() - 2)) {
        s.batch = batch_a;
      } else if (batch_a == 1) {
        s.batch = batch_b;
        s.stride_a = 0;
      } else {
        unsupported(n, fmt::format("MatMul broadcasting {} with {}", a.describe(), b.describe()));
      }
    }
    tail_ = split_tail(env, body, y_, false);
    if (tail_.act && o.beta == 0.f) {
      if (tail_.act->act == kernels::Activation::relu) o.epilogue = Epilogue::relu;
      else if (tail_.act->act == kernels::Activation::gelu_tanh) o.epilogue = Epilogue::gelu_tanh;
    }
    if (tail_.act && o.epilogue == Epilogue::none) {
      // Not an epilogue cuBLASLt has: the activation goes to the chain.
      std::vector<Node> rest;
      rest.push_back(body.parts[1]);
      for (auto& p : tail_.rest) rest.push_back(p);
      tail_.rest = rest;
      tail_.act.reset();
    }
    if (!tail_.rest.empty()) {
      const std::size_t first = body.parts.size() - tail_.rest.size();
      chain_ = std::make_unique<Chain>(env, tail_.rest, body.parts[first - 1].outputs.at(0), n.inputs, y_);
    }
    shape_ = s;
    opt_ = o;
    mm_ = std::make_unique<Matmul>(env.lib, s, o);
    key_ = fmt::format("matmul|b{} m{} n{} k{} t{}{} s{},{},{}|{}|epi{} bias{} a{} b{}|tf32 {}|ws {}", s.batch, s.m, s.n,
                       s.k, s.trans_a, s.trans_b, s.stride_a, s.stride_b, s.stride_c, prec_name(o.precision),
                       static_cast<int>(o.epilogue), o.bias, o.alpha, o.beta, o.allow_tf32, o.workspace_limit);
  }

  void run(const RunArgs& a) override {
    if (c_ptr_) {
      const auto perm = physical_order(y_);
      KILN_CHECK(kernels::strided_copy(y_.elem_size(), to_dims(y_.dims), c_ptr_, broadcast_strides(c_, y_.dims, perm),
                                       y_.ptr, to_strides(y_.strides), a.stream));
    }
    mm_->run(a_, b_, bias_, y_.ptr, a.workspace, a.stream);
    if (chain_) chain_->run(nullptr, a.stream);
  }
  std::size_t workspace() const override { return mm_->workspace_bytes(); }
  std::string kind() const override { return "cublaslt"; }
  std::string tactic_key() const override { return key_; }
  std::string tune() override {
    const MatmulTactic t = mm_->tune();
    return fmt::format("index {} ws {} ms {:.5f}", t.index, t.workspace, t.ms);
  }
  void set_tactic(const std::string& text) override {
    MatmulTactic t;
    unsigned long long ws = 0;
    if (std::sscanf(text.c_str(), "index %d ws %llu ms %f", &t.index, &ws, &t.ms) != 3) return;
    t.workspace = static_cast<std::size_t>(ws);
    mm_->set_tactic(t);
  }
  std::string tactic() const override {
    const auto& t = mm_->tactic();
    return fmt::format("heuristic #{}, workspace {} bytes, {:.4f} ms", t.index, t.workspace, t.ms);
  }

 private:
  DeviceValue y_, c_;
  const void *a_ = nullptr, *b_ = nullptr, *bias_ = nullptr, *c_ptr_ = nullptr;
  MatmulShape shape_;
  MatmulOptions opt_;
  Tail tail_;
  std::unique_ptr<Matmul> mm_;
  std::unique_ptr<Chain> chain_;
  std::string key_;
};

}  // namespace

std::unique_ptr<Step> make_conv_step(const StepEnv& env, const FusedBody& body) {
  return std::make_unique<ConvStep>(env, body);
}
std::unique_ptr<Step> make_gemm_step(const StepEnv& env, const FusedBody& body) {
  return std::make_unique<GemmStep>(env, body);
}

}  // namespace kiln::runtime::detail
