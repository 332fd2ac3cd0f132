// The attention op family: Attention and RotaryEmbedding. Shape rules (outputs, dynamic dims,
// errors that name the node), the reference against a naive form written here, and laws over
// many random shapes: causal attention at each position is full attention over the prefix;
// grouped-query attention is multi-head attention with the key/value heads repeated; the cache
// is the concatenation of past and present; 3-D inputs are 4-D inputs reshaped; masks compose.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "expect_error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using i64 = std::int64_t;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor random_tensor(std::mt19937& rng, std::vector<i64> dims, DType dt = DType::f64) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(product(dims)));
  for (auto& e : v) e = u(rng);
  return Tensor::from_doubles(dt, std::move(dims), v);
}

i64 pick(std::mt19937& rng, i64 lo, i64 hi) {
  return lo + static_cast<i64>(rng() % static_cast<unsigned>(hi - lo + 1));
}

double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.dims() == b.dims());
  double m = 0;
  for (i64 i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.get(i) - b.get(i)));
  return m;
}

/// The sequence slice [begin, end) of a 4-D [N, H, S, D] tensor.
Tensor seq_slice(const Tensor& x, i64 begin, i64 end) {
  Tensor y(x.dtype(), {x.dim(0), x.dim(1), end - begin, x.dim(3)});
  i64 o = 0;
  for (i64 b = 0; b < x.dim(0); ++b)
    for (i64 h = 0; h < x.dim(1); ++h)
      for (i64 s = begin; s < end; ++s)
        for (i64 d = 0; d < x.dim(3); ++d)
          y.set(o++, x.get(((b * x.dim(1) + h) * x.dim(2) + s) * x.dim(3) + d));
  return y;
}

/// Concatenation of two 4-D tensors along the sequence (dim 2).
Tensor seq_concat(const Tensor& a, const Tensor& b) {
  const i64 N = a.dim(0), H = a.dim(1), Sa = a.dim(2), Sb = b.dim(2), D = a.dim(3);
  Tensor y(a.dtype(), {N, H, Sa + Sb, D});
  for (i64 n = 0; n < N; ++n)
    for (i64 h = 0; h < H; ++h)
      for (i64 s = 0; s < Sa + Sb; ++s)
        for (i64 d = 0; d < D; ++d)
          y.set(((n * H + h) * (Sa + Sb) + s) * D + d,
                s < Sa ? a.get(((n * H + h) * Sa + s) * D + d)
                       : b.get(((n * H + h) * Sb + s - Sa) * D + d));
  return y;
}

/// [N, H, S, D] -> [N, S, H*D] (the 3-D form of Attention and RotaryEmbedding).
Tensor to_3d(const Tensor& x) {
  const i64 N = x.dim(0), H = x.dim(1), S = x.dim(2), D = x.dim(3);
  Tensor y(x.dtype(), {N, S, H * D});
  for (i64 n = 0; n < N; ++n)
    for (i64 h = 0; h < H; ++h)
      for (i64 s = 0; s < S; ++s)
        for (i64 d = 0; d < D; ++d)
          y.set((n * S + s) * H * D + h * D + d, x.get(((n * H + h) * S + s) * D + d));
  return y;
}

/// Each head of a 4-D tensor repeated `r` times in place: [h0, h0, h1, h1, ...].
Tensor repeat_heads(const Tensor& x, i64 r) {
  const i64 N = x.dim(0), H = x.dim(1), S = x.dim(2), D = x.dim(3);
  Tensor y(x.dtype(), {N, H * r, S, D});
  for (i64 n = 0; n < N; ++n)
    for (i64 h = 0; h < H * r; ++h)
      for (i64 e = 0; e < S * D; ++e)
        y.set((n * H * r + h) * S * D + e, x.get((n * H + h / r) * S * D + e));
  return y;
}

/// One Attention node over the given inputs (an undefined tensor: an omitted input).
struct Attn {
  Tensor q, k, v, mask, past_key, past_value, nonpad;
  std::map<std::string, Attribute> attrs;
  std::size_t outputs = 4;

