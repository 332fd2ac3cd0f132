// INT8 steps: QuantizeLinear, DequantizeLinear, and the fused INT8 convolution or matrix product
// that build::fuse_int8 makes (ConvInteger|MatMulInteger, Cast, Mul by the per-channel multiplier,
// [Add bias], [DequantizeLinear + Add: the residual], [Relu], [QuantizeLinear]).
//
// The product runs on cuBLASLt's integer kernels (int8 x int8 -> exact int32): a convolution as
// im2col rows of its int8 input times the weight rows, a matrix product directly; then one kernel
// applies the rest in float with the CPU reference's rounding, so the step's output equals the
// reference's. The GPU takes symmetric int8 activations only (an input zero point of 0, as
// TensorRT does); check_int8_product() refuses the rest naming the node, when a plan is built.
#include <algorithm>

#include "check.hpp"
#include "kiln/ir/window.hpp"
#include "quantize.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

constexpr i64 kAlign = 256;  // workspace offsets
i64 round_up(i64 v, i64 m) { return (v + m - 1) / m * m; }

bool is_8bit(DType t) { return t == DType::i8 || t == DType::u8; }

/// Uploads host floats as a device array of f32, once per engine.
const float* upload_floats(const StepEnv& env, const std::string& key,
                           const std::vector<float>& v) {
  return static_cast<const float*>(env.engine.weights.get(
      key, v.size() * sizeof(float),
      [&](DeviceBuffer& b) { b.upload(v.data(), v.size() * sizeof(float)); }));
}

/// The scale and zero point inputs (`scale_at`, `zp_at` of part `p`) of a quantization over `v`
/// (contiguous in its layout) as kernel parameters: per tensor, or per channel along `axis` (in
/// NHWC only along C, the fastest dim there).
kernels::QuantParams quant_params(const StepEnv& env, const Node& p, std::size_t scale_at,
                                  std::size_t zp_at, const DeviceValue& v) {
  const std::vector<i64>& dims = v.dims;
  const std::string sname = fused_input_name(env.node.inputs, p.inputs.at(scale_at));
  auto it = env.engine.plan.weights.find(sname);
  if (it == env.engine.plan.weights.end())
    unsupported(p, fmt::format("a scale computed at run time ('{}')", sname));
  if (it->second.dtype() != DType::f32)
    unsupported(p, fmt::format("a {} scale (the GPU computes quantization with f32 scales)",
                               dtype_name(it->second.dtype())));
  if (p.attr_int("block_size", 0) != 0) unsupported(p, "blocked quantization");
  const std::vector<double> scale = it->second.to_doubles();
  std::vector<double> zp(scale.size(), 0.0);
  if (auto z = constant_input(env, p, zp_at)) zp = *z;
  if (zp.size() != scale.size()) unsupported(p, "a zero point of another shape than the scale");
  kernels::QuantParams q;
  if (scale.size() > 1) {
    const i64 rank = static_cast<i64>(dims.size());
    i64 axis = p.attr_int("axis", 1);
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank ||
        dims[static_cast<std::size_t>(axis)] != static_cast<i64>(scale.size()))
      unsupported(p, fmt::format("{} scales along axis {} of {}", scale.size(),
                                 p.attr_int("axis", 1), dims_to_string(dims)));
    q.channels = static_cast<i64>(scale.size());
    q.inner = product(std::vector<i64>(dims.begin() + axis + 1, dims.end()));
    if (v.nhwc()) {
      if (axis != 1)
        unsupported(p, fmt::format("per-axis scales along axis {} of an NHWC value", axis));
      q.inner = 1;
    }
  }
  std::vector<float> s(scale.begin(), scale.end()), z(zp.begin(), zp.end());
  q.scale = upload_floats(env, fmt::format("q-scale:{}", sname), s);
  const bool any_zp = std::any_of(z.begin(), z.end(), [](float v) { return v != 0.f; });
  if (any_zp)
    q.zero_point = upload_floats(
        env, fmt::format("q-zp:{}", fused_input_name(env.node.inputs, p.inputs.at(zp_at))), z);
  return q;
}

/// Requires `v` to be contiguous in its layout (row-major, or NHWC).
void need_dense(const Node& n, const DeviceValue& v) {
  if (!v.contiguous() && !v.nhwc()) unsupported(n, fmt::format("{} with strides", v.describe()));
}

// ---- QuantizeLinear, DequantizeLinear ----------------------------------------------------------

