// Small Q/DQ networks as quantization tools write them (QuantizeLinear/DequantizeLinear around
// each convolution or matrix product, the weights as int8 with per-channel scales), for the tests
// of the fused INT8 steps: the runtime's host checks (tests/unit) and the GPU against the CPU
// reference (tests/gpu). Random values from a fixed seed.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::test {

struct QdqMaker {
  Graph g;
  std::mt19937 rng;
  int counter = 0;
  DType act = DType::i8;      ///< the activations' 8-bit type (f8e4m3fn: an FP8 network)
  double act_zero_point = 0;  ///< their zero point

  /// A graph `name` of one f32 input "x" of `dims`; int8 activations (uint8 with zero point 128
  /// as onnxruntime quantizes them where `act` says so).
  QdqMaker(unsigned seed, const char* name, std::vector<std::int64_t> dims,
           DType act_type = DType::i8)
      : rng(seed), act(act_type), act_zero_point(act_type == DType::u8 ? 128 : 0) {
    g.name = name;
    g.inputs.push_back({"x", TensorType{DType::f32, Shape::of(dims)}});
  }

  std::string name(const char* base) { return std::string(base) + std::to_string(counter++); }
  std::string weight(Tensor t, const char* base = "w") {
    const std::string n = name(base);
    g.weights[n] = std::move(t);
    return n;
  }
  std::string scalar(float v) { return weight(Tensor::scalar(v), "s"); }
  std::string zero_point() {
    Tensor z(act, {});
    z.set(0, act_zero_point);
    return weight(std::move(z), "zp");
  }
  std::string op(const std::string& o, std::vector<std::string> in,
                 std::map<std::string, Attribute> a = {}) {
    Node n;
    n.op = o;
    n.name = name(o.c_str());
    n.inputs = std::move(in);
    n.outputs = {n.name + "_out"};
    n.attrs = std::move(a);
    return g.add_node(std::move(n)).outputs[0];
  }
  /// Q then DQ of x with scale s (the activations' type and zero point): two nodes.
  std::string q(const std::string& x, float s) {
    return op("QuantizeLinear", {x, scalar(s), zero_point()});
  }
  std::string dq(const std::string& xq, float s) {
    return op("DequantizeLinear", {xq, scalar(s), zero_point()});
  }
  /// An 8-bit weight of `dims` dequantized per output channel (`axis`): int8 values in [-127,
  /// 127], or for an FP8 network FP8 E4M3 values whose largest magnitude in each channel is 448
  /// (the scale max|w| / 448, as quantize_graph makes FP8 weights).
  std::string weight8(const std::vector<std::int64_t>& dims, std::int64_t axis) {
    const bool fp8 = act == DType::f8e4m3fn;
    const DType wt = fp8 ? DType::f8e4m3fn : DType::i8;
    Tensor w(wt, dims);
    std::uniform_int_distribution<int> v(-127, 127);
    std::uniform_real_distribution<double> f(-448, 448);
    const std::int64_t c = dims[static_cast<std::size_t>(axis)];
    std::int64_t inner = 1;
    for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < dims.size(); ++d) inner *= dims[d];
    std::vector<char> peaked(static_cast<std::size_t>(c), 0);  // the channel has its 448
    for (std::int64_t i = 0; i < w.numel(); ++i) {
      char& peak = peaked[static_cast<std::size_t>((i / inner) % c)];
      w.set(i, !fp8 ? v(rng) : !peak ? 448.0 : f(rng));
      peak = 1;
    }
    Tensor s(DType::f32, {c});
    std::uniform_real_distribution<float> sv(0.002f, 0.01f);
    for (std::int64_t i = 0; i < c; ++i) s.set(i, fp8 ? sv(rng) * 127 / 448 : sv(rng));
    Tensor z(wt, {c});  // zeros
    return op("DequantizeLinear",
              {weight(std::move(w)), weight(std::move(s), "ws"), weight(std::move(z), "wz")},
              {{"axis", axis}});
  }
  std::string floats(const std::vector<std::int64_t>& dims, float lo, float hi) {
    Tensor t(DType::f32, dims);
    std::uniform_real_distribution<float> v(lo, hi);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, v(rng));
    return weight(std::move(t), "b");
  }
  void finish(const std::string& y) {
    g.outputs = {y};
    g.infer(&reference::constant_evaluator());
  }
};

/// x [n, cin, hw, hw] -> Q -> DQ -> Conv k x k (stride, pad k/2) + bias [-> Add DQ(Q(x))] -> Relu
/// -> Q -> DQ -> y: one fused INT8 step after fuse_int8 (the residual needs cin == cout, stride 1).
/// Without `quantized_output` the Relu's float output is y (the step ends in float).
inline Graph qdq_conv(std::int64_t n, std::int64_t cin, std::int64_t cout, std::int64_t hw,
                      std::int64_t k, std::int64_t stride, bool residual, DType act = DType::i8,
                      unsigned seed = 1, bool quantized_output = true) {
  QdqMaker m(seed, "qdq_conv", {n, cin, hw, hw}, act);
  const float sx = 0.02f;
  const std::string xq = m.q("x", sx);
  const std::int64_t p = k / 2;
  std::string y =
      m.op("Conv", {m.dq(xq, sx), m.weight8({cout, cin, k, k}, 0), m.floats({cout}, -0.5f, 0.5f)},
           {{"kernel_shape", std::vector<std::int64_t>{k, k}},
            {"strides", std::vector<std::int64_t>{stride, stride}},
            {"pads", std::vector<std::int64_t>{p, p, p, p}}});
  if (residual) y = m.op("Add", {y, m.dq(xq, sx)});
  y = m.op("Relu", {y});
  const float sy = 0.05f;
  m.finish(quantized_output ? m.dq(m.q(y, sy), sy) : y);
  return m.g;
}

/// x [rows, k] -> Q -> DQ -> MatMul by DQ(W [k, n]) + bias row -> Q -> DQ -> y (no ReLU: the
/// output's negative half is kept).
inline Graph qdq_matmul(std::int64_t rows, std::int64_t k, std::int64_t n, unsigned seed = 2,
                        DType act = DType::i8) {
  QdqMaker m(seed, "qdq_matmul", {rows, k}, act);
  const float sx = 0.02f;
  std::string y = m.op("MatMul", {m.dq(m.q("x", sx), sx), m.weight8({k, n}, 1)});
  y = m.op("Add", {y, m.floats({n}, -0.5f, 0.5f)});
  const float sy = 0.04f;
  m.finish(m.dq(m.q(y, sy), sy));
  return m.g;
}

/// x [n, c, hw, hw] -> Q -> DQ -> MaxPool 2x2 -> Q -> DQ: after propagate_qdq, a MaxPool of int8.
inline Graph qdq_maxpool(std::int64_t n, std::int64_t c, std::int64_t hw, unsigned seed = 3) {
  QdqMaker m(seed, "qdq_maxpool", {n, c, hw, hw});
  const float s = 0.02f;
  std::string y = m.op("MaxPool", {m.dq(m.q("x", s), s)},
                       {{"kernel_shape", std::vector<std::int64_t>{2, 2}},
                        {"strides", std::vector<std::int64_t>{2, 2}}});
  m.finish(m.dq(m.q(y, s), s));
  return m.g;
}

}  // namespace kiln::test
