// cuDNN convolution and deconvolution (tuned tactics, fused bias, activation and residual add)
// against the CPU reference: FP32 NCHW without TF32, FP16 NHWC with tensor cores.
#include "gpu_check.hpp"
#include "runtime/conv.hpp"

using namespace gpu_test;
namespace kk = kiln::kernels;
namespace kr = kiln::runtime;

namespace {

/// [A, B, S] -> [A, S, B] on the host (NCHW -> NHWC with S = H*W, and back with B, S swapped).
std::vector<float> swap_last(const std::vector<float>& v, i64 a, i64 b, i64 s) {
  std::vector<float> out(v.size());
  for (i64 i = 0; i < a; ++i)
    for (i64 j = 0; j < b; ++j)
      for (i64 k = 0; k < s; ++k) out[(i * s + k) * b + j] = v[(i * b + j) * s + k];
  return out;
}

struct Case {
  kr::ConvShape s;
  kk::Activation act = kk::Activation::identity;
  bool residual = false;
  bool bias = true;
};

const char* act_op(kk::Activation a) {
  switch (a) {
    case kk::Activation::relu: return "Relu";
    case kk::Activation::sigmoid: return "Sigmoid";
    case kk::Activation::leaky_relu: return "LeakyRelu";
    default: return nullptr;
  }
}

std::string text(const kr::ConvShape& s, const Case& c) {
  return fmt::format("x[{},{},{},{}] k{} {}x{} pad{},{} s{},{} d{},{} g{}{}{}{}", s.n, s.c, s.h,
                     s.w, s.k, s.kh, s.kw, s.pad_h, s.pad_w, s.stride_h, s.stride_w, s.dil_h,
                     s.dil_w, s.groups, c.bias ? " +bias" : "", c.residual ? " +residual" : "",
                     act_op(c.act) ? std::string(" +") + act_op(c.act) : std::string());
}

void run_case(Report& report, const kr::Library& lib, const Case& c, bool f16, bool deconv) {
  const kr::ConvShape& s = c.s;
  const std::string what =
      std::string(deconv ? "ConvTranspose " : "Conv ") + (f16 ? "NHWC " : "NCHW ") + text(s, c);
  report.run(what, [&] {
    kr::ConvOptions o;
    o.precision = f16 ? kr::Precision::f16 : kr::Precision::f32;
    o.layout = f16 ? kr::Layout::nhwc : kr::Layout::nchw;
    o.activation = c.act;
    o.act_alpha = c.act == kk::Activation::leaky_relu ? 0.1f : 0.f;
    o.residual = c.residual;
    o.workspace_limit = std::size_t{64} << 20;
    std::unique_ptr<kr::Convolution> conv;
    std::unique_ptr<kr::Deconvolution> dec;
    kr::ConvTactic t;
    std::array<int, 4> od{};
    if (deconv) {
      dec = std::make_unique<kr::Deconvolution>(lib, s, o);
      t = dec->tune();
      od = dec->output_dims();
    } else {
      conv = std::make_unique<kr::Convolution>(lib, s, o);
      t = conv->tune();
      od = conv->output_dims();
    }
    const std::vector<i64> xd = {s.n, s.c, s.h, s.w};
    const std::vector<i64> wd = deconv ? std::vector<i64>{s.c, s.k / s.groups, s.kh, s.kw}
                                       : std::vector<i64>{s.k, s.c / s.groups, s.kh, s.kw};
    const std::vector<i64> yd = {od[0], od[1], od[2], od[3]};
    auto x = random_values(numel(xd)), w = random_values(numel(wd), -0.5f, 0.5f),
         b = random_values(s.k), r = random_values(numel(yd));
    if (f16) x = round_f16(x), w = round_f16(w), b = round_f16(b), r = round_f16(r);
    const kiln::Tensor tx = tensor(xd, x), tw = tensor(wd, w), tb = tensor({s.k}, b),
                       tr = tensor(yd, r);
    std::map<std::string, kiln::Attribute> attrs = {
        {"kernel_shape", std::vector<i64>{s.kh, s.kw}},
        {"pads", std::vector<i64>{s.pad_h, s.pad_w, s.pad_h, s.pad_w}},
        {"strides", std::vector<i64>{s.stride_h, s.stride_w}},
        {"dilations", std::vector<i64>{s.dil_h, s.dil_w}},
        {"group", std::int64_t{s.groups}}};
    if (deconv) attrs["output_padding"] = std::vector<i64>{s.out_pad_h, s.out_pad_w};
    kiln::Tensor ref = reference(node(deconv ? "ConvTranspose" : "Conv", 3, attrs),
                                 {&tx, &tw, c.bias ? &tb : nullptr});
    if (c.residual) ref = reference(node("Add", 2), {&ref, &tr});
    if (act_op(c.act))
      ref = reference(node(act_op(c.act), 1,
                           c.act == kk::Activation::leaky_relu
                               ? std::map<std::string, kiln::Attribute>{{"alpha", double(0.1f)}}
                               : std::map<std::string, kiln::Attribute>{}),
                      {&ref});
    // FP16 runs NHWC: the weights [K, C/g, kh, kw] become [K, kh, kw, C/g].
    const i64 wk = wd[0], wc = wd[1], khw = s.kh * s.kw;
    DeviceBuffer dx = upload(f16 ? swap_last(x, s.n, s.c, s.h * s.w) : x, f16);
    DeviceBuffer dw = upload(f16 ? swap_last(w, wk, wc, khw) : w, f16);
    DeviceBuffer db = upload(b, f16);
    DeviceBuffer dr = upload(f16 ? swap_last(r, yd[0], yd[1], yd[2] * yd[3]) : r, f16);
    DeviceBuffer dy = poisoned(numel(yd), f16);
    DeviceBuffer ws(t.workspace);
    if (deconv)
      dec->forward(dx.get(), dw.get(), c.bias ? db.get() : nullptr, c.residual ? dr.get() : nullptr,
                   dy.get(), ws.get(), nullptr);
    else
      conv->forward(dx.get(), dw.get(), c.bias ? db.get() : nullptr,
                    c.residual ? dr.get() : nullptr, dy.get(), ws.get(), nullptr);
    std::vector<float> y = download(dy, numel(yd), f16);
    if (f16) y = swap_last(y, yd[0], yd[2] * yd[3], yd[1]);
    report.check(what + " [" + t.describe() + "]", y, ref, f16);
  });
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  const kr::Library lib;
  using A = kk::Activation;
  auto shape = [](int n, int c, int h, int w, int k, int kh, int kw, int pad, int stride, int dil,
                  int groups) {
    kr::ConvShape s;
    s.n = n, s.c = c, s.h = h, s.w = w, s.k = k, s.kh = kh, s.kw = kw;
    s.pad_h = s.pad_w = pad, s.stride_h = s.stride_w = stride, s.dil_h = s.dil_w = dil,
    s.groups = groups;
    return s;
  };
  const std::vector<Case> convs = {
      {shape(2, 3, 17, 19, 8, 3, 3, 1, 1, 1, 1)},
      {shape(1, 16, 14, 14, 32, 5, 5, 2, 2, 1, 1), A::relu},
      {shape(2, 8, 12, 12, 8, 3, 3, 1, 1, 1, 8), A::relu},  // depthwise
      {shape(1, 4, 15, 15, 6, 3, 3, 2, 1, 2, 2), A::sigmoid},
      {shape(4, 32, 7, 7, 64, 1, 1, 0, 1, 1, 1), A::relu, true},
      {shape(2, 16, 9, 9, 16, 3, 3, 1, 1, 1, 1), A::leaky_relu, true},
      {shape(1, 1, 28, 28, 20, 5, 5, 0, 1, 1, 1), A::identity, false, false},  // LeNet conv1
      {shape(2, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1), A::relu},                   // ResNet stage 1
  };
  for (bool f16 : {false, true})
    for (const Case& c : convs) run_case(report, lib, c, f16, false);

  auto deshape = [&](int n, int c, int h, int w, int k, int kk_, int pad, int stride, int out_pad,
                     int groups) {
    kr::ConvShape s = shape(n, c, h, w, k, kk_, kk_, pad, stride, 1, groups);
    s.out_pad_h = s.out_pad_w = out_pad;
    return s;
  };
  const std::vector<Case> deconvs = {
      {deshape(1, 4, 5, 5, 3, 3, 1, 2, 1, 1)},
      {deshape(2, 8, 7, 7, 4, 4, 1, 2, 0, 1), A::relu},
      {deshape(2, 6, 6, 6, 4, 3, 0, 1, 0, 2)},
      {deshape(1, 16, 8, 8, 8, 2, 0, 2, 0, 1), A::sigmoid, true},
  };
  for (bool f16 : {false, true})
    for (const Case& c : deconvs) run_case(report, lib, c, f16, true);

  // cuDNN's own message reaches the caller.
  bool threw = false;
  try {
    kr::ConvShape bad = shape(1, 3, 4, 4, 8, 3, 3, 0, 1, 1, 2);  // 3 channels in 2 groups
    kr::Convolution conv(lib, bad, {});
  } catch (const kiln::Error& e) {
    threw = std::string(e.what()).find("groups") != std::string::npos;
  }
  report.expect("bad group count throws naming it", threw);
  return report.finish("gpu-conv");
}