class QuantizeStep final : public Step {
 public:
  explicit QuantizeStep(const StepEnv& env) : quantize_(env.node.op == "QuantizeLinear") {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    const DeviceValue& q8 = quantize_ ? y_ : x_;
    const DeviceValue& f = quantize_ ? x_ : y_;
    switch (q8.dtype) {
      case DType::i8: type_ = kernels::Q8::s8; break;
      case DType::u8: type_ = kernels::Q8::u8; break;
      case DType::f8e4m3fn: type_ = kernels::Q8::e4m3; break;
      case DType::f8e5m2: type_ = kernels::Q8::e5m2; break;
      default:
        unsupported(n, fmt::format("{} from {} to {} (the GPU quantizes floats to int8, uint8, "
                                   "f8e4m3fn and f8e5m2)",
                                   n.op, x_.describe(), y_.describe()));
    }
    if (!float_kind(f.dtype))
      unsupported(n, fmt::format("{} from {} to {} (int8/uint8/float8 and floats only)", n.op,
                                 x_.describe(), y_.describe()));
    saturate_ = n.attr_int("saturate", 1) != 0;
    // The walk is elementwise in memory order, the same in both layouts.
    need_dense(n, x_);
    if (x_.nhwc() != y_.nhwc())
      throw GraphError(fmt::format("{}input and output differ in layout", n.where()));
    q_ = quant_params(env, n, 1, 2, x_);
  }
  void run(const RunArgs& a) override {
    if (quantize_)
      KILN_CHECK(
          kernels::quantize(x_.elem(), x_.ptr, q_, type_, saturate_, y_.ptr, x_.numel(), a.stream));
    else
      KILN_CHECK(kernels::dequantize(x_.ptr, type_, q_, y_.elem(), y_.ptr, x_.numel(), a.stream));
  }
  std::string kind() const override { return quantize_ ? "quantize" : "dequantize"; }

 private:
  bool quantize_ = true, saturate_ = true;
  kernels::Q8 type_ = kernels::Q8::s8;
  DeviceValue x_, y_;
  kernels::QuantParams q_;
};

// ---- the fused INT8 product ----------------------------------------------------------------

/// What the fused INT8 step's body says (for the step and for check_int8_product()).
struct Int8Body {
  bool conv = false;
  std::string x, w, x_zp, multiplier, bias;  // fused input names
  const Node* residual_dq = nullptr;         // the residual's DequantizeLinear part
  bool relu = false;
  const Node* out_q = nullptr;  // the output's QuantizeLinear part
};

Int8Body read_int8_body(const Node& n, const FusedBody& body) {
  Int8Body b;
  const auto& parts = body.parts;
  const Node& prod = parts.at(0);
  b.conv = prod.op == "ConvInteger";
  if (prod.inputs.size() < 3 || prod.inputs[2].empty())
    unsupported(n, fmt::format("{} without its input zero point", prod.op));
  auto name = [&](const std::string& ref) { return fused_input_name(n.inputs, ref); };
  b.x = name(prod.inputs[0]);
  b.w = name(prod.inputs[1]);
  b.x_zp = name(prod.inputs[2]);
  if (parts.size() < 3 || parts[1].op != "Cast" || parts[1].attr_int("to", 0) != 1 ||
      parts[2].op != "Mul")
    unsupported(n,
                "an INT8 product without its Cast to float and per-channel Mul "
                "(build::fuse_int8's form)");
  // `cur`: the running value; each part after the Mul reads it (a residual's DequantizeLinear
  // reads the residual, and the Add after it both).
  std::string cur = parts[1].outputs.at(0);
  auto other = [&](const Node& p) {
    if (p.inputs.size() != 2 || (p.inputs[0] == cur) == (p.inputs[1] == cur))
      unsupported(n, fmt::format("the part {} '{}' of an INT8 step", p.op, p.name));
    return p.inputs[0] == cur ? p.inputs[1] : p.inputs[0];
  };
  const std::string m = other(parts[2]);
  if (!fused_input_index(m)) unsupported(n, "a multiplier that is no input of the step");
  b.multiplier = name(m);
  cur = parts[2].outputs.at(0);
  bool residual_added = false;
  for (std::size_t i = 3; i < parts.size(); ++i) {
    const Node& p = parts[i];
    if (b.out_q) unsupported(n, fmt::format("'{}' after the output's QuantizeLinear", p.op));
    if (p.op == "DequantizeLinear" && !b.residual_dq && !b.relu) {
      b.residual_dq = &p;
      continue;  // the Add after it reads it; the running value is unchanged
    }
    if (p.op == "Add") {
      const std::string o = other(p);
      if (b.residual_dq && !residual_added && o == b.residual_dq->outputs.at(0)) {
        residual_added = true;
      } else if (!b.residual_dq && !b.relu && b.bias.empty() && fused_input_index(o)) {
        b.bias = name(o);
      } else {
        unsupported(n, fmt::format("the Add '{}' of an INT8 step", p.name));
      }
    } else if (p.op == "Relu" && !b.relu && p.inputs.at(0) == cur) {
      b.relu = true;
    } else if (p.op == "QuantizeLinear" && p.inputs.at(0) == cur) {
      b.out_q = &p;
    } else {
      unsupported(n, fmt::format("the part {} '{}' of an INT8 step", p.op, p.name));
    }
    cur = p.outputs.at(0);
  }
  if (b.residual_dq && !residual_added)
    unsupported(n, "a residual DequantizeLinear that no Add reads");
  return b;
}

