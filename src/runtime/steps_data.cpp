// Steps that move or summarize data: pooling, softmax, LRN, layer/RMS norm, reductions, resize,
// concat, slice, pad, gather, split, transpose and the other copies, layout conversions and casts.
#include <cmath>

#include "check.hpp"
#include "copy.cuh"
#include "kiln/ir/window.hpp"
#include "layout.cuh"
#include "norm.cuh"
#include "pool.cuh"
#include "reduce.cuh"
#include "resize.cuh"
#include "softmax.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

// ---- pooling -------------------------------------------------------------------------------

class PoolStep final : public Step {
 public:
  explicit PoolStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) unsupported(n, "MaxPool's Indices output");
    const std::size_t r = x_.dims.size();
    if (r != 3 && r != 4) unsupported(n, fmt::format("{}-D pooling", r - 2));
    if (x_.nhwc() != y_.nhwc())
      throw GraphError(fmt::format("{}input and output differ in layout", n.where()));
    if (!x_.nhwc()) need_contiguous(n, x_);
    nhwc_ = x_.nhwc();
    mode_ = n.op == "MaxPool" || n.op == "GlobalMaxPool" ? kernels::PoolMode::max
                                                         : kernels::PoolMode::average;
    const bool global = n.op.rfind("Global", 0) == 0;
    // A quantized network's MaxPool runs on int8 (propagate_qdq moves its Q before it).
    int8_ = x_.dtype == DType::i8;
    if (!float_kind(x_.dtype) && !(int8_ && n.op == "MaxPool"))
      unsupported(
          n, fmt::format("{} of {} (int8 MaxPool and float pooling only)", n.op, x_.describe()));
    std::vector<i64> in(x_.dims.begin() + 2, x_.dims.end()),
        out(y_.dims.begin() + 2, y_.dims.end());
    if (global) {
      // A reduction over the spatial dims, read through the input's strides.
      kernels::ReduceDesc d;
      d.out_dims = to_dims({x_.dims[0], x_.dims[1]});
      d.out_strides = to_strides({x_.strides[0], x_.strides[1]});
      std::vector<i64> rd(x_.dims.begin() + 2, x_.dims.end()),
          rs(x_.strides.begin() + 2, x_.strides.end());
      d.red_dims = to_dims(rd);
      d.red_strides = to_strides(rs);
      reduce_ = d;
      return;
    }
    // Kernel, strides, dilations and pads (auto_pad resolved) as the IR reads them.
    const ops::Window win =
        ops::resolve_window(n, in, n.attr_ints("kernel_shape"), ops::WindowKind::pool);
    const auto& kernel = win.kernel;
    const auto& strides = win.strides;
    const auto& dil = win.dilations;
    const auto& pb = win.pad_begin;
    const auto& pe = win.pad_end;
    auto two = [&](const std::vector<i64>& v, std::size_t d, i64 one) {
      return static_cast<int>(r == 3 ? (d == 0 ? one : v[0]) : v[d]);
    };
    p_.planes = x_.dims[0] * x_.dims[1];
    p_.in_h = two(in, 0, 1), p_.in_w = two(in, 1, 1);
    p_.out_h = two(out, 0, 1), p_.out_w = two(out, 1, 1);
    p_.k_h = two(kernel, 0, 1), p_.k_w = two(kernel, 1, 1);
    p_.stride_h = two(strides, 0, 1), p_.stride_w = two(strides, 1, 1);
    p_.dil_h = two(dil, 0, 1), p_.dil_w = two(dil, 1, 1);
    p_.pad_top = two(pb, 0, 0), p_.pad_left = two(pb, 1, 0);
    p_.pad_bottom = two(pe, 0, 0), p_.pad_right = two(pe, 1, 0);
    p_.count_include_pad = n.attr_int("count_include_pad", 0) != 0;
  }
  void run(const RunArgs& a) override {
    if (reduce_) {
      const auto op =
          mode_ == kernels::PoolMode::max ? kernels::Reduction::max : kernels::Reduction::mean;
      KILN_CHECK(kernels::reduce(x_.elem(), op, *reduce_, x_.ptr, y_.ptr, a.stream));
    } else if (int8_) {
      KILN_CHECK(kernels::max_pool2d_s8(p_, nhwc_, x_.dims[1], x_.ptr, y_.ptr, a.stream));
    } else if (nhwc_) {
      KILN_CHECK(kernels::pool2d_nhwc(x_.elem(), mode_, p_, x_.dims[1], x_.ptr, y_.ptr, a.stream));
    } else {
      KILN_CHECK(kernels::pool2d(x_.elem(), mode_, p_, x_.ptr, y_.ptr, a.stream));
    }
  }
  std::string kind() const override {
    return reduce_ ? "reduce" : fmt::format("{}pool{}", int8_ ? "int8-" : "", nhwc_ ? "-nhwc" : "");
  }

 private:
  DeviceValue x_, y_;
  bool nhwc_ = false, int8_ = false;
  kernels::PoolMode mode_ = kernels::PoolMode::max;
  kernels::Pool2d p_;
  std::optional<kernels::ReduceDesc> reduce_;
};

