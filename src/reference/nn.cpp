// Reference kernels of the nn op family: Softmax, LogSoftmax and Hardmax here, and the
// registration of the rest (conv.cpp, pool.cpp, norm.cpp, matmul.cpp).
#include <cmath>
#include <limits>

#include "families.hpp"
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

enum class SoftKind { softmax, log_softmax, hardmax };

// Along one axis (latest opset semantics): every line of the axis is normalized on its own.
void softmax(KernelContext& ctx, SoftKind kind) {
  const Tensor& X = float_input(ctx, 0);
  const i64 rank = static_cast<i64>(X.rank());
  if (rank == 0) ctx.fail("input must have rank >= 1");
  const i64 axis = ops::window_rule(
      ctx.node, [&] { return rules::normalize_axis(ctx.node.attr_int("axis", -1), rank); });
  i64 outer = 1, inner = 1;
  for (i64 a = 0; a < axis; ++a) outer *= X.dim(a);
  for (i64 a = axis + 1; a < rank; ++a) inner *= X.dim(a);
  const i64 n = X.dim(axis);
  const std::vector<double> x = to_f64(X);
  std::vector<double> y(x.size(), 0.0);
  for (i64 o = 0; o < outer; ++o)
    for (i64 i = 0; i < inner; ++i) {
      auto at = [&](i64 k) { return (o * n + k) * inner + i; };
      double mx = -std::numeric_limits<double>::infinity();
      i64 arg = -1;
      for (i64 k = 0; k < n; ++k)
        if (x[at(k)] > mx || arg < 0) {
          mx = x[at(k)];
          arg = k;
        }
      if (kind == SoftKind::hardmax) {
        if (arg >= 0) y[at(arg)] = 1.0;
        continue;
      }
      double sum = 0;
      for (i64 k = 0; k < n; ++k) sum += std::exp(x[at(k)] - mx);
      for (i64 k = 0; k < n; ++k)
        y[at(k)] = kind == SoftKind::softmax ? std::exp(x[at(k)] - mx) / sum
                                             : x[at(k)] - mx - std::log(sum);
    }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

}  // namespace

void register_nn(KernelRegistry& r) {
  register_conv(r);
  register_pool(r);
  register_norm(r);
  register_matmul(r);
  r.add("Softmax", [](KernelContext& ctx) { softmax(ctx, SoftKind::softmax); });
  r.add("LogSoftmax", [](KernelContext& ctx) { softmax(ctx, SoftKind::log_softmax); });
  r.add("Hardmax", [](KernelContext& ctx) { softmax(ctx, SoftKind::hardmax); });
}

}  // namespace kiln::reference
