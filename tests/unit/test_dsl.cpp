// The typed DSL: graphs it builds, run-time shape errors naming the layer, weight binding
// (PyTorch names, rename maps, one error listing every problem), recurrent weight conversion
// checked against PyTorch's own equations, and agreement with the IR's shape inference.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "kiln/dsl/dsl.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/run.hpp"

using namespace kiln::dsl;
using kiln::WeightMap;

namespace {

kiln::Tensor random_tensor(std::vector<std::int64_t> dims, std::uint64_t seed, double lo = -1,
                           double hi = 1) {
  kiln::Tensor t(kiln::DType::f32, std::move(dims));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

/// Random weights for everything `build` asks for.
template <class F>
WeightMap weights_for(F&& build, std::uint64_t seed = 1) {
  Network n = build(Weights::shapes_only());
  WeightMap m;
  for (const auto& s : n.weight_specs()) m.add(s.name, random_tensor(s.dims, seed++, 0.1, 1.0));
  return m;
}

Network lenet(const Weights& w) {
  auto x = input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>);
  auto c1 = conv2d<20, kernel<5>>(x, w, "conv1");
  auto p1 = max_pool<kernel<2>, stride<2>>(c1);
  auto c2 = conv2d<50, kernel<5>>(p1, w, "conv2");
  auto p2 = max_pool<kernel<2>, stride<2>>(c2);
  auto f1 = relu(fully_connected<500>(p2, w, "ip1"));
  return network(softmax(fully_connected<10>(f1, w, "ip2")).named("prob"));
}

}  // namespace

TEST_CASE("lenet lowers to ONNX ops with PyTorch weight names") {
  Network n = lenet(weights_for(lenet));
  const auto& g = n.graph();
  std::vector<std::string> ops;
  for (const auto& node : g.nodes) ops.push_back(node.op);
  CHECK(ops == std::vector<std::string>{"Conv", "MaxPool", "Conv", "MaxPool", "Flatten", "Gemm",
                                        "Relu", "Gemm", "Softmax"});
  CHECK(g.weights.count("conv1.weight") == 1);
  CHECK(g.weights.at("conv2.weight").dims() == std::vector<std::int64_t>{50, 20, 5, 5});
  CHECK(g.weights.at("ip1.weight").dims() == std::vector<std::int64_t>{500, 800});
  CHECK(g.outputs == std::vector<std::string>{"prob"});
  CHECK(g.type_of("prob").shape.to_string() == "[N,10]");
  CHECK(g.inputs[0].type.shape.to_string() == "[N,1,28,28]");
}

TEST_CASE("lenet runs on the CPU reference in one call") {
  Network n = lenet(weights_for(lenet));
  kiln::Tensor out = kiln::run(n, random_tensor({3, 1, 28, 28}, 5, 0, 1));
  CHECK(out.dims() == std::vector<std::int64_t>{3, 10});
  for (int b = 0; b < 3; ++b) {
    double s = 0;
    for (int i = 0; i < 10; ++i) s += out.get(b * 10 + i);
    CHECK(s == doctest::Approx(1.0));
  }
}

TEST_CASE("dynamic dims: the same rules throw ShapeError naming the layer when built") {
  WeightMap none;
  Weights w = Weights::shapes_only();
  auto conv = [&](long channels) {
    auto x = input<"x", f32, NCHW>(dyn, dyn(channels), fix<12>, fix<12>);
    return network(conv2d<50, kernel<5>, in_channels<20>>(x, w, "conv2"));
  };
  CHECK_NOTHROW(conv(20));
  CHECK_THROWS_WITH_AS(conv(50), "[conv2d 'conv2'] expected 20 input channels, got 50",
                       kiln::ShapeError);
  auto residual = [&](long h) {
    auto x = input<"x", f32, NCHW>(dyn, fix<256>, dyn(56), dyn(56));
    auto y = max_pool<kernel<2>, stride<2>>(x);  // [N,256,?,?] holding 28 when built
    auto z = input<"z", f32, NCHW>(dyn, fix<256>, dyn(h), dyn(h));
    return network(add(y, z, "res3a"));
  };
  CHECK_NOTHROW(residual(28));
  CHECK_THROWS_WITH_AS(residual(56), "[add 'res3a'] cannot broadcast dims 28 and 56",
                       kiln::ShapeError);
  auto kernel_too_big = [&](long h) {
    auto x = input<"x", f32, NCHW>(dyn, fix<3>, dyn(h), dyn(h));
    return network(max_pool<kernel<3>>(x, "pool1"));
  };
  CHECK_THROWS_WITH_AS(kernel_too_big(2),
                       "[max_pool 'pool1'] kernel extent 3 larger than padded input 2",
                       kiln::ShapeError);
  auto rs = [&](long c) {
    auto x = input<"x", f32>(dyn(c), fix<4>);
    return network(reshape<2, 10>(x, "r"));
  };
  CHECK_NOTHROW(rs(5));
  CHECK_THROWS_WITH_AS(rs(3), "[reshape 'r'] expected 12 element count, got 20", kiln::ShapeError);
}

TEST_CASE("law: the DSL's build-time dims equal the IR's inferred dims over many sizes") {
  // network() throws GraphError where the two disagree; run many sizes through every window rule.
  std::mt19937 rng(3);
  Weights w = Weights::shapes_only();
  for (int iter = 0; iter < 60; ++iter) {
    const long h = 9 + static_cast<long>(rng() % 40), wd = 9 + static_cast<long>(rng() % 40);
    CAPTURE(h);
    CAPTURE(wd);
    auto x = input<"x", f32, NCHW>(dyn, fix<4>, dyn(h), dyn(wd));
    auto a = conv2d<8, kernel<3, 5>, stride<2, 1>, padding<1, 2>, dilation<1, 2>>(x, w, "a");
    auto b = max_pool<kernel<3>, stride<2>, ceil_mode>(a);
    auto c = avg_pool<kernel<2>, stride<2>, padding<1>, count_include_pad>(b);
    auto d = deconv2d<4, kernel<4>, stride<2>, padding<1>, output_padding<1>>(c, w, "d");
    auto e = slice<2, 1, -1, 2>(pad<0, 0, 1, 0, 0, 0, 2, 3>(d));
    auto f = reduce_sum<axes<1>, keep_dims<false>>(e);
    auto g = transpose<0, 2, 1>(f);
    Network n = network(g, concat<1>(d, d), flatten<2>(e));
    CHECK(n.graph().nodes.size() >= 8);
  }
}

