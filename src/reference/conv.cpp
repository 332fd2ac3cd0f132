// Reference kernels of Conv and ConvTranspose: im2col / col2im over 1 to 3 spatial axes and a
// double-precision GEMM (BLAS dgemm), so every product accumulates in double.
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

// cols[(c, kd, kh, kw), (od, oh, ow)] = x[c, od*s - pb + kd*d, ...] (0 outside the input).
void im2col(const double* x, i64 channels, const Geo3& g, double* cols) {
  const i64 L = g.out_size();
  double* dst = cols;
  for (i64 c = 0; c < channels; ++c) {
    const double* xc = x + c * g.in_size();
    for (i64 kd = 0; kd < g.k[0]; ++kd)
      for (i64 kh = 0; kh < g.k[1]; ++kh)
        for (i64 kw = 0; kw < g.k[2]; ++kw, dst += L) {
          double* row = dst;
          for (i64 od = 0; od < g.out[0]; ++od) {
            const i64 id = od * g.s[0] - g.pb[0] + kd * g.d[0];
            if (id < 0 || id >= g.in[0]) {
              for (i64 j = 0; j < g.out[1] * g.out[2]; ++j) *row++ = 0.0;
              continue;
            }
            for (i64 oh = 0; oh < g.out[1]; ++oh) {
              const i64 ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
              if (ih < 0 || ih >= g.in[1]) {
                for (i64 j = 0; j < g.out[2]; ++j) *row++ = 0.0;
                continue;
              }
              const double* src = xc + (id * g.in[1] + ih) * g.in[2];
              const i64 base = kw * g.d[2] - g.pb[2];
              for (i64 ow = 0; ow < g.out[2]; ++ow) {
                const i64 iw = ow * g.s[2] + base;
                *row++ = (iw >= 0 && iw < g.in[2]) ? src[iw] : 0.0;
              }
            }
          }
        }
  }
}

// The adjoint of im2col: x[c, od*s - pb + kd*d, ...] += cols[(c, kd, kh, kw), (od, oh, ow)].
void col2im(const double* cols, i64 channels, const Geo3& g, double* x) {
  const i64 L = g.out_size();
  const double* src = cols;
  for (i64 c = 0; c < channels; ++c) {
    double* xc = x + c * g.in_size();
    for (i64 kd = 0; kd < g.k[0]; ++kd)
      for (i64 kh = 0; kh < g.k[1]; ++kh)
        for (i64 kw = 0; kw < g.k[2]; ++kw, src += L) {
          const double* row = src;
          for (i64 od = 0; od < g.out[0]; ++od) {
            const i64 id = od * g.s[0] - g.pb[0] + kd * g.d[0];
            if (id < 0 || id >= g.in[0]) {
              row += g.out[1] * g.out[2];
              continue;
            }
            for (i64 oh = 0; oh < g.out[1]; ++oh) {
              const i64 ih = oh * g.s[1] - g.pb[1] + kh * g.d[1];
              if (ih < 0 || ih >= g.in[1]) {
                row += g.out[2];
                continue;
              }
              double* dst = xc + (id * g.in[1] + ih) * g.in[2];
              const i64 base = kw * g.d[2] - g.pb[2];
              for (i64 ow = 0; ow < g.out[2]; ++ow, ++row) {
                const i64 iw = ow * g.s[2] + base;
                if (iw >= 0 && iw < g.in[2]) dst[iw] += *row;
              }
            }
          }
        }
  }
}

bool is_pointwise(const Geo3& g) {
  for (int a = 0; a < 3; ++a)
    if (g.k[a] != 1 || g.s[a] != 1 || g.pb[a] != 0 || g.pe[a] != 0) return false;
  return true;
}

void check_conv_inputs(KernelContext& ctx, const Tensor& x, const Tensor& w) {
  if (x.rank() < 3)
    ctx.fail(fmt::format("input X must have rank >= 3 ([N,C,spatial...]), got {}",
                         dims_to_string(x.dims())));
  if (w.rank() != x.rank())
    ctx.fail(fmt::format("weight W {} must have the rank of input X {}", dims_to_string(w.dims()),
                         dims_to_string(x.dims())));
  if (w.dtype() != x.dtype())
    ctx.fail(fmt::format("weight W has dtype {}, expected {}", dtype_name(w.dtype()),
                         dtype_name(x.dtype())));
}

std::vector<i64> kernel_of(KernelContext& ctx, const Tensor& w) {
  std::vector<i64> k = spatial_dims(w);
  const auto attr = ctx.node.attr_ints("kernel_shape", {});
  if (!attr.empty() && attr != k)
    ctx.fail(fmt::format("attribute 'kernel_shape' {} differs from the weight's spatial dims {}",
                         dims_to_string(attr), dims_to_string(w.dims())));
  return k;
}

