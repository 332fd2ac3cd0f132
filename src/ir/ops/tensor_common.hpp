// Rules of the tensor op family that both the shape rules (src/ir/ops/tensor*.cpp) and the
// reference kernels (src/reference/tensor*.cpp, resize.cpp) apply to concrete values, so that
// an inferred shape and a computed tensor can never disagree.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln::ops::tensor_rules {

using i64 = std::int64_t;

/// The DType of an ONNX TensorProto.DataType code (the `dtype` attribute of EyeLike, ...).
inline DType dtype_from_onnx(i64 code) { return kiln::dtype_from_onnx(static_cast<int>(code)); }

/// Normalizes a list of axes against `rank`; throws ShapeError on out-of-range or repeated axes.
inline std::vector<i64> normalize_axes(const std::vector<i64>& axes, i64 rank) {
  std::vector<i64> out;
  for (i64 a : axes) {
    const i64 n = rules::normalize_axis(a, rank);
    for (i64 b : out)
      if (b == n) throw ShapeError(fmt::format("axis {} is repeated", a));
    out.push_back(n);
  }
  return out;
}

/// Reshape's target dims (rules::reshape_dims): 0 copies the input dim (unless allowzero), -1 is
/// inferred. `in` may hold kDynamic dims; the result then holds kDynamic where it cannot be known.
inline std::vector<i64> reshape_dims(const std::vector<i64>& in, const std::vector<i64>& shape,
                                     bool allowzero) {
  std::vector<i64> out(shape.size());
  rules::reshape_dims(in, shape, allowzero, out);
  return out;
}

/// One axis of a Slice: first index, step and element count after ONNX's clamping.
struct SliceAxis {
  i64 start = 0;
  i64 step = 1;
  i64 count = 0;
};

inline SliceAxis slice_axis(i64 dim, i64 start, i64 end, i64 step) {
  SliceAxis s;
  s.step = step;
  s.count = rules::slice_count(dim, start, end, step);
  if (start < 0) start += dim;
  if (step > 0)
    s.start = start < 0 ? 0 : (start > dim ? dim : start);
  else
    s.start = start < 0 ? 0 : (start > dim - 1 ? dim - 1 : start);
  return s;
}

/// Per-axis start/end/step of Slice (input order), checked and expanded to all axes.
struct SliceSpec {
  std::vector<i64> axes, starts, ends, steps;
};
inline SliceSpec slice_spec(i64 rank, std::vector<i64> starts, std::vector<i64> ends,
                            std::optional<std::vector<i64>> axes,
                            std::optional<std::vector<i64>> steps) {
  if (starts.size() != ends.size())
    throw ShapeError(
        fmt::format("starts has {} entries but ends has {}", starts.size(), ends.size()));
  SliceSpec s;
  if (axes) {
    if (axes->size() != starts.size())
      throw ShapeError(
          fmt::format("axes has {} entries but starts has {}", axes->size(), starts.size()));
    s.axes = normalize_axes(*axes, rank);
  } else {
    if (static_cast<i64>(starts.size()) > rank)
      throw ShapeError(fmt::format("{} starts given for rank {}", starts.size(), rank));
    for (std::size_t i = 0; i < starts.size(); ++i) s.axes.push_back(static_cast<i64>(i));
  }
  if (steps) {
    if (steps->size() != starts.size())
      throw ShapeError(
          fmt::format("steps has {} entries but starts has {}", steps->size(), starts.size()));
    for (i64 st : *steps)
      if (st == 0) throw ShapeError("slice step must not be zero");
    s.steps = *steps;
  } else {
    s.steps.assign(starts.size(), 1);
  }
  s.starts = std::move(starts);
  s.ends = std::move(ends);
  return s;
}

/// Output dims of Split along an axis of length `dim` into `n` outputs.
inline std::vector<i64> split_sizes(i64 dim, std::size_t n,
                                    const std::optional<std::vector<i64>>& split, i64 num_outputs) {
  if (split) {
    if (split->size() != n)
      throw ShapeError(fmt::format("split has {} entries for {} outputs", split->size(), n));
    i64 sum = 0;
    for (i64 v : *split) {
      if (v < 0) throw ShapeError(fmt::format("split entry {} is negative", v));
      if (v > std::numeric_limits<i64>::max() - sum)  // before adding: an overflow is undefined
        throw ShapeError(fmt::format("split entries {} sum to more than an int64 holds",
                                     fmt::join(*split, ", ")));
      sum += v;
    }
    if (dim >= 0 && sum != dim)
      throw ShapeError(fmt::format("split sizes sum to {} but the axis has {} elements", sum, dim));
    return *split;
  }
  if (num_outputs > 0 && static_cast<std::size_t>(num_outputs) != n)
    throw ShapeError(fmt::format("num_outputs is {} but the node has {} outputs", num_outputs, n));
  if (n == 0) throw ShapeError("Split needs at least one output");
  if (dim < 0) return std::vector<i64>(n, kDynamic);
  const i64 nn = static_cast<i64>(n);
  if (num_outputs > 0) {  // ceil(dim / n) each, the last one smaller
    const i64 chunk = (dim + nn - 1) / nn;
    std::vector<i64> out;
    i64 left = dim;
    for (i64 i = 0; i < nn; ++i) {
      const i64 v = left < chunk ? left : chunk;
      out.push_back(v);
      left -= v;
    }
    return out;
  }
  if (dim % nn != 0)
    throw ShapeError(
        fmt::format("axis of {} elements cannot be split into {} equal parts", dim, n));
  return std::vector<i64>(n, dim / nn);
}