  std::vector<Tensor> run() const {
    std::vector<Tensor> ins{q, k, v, mask, past_key, past_value, nonpad};
    while (!ins.back().defined()) ins.pop_back();
    Node n = test::node("Attention", ins.size(), attrs, outputs, "attn");
    for (std::size_t i = 0; i < ins.size(); ++i)
      if (!ins[i].defined()) n.inputs[i].clear();
    return test::run(n, ins);
  }
  /// Shape inference of the same node over the inputs' types.
  std::vector<TensorType> infer() const {
    std::vector<Tensor> ins{q, k, v, mask, past_key, past_value, nonpad};
    while (!ins.back().defined()) ins.pop_back();
    Node n = test::node("Attention", ins.size(), attrs, outputs, "attn");
    Graph g;
    for (std::size_t i = 0; i < ins.size(); ++i) {
      if (!ins[i].defined()) {
        n.inputs[i].clear();
        continue;
      }
      g.inputs.push_back({n.inputs[i], TensorType{ins[i].dtype(), ins[i].shape()}});
    }
    for (const auto& o : n.outputs) g.outputs.push_back(o);
    g.add_node(n);
    g.infer();
    std::vector<TensorType> t;
    for (const auto& o : n.outputs) t.push_back(g.type_of(o));
    return t;
  }
};

/// Attention written from its definition, 4-D in and out: bias(b, h, i, j) is added to the
/// (soft-capped) scores; a row whose every bias is -inf is zero.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                       double softcap, const std::function<double(i64, i64, i64, i64)>& bias) {
  const i64 N = q.dim(0), Hq = q.dim(1), S = q.dim(2), D = q.dim(3), Hkv = k.dim(1), T = k.dim(2),
            Dv = v.dim(3);
  Tensor y(DType::f64, {N, Hq, S, Dv});
  for (i64 b = 0; b < N; ++b)
    for (i64 h = 0; h < Hq; ++h) {
      const i64 g = h / (Hq / Hkv);
      for (i64 i = 0; i < S; ++i) {
        std::vector<double> w(static_cast<std::size_t>(T));
        bool all_masked = true;
        for (i64 j = 0; j < T; ++j) {
          double s = 0;
          for (i64 d = 0; d < D; ++d)
            s += q.get(((b * Hq + h) * S + i) * D + d) * k.get(((b * Hkv + g) * T + j) * D + d);
          s *= scale;
          if (softcap > 0) s = softcap * std::tanh(s / softcap);
          const double bj = bias(b, h, i, j);
          all_masked = all_masked && bj == -kInf;
          w[j] = s + bj;
        }
        double mx = -kInf, sum = 0;
        for (double e : w) mx = std::max(mx, e);
        for (double& e : w) sum += (e = std::exp(e - mx));
        for (i64 d = 0; d < Dv; ++d) {
          double acc = 0;
          for (i64 j = 0; j < T; ++j)
            acc += (all_masked ? 0.0 : w[j] / sum) * v.get(((b * Hkv + g) * T + j) * Dv + d);
          y.set(((b * Hq + h) * S + i) * Dv + d, acc);
        }
      }
    }
  return y;
}

double no_bias(i64, i64, i64, i64) { return 0.0; }

struct Sizes {
  i64 N, Hq, Hkv, S, L, D, Dv;
  std::string name() const {
    return fmt::format("N{} Hq{} Hkv{} S{} L{} D{} Dv{}", N, Hq, Hkv, S, L, D, Dv);
  }
};

Sizes random_sizes(std::mt19937& rng) {
  Sizes z;
  z.N = pick(rng, 1, 2);
  z.Hkv = pick(rng, 1, 3);
  z.Hq = z.Hkv * pick(rng, 1, 3);
  z.S = pick(rng, 1, 5);
  z.L = pick(rng, 1, 6);
  z.D = pick(rng, 1, 6);
  z.Dv = pick(rng, 1, 5);
  return z;
}

}  // namespace

// ---- shape rules ------------------------------------------------------------------------------

TEST_CASE("Attention: output types of 3-D and 4-D inputs, the cache and the scores") {
  std::mt19937 rng(1);
  Attn a;
  a.q = random_tensor(rng, {2, 9, 4, 8}, DType::f32);
  a.k = random_tensor(rng, {2, 3, 6, 8}, DType::f32);
  a.v = random_tensor(rng, {2, 3, 6, 10}, DType::f16);  // V may have its own float type (T2)
  a.past_key = random_tensor(rng, {2, 3, 5, 8}, DType::f32);
  a.past_value = random_tensor(rng, {2, 3, 5, 10}, DType::f16);
  auto t = a.infer();
  CHECK(t[0] == TensorType{DType::f32, Shape{2, 9, 4, 10}});
  CHECK(t[1] == TensorType{DType::f32, Shape{2, 3, 11, 8}});
  CHECK(t[2] == TensorType{DType::f16, Shape{2, 3, 11, 10}});
  CHECK(t[3] == TensorType{DType::f32, Shape{2, 9, 4, 11}});

  Attn b;  // 3-D
  b.q = random_tensor(rng, {2, 4, 72});
  b.k = random_tensor(rng, {2, 6, 24});
  b.v = random_tensor(rng, {2, 6, 30});
  b.attrs = {{"q_num_heads", i64{9}}, {"kv_num_heads", i64{3}}};
  t = b.infer();
  CHECK(t[0].shape == Shape{2, 4, 90});
  CHECK(t[1].shape == Shape{2, 3, 6, 8});
  CHECK(t[2].shape == Shape{2, 3, 6, 10});
  CHECK(t[3].shape == Shape{2, 9, 4, 6});
}

