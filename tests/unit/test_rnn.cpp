// RNN family: RNN, GRU, LSTM against the written gate equations (computed here by hand on random
// data), laws (reverse = forward on reversed time, bidirectional = both directions stacked,
// layout 1 = layout 0 transposed, sequence_lens = the shorter sequence), shape rules and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using i64 = std::int64_t;

namespace {

using test::run;

Node node(std::string op, std::size_t n_in, std::map<std::string, Attribute> attrs,
          std::size_t n_out) {
  return test::node(std::move(op), n_in, std::move(attrs), n_out, "rnn1");
}

std::vector<double> rand_vec(std::mt19937& rng, i64 n, double scale = 0.5) {
  std::uniform_real_distribution<double> u(-scale, scale);
  std::vector<double> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

Tensor f64(std::vector<i64> dims, std::vector<double> v) {
  return Tensor::from<double>(std::move(dims), v);
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol = 1e-9) {
  const auto g = got.to_doubles();
  REQUIRE(g.size() == want.size());
  for (std::size_t i = 0; i < g.size(); ++i)
    CHECK(g[i] == doctest::Approx(want[i]).epsilon(tol).scale(1));
}

double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }

/// dot(row of M [rows, cols] starting at row r, v)
double dot_row(const std::vector<double>& M, i64 r, i64 cols, const double* v, i64 off = 0) {
  double s = 0;
  for (i64 j = 0; j < cols; ++j) s += M[off + r * cols + j] * v[j];
  return s;
}

/// Random weights of one direction-count for a cell of `G` gates.
struct Weights {
  i64 S, N, I, H, D;
  std::vector<double> X, W, R, B, h0, c0, P;
};
Weights random_weights(std::mt19937& rng, i64 G, i64 D) {
  Weights w;
  w.S = 1 + rng() % 4;
  w.N = 1 + rng() % 3;
  w.I = 1 + rng() % 4;
  w.H = 1 + rng() % 4;
  w.D = D;
  w.X = rand_vec(rng, w.S * w.N * w.I, 1.0);
  w.W = rand_vec(rng, D * G * w.H * w.I);
  w.R = rand_vec(rng, D * G * w.H * w.H);
  w.B = rand_vec(rng, D * 2 * G * w.H);
  w.h0 = rand_vec(rng, D * w.N * w.H);
  w.c0 = rand_vec(rng, D * w.N * w.H);
  w.P = rand_vec(rng, D * 3 * w.H);
  return w;
}

/// Reverses the time axis (axis 0) of a [S, rest] buffer.
std::vector<double> flip_time(const std::vector<double>& v, i64 S) {
  const std::size_t rest = v.size() / static_cast<std::size_t>(S);
  std::vector<double> r(v.size());
  for (i64 t = 0; t < S; ++t)
    std::copy_n(v.begin() + t * rest, rest, r.begin() + (S - 1 - t) * rest);
  return r;
}

}  // namespace

// ---- the written equations -------------------------------------------------------------------

