// 8-bit steps: QuantizeLinear, DequantizeLinear, and the fused INT8 or FP8 convolution or matrix
// product that build::fuse_int8 makes (read_int8_body, read_fp8_body: the product, its scales,
// [Add bias], [DequantizeLinear + Add: the residual], [Relu], [QuantizeLinear]).
//
// The product runs on cuBLASLt's 8-bit kernels (int8 x int8 -> exact int32; FP8 E4M3 x E4M3 ->
// f32 on Hopper's tensor cores): a convolution as im2col rows of its 8-bit input times the weight
// rows, a matrix product directly; then one kernel applies the rest in float with the CPU
// reference's rounding, so an INT8 step's output equals the reference's (an FP8 step's differs by
// the order of the f32 sums). An INT8 convolution over NHWC has a second candidate: cuDNN's graph
// API runs the convolution and the whole epilogue as one fused kernel (Int8GraphConvolution);
// tune() times both, each cuDNN engine first checked against the cuBLASLt path on random data
// (its f32 epilogue may round a value within one f32 step of a tie the other way: at most one
// in a thousand outputs one apart is accepted, anything more is no tactic). Without tuning the
// cuDNN graph runs where it exists. The GPU takes symmetric activations only (an input zero point
// of 0, as TensorRT does); check_int8_product() refuses the rest naming the node, when a plan is
// built.
#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "check.hpp"
#include "conv.hpp"
#include "kiln/ir/window.hpp"
#include "quantize.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

constexpr i64 kAlign = 256;  // workspace offsets
i64 round_up(i64 v, i64 m) { return (v + m - 1) / m * m; }

/// The kernels' type of an 8-bit value of an INT8 step (int8, uint8) or an FP8 one (f8e4m3fn).
std::optional<kernels::Q8> q8_of(DType t, bool fp8) {
  if (fp8) return t == DType::f8e4m3fn ? std::optional(kernels::Q8::e4m3) : std::nullopt;
  if (t == DType::i8) return kernels::Q8::s8;
  if (t == DType::u8) return kernels::Q8::u8;
  return std::nullopt;
}

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

// ---- the fused 8-bit products -----------------------------------------------------------------

/// What a fused 8-bit step's body says (for the step and for check_int8_product()). INT8:
/// build::fuse_int8's form, ConvInteger|MatMulInteger, Cast, Mul by the per-channel multiplier,
/// then the tail. FP8: DequantizeLinear of x, DequantizeLinear of the FP8 weight (per-channel
/// scales), Conv|Gemm|MatMul of the two, then the tail. The tail: [Add bias], [DequantizeLinear +
/// Add: the residual], [Relu], [QuantizeLinear].
struct ProductBody {
  bool fp8 = false;
  bool conv = false;
  bool w_kn = false;  ///< the weight is [K, N] (MatMulInteger, MatMul, Gemm without transB)
  const Node* prod = nullptr;
  std::string x, w, x_zp;        // fused input names: the 8-bit input, weight and input zero point
  std::string multiplier;        // INT8: the per-channel multiplier's input name
  std::string x_scale, w_scale;  // FP8: the scales' input names
  std::string bias;
  const Node* residual_dq = nullptr;  // the residual's DequantizeLinear part
  bool relu = false;
  const Node* out_q = nullptr;  // the output's QuantizeLinear part
};

/// The running value's other operand in two-input part `p`.
std::string other_operand(const Node& n, const Node& p, const std::string& cur) {
  if (p.inputs.size() != 2 || (p.inputs[0] == cur) == (p.inputs[1] == cur))
    unsupported(n, fmt::format("the part {} '{}' of an 8-bit step", p.op, p.name));
  return p.inputs[0] == cur ? p.inputs[1] : p.inputs[0];
}