TEST_CASE("Attention: dynamic dims pass through the shape rule") {
  Node n = test::node("Attention", 3, {}, 4, "attn");
  Graph g;
  g.inputs.push_back(
      {"in0", TensorType{DType::f32, Shape{Dim::symbol("N"), Dim(4), Dim::symbol("S"), Dim(8)}}});
  g.inputs.push_back(
      {"in1", TensorType{DType::f32, Shape{Dim::symbol("N"), Dim(2), Dim::symbol("L"), Dim(8)}}});
  g.inputs.push_back(
      {"in2", TensorType{DType::f32, Shape{Dim::symbol("N"), Dim(2), Dim::symbol("L"), Dim(16)}}});
  for (const auto& o : n.outputs) g.outputs.push_back(o);
  g.add_node(n);
  g.infer();
  CHECK(g.type_of("out0").shape.to_string() == "[N,4,S,16]");
  CHECK(g.type_of("out1").shape.to_string() == "[N,2,L,8]");
  CHECK(g.type_of("out3").shape.to_string() == "[N,4,S,L]");
}

TEST_CASE(
    "Attention: bad shapes and attributes are errors that name the node and what was expected") {
  std::mt19937 rng(2);
  auto base = [&] {
    Attn a;
    a.q = random_tensor(rng, {1, 4, 3, 8});
    a.k = random_tensor(rng, {1, 2, 5, 8});
    a.v = random_tensor(rng, {1, 2, 5, 6});
    return a;
  };
  auto expect = [](const Attn& a, std::vector<std::string> parts) {
    parts.insert(parts.begin(), "[Attention 'attn']");
    test::expect_error<ShapeError>([&] { a.infer(); }, parts);
    test::expect_error<ShapeError>([&] { a.run(); }, parts);  // the kernel runs the same rule
  };
  Attn a = base();
  a.k = random_tensor(rng, {1, 3, 5, 8});
  a.v = random_tensor(rng, {1, 3, 5, 6});
  expect(a, {"query heads 4 are not a multiple of the key/value heads 3"});
  a = base();
  a.k = random_tensor(rng, {1, 2, 5, 7});
  expect(a, {"expected 8 head size (dim 3 of K = dim 3 of Q), got 7"});
  a = base();
  a.v = random_tensor(rng, {1, 2, 4, 6});
  expect(a, {"key/value sequence length", "expected 5", "got 4"});
  a = base();
  a.v = random_tensor(rng, {1, 5, 12});
  expect(a, {"V must have rank 4 ([N,kv_num_heads,L,v_head_size], as Q), got [1,5,12]"});
  a = base();
  a.q = random_tensor(rng, {1, 3, 32});
  a.k = random_tensor(rng, {1, 5, 16});
  a.v = random_tensor(rng, {1, 5, 16});
  expect(a, {"3-D Q, K and V need the attributes 'q_num_heads' and 'kv_num_heads'"});
  a.attrs = {{"q_num_heads", i64{5}}, {"kv_num_heads", i64{2}}};
  expect(a, {"width 32 is not a multiple of the head count 5"});
  a.attrs = {{"q_num_heads", i64{4}}, {"kv_num_heads", i64{4}}};
  expect(a, {"head size of K", "expected 8", "got 4"});
  a = base();
  a.past_key = random_tensor(rng, {1, 2, 3, 8});
  expect(a, {"past_key and past_value go together"});
  a.past_value = random_tensor(rng, {1, 2, 2, 6});
  expect(a, {"past sequence length", "expected 3", "got 2"});
  a = base();
  a.mask = random_tensor(rng, {3, 3, 5});
  expect(a, {"attn_mask [3,3,5] does not broadcast to [N,q_num_heads,S,T] = [1,4,3,5]: dim 0 is 3, "
             "expected 1 or 4"});
  a.mask = random_tensor(rng, {3, 6});
  expect(a, {"attn_mask covers 6 keys, more than the 5 keys of past and present"});
  a = base();
  a.attrs = {{"qk_matmul_output_mode", i64{4}}};
  expect(a, {"'qk_matmul_output_mode' must be 0, 1, 2 or 3, got 4"});
  a.attrs = {{"softcap", -1.0}};
  expect(a, {"'softcap' must be a finite value >= 0, got -1"});
  a.attrs = {{"is_causal", i64{2}}};
  expect(a, {"'is_causal' must be 0 or 1, got 2"});
  a.attrs = {{"softmax_precision", i64{7}}};
  expect(a, {"'softmax_precision' must be a float type", "got 7"});
  a.attrs = {{"left_window_size", i64{-2}}};
  expect(a, {"'left_window_size' must be -1 (unbounded) or >= 0, got -2"});
  a = base();
  a.past_key = random_tensor(rng, {1, 2, 3, 8});
  a.past_value = random_tensor(rng, {1, 2, 3, 6});
  a.nonpad = Tensor::from<std::int64_t>({1}, {4});
  expect(a, {"nonpad_kv_seqlen (an external cache) and past_key/past_value"});
  a = base();
  a.nonpad = Tensor::from<std::int64_t>({1}, {6});  // a value only the kernel sees
  test::expect_error<Error>([&] { a.run(); },
                            {"[Attention 'attn']", "nonpad_kv_seqlen[0] = 6 is outside 0..5"});
  a.q = random_tensor(rng, {1, 4, 3, 8}, DType::i32);
  test::expect_error<UnsupportedError>([&] { a.run(); }, {"[Attention 'attn']", "Q has dtype i32"});
}