TEST_CASE("LSTM steps equal the written gate equations (peepholes, biases, initial state)") {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    const Weights w = random_weights(rng, 4, 1);
    const i64 N = w.N, I = w.I, H = w.H, S = w.S;
    const auto outs = run(node("LSTM", 8, {{"hidden_size", H}}, 3),
                          {f64({S, N, I}, w.X), f64({1, 4 * H, I}, w.W), f64({1, 4 * H, H}, w.R),
                           f64({1, 8 * H}, w.B), Tensor(), f64({1, N, H}, w.h0),
                           f64({1, N, H}, w.c0), f64({1, 3 * H}, w.P)});
    // it = s(Wi x + Ri h + Pi.c + Wbi + Rbi); ft likewise; ct = tanh(..); C = f.c + i.ct;
    // ot = s(Wo x + Ro h + Po.C + Wbo + Rbo); H = o.tanh(C). Gate rows: i, o, f, c.
    std::vector<double> h = w.h0, c = w.c0, Y;
    for (i64 t = 0; t < S; ++t) {
      std::vector<double> hn(N * H), cn(N * H);
      for (i64 b = 0; b < N; ++b)
        for (i64 k = 0; k < H; ++k) {
          const double* x = w.X.data() + (t * N + b) * I;
          const double* hp = h.data() + b * H;
          auto pre = [&](i64 g) {
            return dot_row(w.W, g * H + k, I, x) + dot_row(w.R, g * H + k, H, hp) + w.B[g * H + k] +
                   w.B[4 * H + g * H + k];
          };
          const double cp = c[b * H + k];
          const double ig = sigm(pre(0) + w.P[k] * cp);
          const double fg = sigm(pre(2) + w.P[2 * H + k] * cp);
          const double cg = std::tanh(pre(3));
          const double C = fg * cp + ig * cg;
          const double og = sigm(pre(1) + w.P[H + k] * C);
          cn[b * H + k] = C;
          hn[b * H + k] = og * std::tanh(C);
        }
      h = hn;
      c = cn;
      Y.insert(Y.end(), h.begin(), h.end());
    }
    CHECK(outs[0].dims() == std::vector<i64>{S, 1, N, H});
    check_close(outs[0], Y);
    check_close(outs[1], h);
    check_close(outs[2], c);
  }
}

TEST_CASE("GRU steps equal the written equations, for both linear_before_reset modes") {
  std::mt19937 rng(2);
  for (i64 lbr : {i64{0}, i64{1}}) {
    for (int trial = 0; trial < 15; ++trial) {
      const Weights w = random_weights(rng, 3, 1);
      const i64 N = w.N, I = w.I, H = w.H, S = w.S;
      const auto outs = run(node("GRU", 6, {{"hidden_size", H}, {"linear_before_reset", lbr}}, 2),
                            {f64({S, N, I}, w.X), f64({1, 3 * H, I}, w.W), f64({1, 3 * H, H}, w.R),
                             f64({1, 6 * H}, w.B), Tensor(), f64({1, N, H}, w.h0)});
      // z = s(Wz x + Rz h + Wbz + Rbz); r likewise; gate rows z, r, h.
      // lbr=0: h~ = tanh(Wh x + Rh (r.h) + Rbh + Wbh); lbr=1: h~ = tanh(Wh x + r.(Rh h + Rbh) +
      // Wbh) H = (1 - z).h~ + z.h
      std::vector<double> h = w.h0, Y;
      for (i64 t = 0; t < S; ++t) {
        std::vector<double> hn(N * H);
        for (i64 b = 0; b < N; ++b) {
          const double* x = w.X.data() + (t * N + b) * I;
          const double* hp = h.data() + b * H;
          std::vector<double> z(H), r(H), rh(H);
          for (i64 k = 0; k < H; ++k) {
            z[k] = sigm(dot_row(w.W, k, I, x) + dot_row(w.R, k, H, hp) + w.B[k] + w.B[3 * H + k]);
            r[k] = sigm(dot_row(w.W, H + k, I, x) + dot_row(w.R, H + k, H, hp) + w.B[H + k] +
                        w.B[4 * H + k]);
            rh[k] = r[k] * hp[k];
          }
          for (i64 k = 0; k < H; ++k) {
            const double xh = dot_row(w.W, 2 * H + k, I, x) + w.B[2 * H + k];
            const double ht =
                lbr ? std::tanh(xh + r[k] * (dot_row(w.R, 2 * H + k, H, hp) + w.B[5 * H + k]))
                    : std::tanh(xh + dot_row(w.R, 2 * H + k, H, rh.data()) + w.B[5 * H + k]);
            hn[b * H + k] = (1 - z[k]) * ht + z[k] * hp[k];
          }
        }
        h = hn;
        Y.insert(Y.end(), h.begin(), h.end());
      }
      check_close(outs[0], Y);
      check_close(outs[1], h);
    }
  }
}