/// The tail from part `from` on, `cur` the running value: bias, residual, Relu, output Q.
void read_tail(const Node& n, const std::vector<Node>& parts, std::size_t from, std::string cur,
               ProductBody& b) {
  auto name = [&](const std::string& ref) { return fused_input_name(n.inputs, ref); };
  bool residual_added = false;
  for (std::size_t i = from; i < parts.size(); ++i) {
    const Node& p = parts[i];
    if (b.out_q) unsupported(n, fmt::format("'{}' after the output's QuantizeLinear", p.op));
    if (p.op == "DequantizeLinear" && !b.residual_dq && !b.relu) {
      b.residual_dq = &p;
      continue;  // the Add after it reads it; the running value is unchanged
    }
    if (p.op == "Add") {
      const std::string o = other_operand(n, p, cur);
      if (b.residual_dq && !residual_added && o == b.residual_dq->outputs.at(0)) {
        residual_added = true;
      } else if (!b.residual_dq && !b.relu && b.bias.empty() && fused_input_index(o)) {
        b.bias = name(o);
      } else {
        unsupported(n, fmt::format("the Add '{}' of an 8-bit step", p.name));
      }
    } else if (p.op == "Relu" && !b.relu && p.inputs.at(0) == cur) {
      b.relu = true;
    } else if (p.op == "QuantizeLinear" && p.inputs.at(0) == cur) {
      b.out_q = &p;
    } else {
      unsupported(n, fmt::format("the part {} '{}' of an 8-bit step", p.op, p.name));
    }
    cur = p.outputs.at(0);
  }
  if (b.residual_dq && !residual_added)
    unsupported(n, "a residual DequantizeLinear that no Add reads");
}

ProductBody read_int8_body(const Node& n, const FusedBody& body) {
  ProductBody b;
  const auto& parts = body.parts;
  const Node& prod = parts.at(0);
  b.prod = &prod;
  b.conv = prod.op == "ConvInteger";
  b.w_kn = !b.conv;
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
  const std::string m = other_operand(n, parts[2], parts[1].outputs.at(0));
  if (!fused_input_index(m)) unsupported(n, "a multiplier that is no input of the step");
  b.multiplier = name(m);
  read_tail(n, parts, 3, parts[2].outputs.at(0), b);
  return b;
}

ProductBody read_fp8_body(const Node& n, const FusedBody& body) {
  ProductBody b;
  b.fp8 = true;
  const auto& parts = body.parts;
  if (parts.size() < 3 || parts[0].op != "DequantizeLinear" || parts[1].op != "DequantizeLinear" ||
      (parts[2].op != "Conv" && parts[2].op != "Gemm" && parts[2].op != "MatMul"))
    unsupported(n,
                "an FP8 step without DequantizeLinear of x and W before its product "
                "(build::fuse_int8's FP8 form)");
  const Node &xdq = parts[0], &wdq = parts[1], &prod = parts[2];
  b.prod = &prod;
  b.conv = prod.op == "Conv";
  b.w_kn = prod.op == "MatMul" || (prod.op == "Gemm" && prod.attr_int("transB", 0) == 0);
  if (prod.inputs.size() != 2 || prod.inputs[0] != xdq.outputs.at(0) ||
      prod.inputs[1] != wdq.outputs.at(0))
    unsupported(n, fmt::format("the product '{}' of an FP8 step not of its two dequantized inputs",
                               prod.name));
  if (xdq.inputs.size() < 3 || xdq.inputs[2].empty() || wdq.inputs.size() < 2)
    unsupported(n, "an FP8 step's DequantizeLinear without its scale or zero point");
  auto name = [&](const std::string& ref) { return fused_input_name(n.inputs, ref); };
  b.x = name(xdq.inputs[0]);
  b.x_scale = name(xdq.inputs[1]);
  b.x_zp = name(xdq.inputs[2]);
  b.w = name(wdq.inputs[0]);
  b.w_scale = name(wdq.inputs[1]);
  read_tail(n, parts, 3, prod.outputs.at(0), b);
  return b;
}

/// The body of fused step `n`, whichever 8-bit form it has.
ProductBody read_product_body(const Node& n, const FusedBody& body) {
  return body.parts.at(0).op == "DequantizeLinear" ? read_fp8_body(n, body)
                                                   : read_int8_body(n, body);
}

/// The GPU's rule for an 8-bit product: its input is int8 or f8e4m3fn with a zero point of 0.
void check_zero_point(const Node& n, const ProductBody& b, const plan::Plan& p) {
  auto it = p.weights.find(b.x_zp);
  if (it == p.weights.end())
    unsupported(n, fmt::format("an input zero point computed at run time ('{}')", b.x_zp));
  const Tensor& zp = it->second;
  const DType want = b.fp8 ? DType::f8e4m3fn : DType::i8;
  if (zp.dtype() != want)
    unsupported(n, fmt::format("a {} input (zero point '{}'): the GPU runs {} products on "
                               "symmetric {} activations (quantize them to {} with zero "
                               "point 0; the CPU reference runs this plan)",
                               dtype_name(zp.dtype()), b.x_zp, b.fp8 ? "FP8" : "INT8",
                               dtype_name(want), dtype_name(want)));
  for (i64 i = 0; i < zp.numel(); ++i)
    if (zp.get(i) != 0)
      unsupported(n, fmt::format("the input zero point '{}' is {}, not 0: the GPU runs 8-bit "
                                 "products on symmetric activations (the CPU reference "
                                 "runs this plan)",
                                 b.x_zp, zp.get(i)));
}