// ---- the reference against the naive form, and laws ---------------------------------------------

TEST_CASE("Attention: equals the naive form over many shapes, scales, softcaps and masks") {
  std::mt19937 rng(3);
  for (int iter = 0; iter < 40; ++iter) {
    const Sizes z = random_sizes(rng);
    CAPTURE(z.name());
    Attn a;
    a.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    const double scale =
        iter % 3 == 0 ? 1.0 / std::sqrt(static_cast<double>(z.D)) : 0.3 + 0.1 * (iter % 7);
    if (iter % 3) a.attrs["scale"] = scale;
    const double softcap = iter % 4 == 1 ? 0.7 : 0.0;
    if (softcap > 0) a.attrs["softcap"] = softcap;
    std::function<double(i64, i64, i64, i64)> bias = no_bias;
    if (iter % 2) {  // an additive mask [S, L], or [N, 1, S, L] broadcast over heads
      a.mask =
          iter % 4 == 3 ? random_tensor(rng, {z.N, 1, z.S, z.L}) : random_tensor(rng, {z.S, z.L});
      const Tensor m = a.mask;
      bias = [m, z](i64 b, i64, i64 i, i64 j) {
        return m.rank() == 2 ? m.get(i * z.L + j) : m.get((b * z.S + i) * z.L + j);
      };
    }
    a.outputs = 1;
    const Tensor y = a.run()[0];
    CHECK(max_diff(y, naive_attention(a.q, a.k, a.v, scale, softcap, bias)) < 1e-12);
  }
}

TEST_CASE("law: causal attention at each position equals full attention over the prefix") {
  std::mt19937 rng(4);
  for (int iter = 0; iter < 20; ++iter) {
    Sizes z = random_sizes(rng);
    const i64 P = iter % 2 ? pick(rng, 1, 4) : 0;  // with a past, the prefix includes it
    z.L = z.S;
    CAPTURE(z.name());
    CAPTURE(P);
    Attn a;
    a.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    if (P) {
      a.past_key = random_tensor(rng, {z.N, z.Hkv, P, z.D});
      a.past_value = random_tensor(rng, {z.N, z.Hkv, P, z.Dv});
    }
    a.attrs["is_causal"] = i64{1};
    a.outputs = 1;
    const Tensor y = a.run()[0];
    const Tensor keys = P ? seq_concat(a.past_key, a.k) : a.k,
                 values = P ? seq_concat(a.past_value, a.v) : a.v;
    for (i64 i = 0; i < z.S; ++i) {
      Attn full;
      full.q = seq_slice(a.q, i, i + 1);
      full.k = seq_slice(keys, 0, P + i + 1);
      full.v = seq_slice(values, 0, P + i + 1);
      full.outputs = 1;
      CHECK(max_diff(seq_slice(y, i, i + 1), full.run()[0]) < 1e-12);
    }
  }
}

