// Shape rules, written once. Each rule is a constexpr function over integers; a dim that is not
// known yet is kDynamic (-1) and passes through. A violation calls rule_violation(), which is not
// constexpr: in a constant expression (the typed DSL with fixed dims) that is a compile error whose
// text shows the rule and its arguments; at run time (IR shape inference, DSL dynamic dims) it
// throws kiln::ShapeError, and the caller prefixes the layer: "[Conv 'conv2'] expected 20 input
// channels, got 50".
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "kiln/ir/shape.hpp"

namespace kiln::rules {

using i64 = std::int64_t;

/// Throws ShapeError("expected <expected> <what>, got <got>"). Not constexpr, on purpose.
[[noreturn]] void rule_violation(const char* what, i64 expected, i64 got);
/// Throws ShapeError(what, with the first {} replaced by a and the second {}, if any, by b).
[[noreturn]] void rule_violation_fmt(const char* what, i64 a, i64 b);

constexpr bool known(i64 d) { return d >= 0; }

/// The product of two element counts; a count past 2^62 is a violation (no tensor has that many
/// elements, and the arithmetic after it would overflow).
constexpr i64 count_mul(i64 a, i64 b) {
  if (a < 0 || b < 0) rule_violation_fmt("element count {} x {} is negative", a, b);
  if (b != 0 && a > (i64{1} << 62) / b) rule_violation_fmt("element count {} x {} overflows", a, b);
  return a * b;
}

/// Two dims that must agree: returns the known one (or kDynamic).
constexpr i64 equal_dims(const char* what, i64 expected, i64 got) {
  if (known(expected) && known(got) && expected != got) rule_violation(what, expected, got);
  return known(expected) ? expected : got;
}

/// A tensor's rank against the rank a layer takes.
constexpr i64 input_rank(i64 expected, i64 got) { return equal_dims("dims (rank)", expected, got); }

/// An axis in [-rank, rank) made non-negative.
constexpr i64 normalize_axis(i64 axis, i64 rank) {
  if (axis < -rank || axis >= rank)
    rule_violation_fmt("axis {} out of range for rank {}", axis, rank);
  return axis < 0 ? axis + rank : axis;
}

/// A positive integer attribute (stride, dilation, group, kernel).
constexpr i64 positive(const char* what, i64 v) {
  if (v <= 0) rule_violation_fmt(what, v, 0);
  return v;
}

/// numpy broadcasting of one dim pair.
constexpr i64 broadcast_dim(i64 a, i64 b) {
  if (a == 1) return b;
  if (b == 1) return a;
  if (known(a) && known(b) && a != b) rule_violation_fmt("cannot broadcast dims {} and {}", a, b);
  return known(a) ? a : b;
}

/// Total padding for auto_pad SAME_UPPER / SAME_LOWER: output = ceil(in / stride).
constexpr i64 same_total_pad(i64 in, i64 kernel, i64 stride, i64 dilation) {
  if (!known(in)) return kDynamic;
  const i64 out = (in + stride - 1) / stride;
  const i64 need = (out - 1) * stride + (kernel - 1) * dilation + 1 - in;
  return need > 0 ? need : 0;
}

/// The begin padding of `total` padding along one axis (auto_pad SAME_UPPER / SAME_LOWER, or a
/// transposed convolution's output_shape), split as ONNX does: SAME_UPPER (`upper`) puts the
/// smaller half first, anything else the larger. Halves are floor(total / 2), as ONNX's reference
/// computes them (`total // 2` in Python): a negative total, which a transposed convolution's
/// output_shape past its natural size gives, splits -3 as -2 + -1 (upper) and -1 + -2 (lower),
/// not as truncating division would. The end padding is total - begin.
constexpr i64 split_pad_begin(i64 total, bool upper) {
  const i64 half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
  return upper ? half : total - half;
}

/// A window's output length along one axis as floor((in * mul + add) / div): the formulas
/// conv_out_dim and deconv_out_dim compute, and window_out_dim (kiln/ir/window.hpp) keeps as a
/// symbolic expression.
struct WindowLinear {
  i64 mul = 1, add = 0, div = 1;
};
/// A convolution's (or pooling window's without ceil mode): floor((in + pads - extent) / stride)
/// + 1, extent = (kernel - 1) * dilation + 1.
constexpr WindowLinear conv_out_linear(i64 kernel, i64 stride, i64 dilation, i64 pad_begin,
                                       i64 pad_end) {
  return {1, pad_begin + pad_end - ((kernel - 1) * dilation + 1) + stride, stride};
}
/// A transposed convolution's: stride * (in - 1) + output_padding + extent - pads.
constexpr WindowLinear deconv_out_linear(i64 kernel, i64 stride, i64 dilation, i64 pad_begin,
                                         i64 pad_end, i64 output_padding) {
  return {stride, output_padding + (kernel - 1) * dilation + 1 - pad_begin - pad_end - stride, 1};
}

/// Output length of a convolution (or a pooling window without ceil mode) along one axis.
constexpr i64 conv_out_dim(i64 in, i64 kernel, i64 stride, i64 dilation, i64 pad_begin,
                           i64 pad_end) {
  positive("stride must be positive, got {}", stride);
  positive("dilation must be positive, got {}", dilation);
  if (pad_begin < 0 || pad_end < 0)
    rule_violation_fmt("negative padding {} / {}", pad_begin, pad_end);
  if (!known(in)) return kDynamic;
  const i64 extent = (kernel - 1) * dilation + 1;
  const i64 padded = in + pad_begin + pad_end;
  if (extent > padded)
    rule_violation_fmt("kernel extent {} larger than padded input {}", extent, padded);
  const WindowLinear l = conv_out_linear(kernel, stride, dilation, pad_begin, pad_end);
  return (in * l.mul + l.add) / l.div;  // the numerator is at least the stride: a floor
}

/// Output length of a pooling window along one axis (ceil_mode as ONNX defines it: the last
/// window must start inside the input or its left padding).
constexpr i64 pool_out_dim(i64 in, i64 kernel, i64 stride, i64 dilation, i64 pad_begin, i64 pad_end,
                           bool ceil_mode) {
  const i64 floor_out = conv_out_dim(in, kernel, stride, dilation, pad_begin, pad_end);
  if (!ceil_mode || !known(in)) return floor_out;
  const i64 extent = (kernel - 1) * dilation + 1;
  const i64 span = in + pad_begin + pad_end - extent;
  i64 out = (span + stride - 1) / stride + 1;
  if ((out - 1) * stride >= in + pad_begin) --out;
  return out;
}

/// Output length of a transposed convolution along one axis.
constexpr i64 deconv_out_dim(i64 in, i64 kernel, i64 stride, i64 dilation, i64 pad_begin,
                             i64 pad_end, i64 output_padding) {
  positive("stride must be positive, got {}", stride);
  positive("dilation must be positive, got {}", dilation);
  if (output_padding < 0 || (output_padding >= stride && output_padding >= dilation))
    rule_violation_fmt("output_padding {} must be smaller than stride or dilation ({})",
                       output_padding, stride);
  if (!known(in)) return kDynamic;
  const WindowLinear l =
      deconv_out_linear(kernel, stride, dilation, pad_begin, pad_end, output_padding);
  const i64 out = (in * l.mul + l.add) / l.div;
  if (out <= 0)
    rule_violation_fmt("transposed convolution output {} not positive (input {})", out, in);
  return out;
}

/// A grouped convolution's output channels: `group` equal groups. Returns the channels per group.
constexpr i64 group_out_channels(i64 out_channels, i64 group) {
  positive("group must be positive, got {}", group);
  if (!known(out_channels)) return kDynamic;
  if (out_channels % group != 0)
    rule_violation_fmt("output channels {} not divisible by group {}", out_channels, group);
  return out_channels / group;
}

/// A grouped convolution's input channels: `group` equal groups. Returns the channels per group.
constexpr i64 group_in_channels(i64 input_channels, i64 group) {
  positive("group must be positive, got {}", group);
  if (!known(input_channels)) return kDynamic;
  if (input_channels % group != 0)
    rule_violation_fmt("input channels {} not divisible by group {}", input_channels, group);
  return input_channels / group;
}

/// Convolution channel check: weight [M, C/group, ...] against input channels C.
constexpr void conv_channels(i64 input_channels, i64 weight_channels, i64 group, i64 out_channels) {
  group_out_channels(out_channels, group);
  if (known(input_channels) && known(weight_channels))
    equal_dims("input channels", weight_channels * group, input_channels);
}

/// A layer's declared input channels against those that reach it.
constexpr i64 input_channels(i64 declared, i64 got) {
  return equal_dims("input channels", declared, got);
}

/// Matrix product inner dims: [.., M, K] x [.., K, N].
constexpr i64 matmul_inner(i64 k_left, i64 k_right) {
  return equal_dims("inner dimension (columns of the left operand = rows of the right)", k_left,
                    k_right);
}

/// A fully connected layer's input features against its weight's.
constexpr i64 fc_in_features(i64 weight_in, i64 got) {
  return equal_dims("input features", weight_in, got);
}

/// A row normalization (layer_norm, rms_norm): the width it declares is the input's last dim.
constexpr i64 norm_width(i64 declared, i64 got) {
  return equal_dims("normalized width (last dim)", declared, got);
}

/// Element counts that must agree (reshape, flatten into a declared size).
constexpr i64 same_count(i64 expected, i64 got) {
  return equal_dims("element count", expected, got);
}

/// Concat: a dim off the concat axis, which every input shares.
constexpr i64 concat_dim(i64 expected, i64 got) {
  return equal_dims("dim (all but the concat axis must agree)", expected, got);
}

/// Constant padding: a begin and an end for each of the input's `rank` dims (ONNX order).
constexpr i64 pad_count(i64 rank, i64 count) {
  return equal_dims("pads (2 x the input rank)", 2 * rank, count);
}

/// A slice bound clamped as ONNX Slice does; returns the element count along the axis.
constexpr i64 slice_count(i64 dim, i64 start, i64 end, i64 step) {
  if (step == 0) rule_violation_fmt("slice step must not be zero (start {}, end {})", start, end);
  if (!known(dim)) return kDynamic;
  if (dim == 0) return 0;
  auto clamp = [](i64 v, i64 lo, i64 hi) { return v < lo ? lo : (v > hi ? hi : v); };
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = clamp(start, 0, dim);
    end = clamp(end, 0, dim);
    return end > start ? (end - start + step - 1) / step : 0;
  }
  start = clamp(start, 0, dim - 1);
  end = clamp(end, -1, dim - 1);
  return start > end ? (start - end + (-step) - 1) / (-step) : 0;
}