/// The constant `name` of the plan as floats; unsupported (naming `what`) unless it has `count`
/// values (1 broadcasts when `count` is 0).
std::vector<float> constant_floats(const Node& n, const plan::Plan& p, const std::string& name,
                                   const char* what, i64 count) {
  auto it = p.weights.find(name);
  if (it == p.weights.end() || (count > 0 && it->second.numel() != count))
    unsupported(n, fmt::format("a {} '{}' that is no constant of {} values", what, name,
                               count > 0 ? count : 1));
  const auto d = it->second.to_doubles();
  return {d.begin(), d.end()};
}

class Int8ProductStep final : public Step {
 public:
  Int8ProductStep(const StepEnv& env, const FusedBody& body) {
    const Node& n = env.node;
    const ProductBody b = read_product_body(n, body);
    check_zero_point(n, b, env.engine.plan);
    fp8_ = b.fp8;
    const Node& prod = *b.prod;
    x_ = env.value(b.x);
    y_ = env.value(n.outputs.at(0));
    const DeviceValue w = env.value(b.w);
    const DType eight = fp8_ ? DType::f8e4m3fn : DType::i8;
    // cuBLASLt's alignment: rows of 4 bytes for INT8, 16 for FP8.
    const i64 align = fp8_ ? 16 : 4;
    if (x_.dtype != eight || !w.host || w.dtype != eight)
      unsupported(
          n, fmt::format("an {0} product of {1} by {2} ({3} by a constant {3} weight)",
                         fp8_ ? "FP8" : "INT8", x_.describe(), w.describe(), dtype_name(eight)));
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
      symmetric_pads_ = win.pad_begin == win.pad_end;
      direct_ = im_.nhwc && im_.k_h == 1 && im_.k_w == 1 && im_.stride_h == 1 &&
                im_.stride_w == 1 && unpadded && im_.channels % align == 0;
      rows_ = im_.batch * im_.out_h * im_.out_w;
      e_.batch = im_.batch;
      e_.pixels = static_cast<i64>(im_.out_h) * im_.out_w;
    } else {
      if (x_.nhwc()) unsupported(n, fmt::format("{} of an NHWC {}", prod.op, x_.describe()));
      if (wt.rank() != 2 || x_.dims.empty() || x_.dims.back() != wt.dim(b.w_kn ? 0 : 1))
        unsupported(n, fmt::format("{} of {} by {}", prod.op, x_.describe(), w.describe()));
      channels_ = wt.dim(b.w_kn ? 1 : 0);
      k = wt.dim(b.w_kn ? 0 : 1);
      rows_ = x_.numel() / k;
      e_.batch = rows_;
      e_.pixels = 1;
    }
    row_ = round_up(k, align);
    im_.row = static_cast<int>(row_);
    const i64 cpad = round_up(channels_, align);
    // The weight as cuBLASLt's B: [cpad][row] bytes, zeros past the channels and the patch; a
    // patch row in the order the input's rows have (c, kh, kw) for NCHW, (kh, kw, c) for NHWC.
    const bool nhwc_patch = b.conv && im_.nhwc;
    const std::string key = fmt::format("{}-w:{}:{}x{}{}", fp8_ ? "fp8" : "int8", b.w, cpad, row_,
                                        nhwc_patch ? ":nhwc" : "");
    w_ = env.engine.weights.get(key, static_cast<std::size_t>(cpad * row_), [&](DeviceBuffer& buf) {
      std::vector<std::int8_t> h(static_cast<std::size_t>(cpad * row_), 0);
      const auto* src = reinterpret_cast<const std::int8_t*>(wt.raw());  // int8 or FP8 bytes
      const i64 cin = b.conv ? im_.channels : 0, taps = b.conv ? k / im_.channels : 0;
      for (i64 c = 0; c < channels_; ++c)
        for (i64 j = 0; j < k; ++j) {
          // j walks the source's patch: (ci, tap) for a convolution's [Cout, Cin, kh, kw].
          const i64 to = nhwc_patch ? (j % taps) * cin + j / taps : j;
          h[static_cast<std::size_t>(c * row_ + to)] =
              b.w_kn ? src[j * channels_ + c] : src[c * k + j];
        }
      buf.upload(h.data(), h.size());
    });
    // The epilogue: acc * multiplier[c] (INT8: the body's; FP8: x_scale * W_scale[c]), ...
    const plan::Plan& pl = env.engine.plan;
    std::vector<float> mult;
    std::string mult_key;
    if (fp8_) {
      const float sx = constant_floats(n, pl, b.x_scale, "scale", 1)[0];
      mult = constant_floats(n, pl, b.w_scale, "weight scale", channels_);
      for (float& m : mult) m *= sx;
      mult_key = fmt::format("fp8-multiplier:{}*{}", b.x_scale, b.w_scale);
    } else {
      mult = constant_floats(n, pl, b.multiplier, "multiplier", channels_);
      mult_key = fmt::format("int8-multiplier:{}", b.multiplier);
    }
    e_.channels = channels_;
    e_.acc_ld = cpad;
    e_.acc_f32 = fp8_;
    e_.multiplier = upload_floats(env, mult_key, mult);
    if (!b.bias.empty())
      e_.bias = upload_floats(env, fmt::format("8bit-bias:{}", b.bias),
                              constant_floats(n, pl, b.bias, "bias", channels_));
    if (b.residual_dq) {
      residual_ = env.value(fused_input_name(n.inputs, b.residual_dq->inputs.at(0)));
      if (!q8_of(residual_.dtype, fp8_))
        unsupported(n, fmt::format("a residual {}", residual_.describe()));
      need_dense(n, residual_);
      if (residual_.nhwc() != y_.nhwc())
        unsupported(n, fmt::format("a residual {} in another layout than the output {}",
                                   residual_.describe(), y_.describe()));
      if (residual_.dims != y_.dims)
        unsupported(n, fmt::format("a residual {} of another shape than the output {}",
                                   residual_.describe(), y_.describe()));
      e_.residual_type = *q8_of(residual_.dtype, fp8_);
      e_.residual_q = quant_params(env, *b.residual_dq, 1, 2, y_);
    }
    e_.relu = b.relu;
    e_.nhwc = y_.nhwc();
    if (b.out_q) {
      if (!q8_of(y_.dtype, fp8_))
        unsupported(n, fmt::format("a quantized output {}", y_.describe()));
      e_.out_q = true;
      e_.out_type = *q8_of(y_.dtype, fp8_);
      e_.out_saturate = b.out_q->attr_int("saturate", 1) != 0;
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
    o.int8 = !fp8_;
    o.fp8 = fp8_;
    o.workspace_limit =
        std::min<std::size_t>(env.engine.options.workspace_limit, std::size_t{64} << 20);
    mm_ = std::make_unique<Matmul>(env.lib, s, o);
    cols_bytes_ =
        (b.conv && !direct_) || (!b.conv && row_ != k) ? round_up(rows_ * row_, kAlign) : 0;
    acc_bytes_ = round_up(rows_ * cpad * 4, kAlign);
    key_ = fmt::format("{}-matmul|m{} n{} k{}|ws {}", fp8_ ? "fp8" : "int8", s.m, s.n, s.k,
                       o.workspace_limit);
    conv_ = b.conv;
    k_ = k;
    log_ = [&st = env.engine](Severity sev, const std::string& m) { st.log(sev, m); };
    where_ = n.where();
    if (env.engine.options.cudnn_graph) make_graph(env, b);
  }

