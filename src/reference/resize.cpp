// Reference kernels of Resize and Upsample, as the ONNX reference defines them: separable
// interpolation, one axis at a time, in double precision; each output coordinate is mapped back
// to the input (coordinate_transformation_mode), its neighbours are weighted (nearest, linear,
// cubic, optionally antialiased), and the result is cast back with saturation.
#include <cmath>
#include <functional>
#include <limits>

#include <fmt/format.h>

#include "families.hpp"
#include "ir/ops/tensor_common.hpp"
#include "tensor_util.hpp"

namespace kiln::reference {

namespace {

using i64 = std::int64_t;
namespace tr = ops::tensor_rules;

using CoeffFn = std::function<std::vector<double>(double ratio, double scale)>;

struct ResizeConfig {
  std::string ctm = "half_pixel";  // coordinate_transformation_mode
  bool exclude_outside = false;
  double extrapolation_value = 0.0;
  CoeffFn coeffs;
};

std::vector<double> nearest_coeffs(double ratio, const std::string& mode) {
  if (ratio == std::floor(ratio)) return {0.0, 1.0};
  if (mode == "round_prefer_floor") return {ratio <= 0.5 ? 1.0 : 0.0, ratio > 0.5 ? 1.0 : 0.0};
  if (mode == "round_prefer_ceil") return {ratio < 0.5 ? 1.0 : 0.0, ratio >= 0.5 ? 1.0 : 0.0};
  if (mode == "floor") return {1.0, 0.0};
  return {0.0, 1.0};  // ceil
}

std::vector<double> linear_coeffs(double ratio) { return {1.0 - ratio, ratio}; }

std::vector<double> linear_coeffs_antialias(double ratio, double scale) {
  scale = std::min(scale, 1.0);
  const i64 start = static_cast<i64>(std::floor(-1.0 / scale) + 1.0);
  const i64 footprint = 2 - 2 * start;
  std::vector<double> c;
  double sum = 0.0;
  for (i64 i = start; i < start + footprint; ++i) {
    const double arg = (static_cast<double>(i) - ratio) * scale;
    const double v = std::clamp(1.0 - std::abs(arg), 0.0, 1.0);
    c.push_back(v);
    sum += v;
  }
  for (double& v : c) v /= sum;
  return c;
}

std::vector<double> cubic_coeffs(double r, double A) {
  return {((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A,
          ((A + 2) * r - (A + 3)) * r * r + 1,
          ((A + 2) * (1 - r) - (A + 3)) * (1 - r) * (1 - r) + 1,
          ((A * ((1 - r) + 1) - 5 * A) * ((1 - r) + 1) + 8 * A) * ((1 - r) + 1) - 4 * A};
}

std::vector<double> cubic_coeffs_antialias(double ratio, double scale, double A) {
  scale = std::min(scale, 1.0);
  auto coeff = [&](double x) {
    x = std::abs(x);
    const double x2 = x * x, x3 = x * x2;
    if (x <= 1) return (A + 2) * x3 - (A + 3) * x2 + 1;
    if (x < 2) return A * x3 - 5 * A * x2 + 8 * A * x - 4 * A;
    return 0.0;
  };
  const i64 i_start = static_cast<i64>(std::floor(-2.0 / scale) + 1.0);
  const i64 i_end = 2 - i_start;
  std::vector<double> c;
  double sum = 0.0;
  for (i64 i = i_start; i < i_end; ++i) {
    const double v = coeff(scale * (static_cast<double>(i) - ratio));
    c.push_back(v);
    sum += v;
  }
  for (double& v : c) v /= sum;
  return c;
}

/// Source coordinate of output index y along one axis; sets `outside` for tf_crop_and_resize
/// positions that fall outside the input.
double source_coordinate(const ResizeConfig& cfg, double y, double scale, i64 in_w, i64 out_w,
                         const double* roi, bool& outside) {
  const double iw = static_cast<double>(in_w);
  const double ow = scale * iw;  // output width before rounding
  outside = false;
  const std::string& m = cfg.ctm;
  if (m == "align_corners") return ow == 1 ? 0.0 : y * (iw - 1) / (ow - 1);
  if (m == "asymmetric") return y / scale;
  if (m == "tf_crop_and_resize") {
    double x =
        ow == 1 ? (roi[1] - roi[0]) * (iw - 1) / 2 : y * (roi[1] - roi[0]) * (iw - 1) / (ow - 1);
    x = x + roi[0] * (iw - 1);
    outside = x < 0 || x > iw - 1;
    return x;
  }
  if (m == "pytorch_half_pixel") return ow == 1 ? -0.5 : (y + 0.5) / scale - 0.5;
  if (m == "half_pixel") return (y + 0.5) / scale - 0.5;
  // half_pixel_symmetric
  const double adjustment = static_cast<double>(out_w) / ow;
  const double center = iw / 2;
  const double offset = center * (1 - adjustment);
  return offset + (y + 0.5) / scale - 0.5;
}

/// Resizes `data` (dims `dims`) along `axis` to `out_w` elements; updates dims.
std::vector<double> resize_axis(const std::vector<double>& data, std::vector<i64>& dims,
                                std::size_t axis, double scale, i64 out_w, const double* roi,
                                const ResizeConfig& cfg) {
  const i64 in_w = dims[axis];
  i64 outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= dims[d];
  for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
  // Per output position: neighbour indices (clamped) and weights, or extrapolation.
  std::vector<std::vector<std::pair<i64, double>>> taps(static_cast<std::size_t>(out_w));
  std::vector<bool> outside(static_cast<std::size_t>(out_w), false);
  for (i64 y = 0; y < out_w; ++y) {
    bool out_flag = false;
    const double x =
        source_coordinate(cfg, static_cast<double>(y), scale, in_w, out_w, roi, out_flag);
    outside[y] = out_flag;
    const double xi = std::floor(x);
    const double ratio = x == xi ? 1.0 : x - xi;
    std::vector<double> c = cfg.coeffs(ratio, scale);
    const i64 n = static_cast<i64>(c.size());
    const i64 pad = (n + 1) / 2;
    const double xp = x + static_cast<double>(pad);
    const double pf = std::floor(xp);
    const double frac = xp - pf;
    i64 off;
    if (n % 2 == 0)
      off = frac == 0 ? -(n / 2) : -(n / 2) + 1;
    else
      off = frac <= 0.5 ? -((n - 1) / 2) : -((n - 1) / 2) + 1;
    const i64 start = static_cast<i64>(pf) + off - pad;
    if (cfg.exclude_outside) {
      double sum = 0.0;
      for (i64 j = 0; j < n; ++j) {
        const i64 idx = start + j;
        if (idx < 0 || idx >= in_w) c[j] = 0.0;
        sum += c[j];
      }
      if (sum == 0.0) sum = 1.0;
      for (double& v : c) v /= sum;
    }
    for (i64 j = 0; j < n; ++j) taps[y].push_back({std::clamp<i64>(start + j, 0, in_w - 1), c[j]});
  }
  dims[axis] = out_w;
  std::vector<double> out(static_cast<std::size_t>(outer * out_w * inner));
  for (i64 o = 0; o < outer; ++o)
    for (i64 y = 0; y < out_w; ++y)
      for (i64 i = 0; i < inner; ++i) {
        double v = 0.0;
        if (outside[y]) {
          v = cfg.extrapolation_value;
        } else {
          for (const auto& [idx, w] : taps[y]) v += w * data[(o * in_w + idx) * inner + i];
        }
        out[(o * out_w + y) * inner + i] = v;
      }
  return out;
}

/// Casts doubles to the input dtype as the ONNX reference does: integers round half to even,
/// everything saturates at the dtype's range.
Tensor saturate_cast(DType t, const std::vector<i64>& dims, const std::vector<double>& v) {
  Tensor out(t, dims);
  visit_dtype(t, [&](auto tag) {
    using T = decltype(tag);
    T* p = out.data<T>();
    double lo, hi;
    if constexpr (std::is_same_v<T, f16>) {
      lo = -65504.0;
      hi = 65504.0;
    } else if constexpr (std::is_same_v<T, bf16>) {
      hi = static_cast<double>(bf16::to_float(0x7f7f));
      lo = -hi;
    } else if constexpr (std::is_same_v<T, bool>) {
      lo = 0.0;
      hi = 1.0;
    } else {
      lo = static_cast<double>(std::numeric_limits<T>::lowest());
      hi = static_cast<double>(std::numeric_limits<T>::max());
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      double x = v[i];
      if constexpr (!std::is_floating_point_v<compute_t<T>>) x = std::nearbyint(x);
      if (!std::isnan(x)) x = std::clamp(x, lo, hi);
      if constexpr (std::is_floating_point_v<compute_t<T>>)
        p[i] = from_compute<T>(x);
      else
        p[i] = std::isnan(x) ? T{} : static_cast<T>(x);
    }
  });
  return out;
}

Tensor run_resize(const KernelContext& ctx, const Tensor& x, const tr::ResizePlan& plan,
                  const std::vector<double>& roi, const ResizeConfig& cfg) {
  const std::size_t r = x.rank();
  std::vector<double> data = x.to_doubles();
  std::vector<i64> dims = x.dims();
  for (std::size_t a = 0; a < r; ++a) {
    const double s = plan.scales[a];
    const i64 out_w = plan.sizes[a];
    const bool trivial_roi = roi.empty() || (roi[a] == 0.0 && roi[a + r] == 1.0);
    if (std::abs(s - 1.0) <= 1e-9 * std::max(1.0, std::abs(s)) && out_w == dims[a] && trivial_roi)
      continue;
    if (out_w == 0 || dims[a] == 0) {
      dims[a] = out_w;
      data.assign(static_cast<std::size_t>(product(dims)), 0.0);
      continue;
    }
    const double roi_axis[2] = {roi.empty() ? 0.0 : roi[a], roi.empty() ? 1.0 : roi[a + r]};
    data = resize_axis(data, dims, a, s, out_w, roi_axis, cfg);
  }
  (void)ctx;
  return saturate_cast(x.dtype(), dims, data);
}

void resize(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  const i64 r = static_cast<i64>(x.rank());
  if (!is_float(x.dtype()) && !is_integer(x.dtype()))
    ctx.fail(fmt::format("input dtype {} cannot be resized", dtype_name(x.dtype())));
  const auto& n = ctx.node;
  const std::string mode = n.attr_string("mode", "nearest");
  const bool antialias = n.attr_int("antialias", 0) != 0;
  ResizeConfig cfg;
  cfg.ctm = n.attr_string("coordinate_transformation_mode", "half_pixel");
  if (cfg.ctm != "half_pixel" && cfg.ctm != "half_pixel_symmetric" &&
      cfg.ctm != "pytorch_half_pixel" && cfg.ctm != "align_corners" && cfg.ctm != "asymmetric" &&
      cfg.ctm != "tf_crop_and_resize")
    ctx.unsupported("attribute 'coordinate_transformation_mode' = '" + cfg.ctm +
                    "' (supported: half_pixel, half_pixel_symmetric, pytorch_half_pixel, "
                    "align_corners, asymmetric, tf_crop_and_resize)");
  cfg.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
  cfg.extrapolation_value = n.attr_float("extrapolation_value", 0.0);
  if (mode == "nearest") {
    if (antialias) ctx.unsupported("antialias = 1 with mode 'nearest'");
    const std::string nm = n.attr_string("nearest_mode", "round_prefer_floor");
    if (nm != "round_prefer_floor" && nm != "round_prefer_ceil" && nm != "floor" && nm != "ceil")
      ctx.unsupported("attribute 'nearest_mode' = '" + nm +
                      "' (supported: round_prefer_floor, round_prefer_ceil, floor, ceil)");
    cfg.coeffs = [nm](double ratio, double) { return nearest_coeffs(ratio, nm); };
  } else if (mode == "linear") {
    if (antialias)
      cfg.coeffs = linear_coeffs_antialias;
    else
      cfg.coeffs = [](double ratio, double) { return linear_coeffs(ratio); };
  } else if (mode == "cubic") {
    const double A = n.attr_float("cubic_coeff_a", -0.75);
    if (antialias)
      cfg.coeffs = [A](double ratio, double s) { return cubic_coeffs_antialias(ratio, s, A); };
    else
      cfg.coeffs = [A](double ratio, double) { return cubic_coeffs(ratio, A); };
  } else {
    ctx.unsupported("attribute 'mode' = '" + mode + "' (supported: nearest, linear, cubic)");
  }
  std::vector<i64> axes;
  if (n.has_attr("axes")) axes = tr::normalize_axes(n.attr_ints("axes"), r);
  const std::size_t naxes = axes.empty() ? static_cast<std::size_t>(r) : axes.size();
  auto present = [&](std::size_t i) { return ctx.has(i) && ctx.in(i).numel() > 0; };
  if (present(2) && present(3)) ctx.fail("only one of scales and sizes may be given");
  if (!present(2) && !present(3)) ctx.fail("one of scales and sizes must be given");
  std::vector<double> scales;
  std::vector<i64> sizes;
  if (present(2))
    scales = ctx.in(2).to_doubles();
  else
    sizes = ctx.in(3).to_int64s();
  const auto plan =
      tr::resize_plan(x.dims(), present(2) ? &scales : nullptr, present(3) ? &sizes : nullptr, axes,
                      n.attr_string("keep_aspect_ratio_policy", "stretch"));
  std::vector<double> roi;
  if (present(1) && cfg.ctm == "tf_crop_and_resize") {
    const auto given = ctx.in(1).to_doubles();
    if (given.size() != 2 * naxes)
      ctx.fail(fmt::format("roi has {} entries, expected {}", given.size(), 2 * naxes));
    roi.assign(2 * r, 0.0);
    for (i64 a = 0; a < r; ++a) roi[a + r] = 1.0;
    for (std::size_t i = 0; i < naxes; ++i) {
      const i64 a = axes.empty() ? static_cast<i64>(i) : axes[i];
      roi[a] = given[i];
      roi[a + r] = given[i + naxes];
    }
  } else if (cfg.ctm == "tf_crop_and_resize") {
    ctx.fail("coordinate_transformation_mode 'tf_crop_and_resize' needs the roi input");
  }
  ctx.set(0, run_resize(ctx, x, plan, roi, cfg));
}

void upsample(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  if (!is_float(x.dtype()) && !is_integer(x.dtype()))
    ctx.fail(fmt::format("input dtype {} cannot be resized", dtype_name(x.dtype())));
  const std::string mode = ctx.node.attr_string("mode", "nearest");
  ResizeConfig cfg;
  cfg.ctm = "asymmetric";
  if (mode == "nearest")
    cfg.coeffs = [](double ratio, double) { return nearest_coeffs(ratio, "floor"); };
  else if (mode == "linear" || mode == "bilinear" || mode == "trilinear")
    cfg.coeffs = [](double ratio, double) { return linear_coeffs(ratio); };
  else
    ctx.unsupported("attribute 'mode' = '" + mode + "' (supported: nearest, linear)");
  const auto scales = ctx.in(1).to_doubles();
  if (scales.size() != x.rank())
    ctx.fail(fmt::format("scales has {} entries for an input of rank {}", scales.size(), x.rank()));
  const auto plan = tr::resize_plan(x.dims(), &scales, nullptr, {}, "stretch");
  ctx.set(0, run_resize(ctx, x, plan, {}, cfg));
}

}  // namespace

void register_resize(KernelRegistry& r) {
  r.add("Resize", resize);
  r.add("Upsample", upsample);
}

}  // namespace kiln::reference