TEST_CASE("RNN steps equal f(W x + R h + Wb + Rb), with the activations attribute") {
  std::mt19937 rng(3);
  for (const char* act : {"Tanh", "Relu", "Sigmoid"}) {
    const Weights w = random_weights(rng, 1, 1);
    const i64 N = w.N, I = w.I, H = w.H, S = w.S;
    const auto outs =
        run(node("RNN", 6, {{"hidden_size", H}, {"activations", std::vector<std::string>{act}}}, 2),
            {f64({S, N, I}, w.X), f64({1, H, I}, w.W), f64({1, H, H}, w.R), f64({1, 2 * H}, w.B),
             Tensor(), f64({1, N, H}, w.h0)});
    auto f = [&](double v) {
      if (std::string(act) == "Relu") return v > 0 ? v : 0.0;
      if (std::string(act) == "Sigmoid") return sigm(v);
      return std::tanh(v);
    };
    std::vector<double> h = w.h0, Y;
    for (i64 t = 0; t < S; ++t) {
      std::vector<double> hn(N * H);
      for (i64 b = 0; b < N; ++b)
        for (i64 k = 0; k < H; ++k)
          hn[b * H + k] = f(dot_row(w.W, k, I, w.X.data() + (t * N + b) * I) +
                            dot_row(w.R, k, H, h.data() + b * H) + w.B[k] + w.B[H + k]);
      h = hn;
      Y.insert(Y.end(), h.begin(), h.end());
    }
    CAPTURE(act);
    check_close(outs[0], Y);
    check_close(outs[1], h);
  }
}

TEST_CASE("clip bounds the activation inputs; input_forget couples f = 1 - i") {
  // One step, one unit, X = 1, all weights 1, no state: every gate's pre-activation is 1 (and
  // 2 with the biases); clip 0.5 caps them.
  const Tensor X = f64({1, 1, 1}, {1.0});
  const Tensor W = f64({1, 4, 1}, {1, 1, 1, 1});
  const Tensor R = f64({1, 4, 1}, {1, 1, 1, 1});
  const Tensor B = f64({1, 8}, {1, 1, 1, 1, 0, 0, 0, 0});
  auto y = run(node("LSTM", 4, {{"hidden_size", i64{1}}, {"clip", 0.5}}, 3), {X, W, R, B});
  const double i = sigm(0.5), o = sigm(0.5), g = std::tanh(0.5);
  check_close(y[2], {i * g});
  check_close(y[1], {o * std::tanh(i * g)});
  // input_forget with an initial cell: C = (1 - i) c0 + i g.
  const Tensor c0 = f64({1, 1, 1}, {0.7});
  y = run(node("LSTM", 7, {{"hidden_size", i64{1}}, {"input_forget", i64{1}}}, 3),
          {X, W, R, B, Tensor(), Tensor(), c0});
  const double i2 = sigm(2.0 + 0.0), g2 = std::tanh(2.0);
  check_close(y[2], {(1 - i2) * 0.7 + i2 * g2});
}

// ---- laws ---------------------------------------------------------------------------------

namespace {
struct CellCase {
  const char* op;
  i64 G;
  std::size_t n_in, n_out;
};
const CellCase kCells[] = {{"RNN", 1, 6, 2}, {"GRU", 3, 6, 2}, {"LSTM", 4, 7, 3}};

/// Runs a cell on `w` (direction d's weights for a one-direction run, or all for bidirectional).
std::vector<Tensor> run_cell(const CellCase& c, const Weights& w, const std::string& direction,
                             i64 d, const std::vector<double>& X, i64 lbr = 0) {
  const i64 D = direction == "bidirectional" ? 2 : 1;
  const i64 G = c.G, H = w.H, N = w.N, I = w.I;
  auto part = [&](const std::vector<double>& v, i64 per) {
    return D == 2 ? v : std::vector<double>(v.begin() + d * per, v.begin() + (d + 1) * per);
  };
  std::map<std::string, Attribute> attrs{{"hidden_size", H}, {"direction", direction}};
  if (std::string(c.op) == "GRU") attrs["linear_before_reset"] = lbr;
  std::vector<Tensor> ins{f64({w.S, N, I}, X),
                          f64({D, G * H, I}, part(w.W, G * H * I)),
                          f64({D, G * H, H}, part(w.R, G * H * H)),
                          f64({D, 2 * G * H}, part(w.B, 2 * G * H)),
                          Tensor(),
                          f64({D, N, H}, part(w.h0, N * H))};
  if (std::string(c.op) == "LSTM") ins.push_back(f64({D, N, H}, part(w.c0, N * H)));
  return run(node(c.op, c.n_in, attrs, c.n_out), ins);
}
}  // namespace