  void run(const RunArgs& a) override {
    if (use_graph_) {
      graph_->forward(graph_data(x_.ptr, residual_.ptr, y_.ptr), a.workspace, a.stream);
      return;
    }
    run_cublas(x_.ptr, residual_.ptr, y_.ptr, a.workspace, a.stream);
  }

  /// The cuBLASLt path: [im2col or row padding], the 8-bit product, kiln's epilogue.
  void run_cublas(const void* x_ptr, const void* residual, void* y, void* workspace,
                  Stream stream) const {
    auto* ws = static_cast<std::byte*>(workspace);
    const auto* x = static_cast<const std::int8_t*>(x_ptr);
    auto* cols = reinterpret_cast<std::int8_t*>(ws);
    void* acc = ws + cols_bytes_;  // int32 (INT8) or f32 (FP8)
    const std::int8_t* rows = x;
    if (conv_ && !direct_) {
      KILN_CHECK(kernels::im2col_s8(im_, x, cols, stream));
      rows = cols;
    } else if (row_ != k_) {
      KILN_CHECK(kernels::pad_rows_s8(x, rows_, k_, row_, cols, stream));
      rows = cols;
    }
    mm_->run(rows, w_, nullptr, acc, ws + cols_bytes_ + acc_bytes_, stream);
    kernels::Int8Epilogue e = e_;
    e.residual = residual;
    KILN_CHECK(kernels::int8_epilogue(e, acc, y, stream));
  }
  std::size_t cublas_workspace() const {
    return static_cast<std::size_t>(cols_bytes_ + acc_bytes_) + mm_->workspace_bytes();
  }
  std::size_t workspace() const override {
    return use_graph_ ? graph_->workspace_bytes() : cublas_workspace();
  }
  std::string kind() const override {
    const std::string f = fp8_ ? "fp8" : "int8";
    if (use_graph_) return f + "-conv-cudnn-graph";
    return f + (!conv_ ? "-cublaslt" : direct_ ? "-conv1x1-cublaslt" : "-conv-cublaslt");
  }
  std::string tactic_key() const override { return key_; }