// ---- softmax, LRN, reductions, resize ---------------------------------------------------

class SoftmaxStep final : public Step {
 public:
  explicit SoftmaxStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x_);
    need_contiguous(n, y_);
    log_ = n.op == "LogSoftmax";
    const i64 axis = norm_axis(n, n.attr_int("axis", -1), x_.dims.size());
    outer_ = inner_ = 1;
    for (i64 d = 0; d < axis; ++d) outer_ *= x_.dims[static_cast<std::size_t>(d)];
    n_ = x_.dims[static_cast<std::size_t>(axis)];
    for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < x_.dims.size(); ++d)
      inner_ *= x_.dims[d];
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::softmax(x_.elem(), log_, outer_, n_, inner_, x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "softmax"; }

 private:
  DeviceValue x_, y_;
  bool log_ = false;
  i64 outer_ = 1, n_ = 1, inner_ = 1;
};

class LrnStep final : public Step {
 public:
  explicit LrnStep(const StepEnv& env) : n_(env.node) {
    x_ = env.value(n_.inputs.at(0));
    y_ = env.value(n_.outputs.at(0));
    need_contiguous(n_, x_);
    need_contiguous(n_, y_);
    if (x_.dims.size() < 2) unsupported(n_, "LRN of rank < 2");
  }
  void run(const RunArgs& a) override {
    const i64 inner = x_.numel() / std::max<i64>(1, x_.dims[0] * x_.dims[1]);
    KILN_CHECK(kernels::lrn(
        x_.elem(), x_.dims[0], x_.dims[1], inner, static_cast<int>(n_.attr_int("size")),
        static_cast<float>(n_.attr_float("alpha", 1e-4)),
        static_cast<float>(n_.attr_float("beta", 0.75)),
        static_cast<float>(n_.attr_float("bias", 1.0)), x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "lrn"; }

 private:
  Node n_;
  DeviceValue x_, y_;
};

/// LayerNormalization and RMSNormalization over the trailing dims from `axis` (kernels::row_norm:
/// f32 statistics in every precision). Scale and B must vary over the normalized dims only (the
/// shapes transformers use); the optional Mean and InvStdDev outputs are written per row. Also the
/// fused residual + norm (fuse_residual_norm: Add then the norm, X = the sum), whose sum the
/// kernel adds on the fly and writes out when the step outputs it.
class RowNormStep final : public Step {
 public:
  RowNormStep(const StepEnv& env, const FusedBody& body) {
    const Node& n = env.node;
    const Node& norm = body.parts.back();
    const Node* add = body.parts.size() == 2 ? &body.parts[0] : nullptr;
    // The step's value for a part's input, and the step's output a part's output is ("" if none).
    auto input = [&](const std::string& ref) { return env.value(fused_input_name(n.inputs, ref)); };
    auto output_of = [&](const std::string& local) -> std::string {
      for (std::size_t o = 0; o < body.results.size() && o < n.outputs.size(); ++o)
        if (!local.empty() && body.results[o] == local) return n.outputs[o];
      return "";
    };
    const DeviceValue x = input(add ? add->inputs.at(0) : norm.inputs.at(0));
    const DeviceValue y = env.value(output_of(norm.outputs.at(0)));
    need_contiguous(n, x);
    need_contiguous(n, y);
    const i64 axis = norm_axis(n, norm.attr_int("axis", -1), x.dims.size());
    a_.rms = norm.op == "RMSNormalization";
    a_.n = 1;
    for (std::size_t d = static_cast<std::size_t>(axis); d < x.dims.size(); ++d) a_.n *= x.dims[d];
    a_.rows = a_.n == 0 ? 0 : x.numel() / a_.n;
    a_.eps = static_cast<float>(norm.attr_float("epsilon", 1e-5));
    a_.x = pointer_of(env, x);
    a_.y = y.ptr;
    elem_ = x.elem();
    if (add) {
      const DeviceValue r = input(add->inputs.at(1));
      if (r.dims != x.dims || !r.contiguous() || r.elem() != elem_)
        unsupported(n, fmt::format("a residual {} added to {}", r.describe(), x.describe()));
      a_.residual = pointer_of(env, r);
      if (const std::string sum = output_of(add->outputs.at(0)); !sum.empty()) {
        const DeviceValue sv = env.value(sum);
        need_contiguous(n, sv);
        if (sv.elem() != elem_) unsupported(n, fmt::format("the sum stored as {}", sv.describe()));
        a_.sum_out = sv.ptr;
      }
    }
    const std::vector<i64> normalized(x.dims.begin() + axis, x.dims.end());
    auto operand = [&](std::size_t i, const char* what, std::int64_t& len) -> const void* {
      if (norm.inputs.size() <= i || norm.inputs[i].empty()) return nullptr;
      const DeviceValue v = input(norm.inputs[i]);
      if (!v.contiguous() || v.elem() != elem_)
        unsupported(n, fmt::format("{} stored as {}", what, v.describe()));
      // Leading 1s dropped, the rest must be the normalized dims (or a single element).
      std::vector<i64> d = v.dims;
      while (!d.empty() && d.front() == 1 && d.size() > normalized.size()) d.erase(d.begin());
      len = v.numel();
      if (len != 1 && d != normalized)
        unsupported(
            n, fmt::format("{} of shape [{}] (the GPU takes the normalized dims [{}] or one value)",
                           what, fmt::join(v.dims, ","), fmt::join(normalized, ",")));
      return pointer_of(env, v);
    };
    a_.scale = operand(1, "Scale", a_.scale_len);
    if (!a_.rms) a_.bias = operand(2, "B", a_.bias_len);
    for (std::size_t o = 1; o < norm.outputs.size(); ++o) {
      const std::string stat = output_of(norm.outputs[o]);
      if (stat.empty()) continue;
      const DeviceValue s = env.value(stat);
      if (s.elem() != elem_)
        unsupported(n, fmt::format("statistics output stored as {}", s.describe()));
      (o == 1 ? a_.mean_out : a_.invstd_out) = s.ptr;
    }
    residual_ = add != nullptr;
  }
  void run(const RunArgs& a) override { KILN_CHECK(kernels::row_norm(elem_, a_, a.stream)); }
  std::string kind() const override {
    return std::string(residual_ ? "residual-" : "") + (a_.rms ? "rms-norm" : "layer-norm");
  }

 private:
  kernels::RowNormArgs a_;
  bool residual_ = false;
  kernels::Elem elem_ = kernels::Elem::f32;
};

class ReduceStep final : public Step {
 public:
  /// The reductions it runs, by ONNX op.
  static const std::map<std::string, kernels::Reduction>& reductions() {
    static const std::map<std::string, kernels::Reduction> ops = {
        {"ReduceSum", kernels::Reduction::sum},
        {"ReduceMean", kernels::Reduction::mean},
        {"ReduceMax", kernels::Reduction::max},
        {"ReduceMin", kernels::Reduction::min},
        {"ReduceProd", kernels::Reduction::prod},
        {"ReduceL1", kernels::Reduction::l1},
        {"ReduceL2", kernels::Reduction::l2},
        {"ReduceLogSum", kernels::Reduction::log_sum},
        {"ReduceLogSumExp", kernels::Reduction::log_sum_exp},
        {"ReduceSumSquare", kernels::Reduction::sum_square}};
    return ops;
  }
  explicit ReduceStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, y_);
    op_ = reductions().at(n.op);
    const std::size_t r = x_.dims.size();
    std::vector<bool> reduced(r, false);
    auto axes = constant_input(env, n, 1);
    if (!axes || axes->empty()) {
      if (n.attr_int("noop_with_empty_axes", 0) != 0)
        reduced.assign(r, false);
      else
        reduced.assign(r, true);
    } else {
      for (double a : *axes)
        reduced[static_cast<std::size_t>(norm_axis(n, static_cast<i64>(a), r))] = true;
    }
    std::vector<i64> od, os, rd, rs;
    for (std::size_t d = 0; d < r; ++d) {
      if (reduced[d])
        rd.push_back(x_.dims[d]), rs.push_back(x_.strides[d]);
      else
        od.push_back(x_.dims[d]), os.push_back(x_.strides[d]);
    }
    d_.out_dims = to_dims(od);
    d_.out_strides = to_strides(os);
    d_.red_dims = to_dims(rd);
    d_.red_strides = to_strides(rs);
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::reduce(x_.elem(), op_, d_, x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "reduce"; }

 private:
  DeviceValue x_, y_;
  kernels::Reduction op_ = kernels::Reduction::sum;
  kernels::ReduceDesc d_;
};

class ResizeStep final : public Step {
 public:
  explicit ResizeStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x_);
    need_contiguous(n, y_);
    const std::size_t r = x_.dims.size();
    if (r < 2) unsupported(n, "Resize of rank < 2");
    for (std::size_t d = 0; d + 2 < r; ++d)
      if (x_.dims[d] != y_.dims[d]) unsupported(n, "Resize of other than the last two dims");
    std::vector<double> scales;
    if (auto s = constant_input(env, n, 2); s && !s->empty()) scales = *s;
    const std::string mode = n.attr_string("mode", "nearest");
    if (mode == "nearest")
      r_.mode = kernels::ResizeMode::nearest;
    else if (mode == "linear")
      r_.mode = kernels::ResizeMode::linear;
    else
      unsupported(n, fmt::format("Resize mode '{}'", mode));
    static const std::map<std::string, kernels::CoordMode> coords = {
        {"half_pixel", kernels::CoordMode::half_pixel},
        {"half_pixel_symmetric", kernels::CoordMode::half_pixel_symmetric},
        {"pytorch_half_pixel", kernels::CoordMode::pytorch_half_pixel},
        {"align_corners", kernels::CoordMode::align_corners},
        {"asymmetric", kernels::CoordMode::asymmetric},
        {"tf_half_pixel_for_nn", kernels::CoordMode::tf_half_pixel_for_nn}};
    static const std::map<std::string, kernels::NearestMode> nearest = {
        {"round_prefer_floor", kernels::NearestMode::round_prefer_floor},
        {"round_prefer_ceil", kernels::NearestMode::round_prefer_ceil},
        {"floor", kernels::NearestMode::floor},
        {"ceil", kernels::NearestMode::ceil}};
    const auto c = coords.find(n.attr_string("coordinate_transformation_mode", "half_pixel"));
    const auto nm = nearest.find(n.attr_string("nearest_mode", "round_prefer_floor"));
    if (c == coords.end() || nm == nearest.end())
      unsupported(n, "this Resize coordinate or nearest mode");
    if (n.attr_int("antialias", 0) != 0) unsupported(n, "Resize with antialias");
    r_.coord = c->second;
    r_.nearest = nm->second;
    r_.in_h = static_cast<int>(x_.dims[r - 2]), r_.in_w = static_cast<int>(x_.dims[r - 1]);
    r_.out_h = static_cast<int>(y_.dims[r - 2]), r_.out_w = static_cast<int>(y_.dims[r - 1]);
    r_.outer = x_.numel() / std::max<i64>(1, x_.dims[r - 2] * x_.dims[r - 1]);
    r_.scale_h = scales.size() == r ? scales[r - 2] : static_cast<double>(r_.out_h) / r_.in_h;
    r_.scale_w = scales.size() == r ? scales[r - 1] : static_cast<double>(r_.out_w) / r_.in_w;
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::resize2d(x_.elem(), r_, x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "resize"; }