/// The [start, end) dims range of Shape after clamping.
inline std::pair<i64, i64> shape_range(i64 rank, const Node& n) {
  i64 start = n.attr_int("start", 0);
  i64 end = n.has_attr("end") ? n.attr_int("end") : rank;
  auto clamp = [&](i64 v) {
    if (v < 0) v += rank;
    return v < 0 ? 0 : (v > rank ? rank : v);
  };
  start = clamp(start);
  end = clamp(end);
  return {start, end < start ? start : end};
}

/// Length of Range(start, limit, delta).
inline i64 range_count(double start, double limit, double delta) {
  if (delta == 0) throw ShapeError("Range delta must not be zero");
  const double n = std::ceil((limit - start) / delta);
  return n > 0 ? static_cast<i64>(n) : 0;
}

/// Resize's per-axis scales and output sizes (full rank), from scales or sizes given for `axes`.
struct ResizePlan {
  std::vector<double> scales;
  std::vector<i64> sizes;
};
inline ResizePlan resize_plan(const std::vector<i64>& in, const std::vector<double>* scales,
                              const std::vector<i64>* sizes, const std::vector<i64>& axes_in,
                              const std::string& policy) {
  const i64 r = static_cast<i64>(in.size());
  std::vector<i64> axes = axes_in;
  if (axes.empty())
    for (i64 i = 0; i < r; ++i) axes.push_back(i);
  ResizePlan p;
  p.scales.assign(r, 1.0);
  p.sizes = in;
  if (scales) {
    if (scales->size() != axes.size())
      throw ShapeError(
          fmt::format("scales has {} entries, expected {}", scales->size(), axes.size()));
    for (std::size_t i = 0; i < axes.size(); ++i) {
      const double s = (*scales)[i];
      if (!(s > 0)) throw ShapeError(fmt::format("scale {} is not positive", s));
      p.scales[axes[i]] = s;
      p.sizes[axes[i]] = in[axes[i]] < 0
                             ? kDynamic
                             : static_cast<i64>(std::floor(s * static_cast<double>(in[axes[i]])));
    }
    return p;
  }
  if (!sizes) throw ShapeError("one of scales and sizes must be given");
  if (sizes->size() != axes.size())
    throw ShapeError(fmt::format("sizes has {} entries, expected {}", sizes->size(), axes.size()));
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const i64 s = (*sizes)[i];
    if (s < 0) throw ShapeError(fmt::format("size {} is negative", s));
    p.sizes[axes[i]] = s;
    p.scales[axes[i]] =
        in[axes[i]] > 0 ? static_cast<double>(s) / static_cast<double>(in[axes[i]]) : 1.0;
  }
  if (policy == "stretch") return p;
  if (policy != "not_larger" && policy != "not_smaller")
    throw UnsupportedError("keep_aspect_ratio_policy '" + policy +
                           "' (supported: stretch, not_larger, not_smaller)");
  for (i64 a : axes)
    if (in[a] < 0) {
      for (i64 b : axes) p.sizes[b] = kDynamic;
      return p;
    }
  double scale = p.scales[axes[0]];
  for (i64 a : axes)
    scale = policy == "not_larger" ? std::min(scale, p.scales[a]) : std::max(scale, p.scales[a]);
  for (i64 a : axes) {
    p.scales[a] = scale;
    p.sizes[a] = static_cast<i64>(scale * static_cast<double>(in[a]) + 0.5);
  }
  return p;
}

/// The value of a Constant node, from whichever value attribute it has.
inline Tensor constant_tensor(const Node& n) {
  if (n.has_attr("value")) return n.attr_tensor("value");
  if (n.has_attr("value_float"))
    return Tensor::scalar<float>(static_cast<float>(n.attr_float("value_float", 0.0)));
  if (n.has_attr("value_floats")) {
    auto v = n.attr_floats("value_floats");
    std::vector<float> f(v.begin(), v.end());
    return Tensor::from<float>({static_cast<i64>(f.size())}, f);
  }
  if (n.has_attr("value_int")) return Tensor::scalar<i64>(n.attr_int("value_int"));
  if (n.has_attr("value_ints")) {
    auto v = n.attr_ints("value_ints");
    return Tensor::from<i64>({static_cast<i64>(v.size())}, v);
  }
  for (const char* k : {"value_string", "value_strings", "sparse_value"})
    if (n.has_attr(k))
      throw UnsupportedError(n.where() + fmt::format("attribute '{}': string and sparse "
                                                     "constants are not supported",
                                                     k));
  throw GraphError(n.where() +
                   "Constant needs one of the attributes value, value_float, "
                   "value_floats, value_int, value_ints");
}

}  // namespace kiln::ops::tensor_rules