  /// cuBLASLt's algorithms are timed first; with a cuDNN graph, both whole paths are then timed
  /// on the same random input and the faster kept.
  Tactic tune() override {
    Tactic t = tune_matmul(*mm_);
    if (!graph_) return t;
    use_graph_ = false;
    const std::size_t xb = static_cast<std::size_t>(x_.numel()),
                      yb = static_cast<std::size_t>(y_.numel()) * y_.elem_size();
    auto random_bytes = [](std::size_t n, std::uint32_t seed) {
      // int8 in [-40, 40]: outputs mostly inside the 8-bit range, so that the check sees them.
      std::vector<std::int8_t> h(std::max<std::size_t>(std::min<std::size_t>(n, 1 << 22), 1));
      std::mt19937 g(seed);
      for (auto& v : h) v = static_cast<std::int8_t>(static_cast<int>(g() % 81) - 40);
      return tiled_buffer(h.data(), h.size(), n);
    };
    DeviceBuffer x = random_bytes(xb, 1), r = random_bytes(residual_.ptr ? yb : 16, 2);
    DeviceBuffer yref(std::max<std::size_t>(yb, 16)), y(std::max<std::size_t>(yb, 16));
    DeviceBuffer ws(cublas_workspace());
    const void* rp = residual_.ptr ? r.get() : nullptr;
    const float cublas_ms =
        time_ms([&] { run_cublas(x.get(), rp, yref.get(), ws.get(), nullptr); });
    KILN_CHECK(cudaDeviceSynchronize());
    const std::vector<double> ref = download_y(yref.get());
    const auto accept = [&](int candidate) {
      const std::vector<double> got = download_y(y.get());
      const Agreement a = agreement(got, ref);
      const bool ok = a.far == 0 && a.one_apart * 1000 <= static_cast<i64>(ref.size());
      log_(ok ? Severity::verbose : Severity::warning,
           fmt::format("{}cuDNN INT8 graph engine candidate {} against the cuBLASLt path: {} of "
                       "{} outputs one apart, {} further{}",
                       where_, candidate, a.one_apart, ref.size(), a.far, ok ? "" : "; not used"));
      return ok;
    };
    try {
      const ConvTactic g = graph_->tune(graph_data(x.get(), rp, y.get()), accept);
      if (g.ms < cublas_ms) {
        use_graph_ = true;
        return {Tactic::Backend::cudnn_graph, g.algorithm, g.workspace, g.ms};
      }
    } catch (const UnsupportedError& e) {
      log_(Severity::info, fmt::format("{}{}", where_, e.what()));
    }
    t.ms = cublas_ms;
    return t;
  }
  void set_tactic(const Tactic& t) override {
    if (t.backend == Tactic::Backend::cudnn_graph) {
      if (graph_ && graph_->set_tactic({t.algorithm, t.workspace, t.ms, true})) use_graph_ = true;
      return;  // else keep the current path
    }
    if (t.backend != Tactic::Backend::cublaslt) return;
    set_matmul_tactic(*mm_, t);
    use_graph_ = false;
  }
  std::string tactic() const override {
    if (!use_graph_) return matmul_tactic_text(*mm_);
    const ConvTactic& t = graph_->tactic();
    return fmt::format("graph engine #{}, workspace {} bytes, {:.4f} ms, one graph: {}",
                       t.algorithm, t.workspace, t.ms, graph_what_);
  }