/// Recurrent layers: a state's hidden size against the layer's.
constexpr i64 rnn_hidden(i64 expected, i64 got) { return equal_dims("hidden size", expected, got); }
/// Recurrent layers: the states an initial state holds (dim 0) against layers x directions.
constexpr i64 rnn_states(i64 expected, i64 got) {
  return equal_dims("initial states (layers x directions)", expected, got);
}

/// Attention (ONNX Attention, 3-D inputs [N, S, heads * head_dim]): the head size of a width
/// split into `heads` heads. The width must be a multiple of the head count.
constexpr i64 attention_head_dim(i64 width, i64 heads) {
  positive("head count must be positive, got {}", heads);
  if (!known(width)) return kDynamic;
  if (width % heads != 0)
    rule_violation_fmt("width {} is not a multiple of the head count {}", width, heads);
  return width / heads;
}

/// Attention: a declared head size against a width of `heads` heads (the typed DSL's
/// head_dim<D>, when both are known).
constexpr i64 attention_width(i64 heads, i64 head_dim, i64 width) {
  positive("head count must be positive, got {}", heads);
  if (!known(head_dim)) return width;
  return equal_dims("width (heads x head_dim)", heads * head_dim, width);
}

/// Attention with 4-D inputs [N, heads, S, head_dim]: the query heads a layer declares against
/// dim 1 of q, and its key/value heads against dim 1 of k and v.
constexpr i64 attention_heads(i64 declared, i64 got) {
  return equal_dims("query heads (dim 1 of q)", declared, got);
}
constexpr i64 attention_kv_heads(i64 declared, i64 got) {
  return equal_dims("key/value heads (dim 1 of k and v)", declared, got);
}