TEST_CASE("law: reverse direction equals forward on the time-reversed input") {
  std::mt19937 rng(4);
  for (const auto& c : kCells)
    for (int trial = 0; trial < 10; ++trial) {
      const Weights w = random_weights(rng, c.G, 1);
      const auto rev = run_cell(c, w, "reverse", 0, w.X, trial % 2);
      const auto fwd = run_cell(c, w, "forward", 0, flip_time(w.X, w.S), trial % 2);
      CAPTURE(c.op);
      check_close(rev[0], flip_time(fwd[0].to_doubles(), w.S));
      for (std::size_t o = 1; o < c.n_out; ++o) check_close(rev[o], fwd[o].to_doubles());
    }
}

TEST_CASE("law: bidirectional is the forward and reverse runs stacked on the direction axis") {
  std::mt19937 rng(5);
  for (const auto& c : kCells)
    for (int trial = 0; trial < 10; ++trial) {
      const Weights w = random_weights(rng, c.G, 2);
      const auto bi = run_cell(c, w, "bidirectional", 0, w.X);
      const auto f = run_cell(c, w, "forward", 0, w.X);
      const auto r = run_cell(c, w, "reverse", 1, w.X);
      CAPTURE(c.op);
      CHECK(bi[0].dims() == std::vector<i64>{w.S, 2, w.N, w.H});
      // Y [S, 2, N, H]: per step, forward then reverse.
      std::vector<double> want;
      const auto fy = f[0].to_doubles(), ry = r[0].to_doubles();
      const std::size_t step = static_cast<std::size_t>(w.N * w.H);
      for (i64 t = 0; t < w.S; ++t) {
        want.insert(want.end(), fy.begin() + t * step, fy.begin() + (t + 1) * step);
        want.insert(want.end(), ry.begin() + t * step, ry.begin() + (t + 1) * step);
      }
      check_close(bi[0], want);
      for (std::size_t o = 1; o < c.n_out; ++o) {  // Y_h, Y_c [2, N, H]
        auto s = f[o].to_doubles();
        const auto rs = r[o].to_doubles();
        s.insert(s.end(), rs.begin(), rs.end());
        check_close(bi[o], s);
      }
    }
}

TEST_CASE("law: layout 1 is layout 0 with batch and time swapped") {
  std::mt19937 rng(6);
  for (const auto& c : kCells) {
    const Weights w = random_weights(rng, c.G, 2);
    const i64 S = w.S, N = w.N, I = w.I, H = w.H, G = c.G;
    auto swap01 = [](const std::vector<double>& v, i64 a, i64 b, i64 rest) {
      std::vector<double> r(v.size());
      for (i64 i = 0; i < a; ++i)
        for (i64 j = 0; j < b; ++j)
          for (i64 k = 0; k < rest; ++k) r[(j * a + i) * rest + k] = v[(i * b + j) * rest + k];
      return r;
    };
    std::vector<Tensor> ins{f64({S, N, I}, w.X),
                            f64({2, G * H, I}, w.W),
                            f64({2, G * H, H}, w.R),
                            f64({2, 2 * G * H}, w.B),
                            Tensor(),
                            f64({2, N, H}, w.h0)};
    if (std::string(c.op) == "LSTM") ins.push_back(f64({2, N, H}, w.c0));
    const std::map<std::string, Attribute> attrs{{"direction", std::string("bidirectional")}};
    const auto a = run(node(c.op, ins.size(), attrs, c.n_out), ins);
    ins[0] = f64({N, S, I}, swap01(w.X, S, N, I));
    ins[5] = f64({N, 2, H}, swap01(w.h0, 2, N, H));
    if (ins.size() > 6) ins[6] = f64({N, 2, H}, swap01(w.c0, 2, N, H));
    auto attrs1 = attrs;
    attrs1["layout"] = i64{1};
    const auto b = run(node(c.op, ins.size(), attrs1, c.n_out), ins);
    CAPTURE(c.op);
    CHECK(b[0].dims() == std::vector<i64>{N, S, 2, H});
    const auto y = a[0].to_doubles();  // [S, 2, N, H] -> [N, S, 2, H]
    std::vector<double> yt(y.size());
    for (i64 t = 0; t < S; ++t)
      for (i64 d = 0; d < 2; ++d)
        for (i64 n = 0; n < N; ++n)
          for (i64 k = 0; k < H; ++k)
            yt[((n * S + t) * 2 + d) * H + k] = y[((t * 2 + d) * N + n) * H + k];
    check_close(b[0], yt);
    for (std::size_t o = 1; o < c.n_out; ++o) check_close(b[o], swap01(a[o].to_doubles(), 2, N, H));
  }
}