 private:
  DeviceValue x_, y_;
  kernels::Resize2d r_;
};

// ---- copies --------------------------------------------------------------------------------

/// One or more strided copies (concat, split, slice, transpose, expand, reshape copies).
class CopyStep final : public Step {
 public:
  struct Piece {
    std::size_t elem = 4;
    kernels::Dims dims;
    const void* src = nullptr;
    kernels::Strides src_strides;
    void* dst = nullptr;
    kernels::Strides dst_strides;
  };
  CopyStep(std::string kind, std::vector<Piece> pieces)
      : kind_(std::move(kind)), pieces_(std::move(pieces)) {}
  void run(const RunArgs& a) override {
    for (const auto& p : pieces_)
      KILN_CHECK(kernels::strided_copy(p.elem, p.dims, p.src, p.src_strides, p.dst, p.dst_strides,
                                       a.stream));
  }
  std::string kind() const override { return kind_; }

 private:
  std::string kind_;
  std::vector<Piece> pieces_;
};

CopyStep::Piece piece(const DeviceValue& dst, const std::vector<i64>& dims, const void* src,
                      const std::vector<i64>& src_strides, std::byte* dst_ptr,
                      const std::vector<i64>& dst_strides) {
  CopyStep::Piece p;
  p.elem = dst.elem_size();
  p.dims = to_dims(dims);
  p.src = src;
  p.src_strides = to_strides(src_strides);
  p.dst = dst_ptr;
  p.dst_strides = to_strides(dst_strides);
  return p;
}