TEST_CASE("weights: all problems in one error; rename, prefix, strict, num_batches_tracked") {
  WeightMap m = weights_for(lenet);
  SUBCASE("unused entries are warnings; num_batches_tracked is ignored") {
    m.add("extra.weight", random_tensor({3}, 9));
    m.add("bn.num_batches_tracked", kiln::Tensor::scalar<std::int64_t>(7));
    Network n = lenet(m);
    REQUIRE(n.weight_warnings().size() == 1);
    CHECK(n.weight_warnings()[0].find("extra.weight") != std::string::npos);
    kiln::BindOptions strict;
    strict.strict = true;
    CHECK_THROWS_AS(lenet(Weights(m, strict)), kiln::WeightError);
  }
  SUBCASE("every missing or mis-shaped weight is listed, with layer, shape and suggestions") {
    WeightMap bad;
    for (const auto& [k, v] : m) {
      if (k == "conv2.bias") continue;
      if (k == "ip1.weight")
        bad.add("ip1.weights", v);
      else if (k == "ip2.weight")
        bad.add(k, random_tensor({10, 400}, 1));
      else
        bad.add(k, v);
    }
    try {
      lenet(bad);
      FAIL("binding must fail");
    } catch (const kiln::WeightError& e) {
      const std::string msg = e.what();
      CHECK(msg.find("3 weight problems") != std::string::npos);
      CHECK(msg.find("missing 'conv2.bias' for layer 'conv2' (expected f32 [50])") !=
            std::string::npos);
      CHECK(msg.find("missing 'ip1.weight' for layer 'ip1' (expected f32 [500,800]); did you mean "
                     "'ip1.weights'") != std::string::npos);
      CHECK(
          msg.find(
              "'ip2.weight' for layer 'ip2' has 4000 elements [10,400], expected 5000 [10,500]") !=
          std::string::npos);
    }
  }
  SUBCASE("a rename map binds TensorRT's names; a prefix binds a sub-module") {
    WeightMap trt, prefixed;
    kiln::BindOptions rename, prefix;
    prefix.prefix = "model.";
    for (const auto& [k, v] : m) {
      const std::string layer = k.substr(0, k.find('.'));
      const std::string trt_name = layer + (k.ends_with(".weight") ? "filter" : "bias");
      trt.add(trt_name, v.reshaped({v.numel()}));  // flat, as a WTS file holds them
      rename.rename[k] = trt_name;
      prefixed.add("model." + k, v);
    }
    Network a = lenet(Weights(trt, rename)), b = lenet(Weights(prefixed, prefix)), c = lenet(m);
    const kiln::Tensor in = random_tensor({2, 1, 28, 28}, 4, 0, 1);
    const kiln::Tensor ya = kiln::run(a, in), yb = kiln::run(b, in), yc = kiln::run(c, in);
    for (std::int64_t i = 0; i < yc.numel(); ++i) {
      CHECK(ya.get(i) == yc.get(i));
      CHECK(yb.get(i) == yc.get(i));
    }
  }
}

