// Convolution through cuDNN's graph (backend) API: conv -> + bias -> (+ residual) -> activation as
// one operation graph, so that cuDNN's fused engines (the ones its legacy API does not reach on
// Hopper) run the whole step as one kernel. Candidates come from cuDNN's heuristics; tune() times
// them on scratch buffers. FP32 without TF32 skips engines whose numerical notes say tensor core.
#include <algorithm>
#include <array>
#include <vector>

#include "check.hpp"
#include "conv.hpp"
#include "cudnn_backend.hpp"
#include "library_types.hpp"

namespace kiln::runtime {

namespace {

using detail::backend_tensor;
using detail::Desc;
using detail::DescPtr;

DescPtr tensor(std::int64_t uid, cudnnDataType_t type, const std::vector<std::int64_t>& dims,
               const std::vector<std::int64_t>& strides, bool is_virtual) {
  return backend_tensor(uid, type, dims, strides, is_virtual);
}

std::vector<std::int64_t> strides_of(const std::vector<std::int64_t>& d, Layout l) {
  const std::int64_t n = d[0], c = d[1], h = d[2], w = d[3];
  (void)n;
  if (l == Layout::nhwc) return {h * w * c, 1, w * c, c};
  return {c * h * w, h * w, w, 1};
}

/// A pointwise op node: y = op(x [, b]).
DescPtr pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y,
                  float lower = 0.f, float upper = 0.f, bool clip = false, float slope = 0.f) {
  Desc pw(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  pw.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  pw.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
  if (mode == CUDNN_POINTWISE_RELU_FWD) {
    const double lo = lower, hi = upper, sl = slope;
    pw.set(CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP, CUDNN_TYPE_DOUBLE, 1, &lo);
    if (clip) pw.set(CUDNN_ATTR_POINTWISE_RELU_UPPER_CLIP, CUDNN_TYPE_DOUBLE, 1, &hi);
    pw.set(CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, CUDNN_TYPE_DOUBLE, 1, &sl);
  }
  pw.finalize();
  auto op = std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw.d);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.d);
  if (b) op->set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b->d);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.d);
  op->finalize();
  return op;
}

/// The forward convolution of `s` (symmetric pads), x * w -> y, computing in `comp`.
DescPtr conv_op(const ConvShape& s, cudnnDataType_t comp, const Desc& x, const Desc& w,
                const Desc& y) {
  Desc conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const std::int64_t dims = 2;
  const std::int64_t pad[2] = {s.pad_h, s.pad_w}, stride[2] = {s.stride_h, s.stride_w},
                     dil[2] = {s.dil_h, s.dil_w};
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  conv.set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
  conv.set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  conv.set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil);
  conv.set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride);
  conv.set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  conv.set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  conv.finalize();
  auto op = std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  const float alpha = 1.f, beta = 0.f;
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x.d);
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &w.d);
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y.d);
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
          &conv.d);
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
  op->set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  op->finalize();
  return op;
}

/// The output's height and width of convolution `s`; Error when empty.
std::array<std::int64_t, 2> output_hw(const ConvShape& s) {
  const std::int64_t oh = (s.h + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1) / s.stride_h + 1;
  const std::int64_t ow = (s.w + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1) / s.stride_w + 1;
  if (oh < 1 || ow < 1) throw Error("[Conv] empty output");
  return {oh, ow};
}

/// The operation graph of `ops` on `handle`, finalized.
DescPtr operation_graph(cudnnHandle_t handle, const std::vector<cudnnBackendDescriptor_t>& ops) {
  auto g = std::make_unique<Desc>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  g->set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
         static_cast<std::int64_t>(ops.size()), ops.data());
  g->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  g->finalize();
  return g;
}

enum Uid : std::int64_t { kX = 1, kW, kY, kBias, kRes, kConvOut = 100, kBiasOut, kResOut };

}  // namespace