void same_storage(const Node& n, const DeviceValue& a, const DeviceValue& b) {
  if (a.elem_size() != b.elem_size() || a.fp != b.fp)
    unsupported(n, fmt::format("a copy from {} to {}", a.describe(), b.describe()));
}

std::unique_ptr<Step> concat_step(const StepEnv& env) {
  const Node& n = env.node;
  const DeviceValue y = env.value(n.outputs.at(0));
  const i64 axis = norm_axis(n, n.attr_int("axis"), y.dims.size());
  std::vector<CopyStep::Piece> pieces;
  i64 at = 0;
  for (const auto& in : n.inputs) {
    if (in.empty()) continue;
    const DeviceValue x = env.value(in);
    same_storage(n, x, y);
    auto* dst = static_cast<std::byte*>(y.ptr) +
                at * y.strides[static_cast<std::size_t>(axis)] * static_cast<i64>(y.elem_size());
    pieces.push_back(piece(y, x.dims, pointer_of(env, x), x.strides, dst, y.strides));
    at += x.dims[static_cast<std::size_t>(axis)];
  }
  return std::make_unique<CopyStep>("concat", std::move(pieces));
}

std::unique_ptr<Step> split_step(const StepEnv& env) {
  const Node& n = env.node;
  const DeviceValue x = env.value(n.inputs.at(0));
  const i64 axis = norm_axis(n, n.attr_int("axis", 0), x.dims.size());
  std::vector<CopyStep::Piece> pieces;
  i64 at = 0;
  for (const auto& out : n.outputs) {
    if (out.empty()) continue;
    const DeviceValue y = env.value(out);
    same_storage(n, x, y);
    const auto* src =
        static_cast<const std::byte*>(x.ptr) +
        at * x.strides[static_cast<std::size_t>(axis)] * static_cast<i64>(x.elem_size());
    pieces.push_back(piece(y, y.dims, src, x.strides, static_cast<std::byte*>(y.ptr), y.strides));
    at += y.dims[static_cast<std::size_t>(axis)];
  }
  return std::make_unique<CopyStep>("split", std::move(pieces));
}