/// The GPU's rule for an INT8 product: its input is int8 with a zero point of 0 everywhere.
void check_zero_point(const Node& n, const Int8Body& b, const plan::Plan& p) {
  auto it = p.weights.find(b.x_zp);
  if (it == p.weights.end())
    unsupported(n, fmt::format("an input zero point computed at run time ('{}')", b.x_zp));
  const Tensor& zp = it->second;
  if (zp.dtype() != DType::i8)
    unsupported(n, fmt::format("a {} input (zero point '{}'): the GPU runs INT8 products on "
                               "symmetric int8 activations (quantize them to int8 with zero "
                               "point 0; the CPU reference runs this plan)",
                               dtype_name(zp.dtype()), b.x_zp));
  for (i64 i = 0; i < zp.numel(); ++i)
    if (zp.get(i) != 0)
      unsupported(n, fmt::format("the input zero point '{}' is {}, not 0: the GPU runs INT8 "
                                 "products on symmetric int8 activations (the CPU reference "
                                 "runs this plan)",
                                 b.x_zp, zp.get(i)));
}

class Int8ProductStep final : public Step {
 public:
  Int8ProductStep(const StepEnv& env, const FusedBody& body) {
    const Node& n = env.node;
    const Int8Body b = read_int8_body(n, body);
    check_zero_point(n, b, env.engine.plan);
    const Node& prod = body.parts[0];
    x_ = env.value(b.x);
    y_ = env.value(n.outputs.at(0));
    const DeviceValue w = env.value(b.w);
    if (x_.dtype != DType::i8 || !w.host || w.dtype != DType::i8)
      unsupported(n, fmt::format("an INT8 product of {} by {} (int8 by a constant int8 weight)",
                                 x_.describe(), w.describe()));
    need_dense(n, x_);
    need_dense(n, y_);
    // The layout pass gave the step one layout (NHWC on the 16-bit targets): input, output and
    // residual are in it.
    if (x_.nhwc() != y_.nhwc())
      throw GraphError(fmt::format("{}input and output differ in layout", n.where()));
    const Tensor& wt = *w.host;
    i64 k = 0;
    if (b.conv) {
      const std::size_t r = x_.dims.size();
      if ((r != 3 && r != 4) || wt.rank() != r)
        unsupported(n, fmt::format("a {}-D INT8 convolution", static_cast<int>(r) - 2));
      if (prod.attr_int("group", 1) != 1) unsupported(n, "a grouped INT8 convolution");
      std::vector<i64> in(x_.dims.begin() + 2, x_.dims.end());
      std::vector<i64> kernel(wt.dims().begin() + 2, wt.dims().end());
      const ops::Window win = ops::resolve_window(prod, in, kernel, ops::WindowKind::conv);
      auto at = [&](const std::vector<i64>& v, std::size_t d, i64 one) {
        return static_cast<int>(r == 3 ? (d == 0 ? one : v[0]) : v[d]);
      };
      im_.batch = x_.dims[0];
      im_.channels = static_cast<int>(x_.dims[1]);
      im_.in_h = at(in, 0, 1), im_.in_w = at(in, 1, 1);
      im_.out_h = at(win.out, 0, 1), im_.out_w = at(win.out, 1, 1);
      im_.k_h = at(kernel, 0, 1), im_.k_w = at(kernel, 1, 1);
      im_.stride_h = at(win.strides, 0, 1), im_.stride_w = at(win.strides, 1, 1);
      im_.dil_h = at(win.dilations, 0, 1), im_.dil_w = at(win.dilations, 1, 1);
      im_.pad_top = at(win.pad_begin, 0, 0), im_.pad_left = at(win.pad_begin, 1, 0);
      im_.nhwc = x_.nhwc();
      channels_ = wt.dim(0);
      k = wt.numel() / channels_;
      // A 1x1 convolution of stride 1 without padding over NHWC rows of a multiple of 4 bytes is
      // the product itself: its input rows are the patch rows.
      const bool unpadded =
          std::all_of(win.pad_begin.begin(), win.pad_begin.end(), [](i64 v) { return v == 0; }) &&
          std::all_of(win.pad_end.begin(), win.pad_end.end(), [](i64 v) { return v == 0; });
      direct_ = im_.nhwc && im_.k_h == 1 && im_.k_w == 1 && im_.stride_h == 1 &&
                im_.stride_w == 1 && unpadded && im_.channels % 4 == 0;
      rows_ = im_.batch * im_.out_h * im_.out_w;
      e_.batch = im_.batch;
      e_.pixels = static_cast<i64>(im_.out_h) * im_.out_w;
    } else {
      if (x_.nhwc()) unsupported(n, fmt::format("MatMulInteger of an NHWC {}", x_.describe()));
      if (wt.rank() != 2 || x_.dims.empty() || x_.dims.back() != wt.dim(0))
        unsupported(n, fmt::format("MatMulInteger of {} by {}", x_.describe(), w.describe()));
      channels_ = wt.dim(1);
      k = wt.dim(0);
      rows_ = x_.numel() / k;
      e_.batch = rows_;
      e_.pixels = 1;
    }
    row_ = round_up(k, 4);
    im_.row = static_cast<int>(row_);
    const i64 cpad = round_up(channels_, 4);
    // The weight as cuBLASLt's B: [cpad][row] int8, zeros past the channels and the patch; a
    // patch row in the order the input's rows have (c, kh, kw) for NCHW, (kh, kw, c) for NHWC.
    const bool nhwc_patch = b.conv && im_.nhwc;
    const std::string key =
        fmt::format("int8-w:{}:{}x{}{}", b.w, cpad, row_, nhwc_patch ? ":nhwc" : "");
    w_ = env.engine.weights.get(key, static_cast<std::size_t>(cpad * row_), [&](DeviceBuffer& buf) {
      std::vector<std::int8_t> h(static_cast<std::size_t>(cpad * row_), 0);
      const auto* src = wt.data<std::int8_t>();
      const i64 cin = b.conv ? im_.channels : 0, taps = b.conv ? k / im_.channels : 0;
      for (i64 c = 0; c < channels_; ++c)
        for (i64 j = 0; j < k; ++j) {
          // j walks the source's patch: (ci, tap) for a convolution's [Cout, Cin, kh, kw].
          const i64 to = nhwc_patch ? (j % taps) * cin + j / taps : j;
          h[static_cast<std::size_t>(c * row_ + to)] =
              b.conv ? src[c * k + j] : src[j * channels_ + c];  // MatMulInteger's W is [K, N]
        }
      buf.upload(h.data(), h.size());
    });
    // The epilogue.
    auto floats_of = [&](const std::string& name, const char* what) {
      auto it = env.engine.plan.weights.find(name);
      if (it == env.engine.plan.weights.end() || it->second.numel() != channels_)
        unsupported(
            n, fmt::format("a {} '{}' that is no constant of {} values", what, name, channels_));
      const auto d = it->second.to_doubles();
      return upload_floats(env, fmt::format("int8-{}:{}", what, name),
                           std::vector<float>(d.begin(), d.end()));
    };
    e_.channels = channels_;
    e_.acc_ld = cpad;
    e_.multiplier = floats_of(b.multiplier, "multiplier");
    if (!b.bias.empty()) e_.bias = floats_of(b.bias, "bias");
    if (b.residual_dq) {
      residual_ = env.value(fused_input_name(n.inputs, b.residual_dq->inputs.at(0)));
      if (residual_.dtype != DType::i8 && residual_.dtype != DType::u8)
        unsupported(n, fmt::format("a residual {}", residual_.describe()));
      need_dense(n, residual_);
      if (residual_.nhwc() != y_.nhwc())
        unsupported(n, fmt::format("a residual {} in another layout than the output {}",
                                   residual_.describe(), y_.describe()));
      if (residual_.dims != y_.dims)
        unsupported(n, fmt::format("a residual {} of another shape than the output {}",
                                   residual_.describe(), y_.describe()));
      e_.residual_signed = residual_.dtype == DType::i8;
      e_.residual_q = quant_params(env, *b.residual_dq, 1, 2, y_);
    }
    e_.relu = b.relu;
    e_.nhwc = y_.nhwc();
    if (b.out_q) {
      if (!is_8bit(y_.dtype)) unsupported(n, fmt::format("a quantized output {}", y_.describe()));
      e_.out_q = true;
      e_.out_signed = y_.dtype == DType::i8;
      e_.y_q = quant_params(env, *b.out_q, 1, 2, y_);
    } else {
      if (!float_kind(y_.dtype)) unsupported(n, fmt::format("an output {}", y_.describe()));
      e_.y_elem = y_.elem();
    }
    // The product: rows of `row_` int8 (the input, or its im2col rows) times the weight rows.
    MatmulShape s;
    s.m = rows_;
    s.n = cpad;
    s.k = row_;
    s.trans_b = true;
    MatmulOptions o;
    o.int8 = true;
    o.workspace_limit =
        std::min<std::size_t>(env.engine.options.workspace_limit, std::size_t{64} << 20);
    mm_ = std::make_unique<Matmul>(env.lib, s, o);
    cols_bytes_ =
        (b.conv && !direct_) || (!b.conv && row_ != k) ? round_up(rows_ * row_, kAlign) : 0;
    acc_bytes_ = round_up(rows_ * cpad * 4, kAlign);
    key_ = fmt::format("int8-matmul|m{} n{} k{}|ws {}", s.m, s.n, s.k, o.workspace_limit);
    conv_ = b.conv;
    k_ = k;
  }