namespace detail {

/// What both graph convolutions keep of their graph: its descriptors, the engine configs in
/// heuristic order, the chosen one's plan, its variant pack; and choosing and timing them.
struct GraphPlans {
  std::vector<DescPtr> keep;  // every descriptor the graph refers to
  DescPtr graph;
  std::vector<DescPtr> configs;  // engine configs, heuristic order (filtered)
  DescPtr plan;                  // the chosen one, finalized
  std::int64_t plan_ws = 0;
  detail::VariantPack pack;
  std::vector<std::int64_t> uids;

  /// Makes config `index`'s plan and sets `t` to it, if it finalizes within `limit` bytes.
  bool choose(cudnnHandle_t h, int index, std::size_t limit, ConvTactic& t) {
    if (index < 0 || static_cast<std::size_t>(index) >= configs.size()) return false;
    std::int64_t ws = 0;
    DescPtr p = detail::execution_plan(h, *configs[static_cast<std::size_t>(index)], &ws);
    if (!p || static_cast<std::size_t>(ws) > limit) return false;
    plan = std::move(p);
    plan_ws = ws;
    pack.reset();
    t = {index, static_cast<std::size_t>(ws), -1.f, true};
    return true;
  }

  /// Times every config that finalizes: `run(workspace)` once, then (after a synchronize) asks
  /// `accept(index)` when given, then five timed runs; keeps the fastest accepted one (`t` set to
  /// it) and throws UnsupportedError naming `what` when none ran.
  ConvTactic time(cudnnHandle_t h, std::size_t limit, ConvTactic& t, const char* what,
                  const std::function<void(void*)>& run, const std::function<bool(int)>& accept) {
    cudaEvent_t start = nullptr, stop = nullptr;
    KILN_CHECK(cudaEventCreate(&start));
    KILN_CHECK(cudaEventCreate(&stop));
    ConvTactic best = t;
    best.ms = -1.f;
    for (std::size_t i = 0; i < configs.size(); ++i) {
      if (!choose(h, static_cast<int>(i), limit, t)) continue;
      DeviceBuffer ws(static_cast<std::size_t>(plan_ws));
      try {
        run(ws.get());  // warm-up, and the output to check
        if (accept) {
          KILN_CHECK(cudaDeviceSynchronize());
          if (!accept(static_cast<int>(i))) continue;
        }
        KILN_CHECK(cudaEventRecord(start, nullptr));
        constexpr int kRepeats = 5;
        for (int k = 0; k < kRepeats; ++k) run(ws.get());
        KILN_CHECK(cudaEventRecord(stop, nullptr));
        KILN_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        KILN_CHECK(cudaEventElapsedTime(&ms, start, stop));
        ms /= kRepeats;
        if (best.ms < 0 || ms < best.ms)
          best = {static_cast<int>(i), static_cast<std::size_t>(plan_ws), ms, true};
      } catch (const Error&) {
        continue;  // an engine that fails to run is no tactic
      }
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    if (best.ms < 0)
      throw UnsupportedError(fmt::format("{} no engine of cuDNN's graph API ran", what));
    choose(h, best.algorithm, limit, t);
    t = best;
    return t;
  }
};

}  // namespace detail

struct GraphConvolution::Impl : detail::GraphPlans {};

bool GraphConvolution::fusable(const ConvOptions& o) {
  using A = kernels::Activation;
  switch (o.activation) {
    case A::identity:
    case A::relu:
    case A::clip:
    case A::leaky_relu:
    case A::sigmoid:
    case A::tanh: return true;
    default: return false;
  }
}

GraphConvolution::GraphConvolution(const Library& lib, const ConvShape& s, const ConvOptions& o,
                                   bool bias)
    : lib_(lib), shape_(s), opt_(o), bias_(bias), impl_(std::make_unique<Impl>()) {
  if (!fusable(o)) throw UnsupportedError("[Conv] the activation is not one cuDNN's graph fuses");
  Impl& d = *impl_;
  const cudnnDataType_t io = detail::cudnn_type(o.precision);
  const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
  const auto [oh, ow] = output_hw(s);
  out_ = {s.n, s.k, static_cast<int>(oh), static_cast<int>(ow)};
  const std::vector<std::int64_t> xd = {s.n, s.c, s.h, s.w}, wd = {s.k, s.c / s.groups, s.kh, s.kw},
                                  yd = {s.n, s.k, oh, ow}, bd = {1, s.k, 1, 1};
  Desc* x = d.keep.emplace_back(tensor(kX, io, xd, strides_of(xd, o.layout), false)).get();
  Desc* w = d.keep.emplace_back(tensor(kW, io, wd, strides_of(wd, o.layout), false)).get();
  const bool act = o.activation != kernels::Activation::identity;
  const bool any_tail = bias || o.residual || act;
  // Intermediates are virtual and float; the last tensor of the chain is Y.
  Desc* conv_out = d.keep
                       .emplace_back(tensor(any_tail ? kConvOut : kY, any_tail ? f32 : io, yd,
                                            strides_of(yd, o.layout), any_tail))
                       .get();
  std::vector<cudnnBackendDescriptor_t> ops;
  Desc* cop = d.keep.emplace_back(conv_op(s, f32, *x, *w, *conv_out)).get();
  ops.push_back(cop->d);
  d.uids = {kX, kW, kY};

  const Desc* cur = conv_out;
  int remaining = (bias ? 1 : 0) + (o.residual ? 1 : 0) + (act ? 1 : 0);
  auto next = [&](std::int64_t uid) -> Desc& {
    --remaining;
    const bool last = remaining == 0;
    return *d.keep
                .emplace_back(
                    tensor(last ? kY : uid, last ? io : f32, yd, strides_of(yd, o.layout), !last))
                .get();
  };
  if (bias) {
    Desc* b = d.keep.emplace_back(tensor(kBias, io, bd, strides_of(bd, o.layout), false)).get();
    Desc& out = next(kBiasOut);
    ops.push_back(d.keep.emplace_back(pointwise(CUDNN_POINTWISE_ADD, *cur, b, out))->d);
    cur = &out;
    d.uids.push_back(kBias);
  }
  if (o.residual) {
    Desc* r = d.keep.emplace_back(tensor(kRes, io, yd, strides_of(yd, o.layout), false)).get();
    Desc& out = next(kResOut);
    ops.push_back(d.keep.emplace_back(pointwise(CUDNN_POINTWISE_ADD, *cur, r, out))->d);
    cur = &out;
    d.uids.push_back(kRes);
  }
  if (act) {
    Desc& out = next(kY);
    using A = kernels::Activation;
    DescPtr op;
    switch (o.activation) {
      case A::relu: op = pointwise(CUDNN_POINTWISE_RELU_FWD, *cur, nullptr, out); break;
      case A::clip:
        op = pointwise(CUDNN_POINTWISE_RELU_FWD, *cur, nullptr, out, o.act_alpha, o.act_beta, true);
        break;
      case A::leaky_relu:
        op = pointwise(CUDNN_POINTWISE_RELU_FWD, *cur, nullptr, out, 0.f, 0.f, false, o.act_alpha);
        break;
      case A::sigmoid: op = pointwise(CUDNN_POINTWISE_SIGMOID_FWD, *cur, nullptr, out); break;
      case A::tanh: op = pointwise(CUDNN_POINTWISE_TANH_FWD, *cur, nullptr, out); break;
      default: throw UnsupportedError("[Conv] activation");
    }
    ops.push_back(d.keep.emplace_back(std::move(op))->d);
  }

  d.graph = operation_graph(lib_.cudnn(), ops);

  // Candidates: heuristic A, then the fallback list; engines with tensor-core numerics are left
  // out of FP32 plans unless TF32 is allowed.
  std::size_t cap = 8;
  for (cudnnBackendHeurMode_t hm : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    std::vector<DescPtr> cfgs = detail::engine_configs(*d.graph, hm, 16);
    const auto got = static_cast<std::int64_t>(cfgs.size());
    for (std::int64_t i = 0; i < got; ++i) {
      if (o.precision == Precision::f32 && !o.allow_tf32) {
        Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
        std::int64_t n = 0;
        bool tensor_core = false;
        if (cudnnBackendGetAttribute(cfgs[i]->d, CUDNN_ATTR_ENGINECFG_ENGINE,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                     &engine.d) == CUDNN_STATUS_SUCCESS) {
          cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
          std::int64_t nn = 0;
          if (cudnnBackendGetAttribute(engine.d, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                       CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT,
                                       &nn, notes) == CUDNN_STATUS_SUCCESS)
            for (std::int64_t k = 0; k < nn; ++k)
              tensor_core |= notes[k] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE;
        }
        if (tensor_core) continue;
      }
      d.configs.push_back(std::move(cfgs[static_cast<std::size_t>(i)]));
      if (d.configs.size() >= cap) break;
    }
    // FP16/BF16: heuristic A's best eight (the tensor-core engines lead it). FP32 without
    // tensor cores: the fallback list too, whose FMA engines heuristic A often ranks low.
    if (!d.configs.empty() && o.precision != Precision::f32) break;
    cap += 8;
  }
  // The first that finalizes within the workspace limit is the untuned choice.
  for (std::size_t i = 0; i < d.configs.size(); ++i)
    if (choose(static_cast<int>(i))) return;
  throw UnsupportedError(
      fmt::format("[Conv] cuDNN's graph API has no engine for x [{},{},{},{}], {} filters {}x{}",
                  s.n, s.c, s.h, s.w, s.k, s.kh, s.kw));
}

GraphConvolution::~GraphConvolution() = default;

bool GraphConvolution::choose(int index) {
  return impl_->choose(lib_.cudnn(), index, opt_.workspace_limit, tactic_);
}

void GraphConvolution::set_tactic(const ConvTactic& t) {
  const ConvTactic keep = tactic_;
  if (!choose(t.algorithm))
    choose(keep.algorithm);
  else
    tactic_.ms = t.ms;
}

ConvTactic GraphConvolution::tune(const TuneData* data) {
  const std::size_t es = element_size(opt_.precision);
  auto scratch = [&](std::size_t n) {
    DeviceBuffer b(std::max<std::size_t>(n * es, 16));
    b.fill_bytes(0x3c);
    return b;
  };
  DeviceBuffer x = scratch(std::size_t(shape_.n) * shape_.c * shape_.h * shape_.w);
  DeviceBuffer w =
      scratch(std::size_t(shape_.k) * (shape_.c / shape_.groups) * shape_.kh * shape_.kw);
  DeviceBuffer y = scratch(std::size_t(out_[0]) * out_[1] * out_[2] * out_[3]);
  DeviceBuffer r = scratch(std::size_t(out_[0]) * out_[1] * out_[2] * out_[3]);
  DeviceBuffer b = scratch(std::size_t(shape_.k));
  const void* px = data ? data->x : x.get();
  const void* pw = data ? data->w : w.get();
  const void* pb = data ? data->bias : b.get();
  const void* pr = data ? data->residual : r.get();
  void* py = data ? data->y : y.get();
  return impl_->time(
      lib_.cudnn(), opt_.workspace_limit, tactic_, "[Conv]",
      [&](void* ws) { forward(px, pw, pb, pr, py, ws, nullptr); },
      data && data->accept ? data->accept : std::function<bool(int)>{});
}

void GraphConvolution::forward(const void* x, const void* w, const void* bias, const void* residual,
                               void* y, void* workspace, Stream stream) const {
  Impl& d = *impl_;
  std::vector<void*> data = {const_cast<void*>(x), const_cast<void*>(w), y};
  if (bias_) data.push_back(const_cast<void*>(bias));
  if (opt_.residual) data.push_back(const_cast<void*>(residual));
  const Desc& pack = d.pack.get(d.uids, data, workspace);
  lib_.set_stream(stream);
  KILN_CHECK(cudnnBackendExecute(lib_.cudnn(), d.plan->d, pack.d));
}

// ---- INT8: the convolution and its whole epilogue
// ------------------------------------------------

namespace {

enum Int8Uid : std::int64_t {
  kQX = 1,
  kQW,
  kQY,
  kQMul,
  kQBias,
  kQRes,
  kQResScale,
  kQYScale,
  kQConv = 100,
  kQScaled,
  kQBiased,
  kQResF,
  kQResAdded,
  kQRelu
};

cudnnDataType_t cudnn_out(Int8GraphConvolution::Out o) {
  using O = Int8GraphConvolution::Out;
  switch (o) {
    case O::s8: return CUDNN_DATA_INT8;
    case O::u8: return CUDNN_DATA_UINT8;
    case O::f16: return CUDNN_DATA_HALF;
    case O::bf16: return CUDNN_DATA_BFLOAT16;
    case O::f32: break;
  }
  return CUDNN_DATA_FLOAT;
}

}  // namespace

struct Int8GraphConvolution::Impl : detail::GraphPlans {
  /// The graph of `spec`, the output quantized by dividing by its scales or multiplying by their
  /// reciprocals; false when cuDNN lists no engine that finalizes for it.
  bool make(cudnnHandle_t h, const Spec& spec, bool divide) {
    keep.clear();
    configs.clear();
    const ConvShape& s = spec.shape;
    const auto [oh, ow] = output_hw(s);
    const cudnnDataType_t i8 = CUDNN_DATA_INT8, f32 = CUDNN_DATA_FLOAT, i32 = CUDNN_DATA_INT32;
    const std::vector<std::int64_t> xd = {s.n, s.c, s.h, s.w}, wd = {s.k, s.c, s.kh, s.kw},
                                    yd = {s.n, s.k, oh, ow};
    auto add = [&](DescPtr p) { return keep.emplace_back(std::move(p)).get(); };
    auto dense = [&](std::int64_t uid, cudnnDataType_t t, const std::vector<std::int64_t>& d,
                     bool virt) {
      return add(tensor(uid, t, d, strides_of(d, Layout::nhwc), virt));
    };
    auto per_channel = [&](std::int64_t uid, int count) {
      return dense(uid, f32, {1, count, 1, 1}, false);
    };
    const bool q = quantized(spec.out);
    // The chain's last op writes Y; the others write virtual f32 tensors.
    int remaining = 1 + spec.bias + spec.residual + spec.relu + q;
    auto next = [&](std::int64_t uid) {
      return --remaining == 0 ? dense(kQY, cudnn_out(spec.out), yd, false)
                              : dense(uid, f32, yd, true);
    };
    std::vector<cudnnBackendDescriptor_t> ops;
    const Desc* x = dense(kQX, i8, xd, false);
    const Desc* w = dense(kQW, i8, wd, false);
    const Desc* cur = dense(kQConv, f32, yd, true);
    ops.push_back(add(conv_op(s, i32, *x, *w, *cur))->d);
    uids = {kQX, kQW, kQY, kQMul};
    auto binary = [&](cudnnPointwiseMode_t mode, const Desc* b, std::int64_t out_uid) {
      const Desc* out = next(out_uid);
      ops.push_back(add(pointwise(mode, *cur, b, *out))->d);
      cur = out;
    };
    binary(CUDNN_POINTWISE_MUL, per_channel(kQMul, s.k), kQScaled);
    if (spec.bias) {
      binary(CUDNN_POINTWISE_ADD, per_channel(kQBias, s.k), kQBiased);
      uids.push_back(kQBias);
    }
    if (spec.residual) {
      // residual * its scales, a second virtual chain joining the first by an addition.
      const Desc* r = dense(kQRes, i8, yd, false);
      const Desc* rf = dense(kQResF, f32, yd, true);
      ops.push_back(add(pointwise(CUDNN_POINTWISE_MUL, *r,
                                  per_channel(kQResScale, spec.residual_scales), *rf))
                        ->d);
      binary(CUDNN_POINTWISE_ADD, rf, kQResAdded);
      uids.insert(uids.end(), {kQRes, kQResScale});
    }
    if (spec.relu) {
      const Desc* out = next(kQRelu);
      ops.push_back(add(pointwise(CUDNN_POINTWISE_RELU_FWD, *cur, nullptr, *out))->d);
      cur = out;
    }
    if (q) {
      binary(divide ? CUDNN_POINTWISE_DIV : CUDNN_POINTWISE_MUL,
             per_channel(kQYScale, spec.y_scales), kQY);
      uids.push_back(kQYScale);
    }
    try {
      graph = operation_graph(h, ops);
    } catch (const Error&) {
      return false;  // cuDNN refuses the graph itself
    }
    for (cudnnBackendHeurMode_t hm : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      for (DescPtr& c : detail::engine_configs(*graph, hm, 16))
        if (configs.size() < 8) configs.push_back(std::move(c));
      if (!configs.empty()) break;
    }
    return !configs.empty();
  }
};

Int8GraphConvolution::Int8GraphConvolution(const Library& lib, const Spec& spec)
    : lib_(lib), spec_(spec), impl_(std::make_unique<Impl>()) {
  const ConvShape& s = spec.shape;
  if (s.groups != 1) throw UnsupportedError("[ConvInteger] cuDNN's INT8 graph: a grouped filter");
  // Division first (QuantizeLinear's arithmetic), the reciprocal where no engine divides.
  for (bool divide : {true, false}) {
    if (!divide && !quantized(spec.out)) break;
    divides_ = divide;
    if (!impl_->make(lib_.cudnn(), spec, divide)) continue;
    for (std::size_t i = 0; i < impl_->configs.size(); ++i)
      if (choose(static_cast<int>(i))) return;
  }
  throw UnsupportedError(fmt::format(
      "[ConvInteger] cuDNN's graph API has no INT8 engine for x [{},{},{},{}], {} filters {}x{}",
      s.n, s.c, s.h, s.w, s.k, s.kh, s.kw));
}

Int8GraphConvolution::~Int8GraphConvolution() = default;

std::size_t Int8GraphConvolution::candidates() const { return impl_->configs.size(); }

bool Int8GraphConvolution::choose(int index) {
  return impl_->choose(lib_.cudnn(), index, spec_.workspace_limit, tactic_);
}

bool Int8GraphConvolution::set_tactic(const ConvTactic& t) {
  const ConvTactic keep = tactic_;
  if (!choose(t.algorithm)) {
    choose(keep.algorithm);
    return false;
  }
  tactic_.ms = t.ms;
  return true;
}

ConvTactic Int8GraphConvolution::tune(const Data& data, const std::function<bool(int)>& accept) {
  return impl_->time(
      lib_.cudnn(), spec_.workspace_limit, tactic_, "[ConvInteger]",
      [&](void* ws) { forward(data, ws, nullptr); }, accept);
}

void Int8GraphConvolution::forward(const Data& a, void* workspace, Stream stream) const {
  Impl& d = *impl_;
  std::vector<void*> ptrs;
  for (std::int64_t uid : d.uids) {
    const void* p = nullptr;
    switch (uid) {
      case kQX: p = a.x; break;
      case kQW: p = a.w; break;
      case kQY: p = a.y; break;
      case kQMul: p = a.multiplier; break;
      case kQBias: p = a.bias; break;
      case kQRes: p = a.residual; break;
      case kQResScale: p = a.residual_scale; break;
      case kQYScale: p = a.y_scale; break;
      default: break;
    }
    if (!p)
      throw Error(fmt::format("[ConvInteger] cuDNN's INT8 graph: no data for tensor {}", uid));
    ptrs.push_back(const_cast<void*>(p));
  }
  const Desc& pack = d.pack.get(d.uids, ptrs, workspace);
  lib_.set_stream(stream);
  KILN_CHECK(cudnnBackendExecute(lib_.cudnn(), d.plan->d, pack.d));
}

}  // namespace kiln::runtime