TEST_CASE("law: sequence_lens pads with zeros and stops the state at the last valid step") {
  std::mt19937 rng(7);
  for (const auto& c : kCells)
    for (const char* direction : {"forward", "reverse"}) {
      Weights w = random_weights(rng, c.G, 1);
      w.S = 4;
      w.N = 2;
      w.X = rand_vec(rng, w.S * w.N * w.I, 1.0);
      w.h0 = rand_vec(rng, w.N * w.H);
      w.c0 = rand_vec(rng, w.N * w.H);
      const i64 H = w.H, I = w.I, G = c.G, len0 = 2;
      std::vector<Tensor> ins{f64({4, 2, I}, w.X),
                              f64({1, G * H, I}, w.W),
                              f64({1, G * H, H}, w.R),
                              f64({1, 2 * G * H}, w.B),
                              Tensor::from<std::int32_t>({2}, {int(len0), 4}),
                              f64({1, 2, H}, w.h0)};
      if (std::string(c.op) == "LSTM") ins.push_back(f64({1, 2, H}, w.c0));
      const std::map<std::string, Attribute> attrs{{"direction", std::string(direction)}};
      const auto full = run(node(c.op, ins.size(), attrs, c.n_out), ins);
      // Batch entry 0 alone, on its first len0 steps.
      std::vector<double> x0;
      for (i64 t = 0; t < len0; ++t)
        x0.insert(x0.end(), w.X.begin() + (t * 2) * I, w.X.begin() + (t * 2 + 1) * I);
      std::vector<Tensor> ins0{f64({len0, 1, I}, x0),
                               ins[1],
                               ins[2],
                               ins[3],
                               Tensor(),
                               f64({1, 1, H}, std::vector<double>(w.h0.begin(), w.h0.begin() + H))};
      if (std::string(c.op) == "LSTM")
        ins0.push_back(f64({1, 1, H}, std::vector<double>(w.c0.begin(), w.c0.begin() + H)));
      const auto part = run(node(c.op, ins0.size(), attrs, c.n_out), ins0);
      CAPTURE(c.op);
      CAPTURE(direction);
      const auto y = full[0].to_doubles(), yp = part[0].to_doubles();
      for (i64 t = 0; t < 4; ++t)
        for (i64 k = 0; k < H; ++k) {
          const double got = y[(t * 2 + 0) * H + k];
          if (t < len0)
            CHECK(got == doctest::Approx(yp[t * H + k]).epsilon(1e-12));
          else
            CHECK(got == 0.0);
        }
      for (std::size_t o = 1; o < c.n_out; ++o) {
        const auto s = full[o].to_doubles(), sp = part[o].to_doubles();
        for (i64 k = 0; k < H; ++k) CHECK(s[k] == doctest::Approx(sp[k]).epsilon(1e-12));
      }
    }
}