TEST_CASE("weights: two prefixed views of one map bind each with its own prefix") {
  // A backbone and a head stored in one state_dict under "backbone." and "head.".
  WeightMap m;
  m.add("backbone.fc.weight", kiln::Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  m.add("backbone.fc.bias", kiln::Tensor::from<float>({2}, {0, 0}));
  m.add("head.out.weight", kiln::Tensor::from<float>({1, 2}, {10, 100}));
  m.add("head.out.bias", kiln::Tensor::from<float>({1}, {1}));
  kiln::BindOptions backbone_opts, head_opts;
  backbone_opts.prefix = "backbone.";
  head_opts.prefix = "head.";
  head_opts.strict = true;  // every entry of the map is used: by one view or the other
  const Weights backbone(m, backbone_opts), head(m, head_opts);
  auto x = input<"x", f32, NC>(dyn, fix<3>);
  auto h = fully_connected<2>(x, backbone, "fc");
  Network n = network(fully_connected<1>(h, head, "out").named("y"));
  CHECK(n.weight_warnings().empty());
  std::vector<std::string> asked;
  for (const auto& spec : n.weight_specs()) asked.push_back(spec.name);
  CHECK(asked == std::vector<std::string>{"backbone.fc.weight", "backbone.fc.bias",
                                          "head.out.weight", "head.out.bias"});
  // x = [1, 1, 1]: h = [6, 15]; y = 10 * 6 + 100 * 15 + 1.
  const kiln::Tensor y = kiln::run(n, kiln::Tensor::from<float>({1, 3}, {1, 1, 1}));
  CHECK(y.get(0) == doctest::Approx(1561.0));
}

TEST_CASE("weights: w.scope names the layers of a sub-module; scopes compose") {
  WeightMap m;
  for (const char* block : {"layer1.0", "layer1.1"}) {
    m.add(std::string(block) + ".fc.weight",
          kiln::Tensor::from<float>({3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}));
    m.add(std::string(block) + ".fc.bias", kiln::Tensor::from<float>({3}, {1, 2, 3}));
  }
  const Weights w(m);
  CHECK(w.scope("layer1").scope("0") == w.scope("layer1.0"));
  CHECK(w.scope("layer1").scope("0").resolve(w.scope("layer1").scope("0").scoped("fc.weight")) ==
        "layer1.0.fc.weight");
  CHECK_FALSE(w.scope("layer1.0") == w.scope("layer1.1"));
  kiln::BindOptions prefixed;
  prefixed.prefix = "model.";
  CHECK(Weights(m, prefixed)
            .scope("layer1.0")
            .resolve(Weights(m, prefixed).scope("layer1.0").scoped("fc.bias")) ==
        "model.layer1.0.fc.bias");

  auto x = input<"x", f32, NC>(dyn, fix<3>);
  auto a = fully_connected<3>(x, w.scope("layer1").scope("0"),
                              "fc");  // the same layer name in two scopes
  auto b = fully_connected<3>(a, w.scope("layer1.1"), "fc");
  Network n = network(b.named("y"));
  CHECK(n.weight_warnings().empty());
  std::vector<std::string> nodes;
  for (const auto& node : n.graph().nodes) nodes.push_back(node.name);
  CHECK(nodes == std::vector<std::string>{"layer1.0.fc", "layer1.1.fc"});
  const kiln::Tensor y = kiln::run(n, kiln::Tensor::from<float>({1, 3}, {0, 0, 0}));
  CHECK(y.get(0) == doctest::Approx(2.0));  // (0 + b) + b with identity weights
  CHECK(y.get(2) == doctest::Approx(6.0));
}

TEST_CASE("inputs: a named dynamic dim is one IR symbol shared by the inputs that name it") {
  auto a = input<"a", f32>(dyn("T"), fix<4>);
  auto b = input<"b", f32>(dyn("T"), fix<4>);
  auto c = input<"c", f32>(dyn, fix<4>);  // unnamed: a symbol of its own, as before
  Network n = network(add(add(a, b), c).named("y"));
  const auto& in = n.graph().inputs;
  REQUIRE(in.size() == 3);
  CHECK(in[0].type.shape[0].is_symbolic());
  CHECK(in[0].type.shape[0] == kiln::Dim::symbol("T"));
  CHECK(in[1].type.shape[0] == in[0].type.shape[0]);
  CHECK(in[2].type.shape[0] == kiln::Dim::symbol("c.d0"));
  CHECK(in[0].type.shape.to_string() == "[T,4]");
  // In the C++ type the named dim is dynamic, as `dyn` is.
  static_assert(decltype(a)::static_dims[0] == kiln::kDynamic);
  static_assert(std::is_same_v<decltype(a), decltype(c)>);
}

TEST_CASE("fully_connected computes x W^T + b with PyTorch's weight layout") {
  WeightMap m;
  m.add("fc.weight", kiln::Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  m.add("fc.bias", kiln::Tensor::from<float>({2}, {0.5f, -1}));
  auto x = input<"x", f32, NC>(dyn, fix<3>);
  Network n = network(fully_connected<2>(x, m, "fc"));
  kiln::Tensor y = kiln::run(n, kiln::Tensor::from<float>({1, 3}, {1, 0, -1}));
  CHECK(y.get(0) == doctest::Approx(1 - 3 + 0.5));
  CHECK(y.get(1) == doctest::Approx(4 - 6 - 1));
}

namespace {

using Mat = std::vector<double>;  // row-major

double sigm(double v) { return 1 / (1 + std::exp(-v)); }

/// One layer, one direction, PyTorch's equations and gate order. xs: [T][N*I]; returns ys [T][N*H]
/// and updates h, c ([N*H]).
std::vector<Mat> torch_layer(const std::string& kind, const std::vector<Mat>& xs, std::int64_t n,
                             std::int64_t in, std::int64_t hid, const kiln::Tensor& wih,
                             const kiln::Tensor& whh, const kiln::Tensor& bih,
                             const kiln::Tensor& bhh, bool reverse, Mat& h, Mat& c) {
  const std::int64_t t_len = static_cast<std::int64_t>(xs.size());
  const std::int64_t gates = kind == "lstm" ? 4 : kind == "gru" ? 3 : 1;
  std::vector<Mat> ys(static_cast<std::size_t>(t_len));
  for (std::int64_t s = 0; s < t_len; ++s) {
    const std::int64_t t = reverse ? t_len - 1 - s : s;
    const Mat& x = xs[static_cast<std::size_t>(t)];
    Mat hn(static_cast<std::size_t>(n * hid)), cn = c;
    for (std::int64_t b = 0; b < n; ++b) {
      std::vector<double> gi(static_cast<std::size_t>(gates * hid)), gh(gi.size());
      for (std::int64_t r = 0; r < gates * hid; ++r) {
        double a = bih.get(r), e = bhh.get(r);
        for (std::int64_t k = 0; k < in; ++k)
          a += wih.get(r * in + k) * x[static_cast<std::size_t>(b * in + k)];
        for (std::int64_t k = 0; k < hid; ++k)
          e += whh.get(r * hid + k) * h[static_cast<std::size_t>(b * hid + k)];
        gi[static_cast<std::size_t>(r)] = a;
        gh[static_cast<std::size_t>(r)] = e;
      }
      for (std::int64_t j = 0; j < hid; ++j) {
        auto G = [&](std::int64_t g) {
          return gi[static_cast<std::size_t>(g * hid + j)] +
                 gh[static_cast<std::size_t>(g * hid + j)];
        };
        const auto idx = static_cast<std::size_t>(b * hid + j);
        if (kind == "lstm") {  // i, f, g, o
          const double i = sigm(G(0)), f = sigm(G(1)), g = std::tanh(G(2)), o = sigm(G(3));
          cn[idx] = f * c[idx] + i * g;
          hn[idx] = o * std::tanh(cn[idx]);
        } else if (kind == "gru") {  // r, z, n
          const double r = sigm(G(0)), z = sigm(G(1));
          const double nn = std::tanh(gi[static_cast<std::size_t>(2 * hid + j)] +
                                      r * gh[static_cast<std::size_t>(2 * hid + j)]);
          hn[idx] = (1 - z) * nn + z * h[idx];
        } else {
          hn[idx] = std::tanh(G(0));
        }
      }
    }
    h = hn;
    c = cn;
    ys[static_cast<std::size_t>(t)] = hn;
  }
  return ys;
}

/// A whole PyTorch recurrent module: returns y [T][N*dirs*H] and the final h (and c) per layer
/// and direction.
struct TorchOut {
  std::vector<Mat> y;
  std::vector<Mat> h, c;
};
TorchOut torch_rnn(const std::string& kind, const WeightMap& w, const std::string& name,
                   std::vector<Mat> xs, std::int64_t n, std::int64_t in, std::int64_t hid,
                   int layers, int dirs, const kiln::Tensor* h0, const kiln::Tensor* c0) {
  TorchOut out;
  for (int l = 0; l < layers; ++l) {
    std::vector<std::vector<Mat>> per_dir;
    for (int d = 0; d < dirs; ++d) {
      const std::string sfx = "_l" + std::to_string(l) + (d ? "_reverse" : "");
      Mat h(static_cast<std::size_t>(n * hid)), c(h.size());
      const std::int64_t s = (l * dirs + d) * n * hid;
      for (std::size_t i = 0; i < h.size(); ++i) {
        if (h0) h[i] = h0->get(s + static_cast<std::int64_t>(i));
        if (c0) c[i] = c0->get(s + static_cast<std::int64_t>(i));
      }
      per_dir.push_back(torch_layer(kind, xs, n, l == 0 ? in : dirs * hid, hid,
                                    w.at(name + ".weight_ih" + sfx),
                                    w.at(name + ".weight_hh" + sfx), w.at(name + ".bias_ih" + sfx),
                                    w.at(name + ".bias_hh" + sfx), d == 1, h, c));
      out.h.push_back(h);
      out.c.push_back(c);
    }
    std::vector<Mat> next(xs.size());
    for (std::size_t t = 0; t < xs.size(); ++t)
      for (std::int64_t b = 0; b < n; ++b)
        for (int d = 0; d < dirs; ++d)
          for (std::int64_t j = 0; j < hid; ++j)
            next[t].push_back(
                per_dir[static_cast<std::size_t>(d)][t][static_cast<std::size_t>(b * hid + j)]);
    xs = next;
  }
  out.y = xs;
  return out;
}

template <class Net>
void check_recurrent(const std::string& kind, Net&& build, std::int64_t t_len, std::int64_t n,
                     std::int64_t in, std::int64_t hid, int layers, int dirs, bool with_state) {
  const WeightMap w = weights_for(build, 11);
  for (const auto& [k, v] : w) CHECK(k.rfind("rnn.", 0) == 0);
  Network net = build(w);
  const kiln::Tensor x = random_tensor({t_len, n, in}, 21);
  const kiln::Tensor h0 = random_tensor({layers * dirs, n, hid}, 22),
                     c0 = random_tensor({layers * dirs, n, hid}, 23);
  kiln::reference::TensorMap inputs{{"x", x}};
  if (with_state) {
    inputs["h0"] = h0;
    if (kind == "lstm") inputs["c0"] = c0;
  }
  auto out = kiln::run(net, inputs);
  std::vector<Mat> xs(static_cast<std::size_t>(t_len));
  for (std::int64_t t = 0; t < t_len; ++t)
    for (std::int64_t i = 0; i < n * in; ++i)
      xs[static_cast<std::size_t>(t)].push_back(x.get(t * n * in + i));
  TorchOut ref = torch_rnn(kind, w, "rnn", xs, n, in, hid, layers, dirs, with_state ? &h0 : nullptr,
                           with_state && kind == "lstm" ? &c0 : nullptr);
  const kiln::Tensor& y = out.at("rnn");
  REQUIRE(y.dims() == std::vector<std::int64_t>{t_len, n, dirs * hid});
  for (std::int64_t t = 0; t < t_len; ++t)
    for (std::int64_t i = 0; i < n * dirs * hid; ++i)
      CHECK(y.get(t * n * dirs * hid + i) ==
            doctest::Approx(ref.y[static_cast<std::size_t>(t)][static_cast<std::size_t>(i)])
                .epsilon(1e-5));
  const kiln::Tensor& h = out.at("h");
  for (std::size_t s = 0; s < ref.h.size(); ++s)
    for (std::size_t i = 0; i < ref.h[s].size(); ++i)
      CHECK(h.get(static_cast<std::int64_t>(s * ref.h[s].size() + i)) ==
            doctest::Approx(ref.h[s][i]).epsilon(1e-5));
  if (kind == "lstm") {
    const kiln::Tensor& c = out.at("c");
    for (std::size_t s = 0; s < ref.c.size(); ++s)
      for (std::size_t i = 0; i < ref.c[s].size(); ++i)
        CHECK(c.get(static_cast<std::int64_t>(s * ref.c[s].size() + i)) ==
              doctest::Approx(ref.c[s][i]).epsilon(1e-5));
  }
}

}  // namespace

TEST_CASE("lstm: PyTorch weights, gate order converted, equal to PyTorch's equations") {
  check_recurrent(
      "lstm",
      [](const Weights& w) {
        auto x = input<"x", f32, TNC>(fix<5>, dyn, fix<3>);
        auto r = lstm<4, layers<2>, bidirectional>(x, w, "rnn");
        return network(r.y, r.h.named("h"), r.c.named("c"));
      },
      5, 2, 3, 4, 2, 2, false);
  check_recurrent(
      "lstm",
      [](const Weights& w) {
        auto x = input<"x", f32, TNC>(fix<4>, dyn, fix<3>);
        auto h0 = input<"h0", f32>(fix<2>, dyn, fix<5>);
        auto c0 = input<"c0", f32>(fix<2>, dyn, fix<5>);
        auto r = lstm<5, layers<2>>(x, h0, c0, w, "rnn");
        return network(r.y, r.h.named("h"), r.c.named("c"));
      },
      4, 3, 3, 5, 2, 1, true);
}

TEST_CASE("gru and rnn: PyTorch weights and equations (GRU linear_before_reset)") {
  check_recurrent(
      "gru",
      [](const Weights& w) {
        auto x = input<"x", f32, TNC>(fix<4>, dyn, fix<3>);
        auto h0 = input<"h0", f32>(fix<2>, dyn, fix<4>);
        auto r = gru<4, bidirectional>(x, h0, w, "rnn");
        return network(r.y, r.h.named("h"));
      },
      4, 2, 3, 4, 1, 2, true);
  check_recurrent(
      "rnn",
      [](const Weights& w) {
        auto x = input<"x", f32, TNC>(fix<3>, dyn, fix<2>);
        auto r = rnn<3, layers<3>>(x, w, "rnn");
        return network(r.y, r.h.named("h"));
      },
      3, 2, 2, 3, 3, 1, false);
}

TEST_CASE("repeat, residual adds and inputs built apart join one network") {
  Weights w = Weights::shapes_only();
  auto x = input<"x", f32, NCHW>(dyn, fix<8>, fix<6>, fix<6>);
  auto y = repeat<3>(x, [&](auto t, int i) {
    return relu(add(conv2d<8, kernel<3>, padding<1>>(t, w, "c" + std::to_string(i)), t));
  });
  auto z = input<"z", f32, NCHW>(dyn, fix<8>, fix<6>, fix<6>);
  Network n = network((y * z).named("out"));
  CHECK(n.graph().inputs.size() == 2);
  CHECK(n.graph().nodes.size() == 10);
  CHECK(n.weight_specs().size() == 6);
  CHECK(n.weight_specs()[2].name == "c1.weight");
  CHECK(n.weight_specs()[2].dims == std::vector<std::int64_t>{8, 8, 3, 3});
  auto clash = [] { return input<"x", f32>(fix<1>) + input<"x", f32>(fix<1>); };
  CHECK_THROWS_AS(clash(), kiln::GraphError);
}

TEST_CASE("layers emit the latest ONNX forms: axes, pads, shapes and bounds as constant inputs") {
  auto x = input<"x", f32, NCHW>(dyn, fix<2>, fix<4>, fix<4>);
  auto a = reduce_mean<axes<2, 3>>(x, "m");
  auto b = slice<1, 0, 1>(x, "s");
  auto c = pad<0, 0, 1, 1, 0, 0, 1, 1>(x, 0.0, "p");
  auto d = relu6(x, "r6");
  auto e = reshape<0, -1>(x, "rs");
  Network n = network(a, b, c, d, e);
  const auto& g = n.graph();
  CHECK(g.weights.at("m.axes").to_int64s() == std::vector<std::int64_t>{2, 3});
  CHECK(g.weights.at("s.axes").to_int64s() == std::vector<std::int64_t>{1});
  CHECK(g.weights.at("p.pads").to_int64s() == std::vector<std::int64_t>{0, 0, 1, 1, 0, 0, 1, 1});
  CHECK(g.weights.at("r6.max").get(0) == 6.0);
  CHECK(g.weights.at("rs.shape").to_int64s() == std::vector<std::int64_t>{0, -1});
  CHECK(g.type_of("rs").shape.to_string() == "[N,32]");
  kiln::Tensor in = random_tensor({1, 2, 4, 4}, 2, -8, 8);
  auto out = kiln::run(n, {{"x", in}});
  for (std::int64_t i = 0; i < in.numel(); ++i)
    CHECK(out.at("r6").get(i) == std::min(6.0, std::max(0.0, in.get(i))));
}

TEST_CASE("every op the DSL emits has an IR shape rule and a reference kernel") {
  for (const auto& o : kDslOps) {
    CAPTURE(o.op);
    CHECK(kiln::OpRegistry::instance().find(o.op) != nullptr);
    CHECK(kiln::reference::KernelRegistry::instance().find(std::string(o.op)) != nullptr);
  }
}

TEST_CASE("every unary and binary layer runs on the reference") {
  auto x = input<"x", f32, NC>(dyn, fix<4>);
  auto p = input<"p", f32, NC>(dyn, fix<4>);
  Network n =
      network(sigmoid(x), tanh(x), softplus(x), softsign(x), leaky_relu(x, 0.1), elu(x), selu(x),
              hard_sigmoid(x), abs(x), neg(x), exp(x), sqrt(p), log(p), reciprocal(p), erf(x),
              atan(x), identity(x), cast<i32>(x), x - p, x / p, pow(p, x), maximum(x, p),
              minimum(x, p), log_softmax(x), reduce_max<keep_dims<false>>(x),
              reduce_prod<axes<1>>(p), reduce_l2<axes<-1>>(x), reduce_min(x), reduce_sum(x));
  auto out =
      kiln::run(n, {{"x", random_tensor({2, 4}, 1)}, {"p", random_tensor({2, 4}, 2, 0.5, 2)}});
  CHECK(out.size() == 29);
}

TEST_CASE("named(): a tensor that still holds the old name follows the rename") {
  auto x = input<"x", f32>(dyn, fix<4>);
  auto r = relu(x);
  auto features = r.named("features");
  auto y = sigmoid(r);  // built after the rename from the tensor that held the old name
  Network n = network(y.named("y"), features);
  CHECK(n.graph().outputs == std::vector<std::string>{"y", "features"});
  const auto out = kiln::run(n, {{"x", kiln::Tensor::from<float>({1, 4}, {-1, 0, 1, 2})}});
  CHECK(out.at("features").get(0) == 0);
  CHECK(out.at("features").get(3) == 2);
  CHECK(out.at("y").get(3) == doctest::Approx(1 / (1 + std::exp(-2.0))));
}

TEST_CASE(
    "quantize and dequantize: int8 tensors in the typed DSL, a round trip within half a step") {
  auto x = input<"x", f32>(dyn, fix<4>);
  auto q = quantize<kiln::DType::i8>(x, 0.5f, 3);
  static_assert(decltype(q)::dtype == kiln::DType::i8);
  Network n = network(dequantize(q, 0.5f, 3).named("y"));
  std::vector<std::string> ops;
  for (const auto& node : n.graph().nodes) ops.push_back(node.op);
  CHECK(ops == std::vector<std::string>{"QuantizeLinear", "DequantizeLinear"});
  const kiln::Tensor y =
      kiln::run(n, kiln::Tensor::from<float>({1, 4}, {0.2f, -1.3f, 100.f, 0.75f}));
  CHECK(y.get(0) == doctest::Approx(0.0));              // 0.4 rounds to 0
  CHECK(y.get(1) == doctest::Approx(-1.5));             // -2.6 -> -3
  CHECK(y.get(2) == doctest::Approx((127 - 3) * 0.5));  // saturated
  CHECK(y.get(3) == doctest::Approx(1.0));              // 1.5 rounds half to even: 2
}

TEST_CASE(
    "attention: heads in the type, the ONNX node it emits, and its run equal to that node's") {
  auto q = input<"q", f32>(dyn, fix<5>, fix<32>);  // [N,5,32]: 4 heads of 8
  auto k = input<"k", f32>(dyn, fix<7>, fix<16>);  // [N,7,16]: 2 kv heads of 8
  auto v = input<"v", f32>(dyn, fix<7>, fix<12>);  // [N,7,12]: 2 kv heads of 6
  auto m = input<"m", boolean>(fix<5>, fix<7>);
  Tensor<f32, Any, -1, 5, 24> y =
      attention<4, kv_heads<2>, head_dim<8>, causal>(q, k, v, {.scale = 0.5}, "attn");
  auto ym = attention<4, kv_heads<2>>(q, k, v, m, {.softcap = 2.0}, "masked");
  auto q4 = input<"q4", f32>(dyn, fix<4>, fix<5>, fix<8>);  // [N,4,5,8]
  auto k4 = input<"k4", f32>(dyn, fix<1>, fix<7>, fix<8>);  // multi-query: one kv head
  auto v4 = input<"v4", f32>(dyn, fix<1>, fix<7>, fix<6>);
  Tensor<f32, Any, -1, 4, 5, 6> y4 = attention<4, kv_heads<1>>(q4, k4, v4);
  Network n = network(y, ym, y4);  // throws if the IR's inference disagrees with the types
  const auto& g = n.graph();
  const kiln::Node* node = nullptr;
  for (const auto& x : g.nodes)
    if (x.name == "attn") node = &x;
  REQUIRE(node != nullptr);
  CHECK(node->op == "Attention");
  CHECK(node->attr_int("q_num_heads") == 4);
  CHECK(node->attr_int("kv_num_heads") == 2);
  CHECK(node->attr_int("is_causal") == 1);
  CHECK(node->attr_float("scale", 0) == 0.5);
  CHECK(g.type_of("masked").shape.to_string() == "[q.d0,5,24]");  // the batch of q names it

  kiln::reference::TensorMap in{
      {"q", random_tensor({2, 5, 32}, 1)},    {"k", random_tensor({2, 7, 16}, 2)},
      {"v", random_tensor({2, 7, 12}, 3)},    {"m", kiln::Tensor(boolean, {5, 7})},
      {"q4", random_tensor({2, 4, 5, 8}, 4)}, {"k4", random_tensor({2, 1, 7, 8}, 5)},
      {"v4", random_tensor({2, 1, 7, 6}, 6)}};
  for (std::int64_t i = 0; i < 35; ++i) in["m"].set(i, i % 3 != 1);
  const auto out = kiln::run(n, in);
  const auto direct = kiln::reference::run_node(*node, {&in["q"], &in["k"], &in["v"]});
  CHECK(out.at("attn").dims() == std::vector<std::int64_t>{2, 5, 24});
  for (std::int64_t i = 0; i < direct[0].numel(); ++i)
    CHECK(out.at("attn").get(i) == direct[0].get(i));
  CHECK(out.at(ym.value()).dims() == std::vector<std::int64_t>{2, 5, 24});
  CHECK(out.at(y4.value()).dims() == std::vector<std::int64_t>{2, 4, 5, 6});
}

TEST_CASE(
    "attention: with dynamic dims the same rules throw ShapeError naming the layer when built") {
  auto build = [](long qw, long kw, long mask_keys) {
    auto q = input<"q", f32>(dyn, fix<5>, dyn(qw));
    auto k = input<"k", f32>(dyn, fix<7>, dyn(kw));
    auto v = input<"v", f32>(dyn, fix<7>, fix<16>);
    auto m = input<"m", f32>(fix<5>, dyn(mask_keys));
    return network(attention<4, kv_heads<2>>(q, k, v, m, {}, "attn"));
  };
  CHECK_NOTHROW(build(32, 16, 7));
  CHECK_NOTHROW(build(32, 16, 3));  // a short mask: the keys past it are masked
  CHECK_THROWS_WITH_AS(build(30, 16, 7),
                       "[attention 'attn'] width 30 is not a multiple of the head count 4",
                       kiln::ShapeError);
  CHECK_THROWS_WITH_AS(build(32, 12, 7),
                       "[attention 'attn'] expected 16 width (heads x head_dim), got 12",
                       kiln::ShapeError);
  CHECK_THROWS_WITH_AS(
      build(32, 16, 9),
      "[attention 'attn'] attn_mask covers 9 keys, more than the 7 keys of past and present",
      kiln::ShapeError);
}

TEST_CASE(
    "rotary_embedding: heads in the type, the ONNX node it emits, and its run equal to that "
    "node's") {
  auto x = input<"x", f32>(dyn, fix<3>, fix<16>);  // [N,3,16]: 2 heads of 8
  auto cos = input<"cos", f32>(fix<10>, fix<2>);   // rotating 4 dims of each head
  auto sin = input<"sin", f32>(fix<10>, fix<2>);
  auto pos = input<"pos", i64>(dyn, fix<3>);
  Tensor<f32, Any, -1, 3, 16> y =
      rotary_embedding<2, interleaved, rotary_dim<4>>(x, cos, sin, pos, "rope");
  Network n = network(y);
  const kiln::Node& node = n.graph().nodes.back();
  CHECK(node.op == "RotaryEmbedding");
  CHECK(node.attr_int("num_heads") == 2);
  CHECK(node.attr_int("interleaved") == 1);
  CHECK(node.attr_int("rotary_embedding_dim") == 4);
  kiln::reference::TensorMap in{
      {"x", random_tensor({2, 3, 16}, 1)},
      {"cos", random_tensor({10, 2}, 2)},
      {"sin", random_tensor({10, 2}, 3)},
      {"pos", kiln::Tensor::from<std::int64_t>({2, 3}, {0, 4, 9, 1, 1, 2})}};
  const auto out = kiln::run(n, in);
  const auto direct =
      kiln::reference::run_node(node, {&in["x"], &in["cos"], &in["sin"], &in["pos"]});
  for (std::int64_t i = 0; i < direct[0].numel(); ++i)
    CHECK(out.at("rope").get(i) == direct[0].get(i));
  auto odd = [](long head) {
    auto x4 = input<"x", f32>(dyn, fix<2>, fix<3>, dyn(head));
    auto c = input<"cos", f32>(dyn, fix<3>, dyn(head / 2));
    auto s = input<"sin", f32>(dyn, fix<3>, dyn(head / 2));
    return network(rotary_embedding<2>(x4, c, s, "rope"));
  };
  CHECK_NOTHROW(odd(8));
  CHECK_THROWS_WITH_AS(odd(7), "[rotary_embedding 'rope'] the rotated dims (7) must be even",
                       kiln::ShapeError);
}

namespace {

/// The outputs of `node` run alone on the reference, its inputs taken from `in` or the graph's
/// weights.
std::vector<kiln::Tensor> run_alone(const kiln::Graph& g, const kiln::Node& node,
                                    const kiln::reference::TensorMap& in) {
  std::vector<const kiln::Tensor*> args;
  for (const auto& name : node.inputs)
    args.push_back(in.contains(name) ? &in.at(name) : &g.weights.at(name));
  return kiln::reference::run_node(node, args);
}

const kiln::Node& node_named(const kiln::Graph& g, const std::string& name) {
  for (const auto& n : g.nodes)
    if (n.name == name) return n;
  FAIL("no node " << name);
  return g.nodes.front();
}

}  // namespace

TEST_CASE(
    "layer_norm, rms_norm, gelu and embedding: the ONNX ops they emit, their runs equal to those "
    "ops'") {
  auto build = [](const Weights& w) {
    auto x = input<"x", f32>(dyn, fix<3>, fix<8>);  // [N,3,8]
    auto ids = input<"ids", i64>(dyn, fix<3>);      // [N,3]
    Tensor<f32, Any, -1, 3, 8> ln = layer_norm<8>(x, w, "norm1");
    auto ln_nb = layer_norm<8, no_bias>(x, w, 1e-3, "norm2");
    Tensor<f32, Any, -1, 3, 8> rms = rms_norm<8>(x, w, 1e-6, "rms");
    Tensor<f32, Any, -1, 3, 8> ge = gelu(x, "gelu");
    auto gt = gelu_tanh(x, "gelu_tanh");
    Tensor<f32, Any, -1, 3, 8> emb = embedding<10, 8>(ids, w, "tok");
    return network(ln, ln_nb, rms, ge, gt,
                   emb);  // throws if the IR's inference disagrees with the types
  };
  const WeightMap m = weights_for(build);
  Network n = build(m);
  CHECK(n.weight_specs().size() == 5);  // norm1.weight/bias, norm2.weight, rms.weight, tok.weight
  const auto& g = n.graph();
  CHECK(node_named(g, "norm1").op == "LayerNormalization");
  CHECK(node_named(g, "norm1").inputs.size() == 3);
  CHECK(node_named(g, "norm2").inputs.size() == 2);
  CHECK(node_named(g, "norm2").attr_float("epsilon", 0) == doctest::Approx(1e-3));
  CHECK(node_named(g, "rms").op == "RMSNormalization");
  CHECK(node_named(g, "gelu").op == "Gelu");
  CHECK(node_named(g, "gelu_tanh").attr_string("approximate", "none") == "tanh");
  CHECK(node_named(g, "tok").op == "Gather");
  CHECK(g.type_of("tok").shape.to_string() == "[ids.d0,3,8]");

  kiln::reference::TensorMap in{
      {"x", random_tensor({2, 3, 8}, 7, -3, 3)},
      {"ids", kiln::Tensor::from<std::int64_t>({2, 3}, {0, 9, 4, 4, -1, 2})}};
  const auto out = kiln::run(n, in);
  for (const char* name : {"norm1", "norm2", "rms", "gelu", "gelu_tanh", "tok"}) {
    CAPTURE(name);
    const auto direct = run_alone(g, node_named(g, name), in);
    REQUIRE(out.at(name).dims() == direct[0].dims());
    for (std::int64_t i = 0; i < direct[0].numel(); ++i)
      CHECK(out.at(name).get(i) == direct[0].get(i));
  }

  // And against their definitions: PyTorch's LayerNorm, RMSNorm, GELU and Embedding.
  const kiln::Tensor& x = in.at("x");
  const kiln::Tensor &lw = m.at("norm1.weight"), &lb = m.at("norm1.bias"), &rw = m.at("rms.weight");
  for (std::int64_t r = 0; r < 6; ++r) {
    double mean = 0, var = 0, sq = 0;
    for (std::int64_t j = 0; j < 8; ++j) mean += x.get(r * 8 + j) / 8;
    for (std::int64_t j = 0; j < 8; ++j) {
      const double v = x.get(r * 8 + j);
      var += (v - mean) * (v - mean) / 8;
      sq += v * v / 8;
    }
    for (std::int64_t j = 0; j < 8; ++j) {
      const std::int64_t i = r * 8 + j;
      const double v = x.get(i);
      CHECK(out.at("norm1").get(i) ==
            doctest::Approx((v - mean) / std::sqrt(var + 1e-5) * lw.get(j) + lb.get(j))
                .epsilon(1e-5));
      CHECK(out.at("rms").get(i) ==
            doctest::Approx(v / std::sqrt(sq + 1e-6) * rw.get(j)).epsilon(1e-5));
      CHECK(out.at("gelu").get(i) ==
            doctest::Approx(0.5 * v * (1 + std::erf(v / std::sqrt(2.0)))).epsilon(1e-5));
      const double t = std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v));
      CHECK(out.at("gelu_tanh").get(i) == doctest::Approx(0.5 * v * (1 + t)).epsilon(1e-5));
    }
  }
  const std::int64_t rows[] = {0, 9, 4, 4, 9, 2};  // id -1 is the last row
  for (std::int64_t p = 0; p < 6; ++p)
    for (std::int64_t j = 0; j < 8; ++j)
      CHECK(out.at("tok").get(p * 8 + j) == m.at("tok.weight").get(rows[p] * 8 + j));
}