/// Attention: query heads share key/value heads in equal groups (grouped-query attention; one
/// key/value head is multi-query attention). Returns the group size.
constexpr i64 attention_kv_groups(i64 q_heads, i64 kv_heads) {
  positive("key/value head count must be positive, got {}", kv_heads);
  if (!known(q_heads)) return kDynamic;
  if (q_heads % kv_heads != 0)
    rule_violation_fmt("query heads {} are not a multiple of the key/value heads {}", q_heads,
                       kv_heads);
  return q_heads / kv_heads;
}

/// Attention: the keys an attn_mask covers (its last dim) against the keys of past and present.
/// A shorter mask is padded with masked keys (ONNX Attention); a longer one is an error.
constexpr i64 attention_mask_keys(i64 mask_keys, i64 total_keys) {
  if (known(mask_keys) && known(total_keys) && mask_keys > total_keys)
    rule_violation_fmt("attn_mask covers {} keys, more than the {} keys of past and present",
                       mask_keys, total_keys);
  return total_keys;
}

/// Rotary embedding: the rotated part of a head (0: all of it) is even and fits in the head.
constexpr i64 rotary_dim(i64 rotary, i64 head_dim) {
  if (rotary < 0)
    rule_violation_fmt("rotary_embedding_dim must not be negative, got {}", rotary, 0);
  const i64 r = rotary == 0 ? head_dim : rotary;
  if (!known(r)) return kDynamic;
  if (r % 2 != 0) rule_violation_fmt("the rotated dims ({}) must be even", r, 0);
  if (known(head_dim) && r > head_dim)
    rule_violation_fmt("rotary_embedding_dim {} is larger than the head size {}", r, head_dim);
  return r;
}