TEST_CASE(
    "law: grouped-query attention equals multi-head attention with the key/value heads repeated") {
  std::mt19937 rng(5);
  for (int iter = 0; iter < 20; ++iter) {
    const Sizes z = random_sizes(rng);
    CAPTURE(z.name());
    Attn gqa;
    gqa.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    gqa.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    gqa.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    gqa.attrs["is_causal"] = i64{iter % 2};
    Attn mha = gqa;
    mha.k = repeat_heads(gqa.k, z.Hq / z.Hkv);
    mha.v = repeat_heads(gqa.v, z.Hq / z.Hkv);
    const auto g = gqa.run(), m = mha.run();
    CHECK(max_diff(g[0], m[0]) < 1e-12);
    CHECK(max_diff(g[3], m[3]) < 1e-12);
  }
}

TEST_CASE("law: present_key and present_value are concat(past, new); the past takes part as keys") {
  std::mt19937 rng(6);
  for (int iter = 0; iter < 15; ++iter) {
    const Sizes z = random_sizes(rng);
    const i64 P = pick(rng, 0, 4);
    CAPTURE(z.name());
    CAPTURE(P);
    Attn a;
    a.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    a.past_key = random_tensor(rng, {z.N, z.Hkv, P, z.D});
    a.past_value = random_tensor(rng, {z.N, z.Hkv, P, z.Dv});
    const auto out = a.run();
    CHECK(max_diff(out[1], seq_concat(a.past_key, a.k)) == 0);
    CHECK(max_diff(out[2], seq_concat(a.past_value, a.v)) == 0);
    Attn whole;  // the same keys and values given at once
    whole.q = a.q;
    whole.k = out[1];
    whole.v = out[2];
    CHECK(max_diff(whole.run()[0], out[0]) < 1e-12);
  }
}

TEST_CASE("law: 3-D inputs are 4-D inputs with the heads folded into the width") {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 15; ++iter) {
    const Sizes z = random_sizes(rng);
    CAPTURE(z.name());
    Attn a4;
    a4.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a4.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a4.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    a4.mask = random_tensor(rng, {z.S, z.L});
    a4.attrs["is_causal"] = i64{iter % 2};
    Attn a3 = a4;
    a3.q = to_3d(a4.q);
    a3.k = to_3d(a4.k);
    a3.v = to_3d(a4.v);
    a3.attrs["q_num_heads"] = z.Hq;
    a3.attrs["kv_num_heads"] = z.Hkv;
    const auto o4 = a4.run(), o3 = a3.run();
    CHECK(max_diff(o3[0], to_3d(o4[0])) < 1e-12);
    CHECK(max_diff(o3[1], o4[1]) == 0);  // the cache is 4-D either way
    CHECK(max_diff(o3[3], o4[3]) < 1e-12);
  }
}

TEST_CASE(
    "law: masks compose: boolean = 0/-inf additive, a short mask is padded with masked keys, "
    "nonpad_kv_seqlen and a sliding window are masks") {
  std::mt19937 rng(8);
  for (int iter = 0; iter < 15; ++iter) {
    Sizes z = random_sizes(rng);
    z.L = std::max<i64>(z.L, 2);
    CAPTURE(z.name());
    Attn a;
    a.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    a.outputs = 1;
    // A boolean mask that keeps key 0 (no row fully masked) and a random half of the rest.
    const i64 short_len = pick(rng, 1, z.L);
    Tensor mb(DType::boolean, {z.S, short_len}), mf(DType::f64, {z.S, z.L});
    for (i64 i = 0; i < z.S; ++i)
      for (i64 j = 0; j < z.L; ++j) {
        const bool keep = j < short_len && (j == 0 || rng() % 2 == 0);
        if (j < short_len) mb.set(i * short_len + j, keep ? 1.0 : 0.0);
        mf.set(i * z.L + j, keep ? 0.0 : -kInf);
      }
    Attn with_bool = a, with_float = a;
    with_bool.mask = mb;
    with_float.mask = mf;
    CHECK(max_diff(with_bool.run()[0], with_float.run()[0]) < 1e-12);

    // nonpad_kv_seqlen = n: attention over the first n keys.
    Tensor lens(DType::i64, {z.N});
    for (i64 b = 0; b < z.N; ++b) lens.set(b, static_cast<double>(pick(rng, 1, z.L)));
    Attn padded = a;
    padded.nonpad = lens;
    const Tensor y = padded.run()[0];
    for (i64 b = 0; b < z.N; ++b) {
      const i64 n = static_cast<i64>(lens.get(b));
      Attn one;
      one.q = random_tensor(rng, {1, z.Hq, z.S, z.D});
      for (i64 e = 0; e < one.q.numel(); ++e) one.q.set(e, a.q.get(b * one.q.numel() + e));
      const Tensor kb = seq_slice(a.k, 0, n), vb = seq_slice(a.v, 0, n);
      one.k = Tensor(DType::f64, {1, z.Hkv, n, z.D});
      one.v = Tensor(DType::f64, {1, z.Hkv, n, z.Dv});
      for (i64 e = 0; e < one.k.numel(); ++e) one.k.set(e, kb.get(b * one.k.numel() + e));
      for (i64 e = 0; e < one.v.numel(); ++e) one.v.set(e, vb.get(b * one.v.numel() + e));
      one.outputs = 1;
      const Tensor yb = one.run()[0];
      for (i64 e = 0; e < yb.numel(); ++e)
        CHECK(std::fabs(y.get(b * yb.numel() + e) - yb.get(e)) < 1e-12);
    }

    // A sliding window [i - left, i + right] is the band mask.
    const i64 left = pick(rng, 0, 2), right = pick(rng, 0, 2);
    Attn window = a, band = a;
    window.attrs = {{"left_window_size", left}, {"right_window_size", right}};
    Tensor mask(DType::boolean, {z.S, z.L});
    for (i64 i = 0; i < z.S; ++i)
      for (i64 j = 0; j < z.L; ++j)
        mask.set(i * z.L + j, j >= i - left && j <= i + right ? 1.0 : 0.0);
    band.mask = mask;
    CHECK(max_diff(window.run()[0], band.run()[0]) < 1e-12);
  }
}