TEST_CASE(
    "layer_norm and embedding: with dynamic dims the same rules throw ShapeError naming the layer "
    "when built") {
  WeightMap m;
  m.add("ln.weight", random_tensor({8}, 1));
  m.add("ln.bias", random_tensor({8}, 2));
  auto build = [&](long width) {
    auto x = input<"x", f32>(dyn, dyn(width));
    return network(layer_norm<8>(x, m, "ln"));
  };
  CHECK_NOTHROW(build(8));
  CHECK_THROWS_WITH_AS(build(6), "[layer_norm 'ln'] expected 8 normalized width (last dim), got 6",
                       kiln::ShapeError);
  auto x = input<"x", f32>(dyn, dyn);
  CHECK_THROWS_WITH_AS(
      network(layer_norm(x, Weights::shapes_only(), "ln")),
      "[layer_norm 'ln'] normalized width (last dim) must be known when the network is built (it "
      "sizes a weight)",
      kiln::ShapeError);
}

TEST_CASE(
    "weight<dims>: a map entry as a tensor whose rows the network slices (a packed projection), "
    "bound and checked like a layer's; parts of a network that bind one map share its binder") {
  WeightMap m;
  m.add("fc.weight", random_tensor({2, 2}, 1));
  m.add("fc.bias", random_tensor({2}, 2));
  m.add("proj.weight", random_tensor({6, 2}, 3));  // three [2,2] blocks, packed
  auto build = [](const Weights& w) {
    auto x = input<"x", f32>(dyn, fix<2>);                                           // [N,2]
    auto h = fully_connected<2>(x, w, "fc");                                         // [N,2]
    auto packed = weight<6, 2>(w, "proj.weight");                                    // [6,2]
    Tensor<f32, Any, -1, 2> y = matmul(h, transpose<1, 0>(slice<0, 2, 4>(packed)));  // [N,2]
    return network(y.named("y"));
  };
  // Two parts, one map: the fully_connected's input side and the weight's own network merge, and
  // neither reports the other's entries unused (strict mode would make that an error).
  Network n = build(Weights(m, {.strict = true}));
  CHECK(n.weight_warnings().empty());
  CHECK(n.weight_specs().size() == 3);

  const kiln::Tensor x = random_tensor({3, 2}, 4);
  const auto out = kiln::run(n, {{"x", x}});
  const kiln::Tensor &fw = m.at("fc.weight"), &fb = m.at("fc.bias"), &p = m.at("proj.weight");
  for (std::int64_t r = 0; r < 3; ++r) {
    double h[2];
    for (std::int64_t j = 0; j < 2; ++j)
      h[j] = fb.get(j) + fw.get(j * 2) * x.get(r * 2) + fw.get(j * 2 + 1) * x.get(r * 2 + 1);
    for (std::int64_t o = 0; o < 2; ++o)  // row 2 + o of the packed weight
      CHECK(
          out.at("y").get(r * 2 + o) ==
          doctest::Approx(h[0] * p.get((2 + o) * 2) + h[1] * p.get((2 + o) * 2 + 1)).epsilon(1e-6));
  }

  // An entry nobody took is still reported, once.
  WeightMap more = m;
  more.add("extra", random_tensor({1}, 5));
  const Network n2 = build(more);
  REQUIRE(n2.weight_warnings().size() == 1);
  CHECK(n2.weight_warnings()[0] == "weight 'extra' is not used by the network");

  // Missing or of the wrong shape: named, with the dims the network expects.
  WeightMap missing;
  missing.add("fc.weight", m.at("fc.weight"));
  missing.add("fc.bias", m.at("fc.bias"));
  CHECK_THROWS_WITH_AS(build(missing),
                       doctest::Contains("missing 'proj.weight' for layer 'proj.weight' (expected "
                                         "f32 [6,2])"),
                       kiln::WeightError);
  WeightMap wrong = missing;
  wrong.add("proj.weight", random_tensor({4, 2}, 6));
  CHECK_THROWS_WITH_AS(build(wrong),
                       doctest::Contains("'proj.weight' for layer 'proj.weight' has 8 elements "
                                         "[4,2], expected 12 [6,2]"),
                       kiln::WeightError);
}

