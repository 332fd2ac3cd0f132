#include "conv.hpp"

#include <vector>

#include "check.hpp"
#include "library_types.hpp"

namespace kiln::runtime {

namespace {
cudnnTensorFormat_t dnn_format(Layout l) {
  return l == Layout::nchw ? CUDNN_TENSOR_NCHW : CUDNN_TENSOR_NHWC;
}

std::string shape_text(const ConvShape& s) {
  return fmt::format(
      "x [{},{},{},{}], {} filters {}x{}, pad {},{}, stride {},{}, dilation {},{}, groups {}", s.n,
      s.c, s.h, s.w, s.k, s.kh, s.kw, s.pad_h, s.pad_w, s.stride_h, s.stride_w, s.dil_h, s.dil_w,
      s.groups);
}

/// Math type: FP32 without TF32 is FMA only; FP16 and BF16 use tensor cores.
cudnnMathType_t math_type(const ConvOptions& o) {
  if (o.precision != Precision::f32) return CUDNN_TENSOR_OP_MATH;
  return o.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}
bool math_allowed(const ConvOptions& o, cudnnMathType_t m) {
  return o.precision != Precision::f32 || o.allow_tf32 || m == CUDNN_FMA_MATH ||
         m == CUDNN_DEFAULT_MATH;
}

/// Scratch contents for timing: not zeros (zeros can time faster than real data).
DeviceBuffer scratch(std::size_t bytes) {
  DeviceBuffer b(bytes);
  b.fill_bytes(0x3c);
  return b;
}

/// The first of cuDNN's candidates (forward or backward-data algorithms, best first) that ran,
/// fits the workspace limit and uses a math type the options allow; algorithm -1 when none does.
/// `timed`: the candidates were timed (else their time is not kept).
template <class Perf>
ConvTactic first_usable(const Perf* perf, int returned, const ConvOptions& o, bool timed) {
  for (int i = 0; i < returned; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= o.workspace_limit &&
        math_allowed(o, perf[i].mathType))
      return {static_cast<int>(perf[i].algo), perf[i].memory, timed ? perf[i].time : -1.f};
  return {};
}
}  // namespace

std::string ConvTactic::describe() const {
  return fmt::format("algorithm {}, workspace {} bytes, {:.4f} ms{}", algorithm, workspace, ms,
                     fused ? ", fused bias+ReLU" : "");
}

/// The descriptors that a convolution and a deconvolution share.
struct CudnnConvolutionBase::Impl {
  cudnnTensorDescriptor_t in = nullptr, out = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t filter = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnActivationDescriptor_t relu = nullptr;
  std::size_t filter_elements = 0;
  DeviceBuffer zero_bias;
  bool fused_relu = false;  // cudnnConvolutionBiasActivationForward accepted this shape

  ~Impl() {
    if (relu) cudnnDestroyActivationDescriptor(relu);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (filter) cudnnDestroyFilterDescriptor(filter);
    if (bias) cudnnDestroyTensorDescriptor(bias);
    if (out) cudnnDestroyTensorDescriptor(out);
    if (in) cudnnDestroyTensorDescriptor(in);
  }