  void run(const RunArgs& a) override {
    auto* ws = static_cast<std::byte*>(a.workspace);
    const auto* x = static_cast<const std::int8_t*>(x_.ptr);
    auto* cols = reinterpret_cast<std::int8_t*>(ws);
    auto* acc = reinterpret_cast<std::int32_t*>(ws + cols_bytes_);
    const std::int8_t* rows = x;
    if (conv_ && !direct_) {
      KILN_CHECK(kernels::im2col_s8(im_, x, cols, a.stream));
      rows = cols;
    } else if (row_ != k_) {
      KILN_CHECK(kernels::pad_rows_s8(x, rows_, k_, row_, cols, a.stream));
      rows = cols;
    }
    mm_->run(rows, w_, nullptr, acc, ws + cols_bytes_ + acc_bytes_, a.stream);
    kernels::Int8Epilogue e = e_;
    e.residual = residual_.ptr;
    KILN_CHECK(kernels::int8_epilogue(e, acc, y_.ptr, a.stream));
  }
  std::size_t workspace() const override {
    return static_cast<std::size_t>(cols_bytes_ + acc_bytes_) + mm_->workspace_bytes();
  }
  std::string kind() const override {
    return !conv_ ? "int8-cublaslt" : direct_ ? "int8-conv1x1-cublaslt" : "int8-conv-cublaslt";
  }
  std::string tactic_key() const override { return key_; }
  Tactic tune() override { return tune_matmul(*mm_); }
  void set_tactic(const Tactic& t) override { set_matmul_tactic(*mm_, t); }
  std::string tactic() const override { return matmul_tactic_text(*mm_); }

 private:
  DeviceValue x_, y_, residual_;
  const void* w_ = nullptr;
  bool conv_ = false, direct_ = false;
  kernels::Im2col im_;
  kernels::Int8Epilogue e_;
  i64 channels_ = 1, rows_ = 1, row_ = 4, k_ = 1, cols_bytes_ = 0, acc_bytes_ = 0;
  std::unique_ptr<Matmul> mm_;
  std::string key_;
};

void check_int8_product(const plan::Plan& p, const Node& n, const FusedBody& body) {
  check_zero_point(n, read_int8_body(n, body), p);
}

}  // namespace

void register_int8_steps(StepRegistry& r) {
  for (const char* op : {"QuantizeLinear", "DequantizeLinear"})
    r.add(op, step_factory<QuantizeStep>);
  for (const char* op : {"ConvInteger", "MatMulInteger"}) {
    r.add(op, step_factory<Int8ProductStep>, true);
    r.add_check(op, check_int8_product);
  }
}

}  // namespace kiln::runtime::detail
