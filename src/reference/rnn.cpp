// Reference kernels of the rnn op family: RNN, GRU, LSTM (ONNX semantics, one layer each).
// Computed in double; inputs are brought to layout 0 first and outputs transposed back.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <iterator>
#include <limits>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "families.hpp"
#include "kernel_util.hpp"

namespace kiln::reference {

namespace {

using i64 = std::int64_t;

enum class ActKind {
  relu,
  tanh,
  sigmoid,
  affine,
  leaky_relu,
  thresholded_relu,
  scaled_tanh,
  hard_sigmoid,
  elu,
  softsign,
  softplus
};

struct Act {
  ActKind kind = ActKind::tanh;
  double alpha = 0, beta = 0;
  double operator()(double x) const {
    switch (kind) {
      case ActKind::relu: return x > 0 ? x : 0.0;
      case ActKind::tanh: return std::tanh(x);
      case ActKind::sigmoid: return 1.0 / (1.0 + std::exp(-x));
      case ActKind::affine: return alpha * x + beta;
      case ActKind::leaky_relu: return x >= 0 ? x : alpha * x;
      case ActKind::thresholded_relu: return x > alpha ? x : 0.0;
      case ActKind::scaled_tanh: return alpha * std::tanh(beta * x);
      case ActKind::hard_sigmoid: return std::clamp(alpha * x + beta, 0.0, 1.0);
      case ActKind::elu: return x >= 0 ? x : alpha * (std::exp(x) - 1.0);
      case ActKind::softsign: return x / (1.0 + std::abs(x));
      case ActKind::softplus: return std::log1p(std::exp(-std::abs(x))) + std::max(x, 0.0);
    }
    return x;
  }
};

/// The activations ONNX's recurrent ops name, and the defaults of the alpha and beta that those
/// with parameters take (in this order) from activation_alpha and activation_beta.
struct ActInfo {
  std::string_view name;
  ActKind kind;
  std::optional<double> alpha, beta;
};
const ActInfo kActivations[] = {
    {"Relu", ActKind::relu, {}, {}},
    {"Tanh", ActKind::tanh, {}, {}},
    {"Sigmoid", ActKind::sigmoid, {}, {}},
    {"Affine", ActKind::affine, 1.0, 0.0},
    {"LeakyRelu", ActKind::leaky_relu, 0.01, {}},
    {"ThresholdedRelu", ActKind::thresholded_relu, 1.0, {}},
    {"ScaledTanh", ActKind::scaled_tanh, 1.0, 1.0},
    {"HardSigmoid", ActKind::hard_sigmoid, 0.2, 0.5},
    {"Elu", ActKind::elu, 1.0, {}},
    {"Softsign", ActKind::softsign, {}, {}},
    {"Softplus", ActKind::softplus, {}, {}},
};

/// The activations of a node: `per_dir` functions for each direction, alpha and beta consumed in
/// order by the functions that take them (defaults: those of the ONNX operators).
std::vector<Act> activations(const KernelContext& ctx, const std::vector<std::string>& defaults,
                             i64 dirs) {
  const std::size_t per_dir = defaults.size();
  std::vector<std::string> names = ctx.node.attr_strings("activations");
  if (names.empty())
    for (i64 d = 0; d < dirs; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  else if (dirs == 2 && names.size() == per_dir)
    names.insert(names.end(), names.begin(), names.end());  // one set given for both directions
  if (names.size() != per_dir * static_cast<std::size_t>(dirs))
    ctx.fail(fmt::format("expected {} activations ({} per direction), got {}", per_dir * dirs,
                         per_dir, names.size()));
  const std::vector<double> alphas = ctx.node.attr_floats("activation_alpha");
  const std::vector<double> betas = ctx.node.attr_floats("activation_beta");
  std::size_t ai = 0, bi = 0;
  auto alpha = [&](double fallback) { return ai < alphas.size() ? alphas[ai++] : fallback; };
  auto beta = [&](double fallback) { return bi < betas.size() ? betas[bi++] : fallback; };
  std::vector<Act> acts;
  for (const auto& name : names) {
    auto lower = [](std::string_view v) {
      std::string l;
      for (char c : v) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return l;
    };
    const auto* info = std::find_if(std::begin(kActivations), std::end(kActivations),
                                    [&](const ActInfo& i) { return lower(i.name) == lower(name); });
    if (info == std::end(kActivations)) {
      std::vector<std::string_view> known;
      for (const ActInfo& i : kActivations) known.push_back(i.name);
      ctx.unsupported(
          fmt::format("activation '{}' (expected one of {})", name, fmt::join(known, ", ")));
    }
    Act a;
    a.kind = info->kind;
    if (info->alpha) a.alpha = alpha(*info->alpha);
    if (info->beta) a.beta = beta(*info->beta);
    acts.push_back(a);
  }
  return acts;
}

/// Swaps the first two axes of a rank-3 buffer [a, b, c] -> [b, a, c].
std::vector<double> swap01(const std::vector<double>& v, i64 a, i64 b, i64 c) {
  std::vector<double> r(v.size());
  for (i64 i = 0; i < a; ++i)
    for (i64 j = 0; j < b; ++j)
      for (i64 k = 0; k < c; ++k) r[(j * a + i) * c + k] = v[(i * b + j) * c + k];
  return r;
}

enum class Cell { rnn, gru, lstm };

void run_recurrent(KernelContext& ctx, Cell cell) {
  const Node& node = ctx.node;
  const i64 G = cell == Cell::rnn ? 1 : cell == Cell::gru ? 3 : 4;
  const Tensor& xt = ctx.in(0);
  const Tensor& wt = ctx.in(1);
  const Tensor& rt = ctx.in(2);
  if (!is_float(xt.dtype()))
    ctx.fail(fmt::format("X must be a float tensor, got {}", dtype_name(xt.dtype())));
  if (xt.rank() != 3 || wt.rank() != 3 || rt.rank() != 3)
    ctx.fail(fmt::format("X, W and R must have rank 3, got {}, {} and {}",
                         dims_to_string(xt.dims()), dims_to_string(wt.dims()),
                         dims_to_string(rt.dims())));
  const std::string direction = node.attr_string("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    ctx.unsupported("attribute 'direction' = '" + direction +
                    "' (expected forward, reverse or bidirectional)");
  const i64 layout = node.attr_int("layout", 0);
  if (layout != 0 && layout != 1)
    ctx.unsupported(fmt::format("attribute 'layout' = {} (expected 0 or 1)", layout));
  const i64 D = direction == "bidirectional" ? 2 : 1;
  const i64 H = node.attr_int("hidden_size", rt.dim(2));
  const i64 S = layout == 0 ? xt.dim(0) : xt.dim(1);
  const i64 N = layout == 0 ? xt.dim(1) : xt.dim(0);
  const i64 I = xt.dim(2);
  auto expect = [&](const Tensor& t, const char* name, std::vector<i64> dims) {
    if (t.dims() != dims)
      ctx.fail(fmt::format("{} must have shape {}, got {}", name, dims_to_string(dims),
                           dims_to_string(t.dims())));
  };
  expect(wt, "W", {D, G * H, I});
  expect(rt, "R", {D, G * H, H});
  const std::vector<i64> state_dims =
      layout == 0 ? std::vector<i64>{D, N, H} : std::vector<i64>{N, D, H};

  std::vector<double> X = xt.to_doubles(), W = wt.to_doubles(), R = rt.to_doubles();
  if (layout == 1) X = swap01(X, N, S, I);
  std::vector<double> B(static_cast<std::size_t>(D * 2 * G * H), 0.0);
  if (ctx.has(3)) {
    expect(ctx.in(3), "B", {D, 2 * G * H});
    B = ctx.in(3).to_doubles();
  }
  std::vector<i64> lens(static_cast<std::size_t>(N), S);
  if (ctx.has(4)) {
    expect(ctx.in(4), "sequence_lens", {N});
    lens = ctx.in(4).to_int64s();
    for (i64 l : lens)
      if (l < 0 || l > S) ctx.fail(fmt::format("sequence_lens entry {} outside [0, {}]", l, S));
  }
  auto state = [&](std::size_t i, const char* name) {
    std::vector<double> v(static_cast<std::size_t>(D * N * H), 0.0);
    if (ctx.has(i)) {
      expect(ctx.in(i), name, state_dims);
      v = ctx.in(i).to_doubles();
      if (layout == 1) v = swap01(v, N, D, H);
    }
    return v;
  };
  std::vector<double> h0 = state(5, "initial_h");
  std::vector<double> c0, P;
  if (cell == Cell::lstm) {
    c0 = state(6, "initial_c");
    P.assign(static_cast<std::size_t>(D * 3 * H), 0.0);
    if (ctx.has(7)) {
      expect(ctx.in(7), "P", {D, 3 * H});
      P = ctx.in(7).to_doubles();
    }
  }
  const double clip = node.attr_float("clip", std::numeric_limits<double>::infinity());
  if (!(clip > 0)) ctx.fail(fmt::format("attribute 'clip' must be positive, got {}", clip));
  auto cl = [clip](double v) { return std::clamp(v, -clip, clip); };
  const bool lbr = node.attr_int("linear_before_reset", 0) != 0;
  const bool input_forget = node.attr_int("input_forget", 0) != 0;
  const std::vector<Act> acts = cell == Cell::rnn ? activations(ctx, {"Tanh"}, D)
                                : cell == Cell::gru
                                    ? activations(ctx, {"Sigmoid", "Tanh"}, D)
                                    : activations(ctx, {"Sigmoid", "Tanh", "Tanh"}, D);
  const std::size_t per_dir = acts.size() / static_cast<std::size_t>(D);

  std::vector<double> Y(static_cast<std::size_t>(S * D * N * H), 0.0);  // [S, D, N, H]
  std::vector<double> Yh(static_cast<std::size_t>(D * N * H)),
      Yc(static_cast<std::size_t>(D * N * H));
  const i64 GH = G * H;
  std::vector<double> xw(static_cast<std::size_t>(S * N * GH)),
      hr(static_cast<std::size_t>(N * GH));
  std::vector<double> gate(static_cast<std::size_t>(GH)), rh(static_cast<std::size_t>(H));
  for (i64 d = 0; d < D; ++d) {
    const bool reverse = direction == "reverse" || d == 1;
    const double* Wd = W.data() + d * GH * I;
    const double* Rd = R.data() + d * GH * H;
    const double* Wb = B.data() + d * 2 * GH;
    const double* Rb = Wb + GH;
    const Act* act = acts.data() + d * per_dir;
    // X W^T for all steps at once: [S*N, I] x [I, G*H].
    gemm_f64(false, true, S * N, GH, I, 1.0, X.data(), I, Wd, I, 0.0, xw.data(), GH);
    double* h = Yh.data() + d * N * H;
    double* c = Yc.data() + d * N * H;
    std::copy_n(h0.data() + d * N * H, N * H, h);
    if (cell == Cell::lstm) std::copy_n(c0.data() + d * N * H, N * H, c);
    for (i64 s = 0; s < S; ++s) {
      const i64 t = reverse ? S - 1 - s : s;
      gemm_f64(false, true, N, GH, H, 1.0, h, H, Rd, H, 0.0, hr.data(), GH);  // H R^T
      for (i64 b = 0; b < N; ++b) {
        if (t >= lens[b]) continue;  // padding: Y stays 0, the state keeps its last valid value
        const double* xg = xw.data() + (t * N + b) * GH;
        const double* hg = hr.data() + b * GH;
        double* hb = h + b * H;
        double* yb = Y.data() + ((t * D + d) * N + b) * H;
        if (cell == Cell::rnn) {
          for (i64 k = 0; k < H; ++k) hb[k] = act[0](cl(xg[k] + hg[k] + Wb[k] + Rb[k]));
        } else if (cell == Cell::gru) {  // gates z, r, h
          for (i64 k = 0; k < 2 * H; ++k) gate[k] = act[0](cl(xg[k] + hg[k] + Wb[k] + Rb[k]));
          const double* z = gate.data();
          const double* r = gate.data() + H;
          if (!lbr) {
            for (i64 k = 0; k < H; ++k) rh[k] = r[k] * hb[k];
            for (i64 k = 0; k < H; ++k) {  // (r . h) Rh^T
              const double* row = Rd + (2 * H + k) * H;
              double acc = 0;
              for (i64 j = 0; j < H; ++j) acc += rh[j] * row[j];
              gate[2 * H + k] = act[1](cl(xg[2 * H + k] + acc + Rb[2 * H + k] + Wb[2 * H + k]));
            }
          } else {
            for (i64 k = 0; k < H; ++k)
              gate[2 * H + k] = act[1](
                  cl(xg[2 * H + k] + r[k] * (hg[2 * H + k] + Rb[2 * H + k]) + Wb[2 * H + k]));
          }
          for (i64 k = 0; k < H; ++k) hb[k] = (1.0 - z[k]) * gate[2 * H + k] + z[k] * hb[k];
        } else {  // LSTM gates i, o, f, c; peepholes P = [Pi, Po, Pf]
          const double* Pd = P.data() + d * 3 * H;
          double* cb = c + b * H;
          for (i64 k = 0; k < H; ++k) {
            auto pre = [&](i64 g) {
              return xg[g * H + k] + hg[g * H + k] + Wb[g * H + k] + Rb[g * H + k];
            };
            const double i = act[0](cl(pre(0) + Pd[k] * cb[k]));
            const double f = input_forget ? 1.0 - i : act[0](cl(pre(2) + Pd[2 * H + k] * cb[k]));
            const double g = act[1](cl(pre(3)));
            const double cn = f * cb[k] + i * g;
            const double o = act[0](cl(pre(1) + Pd[H + k] * cn));
            cb[k] = cn;
            hb[k] = o * act[2](cn);
          }
        }
        std::copy_n(hb, H, yb);
      }
    }
  }

  const DType dt = xt.dtype();
  if (layout == 0) {
    ctx.set(0, Tensor::from_doubles(dt, {S, D, N, H}, Y));
    ctx.set(1, Tensor::from_doubles(dt, {D, N, H}, Yh));
    if (cell == Cell::lstm) ctx.set(2, Tensor::from_doubles(dt, {D, N, H}, Yc));
  } else {
    // [S, D, N, H] -> [N, S, D, H]
    std::vector<double> Yt(Y.size());
    for (i64 t = 0; t < S; ++t)
      for (i64 d = 0; d < D; ++d)
        for (i64 b = 0; b < N; ++b)
          for (i64 k = 0; k < H; ++k)
            Yt[((b * S + t) * D + d) * H + k] = Y[((t * D + d) * N + b) * H + k];
    ctx.set(0, Tensor::from_doubles(dt, {N, S, D, H}, Yt));
    ctx.set(1, Tensor::from_doubles(dt, {N, D, H}, swap01(Yh, D, N, H)));
    if (cell == Cell::lstm) ctx.set(2, Tensor::from_doubles(dt, {N, D, H}, swap01(Yc, D, N, H)));
  }
}

}  // namespace

void register_rnn(KernelRegistry& r) {
  r.add("RNN", [](KernelContext& ctx) { run_recurrent(ctx, Cell::rnn); });
  r.add("GRU", [](KernelContext& ctx) { run_recurrent(ctx, Cell::gru); });
  r.add("LSTM", [](KernelContext& ctx) { run_recurrent(ctx, Cell::lstm); });
}

}  // namespace kiln::reference