void conv(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  const Tensor& W = ctx.in(1);
  check_conv_inputs(ctx, X, W);
  const i64 N = X.dim(0), C = X.dim(1), M = W.dim(0);
  const i64 group = ctx.node.attr_int("group", 1);
  ops::window_rule(ctx.node, [&] { rules::conv_channels(C, W.dim(1), group, M); });
  const ops::Window win =
      ops::resolve_window(ctx.node, spatial_dims(X), kernel_of(ctx, W), ops::WindowKind::conv);
  const Geo3 g = geo3(ctx, spatial_dims(X), win);
  const i64 Cg = C / group, Mg = M / group, K = Cg * g.k_size(), L = g.out_size();
  std::vector<double> bias;
  if (ctx.has(2)) {
    require_count(ctx, ctx.in(2), M, "bias elements");
    bias = to_f64(ctx.in(2));
  }
  const std::vector<double> x = to_f64(X), w = to_f64(W);
  std::vector<double> y(static_cast<std::size_t>(N * M * L));
  const bool pointwise = is_pointwise(g);
  std::vector<double> cols(pointwise ? 0 : static_cast<std::size_t>(K * L));
  for (i64 n = 0; n < N; ++n)
    for (i64 gi = 0; gi < group; ++gi) {
      const double* xg = x.data() + (n * C + gi * Cg) * g.in_size();
      const double* b = xg;
      if (!pointwise) {
        im2col(xg, Cg, g, cols.data());
        b = cols.data();
      }
      double* yg = y.data() + (n * M + gi * Mg) * L;
      gemm_f64(false, false, Mg, L, K, 1.0, w.data() + gi * Mg * K, K, b, L, 0.0, yg, L);
    }
  if (!bias.empty())
    for (i64 n = 0; n < N; ++n)
      for (i64 m = 0; m < M; ++m) {
        double* p = y.data() + (n * M + m) * L;
        for (i64 j = 0; j < L; ++j) p[j] += bias[m];
      }
  std::vector<i64> dims{N, M};
  for (i64 o : win.out) dims.push_back(o);
  ctx.set(0, from_f64(X.dtype(), dims, y));
}

void conv_transpose(KernelContext& ctx) {
  const Tensor& X = float_input(ctx, 0);
  const Tensor& W = ctx.in(1);  // [C, M/group, k...]
  check_conv_inputs(ctx, X, W);
  const i64 N = X.dim(0), C = X.dim(1);
  const i64 group = ops::window_rule(ctx.node, [&] {
    return rules::positive("group must be positive, got {}", ctx.node.attr_int("group", 1));
  });
  ops::window_rule(ctx.node,
                   [&] { rules::equal_dims("input channels (weight dim 0)", W.dim(0), C); });
  if (C % group != 0)
    ctx.fail(fmt::format("input channels {} not divisible by group {}", C, group));
  const i64 Mg = W.dim(1), M = Mg * group, Cg = C / group;
  const ops::Window win =
      ops::resolve_window(ctx.node, spatial_dims(X), kernel_of(ctx, W), ops::WindowKind::deconv);
  // The transposed convolution is the adjoint of the convolution from its output to its input.
  ops::Window fwd = win;
  fwd.out = spatial_dims(X);
  const Geo3 g = geo3(ctx, win.out, fwd);
  const i64 K = Mg * g.k_size(), L = g.out_size();  // L: input positions
  std::vector<double> bias;
  if (ctx.has(2)) {
    require_count(ctx, ctx.in(2), M, "bias elements");
    bias = to_f64(ctx.in(2));
  }
  const std::vector<double> x = to_f64(X), w = to_f64(W);
  std::vector<double> y(static_cast<std::size_t>(N * M * g.in_size()), 0.0);
  std::vector<double> cols(static_cast<std::size_t>(K * L));
  for (i64 n = 0; n < N; ++n)
    for (i64 gi = 0; gi < group; ++gi) {
      const double* xg = x.data() + (n * C + gi * Cg) * L;
      // cols[Mg*k, L] = W_g^T [Mg*k, Cg] x X_g [Cg, L]
      gemm_f64(true, false, K, L, Cg, 1.0, w.data() + gi * Cg * K, K, xg, L, 0.0, cols.data(), L);
      col2im(cols.data(), Mg, g, y.data() + (n * M + gi * Mg) * g.in_size());
    }
  if (!bias.empty())
    for (i64 n = 0; n < N; ++n)
      for (i64 m = 0; m < M; ++m) {
        double* p = y.data() + (n * M + m) * g.in_size();
        for (i64 j = 0; j < g.in_size(); ++j) p[j] += bias[m];
      }
  std::vector<i64> dims{N, M};
  for (i64 o : win.out) dims.push_back(o);
  ctx.set(0, from_f64(X.dtype(), dims, y));
}

}  // namespace

void register_conv(KernelRegistry& r) {
  r.add("Conv", conv);
  r.add("ConvTranspose", conv_transpose);
}

}  // namespace kiln::reference