TEST_CASE("if_else: each branch a body of its own, run by the reference") {
  auto flag = input<"flag", boolean>(fix<1>);
  auto x = input<"x", f32>(dyn, fix<4>);
  auto s = input<"s", f32>(fix<1>);
  Tensor<f32, Any, -1, 4> y = if_else(
      flag, [](auto x, auto s) { return relu(x) * s; }, [](auto x, auto) { return sigmoid(x); }, x,
      s);
  Network n = network(y.named("y"));
  // One If node reading the condition and its two captured values; each body its own graph.
  const kiln::Graph& g = n.graph();
  REQUIRE(g.nodes.size() == 1);
  const kiln::Node& node = g.nodes[0];
  CHECK(node.op == "If");
  CHECK(node.inputs == std::vector<std::string>{"flag", "x", "s"});
  const auto& then_b = std::get<kiln::Subgraph>(node.attrs.at("then_branch"));
  const auto& else_b = std::get<kiln::Subgraph>(node.attrs.at("else_branch"));
  CHECK(then_b.captures == 2);
  CHECK(then_b.graph->nodes.size() == 2);  // Relu, Mul
  CHECK(else_b.graph->nodes.size() == 1);  // Sigmoid
  CHECK(then_b.graph->inputs[0].name == "x");

  const kiln::Tensor xs = random_tensor({3, 4}, 7);
  for (bool c : {true, false}) {
    CAPTURE(c);
    const auto out = kiln::run(n, {{"flag", kiln::Tensor::from<bool>({1}, {c})},
                                   {"x", xs},
                                   {"s", kiln::Tensor::from<float>({1}, {2.5f})}});
    const kiln::Tensor& got = out.at("y");
    REQUIRE(got.dims() == std::vector<std::int64_t>{3, 4});
    for (std::int64_t i = 0; i < got.numel(); ++i) {
      const double v = xs.get(i);
      const double want = c ? std::max(v, 0.0) * 2.5 : 1.0 / (1.0 + std::exp(-v));
      CHECK(got.get(i) == doctest::Approx(want).epsilon(1e-6));
    }
  }
  // Where the branches' fixed dims differ, the result's dim is dynamic.
  static_assert(if_else_layer<Tensor<f32, Any, 2, 4>, Tensor<f32, Any, 2, 5>>::rule(
                    {2, 4}, {2, 5}) == std::array<dim_t, 2>{2, kiln::kDynamic});
}