/// Rotary embedding: the width of the cos and sin caches (their last dim) is half the rotated dims.
constexpr i64 rotary_cache_width(i64 half_rotated, i64 got) {
  return equal_dims("last dim of cos (rotated dims / 2)", half_rotated, got);
}

/// Local response normalization window: odd and positive.
constexpr i64 lrn_size(i64 size) {
  if (size <= 0) rule_violation_fmt("LRN size must be positive, got {}", size, 0);
  return size;
}

/// Adaptive pooling as a fixed window (window = stride = in / out): the input length must be a
/// multiple of the output length. Returns the window.
constexpr i64 adaptive_pool_window(i64 in, i64 out) {
  positive("adaptive pooling output size must be positive, got {}", out);
  if (!known(in)) return kDynamic;
  if (in % out != 0)
    rule_violation_fmt("input length {} is not a multiple of the output length {}", in, out);
  return in / out;
}

/// A reshape target dim: -1 (inferred, at most one), 0 (copy the input dim) or positive.
constexpr i64 reshape_dim(i64 target) {
  if (target < -1)
    rule_violation_fmt("reshape target dim {} is invalid (expected -1, 0 or > 0)", target, 0);
  return target;
}

/// The product of in[begin, end), kDynamic when any of them is unknown.
constexpr i64 dims_product(std::span<const i64> in, std::size_t begin, std::size_t end) {
  i64 p = 1;
  for (std::size_t i = begin; i < end; ++i) p = known(p) && known(in[i]) ? p * in[i] : kDynamic;
  return p;
}

/// ONNX Reshape: writes the dims of reshaping `in` to `target` into `out` (one per target entry).
/// Each target entry is positive, 0 (copy the input dim at that index; with `allowzero`, a 0
/// dim) or -1 (inferred from the element count, at most one). `in` may hold kDynamic dims; the
/// output is then kDynamic where it cannot be known. The element counts are checked as
/// same_count(input's, target's), leaving out the dims a 0 copies (they may be unknown).
constexpr void reshape_dims(std::span<const i64> in, std::span<const i64> target, bool allowzero,
                            std::span<i64> out) {
  i64 infer_at = -1;
  bool has_zero = false;
  auto copied = [&](std::size_t i) { return i < target.size() && target[i] == 0 && !allowzero; };
  for (std::size_t i = 0; i < target.size(); ++i) {
    const i64 v = reshape_dim(target[i]);
    if (copied(i)) {
      if (i >= in.size())
        rule_violation_fmt(
            "reshape target dim {} is 0 (copy the input dim) but the input has rank {}",
            static_cast<i64>(i), static_cast<i64>(in.size()));
      out[i] = in[i];
    } else if (v == -1) {
      if (infer_at >= 0)
        rule_violation_fmt("reshape target has two -1 dims ({} and {})", infer_at,
                           static_cast<i64>(i));
      infer_at = static_cast<i64>(i);
    } else {
      out[i] = v;
      has_zero |= v == 0;
    }
  }
  if (infer_at >= 0 && has_zero)
    rule_violation_fmt("reshape target has a -1 (dim {}) and a 0 with allowzero = 1", infer_at, 0);
  i64 in_count = 1, out_count = 1;
  for (std::size_t i = 0; i < in.size(); ++i)
    if (!copied(i))
      in_count = known(in_count) && known(in[i]) ? count_mul(in_count, in[i]) : kDynamic;
  for (std::size_t i = 0; i < target.size(); ++i)
    if (!copied(i) && static_cast<i64>(i) != infer_at) out_count = count_mul(out_count, out[i]);
  if (infer_at < 0) {
    same_count(in_count, out_count);
    return;
  }
  if (!known(in_count)) {
    out[static_cast<std::size_t>(infer_at)] = kDynamic;
    return;
  }
  if (out_count == 0 || in_count % out_count != 0)
    rule_violation_fmt("cannot infer the -1 dim: {} elements do not divide into blocks of {}",
                       in_count, out_count);
  out[static_cast<std::size_t>(infer_at)] = in_count / out_count;
}