std::unique_ptr<Step> slice_step(const StepEnv& env) {
  const Node& n = env.node;
  const DeviceValue x = env.value(n.inputs.at(0));
  const DeviceValue y = env.value(n.outputs.at(0));
  same_storage(n, x, y);
  const std::size_t r = x.dims.size();
  const auto starts = *constant_input(env, n, 1);
  const auto ends = *constant_input(env, n, 2);
  auto axes = constant_input(env, n, 3);
  auto steps = constant_input(env, n, 4);
  std::vector<i64> start(r, 0), step(r, 1);
  for (std::size_t i = 0; i < starts.size(); ++i) {
    const std::size_t ax = static_cast<std::size_t>(norm_axis(
        n, axes && !axes->empty() ? static_cast<i64>((*axes)[i]) : static_cast<i64>(i), r));
    const i64 dim = x.dims[ax];
    const i64 st = steps && !steps->empty() ? static_cast<i64>((*steps)[i]) : 1;
    double s = starts[i];
    if (s < 0) s += static_cast<double>(dim);
    i64 b = st > 0 ? std::clamp<i64>(static_cast<i64>(s), 0, dim)
                   : std::clamp<i64>(static_cast<i64>(s), 0, dim - 1);
    start[ax] = b;
    step[ax] = st;
  }
  i64 offset = 0;
  std::vector<i64> ss(r);
  for (std::size_t d = 0; d < r; ++d)
    offset += start[d] * x.strides[d], ss[d] = x.strides[d] * step[d];
  const auto* src =
      static_cast<const std::byte*>(pointer_of(env, x)) + offset * static_cast<i64>(x.elem_size());
  std::vector<CopyStep::Piece> pieces{
      piece(y, y.dims, src, ss, static_cast<std::byte*>(y.ptr), y.strides)};
  return std::make_unique<CopyStep>("slice", std::move(pieces));
}