  /// The filter is [filter_k, filter_c, kh, kw] (in cuDNN's terms, whichever way it runs).
  void make(const ConvShape& s, const ConvOptions& o, int filter_k, int filter_c) {
    filter_elements = std::size_t(filter_k) * filter_c * s.kh * s.kw;
    KILN_CHECK(cudnnCreateTensorDescriptor(&in));
    KILN_CHECK(cudnnCreateTensorDescriptor(&out));
    KILN_CHECK(cudnnCreateTensorDescriptor(&bias));
    KILN_CHECK(cudnnCreateFilterDescriptor(&filter));
    KILN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    KILN_CHECK(cudnnCreateActivationDescriptor(&relu));
    KILN_CHECK(cudnnSetFilter4dDescriptor(filter, detail::cudnn_type(o.precision),
                                          dnn_format(o.layout), filter_k, filter_c, s.kh, s.kw));
    KILN_CHECK(cudnnSetConvolution2dDescriptor(conv, s.pad_h, s.pad_w, s.stride_h, s.stride_w,
                                               s.dil_h, s.dil_w, CUDNN_CROSS_CORRELATION,
                                               CUDNN_DATA_FLOAT));
    KILN_CHECK(cudnnSetConvolutionGroupCount(conv, s.groups));
    KILN_CHECK(cudnnSetConvolutionMathType(conv, math_type(o)));
    KILN_CHECK(
        cudnnSetActivationDescriptor(relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
  }

  /// Sets a 4-D tensor descriptor in the options' layout and precision.
  static void tensor(cudnnTensorDescriptor_t t, const ConvOptions& o, int n, int c, int h, int w) {
    KILN_CHECK(cudnnSetTensor4dDescriptor(t, dnn_format(o.layout), detail::cudnn_type(o.precision),
                                          n, c, h, w));
  }

  /// Scratch x, w and y for timing or probing algorithms (y of dims `out`).
  struct Scratch {
    DeviceBuffer x, w, y;
  };
  Scratch scratch_data(const ConvShape& s, const ConvOptions& o,
                       const std::array<int, 4>& out) const {
    const std::size_t es = element_size(o.precision);
    return {scratch(std::size_t(s.n) * s.c * s.h * s.w * es), scratch(filter_elements * es),
            scratch(std::size_t(out[0]) * out[1] * out[2] * out[3] * es)};
  }

  /// Times cuDNN's candidates on scratch buffers and returns the fastest usable one, or `current`
  /// when none is. find(scratch, workspace, perf, &returned) calls (and checks) cuDNN's
  /// Find...AlgorithmEx of the direction whose Perf records it fills (at most Count).
  template <class Perf, int Count, class Find>
  ConvTactic fastest(const Library& lib, const ConvShape& s, const ConvOptions& o,
                     const std::array<int, 4>& out, const ConvTactic& current, Find find) const {
    const Scratch data = scratch_data(s, o, out);
    DeviceBuffer ws(o.workspace_limit);
    lib.set_stream(nullptr);
    Perf perf[Count];
    int returned = 0;
    find(data, ws, perf, &returned);
    const ConvTactic t = first_usable(perf, returned, o, true);  // sorted fastest first
    return t.algorithm >= 0 ? t : current;
  }

  /// bias + residual + activation over y, as one pointwise chain (in place).
  static void epilogue(const ConvOptions& o, const std::array<int, 4>& y_dims, const void* bias,
                       const void* residual, void* y, Stream stream) {
    const bool act = o.activation != kernels::Activation::identity;
    if (bias == nullptr && residual == nullptr && !act) return;
    kernels::PointwiseChain c;
    const std::int64_t n = y_dims[0], k = y_dims[1], hw = std::int64_t{y_dims[2]} * y_dims[3];
    kernels::Strides bias_strides;
    if (o.layout == Layout::nchw) {
      c.dims.rank = 3;
      c.dims.d[0] = n, c.dims.d[1] = k, c.dims.d[2] = hw;
      bias_strides.s[1] = 1;
    } else {
      c.dims.rank = 2;
      c.dims.d[0] = n * hw, c.dims.d[1] = k;
      bias_strides.s[1] = 1;
    }
    c.x_strides = kernels::contiguous_strides(c.dims);
    if (bias != nullptr) {
      auto& st = c.step[c.steps++];
      st.kind = kernels::PointwiseStep::binary;
      st.op = kernels::PointwiseOp::add;
      st.operand = bias;
      st.strides = bias_strides;
    }
    if (residual != nullptr) {
      auto& st = c.step[c.steps++];
      st.kind = kernels::PointwiseStep::binary;
      st.op = kernels::PointwiseOp::add;
      st.operand = residual;
      st.strides = c.x_strides;
    }
    if (act) {
      auto& st = c.step[c.steps++];
      st.op = o.activation;
      st.alpha = o.act_alpha;
      st.beta = o.act_beta;
    }
    KILN_CHECK(kernels::pointwise_chain(detail::elem_of(o.precision), c, y, y, stream));
  }
};

CudnnConvolutionBase::CudnnConvolutionBase(const Library& lib, const ConvShape& s,
                                           const ConvOptions& o)
    : lib_(lib), shape_(s), opt_(o), impl_(std::make_unique<Impl>()) {}

CudnnConvolutionBase::~CudnnConvolutionBase() = default;

// ---------------------------------------------------------------------------------------------
// Convolution

Convolution::Convolution(const Library& lib, const ConvShape& s, const ConvOptions& o)
    : CudnnConvolutionBase(lib, s, o) {
  if (s.groups < 1 || s.c % s.groups != 0 || s.k % s.groups != 0)
    throw Error(fmt::format("[Conv] channels {} and filters {} must divide into {} groups", s.c,
                            s.k, s.groups));
  Impl& d = *impl_;
  d.make(s, o, s.k, s.c / s.groups);
  Impl::tensor(d.in, o, s.n, s.c, s.h, s.w);
  int n = 0, k = 0, oh = 0, ow = 0;
  KILN_CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.in, d.filter, &n, &k, &oh, &ow));
  if (oh < 1 || ow < 1)
    throw Error(fmt::format("[Conv] empty output {}x{} for {}", oh, ow, shape_text(s)));
  out_ = {n, k, oh, ow};
  Impl::tensor(d.out, o, n, k, oh, ow);
  Impl::tensor(d.bias, o, 1, k, 1, 1);
  // Untuned default: cuDNN's heuristic within the workspace limit.
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
  int returned = 0;
  KILN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(lib_.cudnn(), d.in, d.filter, d.conv, d.out,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned,
                                                    perf));
  tactic_ = first_usable(perf, returned, o, false);
  if (tactic_.algorithm < 0)
    throw Error(fmt::format("[Conv] cuDNN has no algorithm for {} within {} bytes of workspace",
                            shape_text(s), o.workspace_limit));
  if (o.activation == kernels::Activation::relu)
    d.zero_bias = DeviceBuffer(static_cast<std::size_t>(k) * element_size(o.precision));
  if (d.zero_bias.get()) d.zero_bias.fill_bytes(0);
}

