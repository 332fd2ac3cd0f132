// Sliding-window attributes (kernel, strides, dilations, pads, auto_pad, ceil_mode, output_padding,
// output_shape) of Conv, ConvTranspose and the pooling ops, resolved against an input's spatial
// dims. Shared by the shape rules (src/ir/ops/nn.cpp), the reference kernels
// (src/reference/conv.cpp, pool.cpp) and the GPU steps (src/runtime/steps_conv.cpp,
// steps_data.cpp), so all read the attributes the same way; the arithmetic itself is the
// constexpr rules of kiln/ir/shape_rules.hpp. Errors are prefixed with the node.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln::ops {

using i64 = std::int64_t;

/// A window resolved for one node and input: per spatial axis, the kernel, stride, dilation,
/// begin and end padding (after auto_pad) and the output length (kDynamic when unknown).
struct Window {
  std::vector<i64> kernel, strides, dilations, pad_begin, pad_end, out;
  std::size_t rank() const { return kernel.size(); }
};

enum class WindowKind { conv, pool, deconv };

/// An ints attribute with one value per spatial axis (or `fallback` everywhere when absent).
inline std::vector<i64> window_attr(const Node& n, const char* key, std::size_t rank, i64 fallback,
                                    std::size_t per_axis = 1) {
  auto v = n.attr_ints(key, {});
  if (v.empty()) return std::vector<i64>(rank * per_axis, fallback);
  if (v.size() != rank * per_axis)
    throw ShapeError(fmt::format("{}attribute '{}' has {} values, expected {} ({} spatial axes)",
                                 n.where(), key, v.size(), rank * per_axis, rank));
  return v;
}

/// Runs shape-rule arithmetic, prefixing a violation with the node.
template <class F>
auto window_rule(const Node& n, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    if (msg.rfind(n.where(), 0) == 0) throw;
    throw ShapeError(n.where() + msg);
  }
}