TEST_CASE("Attention: a fully masked row is zero in Y and in the softmax output, never NaN") {
  std::mt19937 rng(9);
  Attn a;
  a.q = random_tensor(rng, {1, 2, 3, 4});
  a.k = random_tensor(rng, {1, 2, 5, 4});
  a.v = random_tensor(rng, {1, 2, 5, 3});
  a.mask = Tensor(DType::boolean, {3, 5});
  for (i64 j = 0; j < 5; ++j) a.mask.set(2 * 5 + j, 1.0);  // rows 0 and 1 attend nothing
  a.attrs = {{"qk_matmul_output_mode", i64{3}}};
  const auto out = a.run();
  for (i64 h = 0; h < 2; ++h)
    for (i64 i = 0; i < 3; ++i) {
      double ysum = 0, psum = 0;
      for (i64 d = 0; d < 3; ++d) ysum += std::fabs(out[0].get((h * 3 + i) * 3 + d));
      for (i64 j = 0; j < 5; ++j) psum += out[3].get((h * 3 + i) * 5 + j);
      CHECK(psum == doctest::Approx(i == 2 ? 1.0 : 0.0));
      if (i == 2)
        CHECK(ysum > 0);
      else
        CHECK(ysum == 0.0);
    }
  // With nonpad_kv_seqlen = 0 and causal rows before the first key (offset = 0 - S < 0).
  Attn c = a;
  c.mask = Tensor();
  c.nonpad = Tensor::from<std::int64_t>({1}, {0});
  for (const auto& t : c.run())
    for (i64 e = 0; e < t.numel(); ++e) CHECK(!std::isnan(t.get(e)));
}

TEST_CASE("Attention: qk_matmul_output modes are the scores, soft-capped, biased and normalized") {
  std::mt19937 rng(10);
  for (int iter = 0; iter < 10; ++iter) {
    const Sizes z = random_sizes(rng);
    CAPTURE(z.name());
    Attn a;
    a.q = random_tensor(rng, {z.N, z.Hq, z.S, z.D});
    a.k = random_tensor(rng, {z.N, z.Hkv, z.L, z.D});
    a.v = random_tensor(rng, {z.N, z.Hkv, z.L, z.Dv});
    a.mask = random_tensor(rng, {z.S, z.L});
    const double softcap = 0.5, scale = 0.7;
    std::vector<Tensor> mode(4);
    for (i64 m = 0; m < 4; ++m) {
      Attn b = a;
      b.attrs = {{"qk_matmul_output_mode", m}, {"softcap", softcap}, {"scale", scale}};
      mode[static_cast<std::size_t>(m)] = b.run()[3];
    }
    const i64 T = z.L, G = z.Hq / z.Hkv;
    for (i64 b = 0; b < z.N; ++b)
      for (i64 h = 0; h < z.Hq; ++h)
        for (i64 i = 0; i < z.S; ++i) {
          double rowsum = 0;
          for (i64 j = 0; j < T; ++j) {
            const i64 at = ((b * z.Hq + h) * z.S + i) * T + j;
            double dot = 0;
            for (i64 d = 0; d < z.D; ++d)
              dot += a.q.get(((b * z.Hq + h) * z.S + i) * z.D + d) *
                     a.k.get(((b * z.Hkv + h / G) * T + j) * z.D + d);
            CHECK(mode[0].get(at) == doctest::Approx(scale * dot).epsilon(1e-12));
            CHECK(mode[1].get(at) ==
                  doctest::Approx(softcap * std::tanh(scale * dot / softcap)).epsilon(1e-12));
            CHECK(mode[2].get(at) ==
                  doctest::Approx(mode[1].get(at) + a.mask.get(i * T + j)).epsilon(1e-12));
            rowsum += mode[3].get(at);
          }
          CHECK(rowsum == doctest::Approx(1.0));
        }
  }
}