TEST_CASE("two stacked LSTM nodes: the second runs on the first's output") {
  std::mt19937 rng(8);
  const i64 S = 3, N = 2, I = 4, H = 5;
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape{S, Dim::symbol("N"), I}}});
  auto w = [&](std::vector<i64> dims) {
    return Tensor::from_doubles(DType::f32, dims, rand_vec(rng, product(dims)));
  };
  g.weights["W1"] = w({1, 4 * H, I});
  g.weights["R1"] = w({1, 4 * H, H});
  g.weights["W2"] = w({1, 4 * H, H});
  g.weights["R2"] = w({1, 4 * H, H});
  g.weights["B2"] = w({1, 8 * H});
  g.weights["sq_axes"] = Tensor::from<i64>({1}, {1});
  Node l1 = node("LSTM", 0, {{"hidden_size", H}}, 0);
  l1.name = "lstm1";
  l1.inputs = {"x", "W1", "R1"};
  l1.outputs = {"y1"};
  g.add_node(l1);
  Node sq;
  sq.op = "Squeeze";
  sq.name = "squeeze1";
  sq.inputs = {"y1", "sq_axes"};
  sq.outputs = {"x2"};
  g.add_node(sq);
  Node l2 = node("LSTM", 0, {{"hidden_size", H}}, 0);
  l2.name = "lstm2";
  l2.inputs = {"x2", "W2", "R2", "B2"};
  l2.outputs = {"y2", "h2"};
  g.add_node(l2);
  g.outputs = {"y2", "h2"};
  g.infer();
  CHECK(g.type_of("y1").to_string() == "f32[3,1,N,5]");
  CHECK(g.type_of("y2").to_string() == "f32[3,1,N,5]");
  CHECK(g.type_of("h2").to_string() == "f32[1,N,5]");

  const Tensor x = Tensor::from_doubles(DType::f32, {S, N, I}, rand_vec(rng, S * N * I, 1.0));
  // The same two layers, node by node.
  const auto y1 =
      run(node("LSTM", 3, {{"hidden_size", H}}, 1), {x, g.weights["W1"], g.weights["R1"]});
  const auto y2 =
      run(node("LSTM", 4, {{"hidden_size", H}}, 2),
          {y1[0].reshaped({S, N, H}), g.weights["W2"], g.weights["R2"], g.weights["B2"]});
  if (!reference::KernelRegistry::instance().find("Squeeze")) {
    MESSAGE(
        "the reference has no Squeeze kernel yet: the stacked graph is checked node by node only");
    return;
  }
  const auto out = reference::Executor(g).run({{"x", x}});
  check_close(out.at("y2"), y2[0].to_doubles(), 1e-6);
  check_close(out.at("h2"), y2[1].to_doubles(), 1e-6);
}

// ---- dtypes, shape rules, errors -----------------------------------------------------------

TEST_CASE("16-bit and 32-bit floats compute in double and round once") {
  std::mt19937 rng(9);
  const Weights w = random_weights(rng, 3, 1);
  const i64 S = w.S, N = w.N, I = w.I, H = w.H;
  const auto ref = run(node("GRU", 3, {}, 2),
                       {f64({S, N, I}, w.X), f64({1, 3 * H, I}, w.W), f64({1, 3 * H, H}, w.R)});
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    // Inputs rounded to dt, the reference rerun on the rounded values in f64.
    const Tensor X = f64({S, N, I}, w.X).cast(dt), W = f64({1, 3 * H, I}, w.W).cast(dt),
                 R = f64({1, 3 * H, H}, w.R).cast(dt);
    const auto got = run(node("GRU", 3, {}, 2), {X, W, R});
    const auto want =
        run(node("GRU", 3, {}, 2), {X.cast(DType::f64), W.cast(DType::f64), R.cast(DType::f64)});
    CHECK(got[0].dtype() == dt);
    CHECK(got[0].to_doubles() == want[0].cast(dt).to_doubles());
  }
  CHECK(ref[0].dtype() == DType::f64);
}