/// Resolves the window of `n` over input spatial dims `in` (kDynamic where unknown) with the
/// given kernel (from the weight or kernel_shape).
inline Window resolve_window(const Node& n, const std::vector<i64>& in,
                             const std::vector<i64>& kernel, WindowKind kind) {
  const std::size_t r = in.size();
  if (kernel.size() != r)
    throw ShapeError(
        fmt::format("{}kernel has {} spatial axes, input has {}", n.where(), kernel.size(), r));
  Window w;
  w.kernel = kernel;
  w.strides = window_attr(n, "strides", r, 1);
  w.dilations = window_attr(n, "dilations", r, 1);
  const auto pads = window_attr(n, "pads", r, 0, 2);
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER" &&
      auto_pad != "VALID")
    throw UnsupportedError(fmt::format(
        "{}attribute 'auto_pad' = '{}' (expected NOTSET, SAME_UPPER, SAME_LOWER or VALID)",
        n.where(), auto_pad));
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  const bool upper = auto_pad == "SAME_UPPER";
  const bool ceil_mode = kind == WindowKind::pool && n.attr_int("ceil_mode", 0) != 0;
  w.pad_begin.assign(r, 0);
  w.pad_end.assign(r, 0);
  w.out.assign(r, kDynamic);
  window_rule(n, [&] {
    for (std::size_t a = 0; a < r; ++a) {
      rules::positive("kernel size must be positive, got {}", w.kernel[a]);
      rules::positive("stride must be positive, got {}", w.strides[a]);
      rules::positive("dilation must be positive, got {}", w.dilations[a]);
      // Bounds that keep the window arithmetic inside 64 bits (a model's attributes are
      // untrusted): no real network comes near them.
      for (i64 v : {w.kernel[a], w.strides[a], w.dilations[a], in[a]})
        if (v > (i64{1} << 31))
          rules::rule_violation_fmt(
              "kernel, stride, dilation or input length {} on axis {} is too large", v,
              static_cast<i64>(a));
      for (i64 v : {pads[a], pads[r + a]})
        if (v > (i64{1} << 40))
          rules::rule_violation_fmt("padding {} on axis {} is too large", v, static_cast<i64>(a));
    }
    if (kind != WindowKind::deconv) {
      for (std::size_t a = 0; a < r; ++a) {
        if (same) {
          const i64 total = rules::same_total_pad(in[a], w.kernel[a], w.strides[a], w.dilations[a]);
          if (!rules::known(total)) continue;  // dynamic input: output unknown
          w.pad_begin[a] = rules::split_pad_begin(total, upper);
          w.pad_end[a] = total - w.pad_begin[a];
        } else if (auto_pad == "NOTSET") {
          w.pad_begin[a] = pads[a];
          w.pad_end[a] = pads[r + a];
        }
        w.out[a] = kind == WindowKind::pool
                       ? rules::pool_out_dim(in[a], w.kernel[a], w.strides[a], w.dilations[a],
                                             w.pad_begin[a], w.pad_end[a], ceil_mode && !same)
                       : rules::conv_out_dim(in[a], w.kernel[a], w.strides[a], w.dilations[a],
                                             w.pad_begin[a], w.pad_end[a]);
      }
      return;
    }
    // Transposed convolution.
    const auto out_pad = window_attr(n, "output_padding", r, 0);
    auto out_shape = n.attr_ints("output_shape", {});
    if (out_shape.size() == r + 2) out_shape.erase(out_shape.begin(), out_shape.begin() + 2);
    if (!out_shape.empty() && out_shape.size() != r)
      rules::rule_violation_fmt("attribute 'output_shape' has {} values, expected {}",
                                static_cast<i64>(out_shape.size()), static_cast<i64>(r));
    for (std::size_t a = 0; a < r; ++a) {
      const i64 s = w.strides[a], d = w.dilations[a], k = w.kernel[a];
      if (out_pad[a] < 0 || (out_pad[a] >= s && out_pad[a] >= d))
        rules::rule_violation_fmt("output_padding {} must be smaller than stride or dilation ({})",
                                  out_pad[a], s);
      if (!out_shape.empty() || same) {
        if (!rules::known(in[a])) continue;
        const i64 target = !out_shape.empty() ? out_shape[a] : in[a] * s;
        rules::positive("output_shape must be positive, got {}", target);
        const i64 total = s * (in[a] - 1) + out_pad[a] + (k - 1) * d + 1 - target;
        // total may be negative (output_shape past the natural size).
        w.pad_begin[a] = rules::split_pad_begin(total, upper);
        w.pad_end[a] = total - w.pad_begin[a];
        w.out[a] = target;
      } else {
        if (auto_pad == "NOTSET") {
          w.pad_begin[a] = pads[a];
          w.pad_end[a] = pads[r + a];
          if (pads[a] < 0 || pads[r + a] < 0)
            rules::rule_violation_fmt("negative padding {} / {}", pads[a], pads[r + a]);
        }
        w.out[a] = rules::deconv_out_dim(in[a], k, s, d, w.pad_begin[a], w.pad_end[a], out_pad[a]);
      }
    }
  });
  return w;
}

/// Output length `a` of window `w` (resolve_window's) over input dim `in`: w.out[a] where known,
/// else the same formula as an expression of a symbolic `in` (dim_affine: "(H+1)/2" for a 3x3
/// stride-2 convolution with pads 1); dynamic for an anonymous `in` and for pooling's ceil_mode.
inline Dim window_out_dim(const Node& n, const Window& w, std::size_t a, const Dim& in,
                          WindowKind kind) {
  if (w.out[a] >= 0) return Dim(w.out[a]);
  const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
  const bool same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
  const i64 s = w.strides[a], d = w.dilations[a], k = w.kernel[a];
  rules::WindowLinear l;
  if (kind == WindowKind::deconv) {
    if (!n.attr_ints("output_shape", {}).empty()) return Dim::dynamic();
    if (same) return dim_affine(in, s, 0, 1);  // in * stride
    l = rules::deconv_out_linear(k, s, d, w.pad_begin[a], w.pad_end[a],
                                 window_attr(n, "output_padding", w.rank(), 0)[a]);
  } else {
    if (same) return dim_affine(in, 1, s - 1, s);  // ceil(in / stride)
    if (kind == WindowKind::pool && n.attr_int("ceil_mode", 0) != 0) return Dim::dynamic();
    l = rules::conv_out_linear(k, s, d, w.pad_begin[a], w.pad_end[a]);
  }
  return dim_affine(in, l.mul, l.add, l.div);
}

}  // namespace kiln::ops