std::unique_ptr<Step> transpose_step(const StepEnv& env) {
  const Node& n = env.node;
  const DeviceValue x = env.value(n.inputs.at(0));
  const DeviceValue y = env.value(n.outputs.at(0));
  same_storage(n, x, y);
  std::vector<i64> perm = n.attr_ints("perm", {});
  if (perm.empty())
    for (std::size_t d = x.dims.size(); d-- > 0;) perm.push_back(static_cast<i64>(d));
  std::vector<i64> ss;
  for (i64 p : perm)
    ss.push_back(x.strides[static_cast<std::size_t>(norm_axis(n, p, x.dims.size()))]);
  std::vector<CopyStep::Piece> pieces{
      piece(y, y.dims, pointer_of(env, x), ss, static_cast<std::byte*>(y.ptr), y.strides)};
  return std::make_unique<CopyStep>("transpose", std::move(pieces));
}

/// Reshape-like ops that could not be views, Identity, Expand: the input's elements in
/// row-major order (broadcast for Expand).
std::unique_ptr<Step> reshape_step(const StepEnv& env) {
  const Node& n = env.node;
  const DeviceValue x = env.value(n.inputs.at(0));
  const DeviceValue y = env.value(n.outputs.at(0));
  same_storage(n, x, y);
  if (n.op == "Expand") {
    std::vector<CopyStep::Piece> pieces{piece(
        y, y.dims, pointer_of(env, x),
        [&] {
          const auto s = broadcast_strides(x, y.dims, [&] {
            std::vector<int> p(y.dims.size());
            for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int>(i);
            return p;
          }());
          return std::vector<i64>(s.s, s.s + y.dims.size());
        }(),
        static_cast<std::byte*>(y.ptr), y.strides)};
    return std::make_unique<CopyStep>("expand", std::move(pieces));
  }
  need_contiguous(n, x);
  need_contiguous(n, y);
  const i64 count = x.numel();
  std::vector<CopyStep::Piece> pieces{
      piece(y, {count}, pointer_of(env, x), {1}, static_cast<std::byte*>(y.ptr), {1})};
  return std::make_unique<CopyStep>("copy", std::move(pieces));
}