TEST_CASE("RNN family shape rules: layouts, directions, optional outputs") {
  auto graph = [](std::string op, i64 G, std::map<std::string, Attribute> attrs, i64 D, i64 W_in,
                  std::vector<std::string> outs) {
    Graph g;
    const bool l1 = attrs.count("layout") && std::get<i64>(attrs["layout"]) == 1;
    g.inputs.push_back({"x", TensorType{DType::f32, l1 ? Shape{Dim::symbol("N"), 7, 3}
                                                       : Shape{7, Dim::symbol("N"), 3}}});
    g.weights["W"] = Tensor(DType::f32, {D, G * 4, W_in});
    g.weights["R"] = Tensor(DType::f32, {D, G * 4, 4});
    Node n = node(op, 0, std::move(attrs), 0);
    n.inputs = {"x", "W", "R"};
    n.outputs = outs;
    g.add_node(n);
    for (auto& o : outs)
      if (!o.empty()) g.outputs.push_back(o);
    return g;
  };
  Graph a = graph("LSTM", 4, {{"hidden_size", i64{4}}}, 1, 3, {"y", "yh", "yc"});
  a.infer();
  CHECK(a.type_of("y").to_string() == "f32[7,1,N,4]");
  CHECK(a.type_of("yc").to_string() == "f32[1,N,4]");
  Graph b = graph("GRU", 3, {{"direction", std::string("bidirectional")}, {"layout", i64{1}}}, 2, 3,
                  {"", "yh"});
  b.infer();
  CHECK(b.type_of("yh").to_string() == "f32[N,2,4]");
  Graph c = graph("RNN", 1, {{"layout", i64{1}}}, 1, 3, {"y"});
  c.infer();
  CHECK(c.type_of("y").to_string() == "f32[N,7,1,4]");

  Graph bad_in = graph("LSTM", 4, {}, 1, 5, {"y"});
  CHECK_THROWS_WITH_AS(bad_in.infer(), "[LSTM 'rnn1'] expected 5 input size (columns of W), got 3",
                       ShapeError);
  Graph bad_h = graph("LSTM", 4, {{"hidden_size", i64{6}}}, 1, 3, {"y"});
  CHECK_THROWS_WITH_AS(bad_h.infer(), "[LSTM 'rnn1'] expected 6 hidden size, got 4", ShapeError);
  Graph bad_dirs = graph("GRU", 3, {{"direction", std::string("bidirectional")}}, 1, 3, {"y"});
  CHECK_THROWS_WITH_AS(bad_dirs.infer(), "[GRU 'rnn1'] expected 2 directions in W, got 1",
                       ShapeError);
  Graph bad_dir = graph("GRU", 3, {{"direction", std::string("sideways")}}, 1, 3, {"y"});
  CHECK_THROWS_WITH_AS(bad_dir.infer(), doctest::Contains("attribute 'direction' = 'sideways'"),
                       UnsupportedError);
  Graph bad_act =
      graph("RNN", 1, {{"activations", std::vector<std::string>{"Swish"}}}, 1, 3, {"y"});
  CHECK_THROWS_WITH_AS(bad_act.infer(), doctest::Contains("activation 'Swish'"), UnsupportedError);
}

TEST_CASE("RNN family kernel errors name the node") {
  const Tensor X(DType::f32, {2, 1, 3}), W(DType::f32, {1, 8, 3}), R(DType::f32, {1, 8, 2});
  CHECK_THROWS_WITH_AS(run(node("LSTM", 3, {}, 1), {X, Tensor(DType::f32, {1, 6, 3}), R}),
                       "[LSTM 'rnn1'] W must have shape [1,8,3], got [1,6,3]", Error);
  CHECK_THROWS_WITH_AS(
      run(node("LSTM", 5, {}, 1), {X, W, R, Tensor(), Tensor::from<std::int32_t>({1}, {3})}),
      "[LSTM 'rnn1'] sequence_lens entry 3 outside [0, 2]", Error);
  CHECK_THROWS_WITH_AS(
      run(node("LSTM", 3, {{"activations", std::vector<std::string>{"Sigmoid", "Tanh"}}}, 1),
          {X, W, R}),
      "[LSTM 'rnn1'] expected 3 activations (3 per direction), got 2", Error);
  CHECK_THROWS_WITH_AS(
      run(node("GRU", 3, {{"activations", std::vector<std::string>{"Sigmoid", "Mish"}}}, 1),
          {X, Tensor(DType::f32, {1, 6, 3}), Tensor(DType::f32, {1, 6, 2})}),
      doctest::Contains("[GRU 'rnn1'] activation 'Mish'"), UnsupportedError);
}