 private:
  /// The cuDNN graph candidate of an INT8 convolution over NHWC with symmetric pads, one group,
  /// channels in multiples of 4, and zero points of 0 on the residual and the output.
  void make_graph(const StepEnv& env, const ProductBody& b) {
    const bool q_residual =
        !b.residual_dq || (residual_.dtype == DType::i8 && !e_.residual_q.zero_point);
    const bool q_out =
        !b.out_q || ((y_.dtype == DType::i8 || y_.dtype == DType::u8) && !e_.y_q.zero_point);
    if (!conv_ || fp8_ || !im_.nhwc || x_.dims.size() != 4 || !symmetric_pads_ ||
        im_.channels % 4 != 0 || channels_ % 4 != 0 || row_ != k_ || !q_residual || !q_out)
      return;
    using Out = Int8GraphConvolution::Out;
    Int8GraphConvolution::Spec s;
    s.shape = {static_cast<int>(im_.batch),
               im_.channels,
               im_.in_h,
               im_.in_w,
               static_cast<int>(channels_),
               im_.k_h,
               im_.k_w,
               im_.pad_top,
               im_.pad_left,
               im_.stride_h,
               im_.stride_w,
               im_.dil_h,
               im_.dil_w,
               1};
    s.bias = e_.bias != nullptr;
    s.residual = b.residual_dq != nullptr;
    s.residual_scales = static_cast<int>(e_.residual_q.channels);
    s.relu = b.relu;
    if (b.out_q) {
      s.out = y_.dtype == DType::i8 ? Out::s8 : Out::u8;
      s.y_scales = static_cast<int>(e_.y_q.channels);
    } else {
      // A float output as the engine stores it (a 16-bit engine's floats are 16-bit).
      s.out = y_.fp == Precision::f16 ? Out::f16 : y_.fp == Precision::bf16 ? Out::bf16 : Out::f32;
    }
    s.workspace_limit = env.engine.options.workspace_limit;
    try {
      graph_ = std::make_unique<Int8GraphConvolution>(env.lib, s);
    } catch (const UnsupportedError& e) {
      log_(Severity::verbose, fmt::format("{}{}", where_, e.what()));
      return;
    }
    if (b.out_q && !graph_->divides()) {
      // The engines take no division: the output's scales' reciprocals multiply instead.
      const auto it =
          env.engine.plan.weights.find(fused_input_name(env.node.inputs, b.out_q->inputs.at(1)));
      std::vector<float> inv;
      for (double v : it->second.to_doubles()) inv.push_back(static_cast<float>(1.0 / v));
      y_scale_ = upload_floats(env, fmt::format("q-inverse-scale:{}", it->first), inv);
    } else {
      y_scale_ = e_.y_q.scale;
    }
    graph_what_ = fmt::format(
        "int8 conv*scale{}{}{}{}", s.bias ? "+bias" : "", s.residual ? "+residual" : "",
        s.relu ? "+relu" : "",
        b.out_q ? (graph_->divides() ? "/y_scale->8-bit" : "*(1/y_scale)->8-bit") : "->float");
    use_graph_ = true;
    key_ = fmt::format("int8-conv|n{} c{} {}x{} k{} {}x{} p{},{} s{},{} d{},{}|{}|ws {}", s.shape.n,
                       s.shape.c, s.shape.h, s.shape.w, s.shape.k, s.shape.kh, s.shape.kw,
                       s.shape.pad_h, s.shape.pad_w, s.shape.stride_h, s.shape.stride_w,
                       s.shape.dil_h, s.shape.dil_w, graph_what_, s.workspace_limit);
  }