TEST_CASE(
    "Attention: the default scale is 1/sqrt(head size); f16 inputs compute in double, store f16") {
  std::mt19937 rng(11);
  Attn a;
  a.q = random_tensor(rng, {2, 4, 3, 16});
  a.k = random_tensor(rng, {2, 2, 5, 16});
  a.v = random_tensor(rng, {2, 2, 5, 8});
  a.outputs = 1;
  Attn b = a;
  b.attrs["scale"] = 0.25;
  CHECK(max_diff(a.run()[0], b.run()[0]) < 1e-15);
  Attn h = a;  // the same values in f16
  h.q = a.q.cast(DType::f16);
  h.k = a.k.cast(DType::f16);
  h.v = a.v.cast(DType::f16);
  Attn wide = a;
  wide.q = h.q.cast(DType::f64);
  wide.k = h.k.cast(DType::f64);
  wide.v = h.v.cast(DType::f64);
  const Tensor yh = h.run()[0], yw = wide.run()[0];
  CHECK(yh.dtype() == DType::f16);
  CHECK(max_diff(yh.cast(DType::f64), yw) < 1e-3);  // one rounding to f16 of values below 1
}

// ---- RotaryEmbedding ----------------------------------------------------------------------

namespace {

/// One RotaryEmbedding node (position ids omitted when undefined).
Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& pos,
              std::map<std::string, Attribute> attrs = {}) {
  std::vector<Tensor> ins{x, cos, sin};
  if (pos.defined()) ins.push_back(pos);
  return test::run(test::node("RotaryEmbedding", ins.size(), std::move(attrs), 1, "rope"), ins)[0];
}

/// Caches of angles theta[p][k] = p * base^(-2k/R): cos and sin [P, R/2].
std::pair<Tensor, Tensor> caches(i64 positions, i64 half, double shift = 0) {
  Tensor c(DType::f64, {positions, half}), s(DType::f64, {positions, half});
  for (i64 p = 0; p < positions; ++p)
    for (i64 k = 0; k < half; ++k) {
      const double th = (static_cast<double>(p) + shift) *
                        std::pow(100.0, -static_cast<double>(k) / static_cast<double>(half));
      c.set(p * half + k, std::cos(th));
      s.set(p * half + k, std::sin(th));
    }
  return {c, s};
}

}  // namespace

TEST_CASE("RotaryEmbedding: rotates pairs (halves or interleaved) by the angles of each position") {
  std::mt19937 rng(12);
  for (int iter = 0; iter < 20; ++iter) {
    const i64 N = pick(rng, 1, 2), H = pick(rng, 1, 3), S = pick(rng, 1, 4),
              D = 2 * pick(rng, 1, 4);
    const i64 R = iter % 3 == 0 ? 2 * pick(rng, 1, D / 2) : D;
    const bool inter = iter % 2;
    CAPTURE(fmt::format("N{} H{} S{} D{} R{} interleaved {}", N, H, S, D, R, inter));
    const Tensor x = random_tensor(rng, {N, H, S, D});
    Tensor pos(DType::i64, {N, S});
    for (i64 e = 0; e < N * S; ++e) pos.set(e, static_cast<double>(pick(rng, 0, 9)));
    const auto cache = caches(10, R / 2);
    const Tensor &c = cache.first, &s = cache.second;
    std::map<std::string, Attribute> attrs{{"interleaved", i64{inter}}};
    if (R != D) attrs["rotary_embedding_dim"] = R;
    const Tensor y = rotary(x, c, s, pos, attrs);
    for (i64 b = 0; b < N; ++b)
      for (i64 h = 0; h < H; ++h)
        for (i64 t = 0; t < S; ++t) {
          const i64 at = ((b * H + h) * S + t) * D, p = static_cast<i64>(pos.get(b * S + t));
          for (i64 k = 0; k < R / 2; ++k) {
            const i64 i1 = inter ? 2 * k : k, i2 = inter ? 2 * k + 1 : k + R / 2;
            const double cs = c.get(p * (R / 2) + k), sn = s.get(p * (R / 2) + k);
            CHECK(y.get(at + i1) == doctest::Approx(cs * x.get(at + i1) - sn * x.get(at + i2)));
            CHECK(y.get(at + i2) == doctest::Approx(sn * x.get(at + i1) + cs * x.get(at + i2)));
          }
          for (i64 d = R; d < D; ++d) CHECK(y.get(at + d) == x.get(at + d));  // past R: unchanged
        }
  }
}

