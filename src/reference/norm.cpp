// Reference kernels of the normalization ops (LRN, BatchNormalization, InstanceNormalization,
// LayerNormalization, GroupNormalization, LpNormalization, MeanVarianceNormalization) and of
// kiln's Scale. Statistics are computed in double.
#include <cmath>

#include "nn_util.hpp"

namespace kiln::reference {
namespace {

i64 prod(const std::vector<i64>& d, std::size_t from, std::size_t to) {
  i64 p = 1;
  for (std::size_t i = from; i < to; ++i) p *= d[i];
  return p;
}

void require_rank(KernelContext& ctx, const Tensor& x, std::size_t rank) {
  if (x.rank() < rank)
    ctx.fail(fmt::format("input X must have rank >= {} ([N,C,...]), got {}", rank,
                         dims_to_string(x.dims())));
}

void lrn(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  require_rank(ctx, X, 3);
  const i64 size =
      ops::window_rule(ctx.node, [&] { return rules::lrn_size(ctx.node.attr_int("size")); });
  const double alpha = ctx.node.attr_float("alpha", 1e-4), beta = ctx.node.attr_float("beta", 0.75),
               bias = ctx.node.attr_float("bias", 1.0);
  const i64 N = X.dim(0), C = X.dim(1), L = prod(X.dims(), 2, X.rank());
  const i64 lo = (size - 1) / 2, hi = size - 1 - lo;  // floor and ceil of (size-1)/2
  const std::vector<double> x = to_f64(X);
  std::vector<double> y(x.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 j = 0; j < L; ++j) {
        double sq = 0;
        for (i64 cc = std::max<i64>(0, c - lo); cc <= std::min(C - 1, c + hi); ++cc) {
          const double v = x[(n * C + cc) * L + j];
          sq += v * v;
        }
        const i64 at = (n * C + c) * L + j;
        y[at] = x[at] / std::pow(bias + alpha / static_cast<double>(size) * sq, beta);
      }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

void batch_norm(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  require_rank(ctx, X, 2);
  const i64 N = X.dim(0), C = X.dim(1), L = prod(X.dims(), 2, X.rank());
  const char* names[] = {"", "scale elements", "bias elements", "mean elements",
                         "variance elements"};
  for (std::size_t i = 1; i < 5; ++i) {
    float_input(ctx, i);
    require_count(ctx, ctx.in(i), C, names[i]);
  }
  const std::vector<double> x = to_f64(X), scale = to_f64(ctx.in(1)), b = to_f64(ctx.in(2));
  std::vector<double> mean = to_f64(ctx.in(3)), var = to_f64(ctx.in(4));
  const double eps = ctx.node.attr_float("epsilon", 1e-5);
  const bool training = ctx.node.attr_int("training_mode", 0) != 0;
  std::vector<double> run_mean = mean, run_var = var;
  if (training) {  // normalize with the batch statistics; update the running ones
    const double momentum = ctx.node.attr_float("momentum", 0.9);
    for (i64 c = 0; c < C; ++c) {
      double s = 0, s2 = 0;
      for (i64 n = 0; n < N; ++n)
        for (i64 j = 0; j < L; ++j) s += x[(n * C + c) * L + j];
      const double cnt = static_cast<double>(N * L), m = s / cnt;
      for (i64 n = 0; n < N; ++n)
        for (i64 j = 0; j < L; ++j) {
          const double dv = x[(n * C + c) * L + j] - m;
          s2 += dv * dv;
        }
      const double v = s2 / cnt;
      run_mean[c] = mean[c] * momentum + m * (1 - momentum);
      run_var[c] = var[c] * momentum + v * (1 - momentum);
      mean[c] = m;
      var[c] = v;
    }
  }
  std::vector<double> y(x.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 c = 0; c < C; ++c) {
      const double k = scale[c] / std::sqrt(var[c] + eps);
      for (i64 j = 0; j < L; ++j) {
        const i64 at = (n * C + c) * L + j;
        y[at] = (x[at] - mean[c]) * k + b[c];
      }
    }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
  ctx.set(1, from_f64(ctx.in(3).dtype(), ctx.in(3).dims(), run_mean));
  ctx.set(2, from_f64(ctx.in(4).dtype(), ctx.in(4).dims(), run_var));
}

/// Normalizes each of `rows` rows of `cols` elements: returns mean and 1/sqrt(var + eps).
void row_stats(const double* x, i64 cols, double eps, double& mean, double& inv_std) {
  double s = 0;
  for (i64 j = 0; j < cols; ++j) s += x[j];
  mean = cols ? s / static_cast<double>(cols) : 0.0;
  double s2 = 0;
  for (i64 j = 0; j < cols; ++j) s2 += (x[j] - mean) * (x[j] - mean);
  const double var = cols ? s2 / static_cast<double>(cols) : 0.0;
  inv_std = 1.0 / std::sqrt(var + eps);
}

void instance_norm(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  require_rank(ctx, X, 3);
  const i64 N = X.dim(0), C = X.dim(1), L = prod(X.dims(), 2, X.rank());
  require_count(ctx, ctx.in(1), C, "scale elements");
  require_count(ctx, ctx.in(2), C, "bias elements");
  const std::vector<double> x = to_f64(X), scale = to_f64(ctx.in(1)), b = to_f64(ctx.in(2));
  const double eps = ctx.node.attr_float("epsilon", 1e-5);
  std::vector<double> y(x.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 c = 0; c < C; ++c) {
      const i64 at = (n * C + c) * L;
      double mean, inv;
      row_stats(x.data() + at, L, eps, mean, inv);
      for (i64 j = 0; j < L; ++j) y[at + j] = (x[at + j] - mean) * inv * scale[c] + b[c];
    }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

void group_norm(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  require_rank(ctx, X, 2);
  const i64 groups = ops::window_rule(ctx.node, [&] {
    return rules::positive("num_groups must be positive, got {}", ctx.node.attr_int("num_groups"));
  });
  const i64 N = X.dim(0), C = X.dim(1), L = prod(X.dims(), 2, X.rank());
  if (C % groups != 0)
    ctx.fail(fmt::format("channels {} not divisible by num_groups {}", C, groups));
  require_count(ctx, ctx.in(1), C, "scale elements");
  require_count(ctx, ctx.in(2), C, "bias elements");
  const std::vector<double> x = to_f64(X), scale = to_f64(ctx.in(1)), b = to_f64(ctx.in(2));
  const double eps = ctx.node.attr_float("epsilon", 1e-5);
  const i64 Cg = C / groups;
  std::vector<double> y(x.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 g = 0; g < groups; ++g) {
      const i64 at = (n * C + g * Cg) * L;
      double mean, inv;
      row_stats(x.data() + at, Cg * L, eps, mean, inv);
      for (i64 c = g * Cg; c < (g + 1) * Cg; ++c)
        for (i64 j = 0; j < L; ++j) {
          const i64 e = (n * C + c) * L + j;
          y[e] = (x[e] - mean) * inv * scale[c] + b[c];
        }
    }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

/// Values of t broadcast (unidirectionally) to dims.
std::vector<double> broadcast_to(KernelContext& ctx, const Tensor& t, const std::vector<i64>& dims,
                                 const char* what) {
  bool ok = t.rank() <= dims.size();
  for (std::size_t a = 0; ok && a < t.rank(); ++a) {
    const i64 d = t.dim(t.rank() - 1 - a), want = dims[dims.size() - 1 - a];
    ok = d == 1 || d == want;
  }
  if (!ok)
    throw ShapeError(fmt::format("{}{} {} does not broadcast to {}", ctx.node.where(), what,
                                 dims_to_string(t.dims()), dims_to_string(dims)));
  const std::vector<double> v = to_f64(t);
  const auto offs = broadcast_offsets(t.dims(), dims);
  std::vector<double> out(offs.size());
  for (std::size_t i = 0; i < offs.size(); ++i) out[i] = v[static_cast<std::size_t>(offs[i])];
  return out;
}

/// LayerNormalization and RMSNormalization normalize over the dims from `axis` on: X seen as
/// [rows, cols]. What both read: X (input 0), epsilon, and X and the scale (input 1, `scale_name`
/// in errors) as doubles over X's dims.
struct RowNormInput {
  const Tensor& X;
  i64 axis, rows, cols;
  double eps;
  std::vector<double> x, scale;
};
RowNormInput row_norm_input(KernelContext& ctx, const char* scale_name) {
  const Tensor& X = float_input(ctx, 0);
  const i64 axis = ops::window_rule(ctx.node, [&] {
    return rules::normalize_axis(ctx.node.attr_int("axis", -1), static_cast<i64>(X.rank()));
  });
  return {X,
          axis,
          prod(X.dims(), 0, static_cast<std::size_t>(axis)),
          prod(X.dims(), static_cast<std::size_t>(axis), X.rank()),
          ctx.node.attr_float("epsilon", 1e-5),
          to_f64(X),
          broadcast_to(ctx, ctx.in(1), X.dims(), scale_name)};
}

void layer_norm(KernelContext& ctx) {
  const auto [X, axis, rows, cols, eps, x, scale] = row_norm_input(ctx, "Scale");
  const std::vector<double> b =
      ctx.has(2) ? broadcast_to(ctx, ctx.in(2), X.dims(), "B") : std::vector<double>(x.size(), 0.0);
  std::vector<double> y(x.size()), means(static_cast<std::size_t>(rows)), invs(means.size());
  for (i64 r = 0; r < rows; ++r) {
    const i64 at = r * cols;
    row_stats(x.data() + at, cols, eps, means[r], invs[r]);
    for (i64 j = 0; j < cols; ++j)
      y[at + j] = (x[at + j] - means[r]) * invs[r] * scale[at + j] + b[at + j];
  }
  std::vector<i64> stat_dims = X.dims();
  for (std::size_t a = static_cast<std::size_t>(axis); a < stat_dims.size(); ++a) stat_dims[a] = 1;
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
  ctx.set(1, from_f64(X.dtype(), stat_dims, means));
  ctx.set(2, from_f64(X.dtype(), stat_dims, invs));
}

// y = x / sqrt(mean(x^2 over axes >= axis) + epsilon) * scale.
void rms_norm(KernelContext& ctx) {
  const auto [X, axis, rows, cols, eps, x, scale] = row_norm_input(ctx, "scale");
  std::vector<double> y(x.size());
  for (i64 r = 0; r < rows; ++r) {
    double s2 = 0;
    for (i64 j = 0; j < cols; ++j) s2 += x[r * cols + j] * x[r * cols + j];
    const double inv = 1.0 / std::sqrt(s2 / static_cast<double>(std::max<i64>(cols, 1)) + eps);
    for (i64 j = 0; j < cols; ++j) y[r * cols + j] = x[r * cols + j] * inv * scale[r * cols + j];
  }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

/// outer x n x inner view of a tensor around `axis`.
struct AxisView {
  i64 outer, n, inner;
};
AxisView axis_view(KernelContext& ctx, const Tensor& X, i64 axis_attr) {
  const i64 axis = ops::window_rule(
      ctx.node, [&] { return rules::normalize_axis(axis_attr, static_cast<i64>(X.rank())); });
  return {prod(X.dims(), 0, static_cast<std::size_t>(axis)), X.dim(static_cast<std::size_t>(axis)),
          prod(X.dims(), static_cast<std::size_t>(axis) + 1, X.rank())};
}

void lp_normalization(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  const i64 p = ctx.node.attr_int("p", 2);
  if (p != 1 && p != 2) ctx.unsupported(fmt::format("attribute 'p' = {} (expected 1 or 2)", p));
  const AxisView v = axis_view(ctx, X, ctx.node.attr_int("axis", -1));
  const std::vector<double> x = to_f64(X);
  std::vector<double> y(x.size());
  for (i64 o = 0; o < v.outer; ++o)
    for (i64 i = 0; i < v.inner; ++i) {
      double norm = 0;
      for (i64 k = 0; k < v.n; ++k) {
        const double e = x[(o * v.n + k) * v.inner + i];
        norm += p == 1 ? std::fabs(e) : e * e;
      }
      if (p == 2) norm = std::sqrt(norm);
      for (i64 k = 0; k < v.n; ++k) {
        const i64 at = (o * v.n + k) * v.inner + i;
        y[at] = norm == 0 ? 0.0 : x[at] / norm;  // a zero vector stays zero
      }
    }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

void mean_variance_normalization(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  const i64 rank = static_cast<i64>(X.rank());
  std::vector<bool> reduced(X.rank(), false);
  for (i64 a : ctx.node.attr_ints("axes", {0, 2, 3}))
    reduced[static_cast<std::size_t>(
        ops::window_rule(ctx.node, [&] { return rules::normalize_axis(a, rank); }))] = true;
  // Mean and E[x^2] per kept-axes position, via the stats dims (reduced axes set to 1).
  std::vector<i64> sdims = X.dims();
  for (std::size_t a = 0; a < sdims.size(); ++a)
    if (reduced[a]) sdims[a] = 1;
  const std::vector<double> x = to_f64(X);
  const auto offs = broadcast_offsets(sdims, X.dims());
  const i64 ns = product(sdims);
  std::vector<double> s(static_cast<std::size_t>(ns), 0.0), s2(s.size(), 0.0);
  for (std::size_t i = 0; i < x.size(); ++i) {
    s[offs[i]] += x[i];
    s2[offs[i]] += x[i] * x[i];
  }
  const double cnt = static_cast<double>(X.numel()) / static_cast<double>(std::max<i64>(ns, 1));
  std::vector<double> y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double m = s[offs[i]] / cnt;
    const double var = std::max(0.0, s2[offs[i]] / cnt - m * m);
    y[i] = (x[i] - m) / (std::sqrt(var) + 1e-9);
  }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

// TensorRT's scale layer: y = (x * scale + shift) ^ power, with one coefficient for the whole
// tensor ("uniform"), per channel (axis 1, "channel") or per element of C x spatial
// ("elementwise").
void scale_op(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  const std::string mode = ctx.node.attr_string("mode", "uniform");
  const i64 N = X.rank() > 0 ? X.dim(0) : 1;
  i64 count = 1, inner = 1;  // coefficient count; elements sharing one coefficient in a run
  if (mode == "uniform") {
    inner = X.numel();
  } else if (mode == "channel" || mode == "elementwise") {
    if (X.rank() < 2)
      ctx.fail(fmt::format("mode '{}' needs rank >= 2, got {}", mode, dims_to_string(X.dims())));
    count = mode == "channel" ? X.dim(1) : prod(X.dims(), 1, X.rank());
    inner = mode == "channel" ? prod(X.dims(), 2, X.rank()) : 1;
  } else {
    ctx.unsupported(fmt::format(
        "attribute 'mode' = '{}' (expected 'uniform', 'channel' or 'elementwise')", mode));
  }
  const char* names[] = {"", "scale values", "shift values", "power values"};
  const double defaults[] = {0, 1.0, 0.0, 1.0};
  std::vector<double> coef[4];
  for (std::size_t i = 1; i < 4; ++i) {
    if (ctx.has(i)) {
      require_count(ctx, ctx.in(i), count, names[i]);
      coef[i] = to_f64(ctx.in(i));
    } else {
      coef[i].assign(static_cast<std::size_t>(count), defaults[i]);
    }
  }
  const std::vector<double> x = to_f64(X);
  std::vector<double> y(x.size());
  const i64 per_n = mode == "uniform" ? X.numel() : count * inner;
  for (i64 n = 0; n < (mode == "uniform" ? 1 : N); ++n)
    for (i64 c = 0; c < count; ++c)
      for (i64 j = 0; j < inner; ++j) {
        const i64 at = n * per_n + c * inner + j;
        const double v = x[at] * coef[1][c] + coef[2][c];
        y[at] = coef[3][c] == 1.0 ? v : std::pow(v, coef[3][c]);
      }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

}  // namespace

void register_norm(KernelRegistry& r) {
  r.add("LRN", lrn);
  r.add("BatchNormalization", batch_norm);
  r.add("InstanceNormalization", instance_norm);
  r.add("LayerNormalization", layer_norm);
  r.add("GroupNormalization", group_norm);
  r.add("RMSNormalization", rms_norm);
  r.add("LpNormalization", lp_normalization);
  r.add("MeanVarianceNormalization", mean_variance_normalization);
  r.add("Scale", scale_op);
}

}  // namespace kiln::reference
