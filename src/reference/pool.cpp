// Reference kernels of the pooling ops: MaxPool (with Indices), AveragePool, LpPool and the
// global pools, over 1 to 3 spatial axes. Padded positions never take part in a max; an average
// counts them only with count_include_pad = 1, and never counts the positions that ceil_mode adds
// past the end padding (as the ONNX reference does).
#include <cmath>
#include <limits>

#include "nn_util.hpp"

namespace kiln::reference {
namespace {

enum class PoolKind { max, avg, lp };

std::vector<i64> pool_kernel(KernelContext& ctx) {
  if (!ctx.node.has_attr("kernel_shape")) ctx.fail("missing required attribute 'kernel_shape'");
  return ctx.node.attr_ints("kernel_shape");
}

template <class T>
void pool_typed(KernelContext& ctx, PoolKind kind) {
  const Tensor& X = ctx.in(0);
  if (X.rank() < 3)
    ctx.fail(fmt::format("input X must have rank >= 3 ([N,C,spatial...]), got {}",
                         dims_to_string(X.dims())));
  const ops::Window win =
      ops::resolve_window(ctx.node, spatial_dims(X), pool_kernel(ctx), ops::WindowKind::pool);
  const Geo3 g = geo3(ctx, spatial_dims(X), win);
  const bool include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  const double p = kind == PoolKind::lp ? static_cast<double>(ctx.node.attr_int("p", 2)) : 1.0;
  if (kind == PoolKind::lp && p <= 0)
    ctx.fail(fmt::format("attribute 'p' must be positive, got {}", p));
  const i64 storage_order = ctx.node.attr_int("storage_order", 0);
  if (storage_order != 0 && storage_order != 1)
    ctx.unsupported(fmt::format("attribute 'storage_order' = {} (expected 0 or 1)", storage_order));
  const i64 planes = X.dim(0) * X.dim(1);
  std::vector<i64> dims{X.dim(0), X.dim(1)};
  for (i64 o : win.out) dims.push_back(o);
  Tensor Y(X.dtype(), dims);
  Tensor I(DType::i64, dims);
  const T* x = X.data<T>();
  T* y = Y.data<T>();
  i64* idx = I.data<i64>();
  // Positions along an axis that lie in the padded input: [-pb, in + pe).
  for (i64 c = 0; c < planes; ++c) {
    const T* xc = x + c * g.in_size();
    i64 o = c * g.out_size();
    for (i64 od = 0; od < g.out[0]; ++od)
      for (i64 oh = 0; oh < g.out[1]; ++oh)
        for (i64 ow = 0; ow < g.out[2]; ++ow, ++o) {
          const i64 start[3] = {od * g.s[0] - g.pb[0], oh * g.s[1] - g.pb[1],
                                ow * g.s[2] - g.pb[2]};
          double best = 0, sum = 0;
          i64 best_at = -1, real = 0, padded = 1;
          for (int a = 0; a < 3; ++a) {
            i64 n = 0;
            for (i64 k = 0; k < g.k[a]; ++k) {
              const i64 pos = start[a] + k * g.d[a];
              n += pos >= -g.pb[a] && pos < g.in[a] + g.pe[a];
            }
            padded *= n;
          }
          for (i64 kd = 0; kd < g.k[0]; ++kd) {
            const i64 id = start[0] + kd * g.d[0];
            if (id < 0 || id >= g.in[0]) continue;
            for (i64 kh = 0; kh < g.k[1]; ++kh) {
              const i64 ih = start[1] + kh * g.d[1];
              if (ih < 0 || ih >= g.in[1]) continue;
              for (i64 kw = 0; kw < g.k[2]; ++kw) {
                const i64 iw = start[2] + kw * g.d[2];
                if (iw < 0 || iw >= g.in[2]) continue;
                const i64 at = (id * g.in[1] + ih) * g.in[2] + iw;
                const double v = static_cast<double>(to_compute(xc[at]));
                ++real;
                if (kind == PoolKind::max) {
                  if (best_at < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
                    best = v;
                    best_at = storage_order == 0 ? at : id + ih * g.in[0] + iw * g.in[0] * g.in[1];
                  }
                } else if (kind == PoolKind::avg) {
                  sum += v;
                } else {
                  sum += std::pow(std::fabs(v), p);
                }
              }
            }
          }
          double r;
          if (kind == PoolKind::max)
            r = best_at < 0 ? 0.0 : best;
          else if (kind == PoolKind::avg) {
            const i64 count = include_pad ? padded : real;
            r = count == 0 ? 0.0 : sum / static_cast<double>(count);
          } else {
            r = std::pow(sum, 1.0 / p);
          }
          y[o] = from_compute<T>(static_cast<compute_t<T>>(r));
          idx[o] = best_at < 0 ? -1 : c * g.in_size() + best_at;
        }
  }
  ctx.set(0, std::move(Y));
  if (kind == PoolKind::max) ctx.set(1, std::move(I));
}

void pool(KernelContext& ctx, PoolKind kind) {
  const DType t = ctx.in(0).dtype();
  if (kind == PoolKind::max) {
    if (!is_float(t) && t != DType::i8 && t != DType::u8)
      ctx.unsupported(
          fmt::format("dtype {} (expected f32, f64, f16, bf16, i8 or u8)", dtype_name(t)));
  } else {
    float_input(ctx, 0);
  }
  visit_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>)
      ctx.unsupported("dtype bool");
    else
      pool_typed<T>(ctx, kind);
  });
}