TEST_CASE("if_else: a branch's layers take weights, and it reads only what it is given") {
  const auto build = [](const Weights& w) {
    auto flag = input<"flag", boolean>(fix<1>);
    auto x = input<"x", f32>(dyn, fix<4>);
    auto y = if_else(
        flag, [&](auto x) { return fully_connected<3>(x, w, "fc_then"); },
        [&](auto x) { return relu(fully_connected<3>(x, w, "fc_else")); }, x);
    return network(y.named("y"));
  };
  const WeightMap m = weights_for(build);
  Network n = build(Weights(m));
  std::vector<std::string> taken;
  for (const auto& spec : n.weight_specs()) taken.push_back(spec.name);
  CHECK(taken == std::vector<std::string>{"fc_then.weight", "fc_then.bias", "fc_else.weight",
                                          "fc_else.bias"});
  // The then branch equals the same layer outside any branch.
  auto x = input<"x", f32>(dyn, fix<4>);
  Network plain = network(fully_connected<3>(x, Weights(m), "fc_then").named("y"));
  const kiln::Tensor xs = random_tensor({2, 4}, 3);
  const auto got = kiln::run(n, {{"flag", kiln::Tensor::from<bool>({1}, {true})}, {"x", xs}});
  const kiln::Tensor want = kiln::run(plain, xs);
  for (std::int64_t i = 0; i < want.numel(); ++i) CHECK(got.at("y").get(i) == want.get(i));

  // A branch that reads a network tensor it was not given, or returns one, is refused by name.
  auto flag = input<"flag", boolean>(fix<1>);
  auto a = input<"a", f32>(dyn, fix<4>);
  auto other = input<"other", f32>(dyn, fix<4>);
  CHECK_THROWS_WITH_AS(if_else(
                           flag, [&](auto a) { return a + other; }, [](auto a) { return a; }, a),
                       doctest::Contains("only as the captured inputs given to if_else"),
                       kiln::GraphError);
  auto flag2 = input<"flag2", boolean>(fix<1>);
  auto b = input<"b", f32>(dyn, fix<4>);
  CHECK_THROWS_WITH_AS(if_else(
                           flag2, [&](auto) { return b; }, [](auto b) { return b; }, b),
                       doctest::Contains("then_branch returns a tensor of the network"),
                       kiln::GraphError);
}