ConvTactic Convolution::tune() {
  const Impl& d = *impl_;
  tactic_ = d.fastest<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT>(
      lib_, shape_, opt_, out_, tactic_,
      [&](const Impl::Scratch& data, DeviceBuffer& ws, auto* perf, int* returned) {
        KILN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
            lib_.cudnn(), d.in, data.x.get(), d.filter, data.w.get(), d.conv, d.out, data.y.get(),
            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, returned, perf, ws.get(), ws.bytes()));
      });
  set_tactic(tactic_);
  return tactic_;
}

void Convolution::set_tactic(const ConvTactic& t) {
  Impl& d = *impl_;
  // The algorithm's workspace at this problem: a tactic timed at another shape (a dynamic plan's
  // bucket) may need more here, or not run here at all; then the current tactic stays.
  std::size_t need = 0;
  if (t.algorithm < 0 || t.algorithm >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT ||
      cudnnGetConvolutionForwardWorkspaceSize(lib_.cudnn(), d.in, d.filter, d.conv, d.out,
                                              static_cast<cudnnConvolutionFwdAlgo_t>(t.algorithm),
                                              &need) != CUDNN_STATUS_SUCCESS ||
      need > opt_.workspace_limit)
    return;
  tactic_ = t;
  tactic_.workspace = need;
  tactic_.fused = false;
  d.fused_relu = false;
  if (opt_.activation != kernels::Activation::relu) return;
  // Ask cuDNN once whether the fused call takes this algorithm, on scratch buffers.
  const Impl::Scratch data = d.scratch_data(shape_, opt_, out_);
  DeviceBuffer ws(tactic_.workspace);
  const float one = 1.f, zero = 0.f;
  lib_.set_stream(nullptr);
  const cudnnStatus_t st = cudnnConvolutionBiasActivationForward(
      lib_.cudnn(), &one, d.in, data.x.get(), d.filter, data.w.get(), d.conv,
      static_cast<cudnnConvolutionFwdAlgo_t>(tactic_.algorithm), ws.get(), ws.bytes(), &zero, d.out,
      data.y.get(), d.bias, d.zero_bias.get(), d.relu, d.out, data.y.get());
  if (st == CUDNN_STATUS_SUCCESS)
    d.fused_relu = tactic_.fused = true;
  else if (st != CUDNN_STATUS_NOT_SUPPORTED && st != CUDNN_STATUS_BAD_PARAM)
    KILN_CHECK(st);
  KILN_CHECK(cudaDeviceSynchronize());
}

void Convolution::forward(const void* x, const void* w, const void* bias, const void* residual,
                          void* y, void* workspace, Stream stream) const {
  const Impl& d = *impl_;
  if (opt_.residual && residual == nullptr) throw Error("[Conv] residual input missing");
  lib_.set_stream(stream);
  const float one = 1.f, zero = 0.f;
  const auto algo = static_cast<cudnnConvolutionFwdAlgo_t>(tactic_.algorithm);
  if (d.fused_relu) {
    const float alpha2 = residual ? 1.f : 0.f;
    KILN_CHECK(cudnnConvolutionBiasActivationForward(
        lib_.cudnn(), &one, d.in, x, d.filter, w, d.conv, algo, workspace, tactic_.workspace,
        &alpha2, d.out, residual ? residual : y, d.bias, bias ? bias : d.zero_bias.get(), d.relu,
        d.out, y));
    return;
  }
  KILN_CHECK(cudnnConvolutionForward(lib_.cudnn(), &one, d.in, x, d.filter, w, d.conv, algo,
                                     workspace, tactic_.workspace, &zero, d.out, y));
  Impl::epilogue(opt_, out_, bias, residual, y, stream);
}

