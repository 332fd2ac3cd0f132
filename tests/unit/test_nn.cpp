// The nn op family: shape rules and reference kernels of Conv, ConvTranspose, pooling,
// normalization, Gemm, MatMul, softmax and Scale. Hand-computed cases, laws over many random
// shapes (each case named by its size), and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include <fmt/format.h>

#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using i64 = std::int64_t;

namespace {

using test::node;
using test::run;

Tensor T(std::vector<i64> dims, std::vector<double> v, DType dt = DType::f32) {
  return Tensor::from_doubles(dt, std::move(dims), v);
}

Tensor random_tensor(std::mt19937& rng, std::vector<i64> dims, DType dt = DType::f64) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(product(dims)));
  for (auto& e : v) e = u(rng);
  return Tensor::from_doubles(dt, std::move(dims), v);
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol = 1e-5) {
  const auto g = got.to_doubles();
  REQUIRE(g.size() == want.size());
  for (std::size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i);
    CHECK(g[i] == doctest::Approx(want[i]).epsilon(tol));
  }
}

double dot(const Tensor& a, const Tensor& b) {
  const auto x = a.to_doubles(), y = b.to_doubles();
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

double max_abs_diff(const Tensor& a, const std::vector<double>& b) {
  const auto x = a.to_doubles();
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - b[i]));
  return m;
}

/// Type inferred for a one-node graph whose inputs are given types.
TensorType infer_one(Node n, const std::vector<TensorType>& ins, std::size_t out = 0) {
  Graph g;
  for (std::size_t i = 0; i < ins.size(); ++i) g.inputs.push_back({n.inputs[i], ins[i]});
  g.outputs.push_back(n.outputs[out]);
  g.add_node(n);
  g.infer();
  return g.type_of(n.outputs[out]);
}

TensorType f32(std::vector<i64> d) { return TensorType{DType::f32, Shape::of(d)}; }

// ---- naive forms, written independently of the kernels -----------------------------------

struct ConvCase {
  std::vector<i64> in;  // spatial
  std::vector<i64> k, s, d, pb, pe;
  i64 n, c, m, group;
  std::vector<i64> out() const {
    std::vector<i64> o;
    for (std::size_t a = 0; a < in.size(); ++a)
      o.push_back((in[a] + pb[a] + pe[a] - (k[a] - 1) * d[a] - 1) / s[a] + 1);
    return o;
  }
  std::string name() const {
    return fmt::format("N{} C{} M{} g{} in{} k{} s{} d{} pads{}/{}", n, c, m, group,
                       dims_to_string(in), dims_to_string(k), dims_to_string(s), dims_to_string(d),
                       dims_to_string(pb), dims_to_string(pe));
  }
  std::map<std::string, Attribute> attrs() const {
    std::vector<i64> pads = pb;
    pads.insert(pads.end(), pe.begin(), pe.end());
    return {{"strides", s}, {"dilations", d}, {"pads", pads}, {"group", group}};
  }
};

ConvCase random_case(std::mt19937& rng, std::size_t rank, bool grouped) {
  auto r = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
  ConvCase c;
  c.n = r(1, 2);
  c.group = grouped ? r(1, 3) : 1;
  c.c = c.group * r(1, 3);
  c.m = c.group * r(1, 3);
  for (std::size_t a = 0; a < rank; ++a) {
    c.k.push_back(r(1, 3));
    c.s.push_back(r(1, 3));
    c.d.push_back(r(1, 2));
    c.pb.push_back(r(0, 2));
    c.pe.push_back(r(0, 2));
    const i64 ext = (c.k[a] - 1) * c.d[a] + 1;
    c.in.push_back(std::max<i64>(ext, r(1, rank == 3 ? 6 : 9)));
  }
  return c;
}

// im2col + GEMM, naive: cols[(ci,kpos), opos], y[m, opos] = sum W[m, (ci,kpos)] * cols.
std::vector<double> naive_conv(const ConvCase& cc, const Tensor& X, const Tensor& W) {
  const auto x = X.to_doubles(), w = W.to_doubles();
  const auto out = cc.out();
  const std::size_t r = cc.in.size();
  const i64 L = product(out), Lin = product(cc.in), K = product(cc.k), Cg = cc.c / cc.group,
            Mg = cc.m / cc.group;
  std::vector<double> y(static_cast<std::size_t>(cc.n * cc.m * L), 0.0);
  for (i64 n = 0; n < cc.n; ++n)
    for (i64 g = 0; g < cc.group; ++g) {
      std::vector<double> cols(static_cast<std::size_t>(Cg * K * L), 0.0);
      for (i64 ci = 0; ci < Cg; ++ci)
        for (i64 kp = 0; kp < K; ++kp)
          for (i64 op = 0; op < L; ++op) {
            // unravel kp and op, row-major
            i64 kr = kp, orr = op, in_index = 0;
            std::vector<i64> kk(r), oo(r);
            for (std::size_t a = r; a-- > 0;) {
              kk[a] = kr % cc.k[a];
              kr /= cc.k[a];
              oo[a] = orr % out[a];
              orr /= out[a];
            }
            bool inside = true;
            for (std::size_t a = 0; a < r; ++a) {
              const i64 pos = oo[a] * cc.s[a] - cc.pb[a] + kk[a] * cc.d[a];
              inside &= pos >= 0 && pos < cc.in[a];
              in_index = in_index * cc.in[a] + pos;
            }
            if (inside) cols[(ci * K + kp) * L + op] = x[(n * cc.c + g * Cg + ci) * Lin + in_index];
          }
      for (i64 m = 0; m < Mg; ++m)
        for (i64 op = 0; op < L; ++op) {
          double s = 0;
          for (i64 q = 0; q < Cg * K; ++q) s += w[(g * Mg + m) * Cg * K + q] * cols[q * L + op];
          y[(n * cc.m + g * Mg + m) * L + op] = s;
        }
    }
  return y;
}