TEST_CASE("loop: a body of its own carrying values trip to trip, run by the reference") {
  auto x = input<"x", f32>(fix<2>, fix<3>);
  auto w = input<"w", f32>(fix<3>, fix<3>);
  auto t = input<"t", i64>(fix<1>);
  // h <- tanh(h w) and acc <- acc + h, three trips (a count known when built), then t trips (one
  // read when the network runs).
  auto body = [](auto, auto h, auto acc, auto w) {
    return std::tuple{tanh(matmul(h, w)), acc + h};
  };
  auto [h, acc] = loop(3, body, carried(x, x), w);
  Tensor<f32, Any, 2, 3> h_typed = h;
  auto [h2, acc2] = loop(t, body, carried(h_typed, acc), w);
  Network n = network(h2.named("h"), acc2.named("acc"));
  const kiln::Graph& g = n.graph();
  REQUIRE(g.nodes.size() == 2);
  CHECK(g.nodes[0].op == "Loop");
  CHECK(g.nodes[0].inputs.size() == 5);  // M, "" (no cond), x, x, w
  CHECK(g.nodes[0].inputs[1].empty());
  const auto& b = std::get<kiln::Subgraph>(g.nodes[0].attrs.at("body"));
  CHECK(b.captures == 1);
  CHECK(b.graph->inputs.size() == 5);   // i, cond, h, acc, w
  CHECK(b.graph->outputs.size() == 3);  // cond, h', acc'

  const kiln::Tensor xs = random_tensor({2, 3}, 11), ws = random_tensor({3, 3}, 12);
  for (std::int64_t trips : {0, 2}) {
    CAPTURE(trips);
    const auto out =
        kiln::run(n, {{"x", xs}, {"w", ws}, {"t", kiln::Tensor::from<std::int64_t>({1}, {trips})}});
    std::vector<double> hv(6), av(6);
    for (int k = 0; k < 6; ++k) hv[k] = av[k] = xs.get(k);
    for (std::int64_t trip = 0; trip < 3 + trips; ++trip) {
      std::vector<double> next(6, 0.0);
      for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 3; ++c) {
          for (int k = 0; k < 3; ++k) next[r * 3 + c] += hv[r * 3 + k] * ws.get(k * 3 + c);
          next[r * 3 + c] = std::tanh(next[r * 3 + c]);
        }
      for (int k = 0; k < 6; ++k) av[k] += hv[k];
      hv = next;
    }
    for (int k = 0; k < 6; ++k) {
      CHECK(out.at("h").get(k) == doctest::Approx(hv[k]).epsilon(1e-5));
      CHECK(out.at("acc").get(k) == doctest::Approx(av[k]).epsilon(1e-5));
    }
  }
  // A body that changes a fixed dim makes it dynamic in the result.
  static_assert(loop_carried_layer<Tensor<f32, Any, 1, 4>, Tensor<f32, Any, 2, 4>>::rule(
                    {1, 4}, {2, 4}) == std::array<dim_t, 2>{kiln::kDynamic, 4});
  auto y = input<"y", f32>(fix<2>);
  CHECK_THROWS_WITH_AS(loop(
                           -1, [](auto, auto y) { return std::tuple{y}; }, carried(y)),
                       doctest::Contains("the trip count is -1"), kiln::ShapeError);
}

