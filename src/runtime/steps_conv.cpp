// Convolution, deconvolution and matrix-product steps: cuDNN and cuBLASLt with what they fuse
// (bias, ReLU, residual add; bias and ReLU/GELU epilogues), the rest of a fused step's tail as a
// pointwise chain in place over the output.
#include <cmath>
#include <functional>
#include <optional>

#include "check.hpp"
#include "conv.hpp"
#include "copy.cuh"
#include "kiln/ir/window.hpp"
#include "kiln/runtime/matmul.hpp"
#include "layout.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

/// The tail of a conv or gemm step: what the library fuses and what is left for a chain.
struct Tail {
  bool residual = false;
  std::string residual_name;
  std::optional<Unary> act;
  std::vector<Node> rest;  // parts left for a pointwise chain (in order)
};

/// Splits parts[1..] into [Add of a same-shaped value]? [one unary activation]? and the rest.
Tail split_tail(const StepEnv& env, const FusedBody& body, const DeviceValue& y,
                bool allow_residual) {
  Tail t;
  std::string running = body.parts[0].outputs.at(0);
  std::size_t i = 1;
  const auto& parts = body.parts;
  if (allow_residual && i < parts.size() && (parts[i].op == "Add" || parts[i].op == "Sum") &&
      parts[i].inputs.size() == 2) {
    const auto& p = parts[i];
    const int at = p.inputs[0] == running ? 0 : (p.inputs[1] == running ? 1 : -1);
    if (at >= 0 && p.inputs[1 - at] != running) {
      const DeviceValue r = env.value(fused_input_name(env.node.inputs, p.inputs[1 - at]));
      if (!r.host && r.dims == y.dims && r.strides == y.strides && r.fp == y.fp) {
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

struct Pads {
  std::vector<i64> begin, end;
};

/// What a convolution back end is made with: the problem, the weights, bias and residual it
/// reads (bias and residual may be null), and where its messages go.
struct ConvSetup {
  const Library& lib;
  ConvShape shape;
  ConvOptions options;
  const void* w = nullptr;
  const void* bias = nullptr;
  const void* residual = nullptr;
  std::string where;
  std::function<void(Severity, const std::string&)> log;
};

/// One way to run a ConvStep's convolution: cuDNN's legacy API, its graph API, its
/// backward-data convolution (ConvTranspose), or im2col and cuBLASLt. A step holds one; tuning
/// and known tactics choose which.
class ConvBackend {
 public:
  virtual ~ConvBackend() = default;
  /// The API its tactics belong to.
  virtual Tactic::Backend api() const = 0;
  /// Which implementation runs the step (Step::kind()).
  virtual std::string kind() const = 0;
  /// y = act(conv(x) + bias + residual), with workspace_bytes() at ws.
  virtual void forward(const void* x, void* y, void* ws, Stream s) const = 0;
  virtual std::size_t workspace_bytes() const = 0;
  /// [N, K, OH, OW] as it computes them.
  virtual std::array<int, 4> output_dims() const = 0;
  /// Times the candidates and uses the fastest; the result may name another API (the graph API
  /// times the legacy API's algorithms too), which the step then switches to.
  virtual Tactic tune() = 0;
  virtual void set_tactic(const Tactic& t) = 0;
  /// The tactic in use, for Engine::describe().
  virtual std::string describe() const = 0;
};

ConvTactic conv_tactic(const Tactic& t) {
  ConvTactic c;
  c.algorithm = t.algorithm;
  c.workspace = t.workspace;
  c.ms = t.ms;
  return c;
}
Tactic of(Tactic::Backend b, const ConvTactic& t) {
  return Tactic{b, t.algorithm, t.workspace, t.ms};
}

/// cuDNN's legacy API (Convolution) or its backward-data convolution (Deconvolution).
template <class Layer>
class CudnnBackend final : public ConvBackend {
 public:
  CudnnBackend(const ConvSetup& s, const char* kind)
      : s_(s), kind_(kind), layer_(s.lib, s.shape, s.options) {}
  Tactic::Backend api() const override { return Tactic::Backend::cudnn; }
  std::string kind() const override { return kind_; }
  void forward(const void* x, void* y, void* ws, Stream st) const override {
    layer_.forward(x, s_.w, s_.bias, s_.residual, y, ws, st);
  }
  std::size_t workspace_bytes() const override { return layer_.workspace_bytes(); }
  std::array<int, 4> output_dims() const override { return layer_.output_dims(); }
  Tactic tune() override { return of(api(), layer_.tune()); }
  void set_tactic(const Tactic& t) override { layer_.set_tactic(conv_tactic(t)); }
  std::string describe() const override { return layer_.tactic().describe(); }

 private:
  ConvSetup s_;
  const char* kind_;
  Layer layer_;
};

/// cuDNN's graph API: conv, bias, residual and activation as one operation graph.
class GraphBackend final : public ConvBackend {
 public:
  /// Throws UnsupportedError when cuDNN has no engine for the graph.
  explicit GraphBackend(const ConvSetup& s)
      : s_(s), graph_(s.lib, s.shape, s.options, s.bias != nullptr) {}
  Tactic::Backend api() const override { return Tactic::Backend::cudnn_graph; }
  std::string kind() const override { return "cudnn-graph"; }
  void forward(const void* x, void* y, void* ws, Stream st) const override {
    graph_.forward(x, s_.w, s_.bias, s_.residual, y, ws, st);
  }
  std::size_t workspace_bytes() const override { return graph_.workspace_bytes(); }
  std::array<int, 4> output_dims() const override { return graph_.output_dims(); }
  void set_tactic(const Tactic& t) override { graph_.set_tactic(conv_tactic(t)); }
  std::string describe() const override {
    const ConvTactic& t = graph_.tactic();
    return fmt::format("graph engine #{}, workspace {} bytes, {:.4f} ms, one graph: conv{}{}{}",
                       t.algorithm, t.workspace, t.ms, s_.bias ? "+bias" : "",
                       s_.options.residual ? "+add" : "",
                       s_.options.activation != kernels::Activation::identity ? "+activation" : "");
  }

  /// Both APIs' candidates are timed; the faster wins (cuDNN's graph engines win on tensor
  /// cores, its legacy FMA kernels can win in FP32). A legacy win is returned as a cudnn tactic.
  Tactic tune() override {
    std::optional<ConvTactic> g, l;
    std::unique_ptr<Convolution> legacy;
    try {
      legacy = std::make_unique<Convolution>(s_.lib, s_.shape, s_.options);
      // FP32: the legacy FMA kernels compete (they often win without tensor cores). FP16/BF16:
      // the legacy API is only the reference that the graph engines are checked against.
      if (s_.options.precision == Precision::f32) l = legacy->tune();
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
          s_.log(Severity::info,
                 fmt::format("{}graph engines timed unchecked: {}", s_.where, e.what()));
        }
      }
      g = checked ? *checked : graph_.tune();
    } catch (const UnsupportedError&) {}
    if (g && (!l || g->ms <= l->ms)) {
      graph_.set_tactic(*g);
      return of(Tactic::Backend::cudnn_graph, *g);
    }
    if (!l && legacy) l = legacy->tune();
    if (!l) throw Error("[Conv] neither cuDNN API has an algorithm for this convolution");
    return of(Tactic::Backend::cudnn, *l);
  }

 private:
  /// Times the graph API's engines on random data, each checked against the legacy API's
  /// output on the same data: an engine that computes something else is never chosen.
  ConvTactic tune_graph_checked(const Convolution& legacy) {
    const std::size_t es = element_size(s_.options.precision);
    const std::size_t nx = std::size_t(s_.shape.n) * s_.shape.c * s_.shape.h * s_.shape.w;
    const std::size_t nw =
        std::size_t(s_.shape.k) * (s_.shape.c / s_.shape.groups) * s_.shape.kh * s_.shape.kw;
    const auto od = legacy.output_dims();
    const std::size_t ny = std::size_t(od[0]) * od[1] * od[2] * od[3];
    const double wscale =
        1.0 /
        std::sqrt(static_cast<double>(std::max<std::size_t>(1, nw / std::max(1, s_.shape.k))));
    auto random = [&](std::size_t n, double scale, std::uint64_t seed) {
      // A block of random values, tiled: distinct enough to catch layout and indexing errors.
      const std::size_t block = std::min<std::size_t>(n, 1 << 20);
      std::vector<float> v(block);
      std::uint64_t st = seed;
      for (auto& f : v) {
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        f = static_cast<float>(((static_cast<double>(st >> 11) / 9007199254740992.0) * 2 - 1) *
                               scale);
      }
      auto bytes = to_device_format(v.data(), static_cast<i64>(block), s_.options.precision);
      return tiled_buffer(bytes.data(), block * es, n * es);
    };
    DeviceBuffer x = random(nx, 1.0, 1), w = random(nw, wscale, 2), b = random(s_.shape.k, 0.5, 3);
    DeviceBuffer r = random(ny, 1.0, 4), y(std::max<std::size_t>(ny * es, 16)),
                 yref(std::max<std::size_t>(ny * es, 16));
    DeviceBuffer ws(legacy.workspace_bytes());
    const void* pb = s_.bias ? b.get() : nullptr;
    const void* pr = s_.options.residual ? r.get() : nullptr;
    legacy.forward(x.get(), w.get(), pb, pr, yref.get(), ws.get(), nullptr);
    KILN_CHECK(cudaDeviceSynchronize());
    // The first images' outputs are compared (enough to catch an engine that indexes wrongly,
    // and cheap at large batches).
    const std::size_t nc = std::min<std::size_t>(ny, std::size_t{1} << 22);
    auto host = [&](const DeviceBuffer& d) {
      return download_floats(d.get(), static_cast<i64>(nc), s_.options.precision);
    };
    const std::vector<float> ref = host(yref);
    double scale = 0;
    for (float v : ref) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    // BF16 keeps 8 bits of mantissa to FP16's 11: one rounding apart is 8x larger.
    const double tol = s_.options.precision == Precision::f32
                           ? 1e-4
                           : (s_.options.precision == Precision::f16 ? 1e-2 : 4e-2);
    GraphConvolution::TuneData data{
        x.get(), w.get(), pb, pr, y.get(), [&](int candidate) {
          const std::vector<float> got = host(y);
          double err = 0;
          for (std::size_t i = 0; i < nc; ++i) {
            const double e = std::fabs(static_cast<double>(got[i]) - ref[i]);
            err = std::isfinite(e) ? std::max(err, e) : INFINITY;
          }
          const bool ok = err <= tol * std::max(scale, 1e-6);
          if (!ok)
            s_.log(Severity::warning,
                   fmt::format("{}cuDNN graph engine candidate {} disagrees with the legacy API "
                               "(max|diff| {:.3g}, max|ref| {:.3g}); not used",
                               s_.where, candidate, err, scale));
          return ok;
        }};
    return graph_.tune(&data);
  }

  ConvSetup s_;
  GraphConvolution graph_;
};

/// A convolution in NCHW as a batched matrix product over im2col columns,
/// y[n] (K x OH*OW) = W (K x C*kh*kw) . col[n] (C*kh*kw x OH*OW); a 1x1 one without padding or
/// stride needs no columns (col[n] is x[n]). cuBLASLt's split-K kernels beat cuDNN's FP32
/// kernels where OH*OW is small (batch 1). Bias and activation follow as one pointwise kernel.
class GemmBackend final : public ConvBackend {
 public:
  GemmBackend(const ConvSetup& s, std::array<int, 4> out, kernels::Elem elem)
      : s_(s), out_(out), elem_(elem) {
    const ConvShape& c = s.shape;
    MatmulShape m;
    m.batch = c.n;
    m.m = c.k;
    m.n = std::int64_t{out[2]} * out[3];
    m.k = std::int64_t{c.c} * c.kh * c.kw;
    m.stride_a = 0;
    m.stride_b = m.k * m.n;
    m.stride_c = m.m * m.n;
    MatmulOptions o;
    o.precision = s.options.precision;
    o.allow_tf32 = s.options.allow_tf32;
    o.workspace_limit = std::min<std::size_t>(s.options.workspace_limit, std::size_t{64} << 20);
    mm_ = std::make_unique<Matmul>(s.lib, m, o);
    epi_.dims = to_dims({c.n, c.k, m.n});
    epi_.x_strides = kernels::contiguous_strides(epi_.dims);
    if (s.bias) {
      auto& st = epi_.step[epi_.steps++];
      st.kind = kernels::PointwiseStep::binary;
      st.op = kernels::PointwiseOp::add;
      st.operand = s.bias;
      st.strides = to_strides({0, 1, 0});
    }
    if (s.options.activation != kernels::Activation::identity) {
      auto& st = epi_.step[epi_.steps++];
      st.op = s.options.activation;
      st.alpha = s.options.act_alpha;
      st.beta = s.options.act_beta;
    }
  }
  static bool direct(const ConvShape& c) {
    return c.kh == 1 && c.kw == 1 && c.stride_h == 1 && c.stride_w == 1 && c.pad_h == 0 &&
           c.pad_w == 0;
  }
  /// The im2col columns' bytes (0 for a direct product).
  static std::size_t col_bytes(const ConvShape& c, std::array<int, 4> out, Precision p) {
    if (direct(c)) return 0;
    const std::size_t b = std::size_t(c.n) * c.c * c.kh * c.kw * out[2] * out[3] * element_size(p);
    return (b + 255) / 256 * 256;
  }

  Tactic::Backend api() const override { return Tactic::Backend::cublaslt; }
  std::string kind() const override {
    return direct(s_.shape) ? "cublaslt-1x1" : "im2col-cublaslt";
  }
  void forward(const void* x, void* y, void* ws, Stream st) const override {
    const ConvShape& c = s_.shape;
    if (!direct(c)) {
      kernels::Im2col g;
      g.n = c.n, g.c = c.c, g.h = c.h, g.w = c.w, g.kh = c.kh, g.kw = c.kw;
      g.pad_h = c.pad_h, g.pad_w = c.pad_w, g.stride_h = c.stride_h, g.stride_w = c.stride_w;
      g.dil_h = c.dil_h, g.dil_w = c.dil_w, g.out_h = out_[2], g.out_w = out_[3];
      KILN_CHECK(kernels::im2col(element_size(s_.options.precision), g, x, ws, st));
      x = ws;
      ws = static_cast<std::byte*>(ws) + col_bytes(c, out_, s_.options.precision);
    }
    mm_->run(s_.w, x, nullptr, y, ws, st);
    if (epi_.steps) KILN_CHECK(kernels::pointwise_chain(elem_, epi_, y, y, st));
  }
  std::size_t workspace_bytes() const override {
    return col_bytes(s_.shape, out_, s_.options.precision) + mm_->workspace_bytes();
  }
  std::array<int, 4> output_dims() const override { return out_; }
  /// Times cuBLASLt's candidates, then the whole path (product and epilogue) on scratch buffers:
  /// the tactic's time is the whole path's.
  Tactic tune() override {
    const MatmulTactic t = mm_->tune();
    const ConvShape& c = s_.shape;
    const std::size_t es = element_size(s_.options.precision);
    DeviceBuffer x(std::size_t(c.n) * c.c * c.h * c.w * es),
        y(std::size_t(c.n) * c.k * c.h * c.w * es);
    DeviceBuffer wsb(workspace_bytes());
    x.fill_bytes(0x3c);
    const float total = time_ms([&] { forward(x.get(), y.get(), wsb.get(), nullptr); });
    return Tactic{Tactic::Backend::cublaslt, t.index, t.workspace, total};
  }
  void set_tactic(const Tactic& t) override { mm_->set_tactic({t.algorithm, t.workspace, t.ms}); }
  std::string describe() const override {
    const MatmulTactic& t = mm_->tactic();
    return fmt::format("cuBLASLt heuristic #{}, workspace {} bytes, {:.4f} ms", t.index,
                       t.workspace, t.ms);
  }

 private:
  ConvSetup s_;
  std::array<int, 4> out_;
  kernels::Elem elem_;
  std::unique_ptr<Matmul> mm_;
  kernels::PointwiseChain epi_;
};

class ConvStep final : public Step {
 public:
  ConvStep(const StepEnv& env, const FusedBody& body)
      : where_(env.node.where()),
        log_([&st = env.engine](Severity s, const std::string& m) { st.log(s, m); }) {
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
    if (x_.nhwc() != nhwc)
      throw GraphError(
          fmt::format("{}input {} and output {} differ in layout (the plan lacks a conversion)",
                      n.where(), x_.describe(), y_.describe()));
    if (!nhwc && !x_.contiguous()) unsupported(n, "a strided convolution input");
    const Precision prec = y_.fp;
    if (x_.fp != y_.fp) unsupported(n, "a convolution between precisions");

    // Shape (1-D as H = 1).
    const auto& wd = w.dims;
    std::vector<i64> in(x_.dims.begin() + 2, x_.dims.end());
    std::vector<i64> kernel(wd.begin() + 2, wd.end());
    const i64 groups = c.attr_int("group", 1);
    // Strides, dilations and pads (auto_pad and output_shape resolved) as the IR reads them.
    const ops::Window win = ops::resolve_window(
        c, in, kernel, deconv_ ? ops::WindowKind::deconv : ops::WindowKind::conv);
    const auto& strides = win.strides;
    const auto& dil = win.dilations;
    const Pads pads{win.pad_begin, win.pad_end};
    auto at = [&](const std::vector<i64>& v, std::size_t d2) {
      return r == 3 ? (d2 == 0 ? i64{1} : v[0]) : v[d2];
    };
    auto at0 = [&](const std::vector<i64>& v, std::size_t d2) {
      return r == 3 ? (d2 == 0 ? i64{0} : v[0]) : v[d2];
    };
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
    const i64 pt = at0(pads.begin, 0), pl = at0(pads.begin, 1), pb = at0(pads.end, 0),
              pr = at0(pads.end, 1);
    if (pt == pb && pl == pr) {
      shape_.pad_h = static_cast<int>(pt);
      shape_.pad_w = static_cast<int>(pl);
    } else if (deconv_) {
      unsupported(n, fmt::format("ConvTranspose with asymmetric pads {}",
                                 dims_to_string(c.attr_ints("pads", {}))));
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

    // Weights: in the step's precision and channels-last as the step runs.
    const Tensor& wt = *w.host;
    const auto wf = host_floats(wt);
    const i64 k0 = wd[0], k1 = wd[1], sp = r == 4 ? wd[2] * wd[3] : wd[2];
    std::vector<float> perm = wf;
    if (nhwc) {  // [k0, k1, sp] -> [k0, sp, k1]
      for (i64 a = 0; a < k0; ++a)
        for (i64 b = 0; b < k1; ++b)
          for (i64 s = 0; s < sp; ++s) perm[(a * sp + s) * k1 + b] = wf[(a * k1 + b) * sp + s];
    }
    auto bytes = to_device_format(perm.data(), wt.numel(), prec);
    w_ = env.engine.weights.get(fmt::format("conv:{}:{}:{}", w.name, nhwc, element_name(prec)),
                                bytes.size(),
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
    if (tail_.act)
      o.activation = tail_.act->act, o.act_alpha = tail_.act->alpha, o.act_beta = tail_.act->beta;
    opt_ = o;
    setup_ = std::make_unique<ConvSetup>(
        ConvSetup{env.lib, shape_, o, w_, bias_, residual_, where_, log_});
    if (deconv_) {
      backend_ = std::make_unique<CudnnBackend<Deconvolution>>(*setup_, "cudnn-deconv");
    } else {
      // cuDNN's graph API first (its fused engines), the legacy API where it has none.
      if (env.engine.options.cudnn_graph && GraphConvolution::fusable(o)) {
        try {
          backend_ = std::make_unique<GraphBackend>(*setup_);
        } catch (const UnsupportedError& e) {
          env.engine.log(Severity::verbose,
                         fmt::format("{}legacy cuDNN API: {}", n.where(), e.what()));
        }
      }
      if (!backend_) backend_ = legacy();
    }
    out_ = backend_->output_dims();
    const auto od = out_;
    const std::vector<i64> got = {od[0], od[1], od[2], od[3]};
    const std::vector<i64> want =
        r == 4 ? y_.dims : std::vector<i64>{y_.dims[0], y_.dims[1], 1, y_.dims[2]};
    if (got != want)
      throw ShapeError(fmt::format("{}cuDNN computes {} for the output, the plan has {}", n.where(),
                                   dims_to_string(got), dims_to_string(want)));
    if (!tail_.rest.empty())
      chain_ = std::make_unique<Chain>(env, tail_.rest, tail_running(body, tail_), n.inputs, y_);
    key_ = fmt::format(
        "{}|n{} c{} {}x{} k{} {}x{} p{},{} s{},{} d{},{} g{} op{},{}|{}|{}|{}|res{}|tf32 {}|ws {}",
        deconv_ ? "deconv" : "conv", shape_.n, shape_.c, shape_.h, shape_.w, shape_.k, shape_.kh,
        shape_.kw, shape_.pad_h, shape_.pad_w, shape_.stride_h, shape_.stride_w, shape_.dil_h,
        shape_.dil_w, shape_.groups, shape_.out_pad_h, shape_.out_pad_w, element_name(prec),
        nhwc ? "nhwc" : "nchw", static_cast<int>(o.activation), o.residual, o.allow_tf32,
        o.workspace_limit);
  }

  void run(const RunArgs& a) override {
    const void* x = x_.ptr;
    void* ws = a.workspace;
    if (pad_bytes_) {
      const std::vector<i64> in_phys =
          x_.nhwc() ? std::vector<i64>{x_.dims[0], x_.dims[2], x_.dims[3], x_.dims[1]} : x_.dims;
      const std::vector<i64> out_phys =
          x_.nhwc()
              ? std::vector<i64>{padded_dims_[0], padded_dims_[2], padded_dims_[3], padded_dims_[1]}
              : padded_dims_;
      const std::vector<i64> begin =
          x_.nhwc() ? std::vector<i64>{0, pad_begin_[2], pad_begin_[3], 0} : pad_begin_;
      KILN_CHECK(kernels::pad(x_.elem_size(), kernels::PadMode::constant, to_dims(in_phys),
                              to_dims(out_phys), begin.data(), 0, x_.ptr, a.workspace, a.stream));
      x = a.workspace;
      ws = static_cast<std::byte*>(a.workspace) + pad_bytes_;
    }
    backend_->forward(x, y_.ptr, ws, a.stream);
    if (chain_) chain_->run(nullptr, a.stream);
  }
  std::size_t workspace() const override { return pad_bytes_ + backend_->workspace_bytes(); }
  std::string kind() const override { return backend_->kind(); }
  std::string tactic_key() const override { return key_; }

  Tactic tune() override {
    const Tactic best = backend_->tune();
    if (best.backend != backend_->api()) {  // the legacy API beat the graph API's engines
      backend_ = legacy();
      backend_->set_tactic(best);
    }
    if (!gemm_eligible()) return best;
    try {
      auto gemm = std::make_unique<GemmBackend>(*setup_, out_, y_.elem());
      const Tactic t = gemm->tune();
      if (t.ms < best.ms) {
        backend_ = std::move(gemm);
        return t;
      }
    } catch (const Error& e) {
      log_(Severity::info, fmt::format("{}1x1 as a matrix product: {}", where_, e.what()));
    }
    return best;
  }
  void set_tactic(const Tactic& t) override {
    if (t.workspace > opt_.workspace_limit) return;  // keep the heuristic's
    if (deconv_) return backend_->set_tactic(t);
    switch (t.backend) {
      case Tactic::Backend::cublaslt:
        if (!gemm_eligible()) return;
        backend_ = std::make_unique<GemmBackend>(*setup_, out_, y_.elem());
        backend_->set_tactic(t);
        return;
      case Tactic::Backend::cudnn_graph:
        if (backend_->api() == Tactic::Backend::cudnn_graph) backend_->set_tactic(t);
        return;
      case Tactic::Backend::cudnn:
        if (backend_->api() != Tactic::Backend::cudnn) backend_ = legacy();
        backend_->set_tactic(t);
        return;
      case Tactic::Backend::cudnn_sdpa:
      case Tactic::Backend::kernel: return;  // another step's tactic: keep the heuristic's
    }
  }
  std::string tactic() const override { return backend_->describe(); }

 private:
  std::unique_ptr<ConvBackend> legacy() const {
    return std::make_unique<CudnnBackend<Convolution>>(*setup_, "cudnn-conv");
  }
  /// Whether im2col and cuBLASLt may run it: NCHW, one group, nothing to add, no explicit
  /// padding, columns within the workspace limit.
  bool gemm_eligible() const {
    return !deconv_ && !x_.nhwc() && shape_.groups == 1 && !opt_.residual && pad_bytes_ == 0 &&
           GemmBackend::col_bytes(shape_, out_, opt_.precision) <= opt_.workspace_limit;
  }

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
  std::unique_ptr<ConvSetup> setup_;  // what every back end of this step is made with
  std::unique_ptr<ConvBackend> backend_;
  std::array<int, 4> out_{};
  std::unique_ptr<Chain> chain_;
  std::vector<i64> pad_begin_, padded_dims_;
  std::size_t pad_bytes_ = 0;
  std::string key_;
};

// ---- matrix products ---------------------------------------------------------------------

/// The weight `c` (n values) times `scale` on the device in the step's precision, as cuBLASLt's
/// bias epilogue reads it; converted and uploaded once per engine (the weight cache's key).
const void* bias_row(const StepEnv& env, const DeviceValue& c, i64 n, double scale, Precision fp) {
  return env.engine.weights.get(fmt::format("gemm-bias:{}:{}:{}", c.name, scale, element_name(fp)),
                                static_cast<std::size_t>(n) * element_size(fp),
                                [&](DeviceBuffer& buf) {
                                  auto v = host_floats(*c.host);
                                  for (auto& x : v) x = static_cast<float>(x * scale);
                                  const auto bytes = to_device_format(v.data(), n, fp);
                                  buf.upload(bytes.data(), bytes.size());
                                });
}

class GemmStep final : public Step {
 public:
  GemmStep(const StepEnv& env, const FusedBody& body) {
    const Node& n = env.node;
    const Node& g = body.parts[0];
    const DeviceValue a = env.value(fused_input_name(n.inputs, g.inputs.at(0)));
    const DeviceValue b = env.value(fused_input_name(n.inputs, g.inputs.at(1)));
    y_ = env.value(n.outputs.at(0));
    if (a.fp != y_.fp || b.fp != y_.fp) unsupported(n, "a matrix product between precisions");
    if (!a.contiguous() || !b.contiguous() || !y_.contiguous())
      unsupported(n, "strided matrix operands");
    a_ = pointer_of(env, a);
    b_ = pointer_of(env, b);
    MatmulShape s;
    MatmulOptions o;
    o.precision = y_.fp;
    o.allow_tf32 = env.engine.options.allow_tf32;
    o.workspace_limit =
        std::min<std::size_t>(env.engine.options.workspace_limit, std::size_t{64} << 20);
    if (g.op == "Gemm") {
      if (a.dims.size() != 2 || b.dims.size() != 2)
        unsupported(n, "Gemm of other than 2-D operands");
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
          bias_ = bias_row(env, c, s.n, beta, y_.fp);
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
      } else if (batch_a == batch_b && std::vector<i64>(ad.begin(), ad.end() - 2) ==
                                           std::vector<i64>(bd.begin(), bd.end() - 2)) {
        s.batch = batch_a;
      } else if (batch_a == 1) {
        s.batch = batch_b;
        s.stride_a = 0;
      } else {
        unsupported(n, fmt::format("MatMul broadcasting {} with {}", a.describe(), b.describe()));
      }
    }
    // MatMul + bias row (fuse_gemm_bias): the epilogue adds it; the tail starts after it.
    FusedBody tail_body = body;
    if (g.op == "MatMul" && body.parts.size() > 1 && body.parts[1].op == "Add" &&
        body.parts[1].inputs.size() == 2) {
      const Node& p = body.parts[1];
      const std::string& running = g.outputs.at(0);
      const std::string& other = p.inputs[0] == running ? p.inputs[1] : p.inputs[0];
      const DeviceValue c = env.value(fused_input_name(n.inputs, other));
      if ((p.inputs[0] == running) != (p.inputs[1] == running) && s.batch <= 1 && c.host &&
          c.numel() == s.n && !c.dims.empty() && c.dims.back() == s.n) {
        bias_ = bias_row(env, c, s.n, 1.0, y_.fp);
        o.bias = true;
        tail_body.parts.erase(tail_body.parts.begin() + 1);
        tail_body.parts[0].outputs = p.outputs;  // the tail reads the sum as the product's output
      }
    }
    tail_ = split_tail(env, tail_body, y_, false);
    if (tail_.act && o.beta == 0.f) {
      if (tail_.act->act == kernels::Activation::relu)
        o.epilogue = Epilogue::relu;
      else if (tail_.act->act == kernels::Activation::gelu_tanh)
        o.epilogue = Epilogue::gelu_tanh;
    }
    if (tail_.act && o.epilogue == Epilogue::none) {
      // Not an epilogue cuBLASLt has: the activation goes to the chain.
      std::vector<Node> rest;
      rest.push_back(tail_body.parts[1]);
      for (auto& p : tail_.rest) rest.push_back(p);
      tail_.rest = rest;
      tail_.act.reset();
    }
    if (!tail_.rest.empty()) {
      const std::size_t first = tail_body.parts.size() - tail_.rest.size();
      chain_ = std::make_unique<Chain>(env, tail_.rest, tail_body.parts[first - 1].outputs.at(0),
                                       n.inputs, y_);
    }
    shape_ = s;
    opt_ = o;
    mm_ = std::make_unique<Matmul>(env.lib, s, o);
    key_ =
        fmt::format("matmul|b{} m{} n{} k{} t{}{} s{},{},{}|{}|epi{} bias{} a{} b{}|tf32 {}|ws {}",
                    s.batch, s.m, s.n, s.k, s.trans_a, s.trans_b, s.stride_a, s.stride_b,
                    s.stride_c, element_name(o.precision), static_cast<int>(o.epilogue), o.bias,
                    o.alpha, o.beta, o.allow_tf32, o.workspace_limit);
  }

  void run(const RunArgs& a) override {
    if (c_ptr_) {
      const auto perm = physical_order(y_);
      KILN_CHECK(kernels::strided_copy(y_.elem_size(), to_dims(y_.dims), c_ptr_,
                                       broadcast_strides(c_, y_.dims, perm), y_.ptr,
                                       to_strides(y_.strides), a.stream));
    }
    mm_->run(a_, b_, bias_, y_.ptr, a.workspace, a.stream);
    if (chain_) chain_->run(nullptr, a.stream);
  }
  std::size_t workspace() const override { return mm_->workspace_bytes(); }
  std::string kind() const override { return "cublaslt"; }
  std::string tactic_key() const override { return key_; }
  Tactic tune() override { return tune_matmul(*mm_); }
  void set_tactic(const Tactic& t) override { set_matmul_tactic(*mm_, t); }
  std::string tactic() const override { return matmul_tactic_text(*mm_); }

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

Tactic tune_matmul(Matmul& mm) {
  const MatmulTactic t = mm.tune();
  return Tactic{Tactic::Backend::cublaslt, t.index, t.workspace, t.ms};
}

void set_matmul_tactic(Matmul& mm, const Tactic& t) {
  if (t.backend != Tactic::Backend::cublaslt) return;  // keep the heuristic's
  mm.set_tactic({t.algorithm, t.workspace, t.ms});
}

std::string matmul_tactic_text(const Matmul& mm) {
  const auto& t = mm.tactic();
  return fmt::format("heuristic #{}, workspace {} bytes, {:.4f} ms", t.index, t.workspace, t.ms);
}

void register_conv_steps(StepRegistry& r) {
  for (const char* op : {"Conv", "ConvTranspose"}) r.add(op, step_factory<ConvStep>, true);
  for (const char* op : {"Gemm", "MatMul"}) r.add(op, step_factory<GemmStep>, true);
}

}  // namespace kiln::runtime::detail