Tensor conv_run(const ConvCase& cc, const Tensor& X, const Tensor& W) {
  return run(node("Conv", 2, cc.attrs()), {X, W})[0];
}

}  // namespace

// ================================== Conv ====================================================

TEST_CASE("Conv: hand-computed 2-D, with bias and padding") {
  // x = [[1,2,3],[4,5,6],[7,8,9]], 2x2 kernel of ones, bias 10.
  const Tensor x = T({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor w = T({1, 1, 2, 2}, {1, 1, 1, 1});
  const Tensor b = T({1}, {10});
  check_close(run(node("Conv", 3), {x, w, b})[0], {22, 26, 34, 38});
  // pads 1 on the top and left only (asymmetric): 3x3 output.
  auto y = run(node("Conv", 2, {{"pads", std::vector<i64>{1, 1, 0, 0}}}), {x, w})[0];
  CHECK(y.dims() == std::vector<i64>{1, 1, 3, 3});
  check_close(y, {1, 3, 5, 5, 12, 16, 11, 24, 28});
  // stride 2 with SAME_UPPER: output ceil(3/2) = 2, total pad 1 put at the end.
  y = run(node("Conv", 2,
               {{"strides", std::vector<i64>{2, 2}}, {"auto_pad", std::string("SAME_UPPER")}}),
          {x, w})[0];
  check_close(y, {12, 9, 15, 9});
  y = run(node("Conv", 2,
               {{"strides", std::vector<i64>{2, 2}}, {"auto_pad", std::string("SAME_LOWER")}}),
          {x, w})[0];
  check_close(y, {1, 5, 11, 28});
}

TEST_CASE("Conv: equals its im2col-GEMM form over random shapes (1-D, 2-D, 3-D, groups)") {
  std::mt19937 rng(1234);
  for (std::size_t rank = 1; rank <= 3; ++rank)
    for (int t = 0; t < 25; ++t) {
      const ConvCase cc = random_case(rng, rank, t % 2 == 1);
      INFO(cc.name());
      std::vector<i64> xd{cc.n, cc.c}, wd{cc.m, cc.c / cc.group};
      xd.insert(xd.end(), cc.in.begin(), cc.in.end());
      wd.insert(wd.end(), cc.k.begin(), cc.k.end());
      const Tensor x = random_tensor(rng, xd), w = random_tensor(rng, wd);
      const Tensor y = conv_run(cc, x, w);
      std::vector<i64> yd{cc.n, cc.m};
      for (i64 o : cc.out()) yd.push_back(o);
      REQUIRE(y.dims() == yd);
      CHECK(max_abs_diff(y, naive_conv(cc, x, w)) < 1e-12);
      // The shape rule agrees with the kernel.
      Node n = node("Conv", 2, cc.attrs());
      CHECK(infer_one(n, {{DType::f64, Shape::of(xd)}, {DType::f64, Shape::of(wd)}}).shape ==
            Shape::of(yd));
    }
}

TEST_CASE("Conv: grouped convolution equals per-group convolutions concatenated") {
  std::mt19937 rng(77);
  for (int t = 0; t < 20; ++t) {
    ConvCase cc = random_case(rng, 2, true);
    cc.group = 2 + t % 3;
    cc.c = cc.group * (1 + t % 2);
    cc.m = cc.group * (1 + t % 3);
    if (t % 5 == 0) cc.m = cc.c;  // depthwise when C/group == 1
    INFO(cc.name());
    const i64 Cg = cc.c / cc.group, Mg = cc.m / cc.group;
    const Tensor x = random_tensor(rng, {cc.n, cc.c, cc.in[0], cc.in[1]});
    const Tensor w = random_tensor(rng, {cc.m, Cg, cc.k[0], cc.k[1]});
    const Tensor y = run(node("Conv", 2, cc.attrs()), {x, w})[0];
    const auto xv = x.to_doubles(), wv = w.to_doubles(), yv = y.to_doubles();
    const i64 Lin = cc.in[0] * cc.in[1], L = y.dim(2) * y.dim(3), K = cc.k[0] * cc.k[1];
    for (i64 g = 0; g < cc.group; ++g) {
      std::vector<double> xs, ws;
      for (i64 n = 0; n < cc.n; ++n)
        for (i64 c = g * Cg; c < (g + 1) * Cg; ++c)
          xs.insert(xs.end(), xv.begin() + (n * cc.c + c) * Lin,
                    xv.begin() + (n * cc.c + c + 1) * Lin);
      ws.assign(wv.begin() + g * Mg * Cg * K, wv.begin() + (g + 1) * Mg * Cg * K);
      auto attrs = cc.attrs();
      attrs["group"] = i64{1};
      const Tensor yg = run(node("Conv", 2, attrs),
                            {Tensor::from_doubles(DType::f64, {cc.n, Cg, cc.in[0], cc.in[1]}, xs),
                             Tensor::from_doubles(DType::f64, {Mg, Cg, cc.k[0], cc.k[1]}, ws)})[0];
      const auto ygv = yg.to_doubles();
      for (i64 n = 0; n < cc.n; ++n)
        for (i64 m = 0; m < Mg; ++m)
          for (i64 j = 0; j < L; ++j)
            CHECK(yv[(n * cc.m + g * Mg + m) * L + j] ==
                  doctest::Approx(ygv[(n * Mg + m) * L + j]));
    }
  }
}

TEST_CASE("ConvTranspose: is the adjoint of Conv over random shapes") {
  std::mt19937 rng(99);
  for (std::size_t rank = 1; rank <= 3; ++rank)
    for (int t = 0; t < 20; ++t) {
      const ConvCase cc = random_case(rng, rank, t % 2 == 0);
      INFO(cc.name());
      std::vector<i64> xd{cc.n, cc.c}, wd{cc.m, cc.c / cc.group}, yd{cc.n, cc.m};
      xd.insert(xd.end(), cc.in.begin(), cc.in.end());
      wd.insert(wd.end(), cc.k.begin(), cc.k.end());
      const auto out = cc.out();
      yd.insert(yd.end(), out.begin(), out.end());
      const Tensor x = random_tensor(rng, xd), w = random_tensor(rng, wd),
                   y = random_tensor(rng, yd);
      const Tensor cx = run(node("Conv", 2, cc.attrs()), {x, w})[0];
      auto attrs = cc.attrs();
      std::vector<i64> op;  // output_padding that makes the deconvolution's output x's size
      for (std::size_t a = 0; a < rank; ++a)
        op.push_back((cc.in[a] + cc.pb[a] + cc.pe[a] - (cc.k[a] - 1) * cc.d[a] - 1) % cc.s[a]);
      attrs["output_padding"] = op;
      const Tensor dy = run(node("ConvTranspose", 2, attrs), {y, w})[0];
      REQUIRE(dy.dims() == xd);
      CHECK(dot(cx, y) == doctest::Approx(dot(x, dy)).epsilon(1e-10));
      // With output_shape instead of pads: same result when the pads split the same way.
      Node n = node("ConvTranspose", 2, attrs);
      CHECK(infer_one(n, {{DType::f64, Shape::of(yd)}, {DType::f64, Shape::of(wd)}}).shape ==
            Shape::of(xd));
    }
}

TEST_CASE("ConvTranspose: hand-computed, output_shape and bias") {
  // 1-D: x = [1,2], w = [1,1,1], stride 2 -> [1,1,3,2,2] (length 5).
  const Tensor x = T({1, 1, 2}, {1, 2}), w = T({1, 1, 3}, {1, 1, 1});
  check_close(run(node("ConvTranspose", 2, {{"strides", std::vector<i64>{2}}}), {x, w})[0],
              {1, 1, 3, 2, 2});
  // output_shape 6: total padding -1 -> one extra (zero-contributing) position at the end.
  auto y = run(node("ConvTranspose", 3,
                    {{"strides", std::vector<i64>{2}}, {"output_shape", std::vector<i64>{6}}}),
               {x, w, T({1}, {0.5})})[0];
  check_close(y, {1.5, 1.5, 3.5, 2.5, 2.5, 0.5});
  // Two output channels per group, group 2.
  const Tensor x2 = T({1, 2, 1}, {1, 10}), w2 = T({2, 2, 1}, {1, 2, 3, 4});
  check_close(run(node("ConvTranspose", 2, {{"group", i64{2}}}), {x2, w2})[0], {1, 2, 30, 40});
}

TEST_CASE("Conv: 16-bit and f64 dtypes agree with f32") {
  std::mt19937 rng(5);
  const Tensor x = random_tensor(rng, {1, 3, 6, 6}, DType::f32),
               w = random_tensor(rng, {4, 3, 3, 3}, DType::f32);
  const Node n = node("Conv", 2, {{"pads", std::vector<i64>{1, 1, 1, 1}}});
  const auto ref = run(n, {x, w})[0].to_doubles();
  for (DType dt : {DType::f64, DType::f16, DType::bf16}) {
    const auto y = run(n, {x.cast(dt), w.cast(dt)})[0];
    CHECK(y.dtype() == dt);
    CHECK(max_abs_diff(y, ref) < (dt == DType::bf16 ? 0.1 : dt == DType::f16 ? 0.02 : 1e-5));
  }
}

TEST_CASE("Conv: shape rule errors name the node and the dims") {
  Node n = node("Conv", 2);
  n.name = "conv2";
  CHECK_THROWS_WITH_AS(infer_one(n, {f32({1, 50, 12, 12}), f32({50, 20, 5, 5})}),
                       "[Conv 'conv2'] expected 20 input channels, got 50", ShapeError);
  CHECK_THROWS_WITH_AS(infer_one(n, {f32({1, 3, 2, 2}), f32({4, 3, 5, 5})}),
                       "[Conv 'conv2'] kernel extent 5 larger than padded input 2", ShapeError);
  n.attrs["auto_pad"] = std::string("SAME");
  CHECK_THROWS_AS(infer_one(n, {f32({1, 3, 8, 8}), f32({4, 3, 3, 3})}), UnsupportedError);
  n.attrs.erase("auto_pad");
  n.attrs["strides"] = std::vector<i64>{1, 1, 1};
  CHECK_THROWS_WITH_AS(
      infer_one(n, {f32({1, 3, 8, 8}), f32({4, 3, 3, 3})}),
      "[Conv 'conv2'] attribute 'strides' has 3 values, expected 2 (2 spatial axes)", ShapeError);
  n.attrs["strides"] = std::vector<i64>{0, 1};
  CHECK_THROWS_WITH_AS(infer_one(n, {f32({1, 3, 8, 8}), f32({4, 3, 3, 3})}),
                       "[Conv 'conv2'] stride must be positive, got 0", ShapeError);
  n.attrs.erase("strides");
  n.attrs["group"] = i64{2};
  CHECK_THROWS_WITH_AS(infer_one(n, {f32({1, 4, 8, 8}), f32({3, 2, 3, 3})}),
                       "[Conv 'conv2'] output channels 3 not divisible by group 2", ShapeError);
  // Dynamic batch and spatial dims pass through.
  n.attrs.erase("group");
  Shape xs{Dim::symbol("N"), Dim(3), Dim::dynamic(), Dim(8)};
  const auto t = infer_one(n, {{DType::f32, xs}, f32({4, 3, 3, 3})});
  CHECK(t.shape[0].is_symbolic());
  CHECK(t.shape[1].value() == 4);
  CHECK(!t.shape[2].is_fixed());
  CHECK(t.shape[3].value() == 6);
  // The kernel checks too (a bias of the wrong size).
  CHECK_THROWS_WITH_AS(
      run(node("Conv", 3), {T({1, 1, 3, 3}, std::vector<double>(9, 1)),
                            T({2, 1, 2, 2}, std::vector<double>(8, 1)), T({3}, {1, 2, 3})}),
      "[Conv 'n'] expected 2 bias elements, got 3 (shape [3])", ShapeError);
}

// ================================== pooling =================================================

TEST_CASE("MaxPool: hand-computed with Indices, ceil_mode, dilations, storage_order") {
  const Tensor x = T({1, 1, 3, 3}, {1, 2, 3, 4, 9, 6, 7, 8, 5});
  const Node n = node("MaxPool", 1, {{"kernel_shape", std::vector<i64>{2, 2}}}, 2);
  auto out = run(n, {x});
  check_close(out[0], {9, 9, 9, 9});
  CHECK(out[1].to_int64s() == std::vector<i64>{4, 4, 4, 4});
  // ceil_mode with stride 2: 2x2 output, last windows clipped.
  const Node c = node("MaxPool", 1,
                      {{"kernel_shape", std::vector<i64>{2, 2}},
                       {"strides", std::vector<i64>{2, 2}},
                       {"ceil_mode", i64{1}}},
                      2);
  out = run(c, {x});
  check_close(out[0], {9, 6, 8, 5});
  CHECK(out[1].to_int64s() == std::vector<i64>{4, 5, 7, 8});
  Node so = c;
  so.attrs["storage_order"] = i64{1};
  CHECK(run(so, {x})[1].to_int64s() == std::vector<i64>{4, 7, 5, 8});
  // dilation 2: the four corners.
  const Node d =
      node("MaxPool", 1,
           {{"kernel_shape", std::vector<i64>{2, 2}}, {"dilations", std::vector<i64>{2, 2}}});
  check_close(run(d, {x})[0], {7});
  // int8 works too.
  CHECK(run(n, {x.cast(DType::i8)})[0].to_int64s() == std::vector<i64>{9, 9, 9, 9});
}

TEST_CASE("AveragePool: count_include_pad and ceil_mode") {
  const Tensor x = T({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  std::map<std::string, Attribute> a{{"kernel_shape", std::vector<i64>{2, 2}},
                                     {"pads", std::vector<i64>{1, 1, 1, 1}},
                                     {"strides", std::vector<i64>{2, 2}}};
  check_close(run(node("AveragePool", 1, a), {x})[0], {1, 2.5, 5.5, 7});
  a["count_include_pad"] = i64{1};
  check_close(run(node("AveragePool", 1, a), {x})[0], {0.25, 1.25, 2.75, 7});
  // ceil_mode: the extra window past the end padding counts only the padded-input positions.
  std::map<std::string, Attribute> c{{"kernel_shape", std::vector<i64>{2}},
                                     {"strides", std::vector<i64>{2}},
                                     {"ceil_mode", i64{1}},
                                     {"count_include_pad", i64{1}}};
  check_close(run(node("AveragePool", 1, c), {T({1, 1, 3}, {1, 2, 3})})[0], {1.5, 3});
  // Global pools and LpPool.
  check_close(run(node("GlobalAveragePool", 1), {x})[0], {5});
  check_close(run(node("GlobalMaxPool", 1), {x})[0], {9});
  check_close(run(node("LpPool", 1, {{"kernel_shape", std::vector<i64>{2}}, {"p", i64{2}}}),
                  {T({1, 1, 3}, {3, 4, 0})})[0],
              {5, 4});
  // Missing kernel_shape.
  CHECK_THROWS_WITH_AS(infer_one(node("AveragePool", 1), {f32({1, 1, 4, 4})}),
                       "[AveragePool 'n'] missing required attribute 'kernel_shape'", ShapeError);
}

TEST_CASE("pooling: shape rule agrees with the kernel over random shapes") {
  std::mt19937 rng(3);
  auto r = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
  for (int t = 0; t < 60; ++t) {
    const std::size_t rank = 1 + t % 3;
    std::vector<i64> k, s, d, pads(2 * rank), in{1, 2};
    for (std::size_t a = 0; a < rank; ++a) {
      k.push_back(r(1, 3));
      s.push_back(r(1, 3));
      d.push_back(r(1, 2));
      pads[a] = r(0, k[a] - 1);
      pads[rank + a] = r(0, k[a] - 1);
      in.push_back(std::max<i64>((k[a] - 1) * d[a] + 1, r(1, 7)));
    }
    const std::string op = t % 2 ? "MaxPool" : "AveragePool";
    const Node n = node(op, 1,
                        {{"kernel_shape", k},
                         {"strides", s},
                         {"dilations", d},
                         {"pads", pads},
                         {"ceil_mode", i64{t % 4 < 2}},
                         {"count_include_pad", i64{t % 3 == 0}}});
    INFO(op << " in " << dims_to_string(in) << " k " << dims_to_string(k) << " s "
            << dims_to_string(s));
    const Tensor x = random_tensor(rng, in, DType::f32);
    const Tensor y = run(n, {x})[0];
    CHECK(Shape::of(y.dims()) == infer_one(n, {f32(in)}).shape);
    // Every max is one of the inputs; every average lies within the input range.
    const auto xv = x.to_doubles();
    const double lo = *std::min_element(xv.begin(), xv.end()),
                 hi = *std::max_element(xv.begin(), xv.end());
    const bool with_zero = op == "AveragePool" && t % 3 == 0;  // padded zeros may count
    for (double v : y.to_doubles()) {
      CHECK(v >= (with_zero ? std::min(lo, 0.0) : lo) - 1e-6);
      CHECK(v <= (with_zero ? std::max(hi, 0.0) : hi) + 1e-6);
      if (op == "MaxPool") CHECK(std::find(xv.begin(), xv.end(), v) != xv.end());
    }
  }
}

// ================================== normalization ===========================================

TEST_CASE("BatchNormalization: equals its formula over random shapes") {
  std::mt19937 rng(11);
  for (std::size_t rank = 2; rank <= 5; ++rank) {
    std::vector<i64> dims{2, 3};
    for (std::size_t a = 2; a < rank; ++a) dims.push_back(static_cast<i64>(2 + a));
    INFO("shape " << dims_to_string(dims));
    const Tensor x = random_tensor(rng, dims), s = random_tensor(rng, {3}),
                 b = random_tensor(rng, {3}), m = random_tensor(rng, {3});
    const Tensor v = Tensor::from_doubles(DType::f64, {3}, {0.5, 1.5, 2.0});
    const double eps = 1e-3;
    const Tensor y = run(node("BatchNormalization", 5, {{"epsilon", eps}}), {x, s, b, m, v})[0];
    const auto xv = x.to_doubles(), sv = s.to_doubles(), bv = b.to_doubles(), mv = m.to_doubles(),
               vv = v.to_doubles(), yv = y.to_doubles();
    const i64 L = product(dims) / 6;
    for (i64 i = 0; i < product(dims); ++i) {
      const i64 c = (i / L) % 3;
      CHECK(yv[i] == doctest::Approx(sv[c] * (xv[i] - mv[c]) / std::sqrt(vv[c] + eps) + bv[c]));
    }
  }
  // training_mode: normalizes with the batch statistics and updates the running ones.
  const Tensor x = T({2, 1}, {1, 3}), one = T({1}, {1}), zero = T({1}, {0});
  const auto out =
      run(node("BatchNormalization", 5, {{"training_mode", i64{1}}, {"epsilon", 0.0}}, 3),
          {x, one, zero, zero, one});
  check_close(out[0], {-1, 1});
  check_close(out[1], {0.2});        // 0.9 * 0 + 0.1 * 2
  check_close(out[2], {0.9 + 0.1});  // 0.9 * 1 + 0.1 * 1
  CHECK_THROWS_WITH_AS(infer_one(node("BatchNormalization", 5),
                                 {f32({1, 3, 4}), f32({3}), f32({3}), f32({4}), f32({3})}),
                       "[BatchNormalization 'n'] expected 3 mean elements, got 4", ShapeError);
}

TEST_CASE("InstanceNormalization, GroupNormalization, LayerNormalization") {
  const Tensor x = T({1, 2, 2}, {1, 3, 10, 20});
  check_close(run(node("InstanceNormalization", 3, {{"epsilon", 0.0}}),
                  {x, T({2}, {1, 2}), T({2}, {0, 1})})[0],
              {-1, 1, -1, 3});
  // One group over both channels: mean 8.5.
  const double sd = std::sqrt((56.25 + 30.25 + 2.25 + 132.25) / 4);
  check_close(run(node("GroupNormalization", 3, {{"num_groups", i64{1}}, {"epsilon", 0.0}}),
                  {x, T({2}, {1, 1}), T({2}, {0, 0})})[0],
              {-7.5 / sd, -5.5 / sd, 1.5 / sd, 11.5 / sd});
  CHECK_THROWS_WITH_AS(infer_one(node("GroupNormalization", 3, {{"num_groups", i64{3}}}),
                                 {f32({1, 4, 2}), f32({4}), f32({4})}),
                       "[GroupNormalization 'n'] channels 4 not divisible by num_groups 3",
                       ShapeError);
  // LayerNormalization over the last axis, with Mean and InvStdDev outputs.
  const auto ln = run(node("LayerNormalization", 3, {{"epsilon", 0.0}}, 3),
                      {x, T({2}, {2, 2}), T({2}, {1, 1})});
  check_close(ln[0], {-1, 3, -1, 3});
  CHECK(ln[1].dims() == std::vector<i64>{1, 2, 1});
  check_close(ln[1], {2, 15});
  check_close(ln[2], {1, 0.2});
  // axis = 1 normalizes over the last two axes.
  const auto ln1 =
      run(node("LayerNormalization", 2, {{"axis", i64{1}}, {"epsilon", 0.0}}, 2), {x, T({1}, {1})});
  CHECK(ln1[1].dims() == std::vector<i64>{1, 1, 1});
  check_close(ln1[1], {8.5});
  CHECK_THROWS_WITH_AS(
      infer_one(node("LayerNormalization", 2, {{"axis", i64{3}}}), {f32({1, 2, 2}), f32({2})}),
      "[LayerNormalization 'n'] axis 3 out of range for rank 3", ShapeError);
}

TEST_CASE("RMSNormalization: x / sqrt(mean(x^2) + eps) * scale") {
  const Tensor x = T({2, 2}, {3, 4, 1, -1});
  const double r0 = std::sqrt(12.5), r1 = 1.0;
  check_close(run(node("RMSNormalization", 2, {{"epsilon", 0.0}}), {x, T({2}, {1, 2})})[0],
              {3 / r0, 8 / r0, 1 / r1, -2 / r1});
  CHECK_THROWS_WITH_AS(infer_one(node("RMSNormalization", 2), {f32({2, 2}), f32({3})}),
                       "[RMSNormalization 'n'] scale [3] does not broadcast to [2,2]", ShapeError);
}

TEST_CASE("LRN, LpNormalization, MeanVarianceNormalization") {
  // size 3: channel c sees c-1..c+1.
  const Tensor x = T({1, 3, 1, 1}, {1, 2, 3});
  const double a = 0.3, b = 0.5, k = 2.0;
  auto lrn = [&](double v, double sq) { return v / std::pow(k + a / 3 * sq, b); };
  check_close(
      run(node("LRN", 1, {{"size", i64{3}}, {"alpha", a}, {"beta", b}, {"bias", k}}), {x})[0],
      {lrn(1, 5), lrn(2, 14), lrn(3, 13)});
  check_close(run(node("LpNormalization", 1, {{"axis", i64{1}}}), {T({1, 2}, {3, 4})})[0],
              {0.6, 0.8});
  check_close(run(node("LpNormalization", 1, {{"p", i64{1}}}), {T({2, 2}, {1, 3, 0, 0})})[0],
              {0.25, 0.75, 0, 0});
  check_close(run(node("MeanVarianceNormalization", 1, {{"axes", std::vector<i64>{1}}}),
                  {T({1, 2}, {1, 3})})[0],
              {-1, 1}, 1e-6);
  CHECK_THROWS_WITH_AS(infer_one(node("LRN", 1, {{"size", i64{0}}}), {f32({1, 3, 2, 2})}),
                       "[LRN 'n'] LRN size must be positive, got 0", ShapeError);
}

TEST_CASE("Scale: uniform, channel and elementwise modes") {
  const Tensor x = T({1, 2, 2}, {1, 2, 3, 4});
  check_close(run(node("Scale", 3), {x, T({1}, {2}), T({1}, {1})})[0], {3, 5, 7, 9});
  check_close(run(node("Scale", 4, {{"mode", std::string("channel")}}),
                  {x, T({2}, {1, 2}), T({2}, {0, 1}), T({2}, {2, 1})})[0],
              {1, 4, 7, 9});
  Node shift_only = node("Scale", 3, {{"mode", std::string("elementwise")}});
  shift_only.inputs[1] = "";
  check_close(run(shift_only, {x, Tensor(), T({2, 2}, {1, 1, 1, 10})})[0], {2, 3, 4, 14});
  CHECK_THROWS_WITH_AS(
      infer_one(node("Scale", 2, {{"mode", std::string("channel")}}), {f32({1, 2, 2}), f32({3})}),
      "[Scale 'n'] expected 2 scale values for mode 'channel', got 3", ShapeError);
  CHECK_THROWS_AS(infer_one(node("Scale", 1, {{"mode", std::string("rows")}}), {f32({1, 2})}),
                  UnsupportedError);
}

// ================================== matrix products =========================================

TEST_CASE("Gemm: transposes, alpha, beta, broadcast C") {
  const Tensor a = T({2, 3}, {1, 2, 3, 4, 5, 6}), b = T({3, 2}, {1, 0, 0, 1, 1, 1});
  check_close(run(node("Gemm", 2), {a, b})[0], {4, 5, 10, 11});
  check_close(run(node("Gemm", 3, {{"alpha", 2.0}, {"beta", 0.5}}), {a, b, T({2}, {10, 20})})[0],
              {13, 20, 25, 32});
  check_close(
      run(node("Gemm", 3, {{"transA", i64{1}}, {"transB", i64{1}}}),
          {T({3, 2}, {1, 4, 2, 5, 3, 6}), T({2, 3}, {1, 0, 1, 0, 1, 1}), T({2, 1}, {1, 2})})[0],
      {5, 6, 12, 13});
  CHECK(run(node("Gemm", 2), {a.cast(DType::i64), b.cast(DType::i64)})[0].to_int64s() ==
        std::vector<i64>{4, 5, 10, 11});
  CHECK_THROWS_WITH_AS(infer_one(node("Gemm", 2), {f32({2, 3}), f32({4, 2})}),
                       "[Gemm 'n'] expected 3 inner dimension (columns of the left operand = rows "
                       "of the right), got 4",
                       ShapeError);
  CHECK_THROWS_WITH_AS(infer_one(node("Gemm", 3), {f32({2, 3}), f32({3, 2}), f32({3})}),
                       "[Gemm 'n'] C [3] does not broadcast to [2,2]", ShapeError);
}

TEST_CASE("MatMul: batched broadcasting and 1-D operands over random shapes") {
  std::mt19937 rng(21);
  auto r = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
  for (int t = 0; t < 40; ++t) {
    const i64 M = r(1, 5), K = r(1, 5), N = r(1, 5);
    std::vector<i64> ab, bb;
    const int nb = static_cast<int>(r(0, 2));
    for (int i = 0; i < nb; ++i) {
      const i64 d = r(1, 3);
      ab.push_back(r(0, 1) ? d : 1);
      bb.push_back(r(0, 1) ? d : 1);
    }
    if (r(0, 1) && !bb.empty()) bb.erase(bb.begin());
    std::vector<i64> ad = ab, bd = bb;
    ad.push_back(M);
    ad.push_back(K);
    bd.push_back(K);
    bd.push_back(N);
    const bool a1 = t % 7 == 0, b1 = t % 5 == 0;
    if (a1) ad = {K};
    if (b1) bd = {K};
    INFO(dims_to_string(ad) << " x " << dims_to_string(bd));
    const Tensor A = random_tensor(rng, ad), B = random_tensor(rng, bd);
    const Tensor Y = run(node("MatMul", 2), {A, B})[0];
    CHECK(Shape::of(Y.dims()) ==
          infer_one(node("MatMul", 2), {{DType::f64, Shape::of(ad)}, {DType::f64, Shape::of(bd)}})
              .shape);
    // Naive: every output element by explicit index arithmetic.
    const auto av = A.to_doubles(), bv = B.to_doubles(), yv = Y.to_doubles();
    const i64 Mx = a1 ? 1 : M, Nx = b1 ? 1 : N;
    const std::vector<i64> abx = a1 ? std::vector<i64>{} : ab, bbx = b1 ? std::vector<i64>{} : bb;
    const std::size_t R = std::max(abx.size(), bbx.size());
    std::vector<i64> outb(R, 1);
    for (std::size_t i = 0; i < R; ++i) {
      const i64 x = i + abx.size() >= R ? abx[i + abx.size() - R] : 1;
      const i64 y = i + bbx.size() >= R ? bbx[i + bbx.size() - R] : 1;
      outb[i] = std::max(x, y);
    }
    const i64 nbatch = product(outb);
    for (i64 bi = 0; bi < nbatch; ++bi) {
      i64 rem = bi, aoff = 0, boff = 0, astr = 1, bstr = 1;
      for (std::size_t i = R; i-- > 0;) {
        const i64 idx = rem % outb[i];
        rem /= outb[i];
        if (i + abx.size() >= R) {
          const i64 d = abx[i + abx.size() - R];
          aoff += (d == 1 ? 0 : idx) * astr;
          astr *= d;
        }
        if (i + bbx.size() >= R) {
          const i64 d = bbx[i + bbx.size() - R];
          boff += (d == 1 ? 0 : idx) * bstr;
          bstr *= d;
        }
      }
      for (i64 m = 0; m < Mx; ++m)
        for (i64 n = 0; n < Nx; ++n) {
          double s = 0;
          for (i64 k = 0; k < K; ++k)
            s += av[(aoff * Mx + m) * K + k] * bv[(boff * K + k) * Nx + n];
          CHECK(yv[(bi * Mx + m) * Nx + n] == doctest::Approx(s));
        }
    }
  }
  CHECK(run(node("MatMul", 2), {T({3}, {1, 2, 3}), T({3}, {4, 5, 6})})[0].dims().empty());
  CHECK_THROWS_WITH_AS(infer_one(node("MatMul", 2), {f32({2, 2, 3}), f32({3, 3, 2})}),
                       "[MatMul 'n'] cannot broadcast [2] with [3]: dims 2 and 3 differ",
                       ShapeError);
}

// ================================== softmax =================================================

TEST_CASE("Softmax, LogSoftmax, Hardmax: lines along the axis sum to 1 over random shapes") {
  std::mt19937 rng(8);
  for (int t = 0; t < 30; ++t) {
    std::vector<i64> dims;
    const int rank = 1 + t % 4;
    for (int a = 0; a < rank; ++a) dims.push_back(1 + (t * 7 + a * 3) % 5);
    const i64 axis = (t % rank) - (t % 2 ? rank : 0);
    INFO(dims_to_string(dims) << " axis " << axis);
    const Tensor x = random_tensor(rng, dims, DType::f32);
    const Node sm = node("Softmax", 1, {{"axis", axis}}),
               lsm = node("LogSoftmax", 1, {{"axis", axis}}),
               hm = node("Hardmax", 1, {{"axis", axis}});
    const auto y = run(sm, {x})[0].to_doubles(), ly = run(lsm, {x})[0].to_doubles(),
               hy = run(hm, {x})[0].to_doubles();
    const i64 a = axis < 0 ? axis + rank : axis;
    i64 inner = 1;
    for (int i = static_cast<int>(a) + 1; i < rank; ++i) inner *= dims[i];
    const i64 n = dims[a], outer = product(dims) / (n * inner);
    for (i64 o = 0; o < outer; ++o)
      for (i64 i = 0; i < inner; ++i) {
        double s = 0, ls = 0, hs = 0;
        for (i64 k = 0; k < n; ++k) {
          const i64 at = (o * n + k) * inner + i;
          s += y[at];
          ls += std::exp(ly[at]);
          hs += hy[at];
          CHECK(std::log(y[at]) == doctest::Approx(ly[at]).epsilon(1e-4));
        }
        CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
        CHECK(ls == doctest::Approx(1.0).epsilon(1e-5));
        CHECK(hs == 1.0);
      }
  }
  check_close(run(node("Hardmax", 1), {T({2, 3}, {1, 3, 3, 0, -1, -2})})[0], {0, 1, 0, 1, 0, 0});
  CHECK_THROWS_WITH_AS(infer_one(node("Softmax", 1, {{"axis", i64{2}}}), {f32({2, 3})}),
                       "[Softmax 'n'] axis 2 out of range for rank 2", ShapeError);
  CHECK_THROWS_AS(run(node("Softmax", 1), {T({2}, {1, 2}, DType::i32)}), UnsupportedError);
}
