// GPU pointwise kernels (activations, broadcast binary ops, fused chains) against the CPU
// reference, on fresh random inputs, in f32 and f16. Skips (exit 77) where no GPU exists.
#include "gpu_check.hpp"
#include "pointwise.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

namespace {

struct UnaryCase {
  const char* op;
  kk::Activation act;
  float alpha, beta;
  std::map<std::string, kiln::Attribute> attrs;
  float lo = -4.f, hi = 4.f;
  bool clip_inputs = false;  // Clip takes min and max as inputs
};

std::vector<UnaryCase> unary_cases() {
  using A = kk::Activation;
  return {
      {"Relu", A::relu, 0, 0, {}},
      {"Sigmoid", A::sigmoid, 0, 0, {}},
      {"Tanh", A::tanh, 0, 0, {}},
      {"Identity", A::identity, 0, 0, {}},
      {"LeakyRelu", A::leaky_relu, 0.1f, 0, {{"alpha", 0.1}}},
      {"Elu", A::elu, 0.7f, 0, {{"alpha", 0.7}}},
      {"Selu", A::selu, 1.67f, 1.05f, {{"alpha", double(1.67f)}, {"gamma", double(1.05f)}}},
      {"Celu", A::celu, 1.3f, 0, {{"alpha", double(1.3f)}}},
      {"Gelu", A::gelu, 0, 0, {}},
      {"Gelu", A::gelu_tanh, 0, 0, {{"approximate", std::string("tanh")}}},
      {"Softplus", A::softplus, 0, 0, {}},
      {"Softsign", A::softsign, 0, 0, {}},
      {"HardSigmoid", A::hard_sigmoid, 0.25f, 0.4f, {{"alpha", 0.25}, {"beta", double(0.4f)}}},
      {"HardSwish", A::hard_swish, 0, 0, {}},
      {"Clip", A::clip, -1.5f, 2.5f, {}, -4.f, 4.f, true},
      {"ThresholdedRelu", A::thresholded_relu, 0.5f, 0, {{"alpha", 0.5}}},
      {"Mish", A::mish, 0, 0, {}},
      {"Swish", A::swish, 1.5f, 0, {{"alpha", 1.5}}},
      {"Abs", A::abs, 0, 0, {}},
      {"Neg", A::neg, 0, 0, {}},
      {"Exp", A::exp, 0, 0, {}},
      {"Log", A::log, 0, 0, {}, 0.05f, 8.f},
      {"Sqrt", A::sqrt, 0, 0, {}, 0.01f, 8.f},
      {"Reciprocal", A::reciprocal, 0, 0, {}, 0.5f, 4.f},
      {"Erf", A::erf, 0, 0, {}},
      {"Floor", A::floor, 0, 0, {}},
      {"Ceil", A::ceil, 0, 0, {}},
      {"Round", A::round, 0, 0, {}},
      {"Sign", A::sign, 0, 0, {}},
      {"Sin", A::sin, 0, 0, {}},
      {"Cos", A::cos, 0, 0, {}},
      {"Tan", A::tan, 0, 0, {}, -1.2f, 1.2f},
      {"Shrink", A::shrink, 0.5f, 0.2f, {{"lambd", 0.5}, {"bias", double(0.2f)}}},
      {"Atan", A::atan, 0, 0, {}, -6.f, 6.f},
  };
}

/// Strides of an operand of `dims` broadcast (right-aligned) to `out`.
kk::Strides broadcast_strides(const std::vector<i64>& dims, const std::vector<i64>& out) {
  kk::Strides s;
  i64 stride = 1;
  const std::size_t shift = out.size() - dims.size();
  for (std::size_t k = dims.size(); k-- > 0;) {
    s.s[k + shift] = dims[k] == 1 ? 0 : stride;
    stride *= dims[k];
  }
  return s;
}

std::vector<i64> broadcast(const std::vector<i64>& a, const std::vector<i64>& b) {
  std::vector<i64> out(std::max(a.size(), b.size()), 1);
  for (std::size_t k = 0; k < out.size(); ++k) {
    const i64 da = k < out.size() - a.size() ? 1 : a[k - (out.size() - a.size())];
    const i64 db = k < out.size() - b.size() ? 1 : b[k - (out.size() - b.size())];
    out[k] = std::max(da, db);
  }
  return out;
}

kk::Dims to_dims(const std::vector<i64>& v) {
  kk::Dims d;
  d.rank = static_cast<int>(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) d.d[k] = v[k];
  return d;
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;

  for (const UnaryCase& c : unary_cases()) {
    for (bool f16 : {false, true}) {
      for (i64 n : {1, 1000, 1 << 20}) {
        const std::string what = std::string(c.op) +
                                 (c.act == kk::Activation::gelu_tanh ? "(tanh)" : "") +
                                 " n=" + std::to_string(n);
        report.run(what, [&] {
          std::vector<float> x = random_values(n, c.lo, c.hi);
          if (f16) x = round_f16(x);
          const kiln::Tensor tx = tensor({n}, x);
          const kiln::Tensor lo = kiln::Tensor::scalar(c.alpha), hi = kiln::Tensor::scalar(c.beta);
          const kiln::Tensor ref = c.clip_inputs ? reference(node(c.op, 3), {&tx, &lo, &hi})
                                                 : reference(node(c.op, 1, c.attrs), {&tx});
          DeviceBuffer dx = upload(x, f16), dy = poisoned(n, f16);
          KILN_CHECK(
              kk::activation(elem(f16), c.act, c.alpha, c.beta, dx.get(), dy.get(), n, nullptr));
          report.check(what, download(dy, n, f16), ref, f16);
        });
      }
    }
  }

  // Binary ops with broadcasting, up to 8-D.
  struct BinCase {
    const char* op;
    kk::PointwiseOp bin;
    float a_lo, a_hi, b_lo, b_hi;
    std::map<std::string, kiln::Attribute> attrs;
  };
  const BinCase bins[] = {
      {"Add", kk::PointwiseOp::add, -3, 3, -3, 3, {}},
      {"Sub", kk::PointwiseOp::sub, -3, 3, -3, 3, {}},
      {"Mul", kk::PointwiseOp::mul, -3, 3, -3, 3, {}},
      {"Div", kk::PointwiseOp::div, -3, 3, 0.5f, 3, {}},
      {"Pow", kk::PointwiseOp::pow, 0.1f, 3, -2, 2, {}},
      {"Max", kk::PointwiseOp::max, -3, 3, -3, 3, {}},
      {"Min", kk::PointwiseOp::min, -3, 3, -3, 3, {}},
      {"PRelu", kk::PointwiseOp::prelu, -3, 3, 0.05f, 0.5f, {}},
      {"Mod", kk::PointwiseOp::mod, -9, 9, 0.5f, 3, {{"fmod", std::int64_t{1}}}},
  };
  const std::pair<std::vector<i64>, std::vector<i64>> shapes[] = {
      {{7}, {7}},
      {{2, 3, 4, 5}, {3, 1, 5}},
      {{4, 1, 6}, {1, 5, 1}},
      {{64, 256}, {256}},
      {{2, 1, 2, 3, 1, 2, 2, 3}, {1, 2, 1, 3, 2, 1, 2, 1}},
      {{8, 32, 28, 28}, {1, 32, 1, 1}},
  };
  for (const BinCase& c : bins) {
    for (bool f16 : {false, true}) {
      for (const auto& [sa, sb0] : shapes) {
        std::vector<i64> sb = sb0;
        if (c.bin == kk::PointwiseOp::prelu || c.bin == kk::PointwiseOp::pow) {
          // PRelu's slope broadcasts to X (unidirectional); keep X the larger shape
          if (numel(broadcast(sa, sb)) != numel(sa)) continue;
        }
        const std::string what = std::string(c.op) + " " + dims_text(sa) + " " + dims_text(sb);
        report.run(what, [&] {
          std::vector<float> a = random_values(numel(sa), c.a_lo, c.a_hi),
                             b = random_values(numel(sb), c.b_lo, c.b_hi);
          if (f16) a = round_f16(a), b = round_f16(b);
          const kiln::Tensor ta = tensor(sa, a), tb = tensor(sb, b);
          const kiln::Tensor ref = reference(node(c.op, 2, c.attrs), {&ta, &tb});
          const std::vector<i64> out = broadcast(sa, sb);
          DeviceBuffer da = upload(a, f16), db = upload(b, f16), dy = poisoned(numel(out), f16);
          KILN_CHECK(kk::binary(elem(f16), c.bin, to_dims(out), da.get(),
                                broadcast_strides(sa, out), db.get(), broadcast_strides(sb, out),
                                dy.get(), nullptr));
          report.check(what, download(dy, numel(out), f16), ref, f16);
        });
      }
    }
  }

  // A fused chain: y = Clip(Relu(x * s + b) - 1) ... versus the reference node by node.
  for (bool f16 : {false, true}) {
    const std::vector<i64> sx = {4, 16, 9, 9}, ss = {16, 1, 1}, sbias = {1, 16, 1, 1};
    const std::string what = "chain Mul+Add+Sigmoid+Sub(reversed)+LeakyRelu " + dims_text(sx);
    report.run(what, [&] {
      auto x = random_values(numel(sx)), s = random_values(numel(ss)),
           b = random_values(numel(sbias)), one = std::vector<float>{1.f};
      if (f16) x = round_f16(x), s = round_f16(s), b = round_f16(b);
      const kiln::Tensor tx = tensor(sx, x), ts = tensor(ss, s), tb = tensor(sbias, b),
                         t1 = tensor({1}, one);
      kiln::Tensor r = reference(node("Mul", 2), {&tx, &ts});
      r = reference(node("Add", 2), {&r, &tb});
      r = reference(node("Sigmoid", 1), {&r});
      r = reference(node("Sub", 2), {&t1, &r});
      r = reference(node("LeakyRelu", 1, {{"alpha", 0.2}}), {&r});
      DeviceBuffer dx = upload(x, f16), ds = upload(s, f16), db = upload(b, f16),
                   d1 = upload(one, f16);
      DeviceBuffer dy = poisoned(numel(sx), f16);
      kk::PointwiseChain c;
      c.dims = to_dims(sx);
      c.x_strides = kk::contiguous_strides(c.dims);
      c.steps = 5;
      c.step[0] = {kk::PointwiseStep::binary, kk::PointwiseOp::mul, 0, 0, ds.get(),
                   broadcast_strides(ss, sx)};
      c.step[1] = {kk::PointwiseStep::binary,   kk::PointwiseOp::add, 0, 0, db.get(),
                   broadcast_strides(sbias, sx)};
      c.step[2] = {kk::PointwiseStep::unary, kk::Activation::sigmoid, 0, 0, nullptr, {}};
      c.step[3] = {kk::PointwiseStep::binary_reversed, kk::PointwiseOp::sub, 0, 0, d1.get(),
                   broadcast_strides({1}, sx)};
      c.step[4] = {kk::PointwiseStep::unary, kk::Activation::leaky_relu, 0.2f, 0, nullptr, {}};
      KILN_CHECK(kk::pointwise_chain(elem(f16), c, dx.get(), dy.get(), nullptr));
      report.check(what, download(dy, numel(sx), f16), r, f16);
    });
  }
  report.expect("bad op is refused",
                kk::activation(kk::Elem::f32, kk::Activation::count_, 0, 0, nullptr, nullptr, 4,
                               nullptr) == cudaErrorInvalidValue);
  report.expect("a binary op as an activation is refused",
                kk::activation(kk::Elem::f32, kk::PointwiseOp::add, 0, 0, nullptr, nullptr, 4,
                               nullptr) == cudaErrorInvalidValue);
  return report.finish("gpu-pointwise");
}