TEST_CASE("comparisons: bool tensors of the broadcast shape, run by the reference") {
  auto a = input<"a", f32>(fix<2>, fix<3>);
  auto b = input<"b", f32>(fix<3>);
  Tensor<boolean, Any, 2, 3> lt = less(a, b);
  Network n = network(lt.named("lt"), less_equal(a, b).named("le"), greater(a, b).named("gt"),
                      greater_equal(a, b).named("ge"), equal(a, b).named("eq"));
  const auto as = kiln::Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  const auto bs = kiln::Tensor::from<float>({3}, {2, 2, 7});
  const auto out = kiln::run(n, {{"a", as}, {"b", bs}});
  for (int k = 0; k < 6; ++k) {
    const double x = as.get(k), y = bs.get(k % 3);
    CAPTURE(k);
    CHECK(out.at("lt").get(k) == (x < y));
    CHECK(out.at("le").get(k) == (x <= y));
    CHECK(out.at("gt").get(k) == (x > y));
    CHECK(out.at("ge").get(k) == (x >= y));
    CHECK(out.at("eq").get(k) == (x == y));
  }
  CHECK(n.graph().nodes.at(0).op == "Less");
}

TEST_CASE("loop: an early exit (continue_if) and scan outputs stacked per trip") {
  auto x = input<"x", f32>(fix<2>);
  auto limit = input<"limit", f32>(fix<1>);
  auto m = input<"m", i64>(fix<1>);
  // acc doubles each trip while its largest value stays under the limit; each trip's acc is
  // stacked.
  auto [acc, accs] = loop(
      m,
      [](auto, auto acc, auto limit) {
        auto next = acc + acc;
        return std::tuple{continue_if(less(reduce_max(next), limit)), next, next};
      },
      carried(x), limit);
  Tensor<f32, Any, 2> acc_typed = acc;
  Tensor<f32, Any, -1, 2> accs_typed = accs;  // the trips' count is known when it has run
  Network n = network(acc_typed.named("acc"), accs_typed.named("accs"));
  const kiln::Node& node = n.graph().nodes.back();
  REQUIRE(node.op == "Loop");
  CHECK(node.outputs.size() == 2);
  const auto& body = std::get<kiln::Subgraph>(node.attrs.at("body"));
  CHECK(body.graph->outputs.size() == 3);  // cond, acc', the scan output
  const auto xs = kiln::Tensor::from<float>({2}, {1, 3});
  struct Case {
    std::int64_t m;
    std::vector<double> acc;
    std::int64_t trips;
  };
  // 3 trips end at [8, 24] (24 >= 20: the condition is false); a trip count of 2 ends sooner.
  for (const Case& c : {Case{10, {8, 24}, 3}, Case{2, {4, 12}, 2}}) {
    CAPTURE(c.m);
    const auto out = kiln::run(n, {{"x", xs},
                                   {"limit", kiln::Tensor::from<float>({1}, {20})},
                                   {"m", kiln::Tensor::from<std::int64_t>({1}, {c.m})}});
    CHECK(out.at("acc").to_doubles() == c.acc);
    REQUIRE(out.at("accs").dims() == std::vector<std::int64_t>{c.trips, 2});
    for (std::int64_t t = 0; t < c.trips; ++t) {
      CHECK(out.at("accs").get(2 * t) == std::pow(2.0, t + 1));
      CHECK(out.at("accs").get(2 * t + 1) == 3 * std::pow(2.0, t + 1));
    }
  }
  // The condition is the body's own tensor.
  auto flag = input<"flag", boolean>(fix<1>);
  auto y = input<"y", f32>(fix<2>);
  CHECK_THROWS_WITH_AS(loop(
                           2,
                           [&](auto, auto y) {
                             return std::tuple{continue_if(flag), y};
                           },
                           carried(y)),
                       doctest::Contains("continue_if is given a tensor of the network"),
                       kiln::GraphError);
}

TEST_CASE("scan: a body of its own over dim 0, carrying values and stacking outputs") {
  auto x = input<"x", f32>(fix<4>, dyn, fix<3>);
  auto h0 = input<"h0", f32>(dyn, fix<3>);
  auto w = input<"w", f32>(fix<3>, fix<3>);
  // An RNN-like cell: h <- tanh(h w + x_t); every step's h stacked, and the running sum of x.
  auto [h, sum, hs] = scan(
      [](auto h, auto s, auto x_t, auto w) {
        auto next = tanh(matmul(h, w) + x_t);
        return std::tuple{next, s + x_t, next};
      },
      carried(h0, h0), scanned(x), w);
  Tensor<f32, Any, -1, 3> h_typed = h;
  Tensor<f32, Any, 4, -1, 3> hs_typed = hs;
  Network n = network(h_typed.named("h"), sum.named("sum"), hs_typed.named("hs"));
  const kiln::Node& node = n.graph().nodes.at(0);
  CHECK(node.op == "Scan");
  CHECK(node.attr_int("num_scan_inputs") == 1);
  CHECK(node.inputs == std::vector<std::string>{"h0", "h0", "x", "w"});

  const kiln::Tensor xs = random_tensor({4, 2, 3}, 21), h0s = random_tensor({2, 3}, 22),
                     ws = random_tensor({3, 3}, 23);
  const auto out = kiln::run(n, {{"x", xs}, {"h0", h0s}, {"w", ws}});
  REQUIRE(out.at("hs").dims() == std::vector<std::int64_t>{4, 2, 3});
  std::vector<double> hv(6), sv(6);
  for (int k = 0; k < 6; ++k) hv[k] = sv[k] = h0s.get(k);
  for (int t = 0; t < 4; ++t) {
    std::vector<double> next(6, 0.0);
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) {
        for (int k = 0; k < 3; ++k) next[r * 3 + c] += hv[r * 3 + k] * ws.get(k * 3 + c);
        next[r * 3 + c] = std::tanh(next[r * 3 + c] + xs.get(t * 6 + r * 3 + c));
      }
    for (int k = 0; k < 6; ++k) sv[k] += xs.get(t * 6 + k);
    hv = next;
    for (int k = 0; k < 6; ++k)
      CHECK(out.at("hs").get(t * 6 + k) == doctest::Approx(hv[k]).epsilon(1e-5));
  }
  for (int k = 0; k < 6; ++k) {
    CHECK(out.at("h").get(k) == doctest::Approx(hv[k]).epsilon(1e-5));
    CHECK(out.at("sum").get(k) == doctest::Approx(sv[k]).epsilon(1e-5));
  }
}

TEST_CASE("control-flow layers take each captured tensor once") {
  auto flag = input<"flag", boolean>(fix<1>);
  auto x = input<"x", f32>(dyn, fix<4>);
  CHECK_THROWS_WITH_AS(
      if_else(
          flag, [](auto a, auto) { return a; }, [](auto, auto b) { return b; }, x, x),
      doctest::Contains("'x' is captured twice"), kiln::GraphError);
  auto h = input<"h", f32>(fix<2>);
  auto w = input<"w", f32>(fix<2>);
  CHECK_THROWS_WITH_AS(
      loop(
          2, [](auto, auto h, auto w, auto) { return std::tuple{h + w}; }, carried(h), w, w),
      doctest::Contains("'w' is captured twice"), kiln::GraphError);
}