  Int8GraphConvolution::Data graph_data(const void* x, const void* residual, void* y) const {
    Int8GraphConvolution::Data d;
    d.x = x;
    d.w = w_;
    d.multiplier = e_.multiplier;
    d.bias = e_.bias;
    d.residual = residual;
    d.residual_scale = e_.residual_q.scale;
    d.y_scale = y_scale_;
    d.y = y;
    return d;
  }

  /// The output's first values at `p` as doubles (the 8-bit integers, or the float values): at
  /// most 2^22, the first images at a large batch (enough to catch an engine that computes
  /// something else, and cheap: ResNet-50's batch-256 outputs hold 205M values).
  std::vector<double> download_y(const void* p) const {
    const auto n = std::min(static_cast<std::size_t>(y_.numel()), std::size_t{1} << 22);
    std::vector<double> v(n);
    if (y_.dtype == DType::i8 || y_.dtype == DType::u8) {
      std::vector<std::uint8_t> h(n);
      KILN_CHECK(cudaMemcpy(h.data(), p, n, cudaMemcpyDeviceToHost));
      for (std::size_t i = 0; i < n; ++i)
        v[i] = y_.dtype == DType::i8 ? static_cast<std::int8_t>(h[i]) : h[i];
      return v;
    }
    const std::vector<float> f = download_floats(p, static_cast<i64>(n), y_.fp);
    return {f.begin(), f.end()};
  }

  /// How far a candidate's outputs are from the reference path's: integers one apart and
  /// further; float outputs are "one apart" within a rounding of their format.
  struct Agreement {
    i64 one_apart = 0, far = 0;
  };
  Agreement agreement(const std::vector<double>& got, const std::vector<double>& ref) const {
    Agreement a;
    const bool ints = y_.dtype == DType::i8 || y_.dtype == DType::u8;
    double peak = 0;
    for (double v : ref) peak = std::max(peak, std::abs(v));
    const double eps = y_.fp == Precision::f32 ? 1e-6 : y_.fp == Precision::f16 ? 1e-3 : 8e-3;
    for (std::size_t i = 0; i < ref.size(); ++i) {
      const double d = std::abs(got[i] - ref[i]);
      if (!(d <= (ints ? 1.0 : eps * std::max(peak, 1e-30) * 8)))
        ++a.far;
      else if (d > (ints ? 0.0 : eps * std::max(std::abs(ref[i]), peak * 1e-3)))
        ++a.one_apart;
    }
    return a;
  }

  DeviceValue x_, y_, residual_;
  const void* w_ = nullptr;
  bool fp8_ = false, conv_ = false, direct_ = false;
  kernels::Im2col im_;
  kernels::Int8Epilogue e_;
  i64 channels_ = 1, rows_ = 1, row_ = 4, k_ = 1, cols_bytes_ = 0, acc_bytes_ = 0;
  std::unique_ptr<Matmul> mm_;
  std::string key_;
  bool symmetric_pads_ = false, use_graph_ = false;
  std::unique_ptr<Int8GraphConvolution> graph_;
  const float* y_scale_ = nullptr;
  std::string graph_what_, where_;
  std::function<void(Severity, const std::string&)> log_;
};

void check_int8_product(const plan::Plan& p, const Node& n, const FusedBody& body) {
  check_zero_point(n, read_product_body(n, body), p);
}

}  // namespace

void register_int8_steps(StepRegistry& r) {
  for (const char* op : {"QuantizeLinear", "DequantizeLinear"})
    r.add(op, step_factory<QuantizeStep>);
  for (const char* op : {"ConvInteger", "MatMulInteger"}) {
    r.add(op, step_factory<Int8ProductStep>, true);
    r.add_check(op, check_int8_product);
  }
  // FP8 steps start with DequantizeLinear (of x, then of W): found by their patterns, each tail
  // build::fuse_int8 can give them ([Add], [DequantizeLinear+Add], [Relu], [QuantizeLinear]).
  for (const char* prod : {"Conv", "Gemm", "MatMul"})
    for (int tail = 0; tail < 16; ++tail) {
      std::string pattern = std::string("DequantizeLinear+DequantizeLinear+") + prod;
      if (tail & 1) pattern += "+Add";
      if (tail & 2) pattern += "+DequantizeLinear+Add";
      if (tail & 4) pattern += "+Relu";
      if (tail & 8) pattern += "+QuantizeLinear";
      r.add_pattern(pattern, step_factory<Int8ProductStep>);
    }
}

}  // namespace kiln::runtime::detail