TEST_CASE(
    "law: rotary by angle a then b is rotary by a + b; 3-D is 4-D; caches without position ids") {
  std::mt19937 rng(13);
  for (int iter = 0; iter < 10; ++iter) {
    const i64 N = pick(rng, 1, 2), H = pick(rng, 1, 3), S = pick(rng, 1, 4),
              D = 2 * pick(rng, 1, 4);
    const bool inter = iter % 2;
    const Tensor x = random_tensor(rng, {N, H, S, D});
    Tensor pos(DType::i64, {N, S});
    for (i64 e = 0; e < N * S; ++e) pos.set(e, static_cast<double>(pick(rng, 0, 5)));
    const std::map<std::string, Attribute> attrs{{"interleaved", i64{inter}}};
    const auto a = caches(6, D / 2, 0.0), b = caches(6, D / 2, 0.5);  // angles of p and of p + 0.5
    const Tensor &ca = a.first, &sa = a.second, &cb = b.first, &sb = b.second;
    // a + b: per position p, angle(p) + angle(p + 0.5) = angle(2p + 0.5), as a gathered cache.
    Tensor csum(DType::f64, {N, S, D / 2}), ssum(DType::f64, {N, S, D / 2});
    for (i64 r = 0; r < N * S; ++r)
      for (i64 k = 0; k < D / 2; ++k) {
        const i64 p = static_cast<i64>(pos.get(r));
        const double th = std::atan2(sa.get(p * D / 2 + k), ca.get(p * D / 2 + k)) +
                          std::atan2(sb.get(p * D / 2 + k), cb.get(p * D / 2 + k));
        csum.set(r * D / 2 + k, std::cos(th));
        ssum.set(r * D / 2 + k, std::sin(th));
      }
    const Tensor twice = rotary(rotary(x, ca, sa, pos, attrs), cb, sb, pos, attrs);
    CHECK(max_diff(twice, rotary(x, csum, ssum, Tensor(), attrs)) < 1e-12);
    // 3-D [N, S, H*D] with num_heads is the 4-D form with heads folded in.
    std::map<std::string, Attribute> a3 = attrs;
    a3["num_heads"] = H;
    CHECK(max_diff(rotary(to_3d(x), ca, sa, pos, a3), to_3d(rotary(x, ca, sa, pos, attrs))) == 0);
  }
}

TEST_CASE("RotaryEmbedding: errors name the node and what was expected") {
  std::mt19937 rng(14);
  const Tensor x = random_tensor(rng, {1, 2, 3, 8});
  const auto cache = caches(4, 4);
  const Tensor &c = cache.first, &s = cache.second;
  Tensor pos = Tensor::from<std::int64_t>({1, 3}, {0, 1, 4});
  test::expect_error<Error>([&] { rotary(x, c, s, pos); },
                            {"[RotaryEmbedding 'rope']", "position_ids[0][2] = 4 is outside 0..3"});
  pos = Tensor::from<std::int64_t>({1, 3}, {0, 1, 2});
  test::expect_error<ShapeError>(
      [&] {
        rotary(x, c, s, pos, {{"rotary_embedding_dim", i64{3}}});
      },
      {"[RotaryEmbedding 'rope']", "the rotated dims (3) must be even"});
  test::expect_error<ShapeError>(
      [&] {
        rotary(x, c, s, pos, {{"rotary_embedding_dim", i64{10}}});
      },
      {"rotary_embedding_dim 10 is larger than the head size 8"});
  test::expect_error<ShapeError>(
      [&] {
        rotary(x, c, s, pos, {{"rotary_embedding_dim", i64{4}}});
      },
      {"columns of cos_cache (rotated dims / 2)", "expected 2", "got 4"});
  test::expect_error<ShapeError>(
      [&] { rotary(to_3d(x), c, s, pos); },
      {"a 3-D input [N,S,num_heads*head_size] needs the attribute 'num_heads'"});
  test::expect_error<ShapeError>(
      [&] {
        rotary(to_3d(x), c, s, pos, {{"num_heads", i64{3}}});
      },
      {"width 16 is not a multiple of the head count 3"});
  test::expect_error<ShapeError>(
      [&] { rotary(x, c, s, Tensor()); },
      {"without position_ids, cos_cache must be [N,S,rotated dims / 2], got [4,4]"});
}