class PadStep final : public Step {
 public:
  explicit PadStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x_);
    need_contiguous(n, y_);
    same_storage(n, x_, y_);
    const std::size_t r = x_.dims.size();
    const auto pads = *constant_input(env, n, 1);
    auto axes = constant_input(env, n, 3);
    begin_.assign(r, 0);
    const std::size_t k = pads.size() / 2;
    for (std::size_t i = 0; i < k; ++i) {
      const std::size_t ax = static_cast<std::size_t>(norm_axis(
          n, axes && !axes->empty() ? static_cast<i64>((*axes)[i]) : static_cast<i64>(i), r));
      begin_[ax] = static_cast<i64>(pads[i]);
      if (begin_[ax] < 0 || pads[k + i] < 0) unsupported(n, "Pad with negative pads (cropping)");
    }
    const std::string mode = n.attr_string("mode", "constant");
    if (mode == "constant")
      mode_ = kernels::PadMode::constant;
    else if (mode == "reflect")
      mode_ = kernels::PadMode::reflect;
    else if (mode == "edge")
      mode_ = kernels::PadMode::edge;
    else if (mode == "wrap")
      mode_ = kernels::PadMode::wrap;
    else
      unsupported(n, fmt::format("Pad mode '{}'", mode));
    double value = 0;
    if (auto v = constant_input(env, n, 2); v && !v->empty()) value = (*v)[0];
    if (x_.fp == Precision::f16)
      bits_ = f16::from_float(static_cast<float>(value));
    else if (x_.fp == Precision::bf16)
      bits_ = bf16::from_float(static_cast<float>(value));
    else if (x_.dtype == DType::f32)
      bits_ = std::bit_cast<std::uint32_t>(static_cast<float>(value));
    else
      unsupported(n, fmt::format("Pad of {}", x_.describe()));
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::pad(x_.elem_size(), mode_, to_dims(x_.dims), to_dims(y_.dims),
                            begin_.data(), bits_, x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "pad"; }

 private:
  DeviceValue x_, y_;
  std::vector<i64> begin_;
  kernels::PadMode mode_ = kernels::PadMode::constant;
  std::uint64_t bits_ = 0;
};

class GatherStep final : public Step {
 public:
  explicit GatherStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    const DeviceValue idx = env.value(n.inputs.at(1));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x_);
    same_storage(n, x_, y_);
    if (idx.dtype != DType::i64 && idx.dtype != DType::i32)
      unsupported(n, fmt::format("Gather indices of {}", idx.describe()));
    int64_ = idx.dtype == DType::i64;
    idx_ = pointer_of(env, idx);
    count_ = idx.numel();
    const i64 axis = norm_axis(n, n.attr_int("axis", 0), x_.dims.size());
    outer_ = inner_ = 1;
    for (i64 d = 0; d < axis; ++d) outer_ *= x_.dims[static_cast<std::size_t>(d)];
    axis_n_ = x_.dims[static_cast<std::size_t>(axis)];
    for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < x_.dims.size(); ++d)
      inner_ *= x_.dims[d];
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::gather(x_.elem_size(), outer_, axis_n_, inner_, idx_, int64_, count_,
                               x_.host ? x_ptr_ : x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "gather"; }
  const void* x_ptr_ = nullptr;
  DeviceValue x_;

 private:
  DeviceValue y_;
  const void* idx_ = nullptr;
  bool int64_ = true;
  i64 count_ = 0, outer_ = 1, axis_n_ = 1, inner_ = 1;
};