// ---------------------------------------------------------------------------------------------
// Deconvolution (backward data)

Deconvolution::Deconvolution(const Library& lib, const ConvShape& s, const ConvOptions& o)
    : CudnnConvolutionBase(lib, s, o) {
  if (s.groups < 1 || s.c % s.groups != 0 || s.k % s.groups != 0)
    throw Error(fmt::format("[ConvTranspose] channels {} and filters {} must divide into {} groups",
                            s.c, s.k, s.groups));
  Impl& d = *impl_;
  // The forward convolution that this inverts maps y [N,K,OH,OW] to x [N,C,H,W] with filters
  // [C, K/g, kh, kw].
  d.make(s, o, s.c, s.k / s.groups);
  const int oh = s.stride_h * (s.h - 1) + s.dil_h * (s.kh - 1) + 1 - 2 * s.pad_h + s.out_pad_h;
  const int ow = s.stride_w * (s.w - 1) + s.dil_w * (s.kw - 1) + 1 - 2 * s.pad_w + s.out_pad_w;
  if (oh < 1 || ow < 1)
    throw Error(fmt::format("[ConvTranspose] empty output {}x{} for {}", oh, ow, shape_text(s)));
  out_ = {s.n, s.k, oh, ow};
  Impl::tensor(d.in, o, s.n, s.c, s.h, s.w);
  Impl::tensor(d.out, o, s.n, s.k, oh, ow);
  Impl::tensor(d.bias, o, 1, s.k, 1, 1);
  int n = 0, c = 0, h = 0, w = 0;
  KILN_CHECK(cudnnGetConvolution2dForwardOutputDim(d.conv, d.out, d.filter, &n, &c, &h, &w));
  if (c != s.c || h != s.h || w != s.w)
    throw Error(fmt::format("[ConvTranspose] output {}x{} does not invert to the input {}x{} ({})",
                            oh, ow, s.h, s.w, shape_text(s)));
  cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
  int returned = 0;
  KILN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      lib_.cudnn(), d.filter, d.in, d.conv, d.out, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned,
      perf));
  tactic_ = first_usable(perf, returned, o, false);
  if (tactic_.algorithm < 0)
    throw Error(
        fmt::format("[ConvTranspose] cuDNN has no algorithm for {} within {} bytes of workspace",
                    shape_text(s), o.workspace_limit));
}

ConvTactic Deconvolution::tune() {
  const Impl& d = *impl_;
  tactic_ = d.fastest<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT>(
      lib_, shape_, opt_, out_, tactic_,
      [&](const Impl::Scratch& data, DeviceBuffer& ws, auto* perf, int* returned) {
        KILN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
            lib_.cudnn(), d.filter, data.w.get(), d.in, data.x.get(), d.conv, d.out, data.y.get(),
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, returned, perf, ws.get(), ws.bytes()));
      });
  return tactic_;
}

void Deconvolution::set_tactic(const ConvTactic& t) {
  // As Convolution::set_tactic: the workspace at this problem, or the current tactic stays.
  const Impl& d = *impl_;
  std::size_t ws = 0;
  if (t.algorithm < 0 || t.algorithm >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT ||
      cudnnGetConvolutionBackwardDataWorkspaceSize(
          lib_.cudnn(), d.filter, d.in, d.conv, d.out,
          static_cast<cudnnConvolutionBwdDataAlgo_t>(t.algorithm), &ws) != CUDNN_STATUS_SUCCESS ||
      ws > opt_.workspace_limit)
    return;
  tactic_ = t;
  tactic_.workspace = ws;
}

void Deconvolution::forward(const void* x, const void* w, const void* bias, const void* residual,
                            void* y, void* workspace, Stream stream) const {
  const Impl& d = *impl_;
  if (opt_.residual && residual == nullptr) throw Error("[ConvTranspose] residual input missing");
  lib_.set_stream(stream);
  const float one = 1.f, zero = 0.f;
  KILN_CHECK(
      cudnnConvolutionBackwardData(lib_.cudnn(), &one, d.filter, w, d.in, x, d.conv,
                                   static_cast<cudnnConvolutionBwdDataAlgo_t>(tactic_.algorithm),
                                   workspace, tactic_.workspace, &zero, d.out, y));
  Impl::epilogue(opt_, out_, bias, residual, y, stream);
}

}  // namespace kiln::runtime