/// ONNX Flatten's axis, in [-rank, rank], made non-negative: the output is
/// [dims_product(in, 0, axis), dims_product(in, axis, rank)].
constexpr i64 flatten_axis(i64 axis, i64 rank) {
  if (axis < -rank || axis > rank)
    rule_violation_fmt("axis {} out of range for rank {} (Flatten accepts -rank..rank)", axis,
                       rank);
  return axis < 0 ? axis + rank : axis;
}

/// Transpose's perm: a permutation of 0..rank-1 (output dim i is input dim perm[i]).
constexpr void check_permutation(std::span<const i64> perm, i64 rank) {
  if (static_cast<i64>(perm.size()) != rank)
    rule_violation("permutation length (the input rank)", rank, static_cast<i64>(perm.size()));
  for (std::size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] < 0 || perm[i] >= rank)
      rule_violation_fmt("axis {} in the permutation is out of range for rank {}", perm[i], rank);
    for (std::size_t j = 0; j < i; ++j)
      if (perm[j] == perm[i])
        rule_violation_fmt("axis {} appears twice in the permutation (position {})", perm[i],
                           static_cast<i64>(i));
  }
}

/// check_permutation on a permutation the compiler knows: `permutation<0, 2, 1>::check(rank)` (the
/// typed DSL's transpose<axes...>).
template <i64... Axes>
struct permutation {
  static constexpr void check(i64 rank) {
    const std::array<i64, sizeof...(Axes)> perm{Axes...};
    check_permutation(perm, rank);
  }
};

// ---- detection (NonMaxSuppression, RoiAlign, MaxRoiPool) ---------------------------------------

/// The coordinates of a box: the last dim of NonMaxSuppression's boxes and RoiAlign's rois (4),
/// of MaxRoiPool's rois (5: the batch index first).
constexpr i64 box_coordinates(i64 expected, i64 got) {
  return equal_dims("box coordinates (the last dim)", expected, got);
}
/// NonMaxSuppression: scores [B, C, N] cover the batches and boxes of boxes [B, N, 4].
constexpr i64 score_batches(i64 boxes, i64 scores) {
  return equal_dims("batches in scores (dim 0, as boxes)", boxes, scores);
}
constexpr i64 score_boxes(i64 boxes, i64 scores) {
  return equal_dims("boxes in scores (dim 2, as boxes' dim 1)", boxes, scores);
}
/// RoiAlign: one batch index per roi.
constexpr i64 roi_batch_indices(i64 rois, i64 indices) {
  return equal_dims("batch_indices (one per roi)", rois, indices);
}
/// RoiAlign's output_height/output_width and MaxRoiPool's pooled_shape.
constexpr i64 pooled_dim(i64 v) { return positive("a pooled output dim must be >= 1, got {}", v); }

/// TopK: K values of a dim (0 <= K <= dim).
constexpr i64 top_k(i64 k, i64 dim) {
  if (k < 0) rule_violation_fmt("K must be non-negative, got {}", k, 0);
  if (known(dim) && k > dim) rule_violation_fmt("K = {} is larger than the axis ({})", k, dim);
  return k;
}
/// GatherND: index tuples of `tuple` values index the data's dims past batch_dims (`past`).
constexpr i64 gather_nd_tuple(i64 tuple, i64 past) {
  if (known(tuple) && tuple > past)
    rule_violation_fmt("index tuples of {} values for {} dims of data past batch_dims", tuple,
                       past);
  return tuple;
}
/// GatherND: the batch dims of indices are data's.
constexpr i64 gather_nd_batch(i64 data, i64 indices) {
  return equal_dims("batch dim of indices (data's)", data, indices);
}
/// ScatterElements: updates have the indices' shape.
constexpr i64 scatter_updates(i64 indices, i64 updates) {
  return equal_dims("updates dim (the indices' shape)", indices, updates);
}

}  // namespace kiln::rules