class ToLayoutStep final : public Step {
 public:
  explicit ToLayoutStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    same_storage(n, x_, y_);
    if (x_.dims.size() != 4)
      throw ShapeError(fmt::format("{}expects a 4-D value, got {}", n.where(), x_.describe()));
    if (x_.nhwc() == y_.nhwc())
      throw GraphError(fmt::format("{}converts {} to its own layout", n.where(), x_.describe()));
  }
  void run(const RunArgs& a) override {
    const i64 n = x_.dims[0], c = x_.dims[1], hw = x_.dims[2] * x_.dims[3];
    if (y_.nhwc())
      KILN_CHECK(kernels::nchw_to_nhwc(x_.elem_size(), n, c, hw, x_.ptr, y_.ptr, a.stream));
    else
      KILN_CHECK(kernels::nhwc_to_nchw(x_.elem_size(), n, c, hw, x_.ptr, y_.ptr, a.stream));
  }
  std::string kind() const override { return "layout"; }

 private:
  DeviceValue x_, y_;
};

class CastStep final : public Step {
 public:
  explicit CastStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    need_contiguous(n, x_);
    need_contiguous(n, y_);
    auto is_f = [](const DeviceValue& v) { return v.half() || v.dtype == DType::f32; };
    if (is_f(x_) && is_f(y_)) return;
    if (x_.dtype == y_.dtype) return;
    unsupported(n, fmt::format("Cast from {} to {}", x_.describe(), y_.describe()));
  }
  void run(const RunArgs& a) override {
    if (x_.fp == y_.fp) {
      KILN_CHECK(cudaMemcpyAsync(y_.ptr, x_.ptr,
                                 static_cast<std::size_t>(x_.numel()) * x_.elem_size(),
                                 cudaMemcpyDeviceToDevice, a.stream));
      return;
    }
    KILN_CHECK(kernels::cast(x_.elem(), y_.elem(), x_.ptr, y_.ptr, x_.numel(), a.stream));
  }
  std::string kind() const override { return "cast"; }

 private:
  DeviceValue x_, y_;
};

}  // namespace

void register_data_steps(StepRegistry& r) {
  // Each factory takes the (unfused) step's node from `env`.
  auto add = [&](std::initializer_list<const char*> ops, StepFactory f) {
    for (const char* op : ops) r.add(op, f);
  };
  add({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}, step_factory<PoolStep>);
  add({"Softmax", "LogSoftmax"}, step_factory<SoftmaxStep>);
  add({"LRN"}, step_factory<LrnStep>);
  add({"LayerNormalization", "RMSNormalization"}, step_factory<RowNormStep>);
  // fuse_residual_norm's steps: the residual Add done by the norm's kernel.
  for (const char* norm : {"LayerNormalization", "RMSNormalization"})
    r.add_pattern(fmt::format("Add+{}", norm), step_factory<RowNormStep>);
  for (const auto& [op, _] : ReduceStep::reductions()) r.add(op, step_factory<ReduceStep>);
  add({"Resize"}, step_factory<ResizeStep>);
  add({"Concat"}, [](const StepEnv& env, const FusedBody&) { return concat_step(env); });
  add({"Split"}, [](const StepEnv& env, const FusedBody&) { return split_step(env); });
  add({"Slice"}, [](const StepEnv& env, const FusedBody&) { return slice_step(env); });
  add({"Transpose"}, [](const StepEnv& env, const FusedBody&) { return transpose_step(env); });
  add({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Expand"},
      [](const StepEnv& env, const FusedBody&) { return reshape_step(env); });
  add({"Pad"}, step_factory<PadStep>);
  add({"Gather"}, [](const StepEnv& env, const FusedBody&) -> std::unique_ptr<Step> {
    auto g = std::make_unique<GatherStep>(env);
    if (g->x_.host) g->x_ptr_ = env.engine.weight(g->x_.name);
    return g;
  });
  add({plan::kToLayoutOp}, step_factory<ToLayoutStep>);
  add({"Cast"}, step_factory<CastStep>);
}

}  // namespace kiln::runtime::detail