void global_pool(KernelContext& ctx, PoolKind kind) {
  const Tensor& X = float_input(ctx, 0);
  if (X.rank() < 3)
    ctx.fail(fmt::format("input X must have rank >= 3 ([N,C,spatial...]), got {}",
                         dims_to_string(X.dims())));
  const double p = kind == PoolKind::lp ? static_cast<double>(ctx.node.attr_int("p", 2)) : 1.0;
  const i64 planes = X.dim(0) * X.dim(1);
  const i64 L = X.numel() / std::max<i64>(planes, 1);
  const std::vector<double> x = to_f64(X);
  std::vector<double> y(static_cast<std::size_t>(planes));
  for (i64 c = 0; c < planes; ++c) {
    const double* xc = x.data() + c * L;
    double acc = kind == PoolKind::max ? -std::numeric_limits<double>::infinity() : 0.0;
    for (i64 j = 0; j < L; ++j) {
      if (kind == PoolKind::max)
        acc = (xc[j] > acc || std::isnan(xc[j])) ? xc[j] : acc;
      else if (kind == PoolKind::avg)
        acc += xc[j];
      else
        acc += std::pow(std::fabs(xc[j]), p);
    }
    if (kind == PoolKind::avg) acc /= static_cast<double>(L);
    if (kind == PoolKind::lp) acc = std::pow(acc, 1.0 / p);
    y[c] = acc;
  }
  std::vector<i64> dims{X.dim(0), X.dim(1)};
  for (std::size_t a = 2; a < X.rank(); ++a) dims.push_back(1);
  ctx.set(0, from_f64(X.dtype(), dims, y));
}

}  // namespace

void register_pool(KernelRegistry& r) {
  r.add("MaxPool", [](KernelContext& ctx) { pool(ctx, PoolKind::max); });
  r.add("AveragePool", [](KernelContext& ctx) { pool(ctx, PoolKind::avg); });
  r.add("LpPool", [](KernelContext& ctx) { pool(ctx, PoolKind::lp); });
  r.add("GlobalAveragePool", [](KernelContext& ctx) { global_pool(ctx, PoolKind::avg); });
  r.add("GlobalMaxPool", [](KernelContext& ctx) { global_pool(ctx, PoolKind::max); });
  r.add("GlobalLpPool", [](KernelContext& ctx) { global_pool(ctx, PoolKind::lp); });
}

}  // namespace kiln::reference
