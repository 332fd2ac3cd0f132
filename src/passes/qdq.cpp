// Q/DQ propagation (explicit quantization, issue 13 item 2), the first of TensorRT's documented
// rules for Q/DQ networks: a DequantizeLinear moves forward and a QuantizeLinear backward through
// the ops that commute with them exactly, and a QuantizeLinear that then reads a
// DequantizeLinear of the same scale and zero point cancels with it. What was
//   ... -> Q -> DQ -> MaxPool -> Q -> DQ -> Conv
// becomes
//   ... -> Q -> MaxPool (on the 8-bit values) -> DQ -> Conv
// so the data-movement ops run on 8-bit tensors and each quantized operation is left with its
// input DQ and output Q next to it, the form the fused INT8 steps start from (fuse_int8, below:
// TensorRT's next rules, the weights' DQ folded into INT8 weights and the convolution or matrix
// product absorbing its input DQ, bias, residual add, activation and output Q).
//
// Exactness: with a per-tensor scale s > 0 and zero point z, DQ(x) = (x - z) * s is increasing in
// x, so it commutes with data movement (Reshape, Transpose, Flatten, Squeeze, Unsqueeze,
// Identity) and with MaxPool (padding never wins a max). Concat commutes when every input has
// the same s and z. Q(DQ(x)) = x for the same s, z and integer type (|x - z| < 2^16, so the f32
// product and quotient round back to x). Every rewrite is therefore exact on the reference.
#include <cmath>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

namespace {

bool is_q(const Node& n) { return n.op == "QuantizeLinear"; }
bool is_dq(const Node& n) { return n.op == "DequantizeLinear"; }

/// A per-tensor DequantizeLinear (or QuantizeLinear) whose scale and zero point are weights: its
/// scale (> 0), zero point (0 when absent) and integer dtype.
struct QParams {
  double scale = 0;
  double zero = 0;
  DType type = DType::u8;
  bool operator==(const QParams&) const = default;
};

/// The parameters of node `n` (a Q or DQ), if per tensor, constant and positive. `integer` is
/// the type of the 8-bit side (DQ's input, Q's output).
std::optional<QParams> params(const Graph& g, const Node& n, DType integer) {
  if (n.inputs.size() < 2 || n.outputs.size() != 1) return std::nullopt;
  if (integer != DType::i8 && integer != DType::u8 && integer != DType::f8e4m3fn)
    return std::nullopt;
  if (n.attr_int("block_size", 0) != 0) return std::nullopt;
  const Tensor* s = weight(g, n.inputs[1]);
  if (!s || s->numel() != 1) return std::nullopt;
  QParams p;
  p.scale = s->get(0);
  if (!(p.scale > 0) || !std::isfinite(p.scale)) return std::nullopt;
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
    const Tensor* z = weight(g, n.inputs[2]);
    if (!z || z->numel() != 1 || z->dtype() != integer) return std::nullopt;
    p.zero = z->get(0);
    if (integer == DType::f8e4m3fn && p.zero != 0) return std::nullopt;  // FP8 is symmetric
  }
  p.type = integer;
  return p;
}

std::optional<QParams> dq_params(const Graph& g, const Node& dq) {
  if (!is_dq(dq) || dq.inputs.empty()) return std::nullopt;
  const TensorType& out = g.type_of(dq.outputs.at(0));
  if (out.dtype != DType::f32) return std::nullopt;  // the float side kiln computes in
  return params(g, dq, g.type_of(dq.inputs[0]).dtype);
}

/// Ops that commute with a per-tensor DQ of `type`: their first input is the data, the rest
/// constants. MaxPool for the integer types only (the GPU pools int8 values, not FP8 ones).
bool moves_data(const Graph& g, const Node& n, DType type) {
  if (n.op == "MaxPool" && type != DType::i8 && type != DType::u8) return false;
  static const std::set<std::string> ops = {"Reshape",   "Transpose", "Flatten", "Squeeze",
                                            "Unsqueeze", "Identity",  "MaxPool"};
  if (!ops.count(n.op) || n.inputs.empty()) return false;
  if (n.op == "MaxPool") {
    // Indices (output 1) would not change, but keep it simple: Y only.
    if (n.outputs.size() > 1 && !n.outputs[1].empty()) return false;
  } else if (n.outputs.size() != 1) {
    return false;
  }
  for (std::size_t k = 1; k < n.inputs.size(); ++k)
    if (!n.inputs[k].empty() && !weight(g, n.inputs[k])) return false;
  return true;
}

/// The DQ producing value `v`, when `v` is read only by `reader` and is no graph output.
std::optional<std::size_t> private_dq(const Graph& g,
                                      const std::map<std::string, std::vector<std::size_t>>& r,
                                      const std::string& v, std::size_t reader) {
  const auto p = g.producer(v);
  if (!p || !is_dq(g.nodes[*p])) return std::nullopt;
  if (only_reader(g, r, v) != reader) return std::nullopt;
  return p;
}

/// A DequantizeLinear of `x` with the parameters of `like` (its scale and zero point inputs),
/// writing `out`.
Node dq_like(Graph& g, const Node& like, const std::string& x, const std::string& out) {
  Node d = like;
  d.name = g.unique_name(like.name + "_moved");
  d.inputs[0] = x;
  d.outputs = {out};
  return d;
}

/// op(DQ(x)) -> DQ(op(x)) at node j; true when it rewrote.
bool move_dq_forward(Graph& g, std::size_t j) {
  Node op = g.nodes[j];
  const auto r = readers(g);
  if (!op.inputs.empty()) {
    const auto i = private_dq(g, r, op.inputs[0], j);
    const auto p = i ? dq_params(g, g.nodes[*i]) : std::nullopt;
    if (p && moves_data(g, op, p->type)) {
      const Node dq = g.nodes[*i];
      const std::string y = op.outputs[0];
      const std::string yq = g.unique_name(y + "_quantized");
      op.inputs[0] = dq.inputs[0];
      op.outputs[0] = yq;
      g.nodes[j] = std::move(op);
      g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(j) + 1, dq_like(g, dq, yq, y));
      drop_nodes(g, {*i});
      return true;
    }
  }
  if (op.op == "Concat" && op.outputs.size() == 1 && !op.inputs.empty()) {
    std::optional<QParams> first;
    std::set<std::size_t> dqs;
    for (const auto& in : op.inputs) {
      const auto i = in.empty() ? std::nullopt : private_dq(g, r, in, j);
      if (!i || dqs.count(*i)) return false;  // an input read twice: keep it simple
      const auto p = dq_params(g, g.nodes[*i]);
      if (!p || (first && !(*p == *first))) return false;
      first = p;
      dqs.insert(*i);
    }
    const Node dq = g.nodes[*dqs.begin()];
    const std::string y = op.outputs[0];
    const std::string yq = g.unique_name(y + "_quantized");
    for (auto& in : op.inputs) in = g.nodes[*g.producer(in)].inputs[0];
    op.outputs[0] = yq;
    g.nodes[j] = std::move(op);
    g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(j) + 1, dq_like(g, dq, yq, y));
    drop_nodes(g, dqs);
    return true;
  }
  return false;
}

/// Q(op(x)) -> op(Q(x)) at node j (the Q), for an op that moves data (or MaxPool) whose output
/// only the Q reads: TensorRT's rule that quantization moves backward, so that the step before
/// the op can absorb it. Exact: a per-tensor Q is non-decreasing (rounding and saturation), so it
/// commutes with max and with data movement. True when it rewrote.
bool move_q_backward(Graph& g, std::size_t j) {
  Node q = g.nodes[j];
  if (!is_q(q) || q.outputs.size() != 1 || q.inputs.empty() || q.attr_int("saturate", 1) != 1)
    return false;
  const auto qp = params(g, q, g.type_of(q.outputs[0]).dtype);
  if (!qp) return false;
  const auto i = g.producer(q.inputs[0]);
  if (!i) return false;
  Node op = g.nodes[*i];
  if (!moves_data(g, op, qp->type) || op.outputs[0] != q.inputs[0]) return false;
  if (only_reader(g, readers(g), op.outputs[0]) != j) return false;
  if (g.type_of(op.inputs[0]).dtype != DType::f32) return false;
  const std::string y = q.outputs[0];
  const std::string xq = g.unique_name(op.inputs[0] + "_quantized");
  q.inputs[0] = op.inputs[0];
  q.outputs[0] = xq;
  q.name = g.unique_name(q.name + "_moved");
  op.inputs[0] = xq;
  op.outputs[0] = y;
  g.nodes[*i] = std::move(q);  // the Q where the op was, then the op where the Q was
  g.nodes[j] = std::move(op);
  return true;
}

/// Q(DQ(x)) -> x at node j (the Q) when both have one scale, zero point and type.
bool cancel_pair(Graph& g, std::size_t j) {
  const Node& q = g.nodes[j];
  if (!is_q(q) || q.outputs.size() != 1 || q.inputs.empty()) return false;
  if (q.attr_int("saturate", 1) != 1) return false;
  const auto i = g.producer(q.inputs[0]);
  if (!i) return false;
  const Node& dq = g.nodes[*i];
  const auto pd = dq_params(g, dq);
  const auto pq = params(g, q, g.type_of(q.outputs[0]).dtype);
  if (!pd || !pq || !(*pd == *pq)) return false;
  const std::string x = dq.inputs[0], y = q.outputs[0];
  // Readers of y read x instead; a graph output named y keeps its name (x takes it), unless x is
  // a graph input or output itself (an output cannot alias another name).
  const bool y_out = is_graph_output(g, y);
  if (y_out && (is_graph_input(g, x) || is_graph_output(g, x))) return false;
  drop_nodes(g, {j});
  if (y_out)
    rename_value(g, x, y);
  else
    rename_uses(g, y, x);
  return true;
}

// ---- the fused INT8 step ----------------------------------------------------------------------

/// A float weight that is exactly int8 values times a scale per output channel (`axis` of the
/// weight; a per-tensor scale is one such scale repeated): what DequantizeLinear of an int8
/// weight folds to (symmetric, as quantize_graph, TensorRT and ONNX Runtime quantize weights).
/// `q` is int8 with the weight's dims.
struct Int8Weight {
  Tensor q;
  std::vector<double> scale;  // per output channel
};

std::optional<Int8Weight> as_int8(const Tensor& w, std::int64_t axis) {
  if (w.dtype() != DType::f32 || w.rank() < 2 || w.numel() == 0) return std::nullopt;
  const auto dims = w.dims();
  const std::int64_t channels = dims[static_cast<std::size_t>(axis)];
  std::int64_t inner = 1, outer = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < dims.size(); ++d) inner *= dims[d];
  for (std::size_t d = 0; d < static_cast<std::size_t>(axis); ++d) outer *= dims[d];
  // Calls f(i) for each element index of channel c, until f returns false.
  auto each = [&](std::int64_t c, auto&& f) {
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t j = 0; j < inner; ++j)
        if (!f((o * channels + c) * inner + j)) return false;
    return true;
  };
  Int8Weight r{Tensor(DType::i8, dims), {}};
  for (std::int64_t c = 0; c < channels; ++c) {
    double amax = 0;
    const bool finite = each(c, [&](std::int64_t i) {
      const double a = std::fabs(w.get(i));
      amax = std::max(amax, a);
      return std::isfinite(a);
    });
    if (!finite) return std::nullopt;
    // The channel's largest |value| is qmax * scale for some integer qmax <= 127: 127 where the
    // scale came from this channel's range (calibrated weights), less where it did not (a
    // per-tensor scale, or a range that another rule set). A float channel fails at once.
    double scale = 1.0;
    bool exact = amax == 0;
    for (int qmax = 127; qmax >= 1 && !exact; --qmax) {
      scale = amax / qmax;
      exact = each(c, [&](std::int64_t i) {
        const double v = w.get(i) / scale;
        const double q = std::nearbyint(v);
        if (!(std::fabs(v - q) <= 1e-3 && q >= -128 && q <= 127)) return false;
        r.q.set(i, q);
        return true;
      });
    }
    if (!exact) return std::nullopt;
    if (amax == 0)
      each(c, [&](std::int64_t i) {
        r.q.set(i, 0.0);
        return true;
      });
    r.scale.push_back(scale);
  }
  return r;
}

/// A float weight that is FP8 E4M3 values times a scale per output channel, the scale max|w| /
/// 448 of the channel (quantize_graph's FP8 weights, folded, perhaps scaled per channel again by
/// a folded BatchNormalization): q (f8e4m3fn, the weight's dims) and the scales; nullopt unless
/// every value is q * scale to 1e-6 (a few f32 roundings; FP8 neighbours are 2^-3 apart).
std::optional<Int8Weight> as_fp8(const Tensor& w, std::int64_t axis) {
  if (w.dtype() != DType::f32 || w.rank() < 2 || w.numel() == 0) return std::nullopt;
  const auto dims = w.dims();
  const std::int64_t channels = dims[static_cast<std::size_t>(axis)];
  std::int64_t inner = 1;
  for (std::size_t d = static_cast<std::size_t>(axis) + 1; d < dims.size(); ++d) inner *= dims[d];
  std::vector<double> amax(static_cast<std::size_t>(channels), 0.0);
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    const double a = std::fabs(w.get(i));
    if (!std::isfinite(a)) return std::nullopt;
    auto& m = amax[static_cast<std::size_t>((i / inner) % channels)];
    m = std::max(m, a);
  }
  Int8Weight r{Tensor(DType::f8e4m3fn, dims), {}};
  for (double a : amax) r.scale.push_back(a == 0 ? 1.0 : static_cast<float>(a / 448.0));
  for (std::int64_t i = 0; i < w.numel(); ++i) {
    const float s = static_cast<float>(r.scale[static_cast<std::size_t>((i / inner) % channels)]);
    const float v = static_cast<float>(w.get(i));
    const std::uint8_t q = float8_from_double(DType::f8e4m3fn, v / s);
    if (std::fabs(float8_to_double(DType::f8e4m3fn, q) * s - v) > 1e-6 * std::fabs(v))
      return std::nullopt;
    r.q.raw()[i] = std::byte{q};
  }
  return r;
}

/// Whether a Q/DQ of 8-bit type `t` belongs to `format` (int8 takes int8 and uint8).
bool in_format(DType t, DType format) {
  return format == DType::f8e4m3fn ? t == DType::f8e4m3fn : (t == DType::i8 || t == DType::u8);
}

/// The fused 8-bit step at anchor node `i` (Conv, Gemm or MatMul whose data input is a per-tensor
/// DQ of a computed 8-bit value and whose weight is exactly 8-bit per output channel).
/// INT8 (`format` i8): its body computes what an INT8 kernel does, exactly: ConvInteger/
/// MatMulInteger (int32 accumulation of the 8-bit values minus the input's zero point), the
/// accumulator as f32 times x_scale * w_scale per output channel, + bias, + a residual DQ(r), Relu,
/// then QuantizeLinear (round half to even, saturation) when the output is quantized again, else
/// the f32 value.
/// FP8 (f8e4m3fn): DQ(x), DQ(W) of the FP8 weight with its per-channel scales, the product in
/// float (what an FP8 tensor core computes, in f32), + bias, + a residual DQ(r), Relu, Q.
/// True when it rewrote.
bool fuse_8bit_at(Graph& g, std::size_t i, DType format) {
  const bool fp8 = format == DType::f8e4m3fn;
  const Node anchor = g.nodes[i];
  const bool conv = anchor.op == "Conv";
  const bool gemm = anchor.op == "Gemm";
  if (!conv && !gemm && anchor.op != "MatMul") return false;
  if (anchor.outputs.size() != 1 || anchor.inputs.size() < 2) return false;
  if (gemm && (anchor.attr_int("transA", 0) != 0 || anchor.attr_float("alpha", 1.0) != 1.0 ||
               anchor.attr_float("beta", 1.0) != 1.0))
    return false;
  const auto xp = g.producer(anchor.inputs[0]);
  if (!xp) return false;
  const Node xdq = g.nodes[*xp];
  const auto x_params = dq_params(g, xdq);
  if (!x_params || weight(g, xdq.inputs[0]) || !in_format(x_params->type, format)) return false;
  const Tensor* w = weight(g, anchor.inputs[1]);
  if (!w) return false;
  const bool trans_b = gemm && anchor.attr_int("transB", 0) != 0;
  if (!conv && (w->rank() != 2 || g.type_of(anchor.inputs[0]).shape.rank() < 2)) return false;
  if (gemm && g.type_of(anchor.inputs[0]).shape.rank() != 2) return false;
  auto q = fp8 ? as_fp8(*w, conv || trans_b ? 0 : 1) : as_int8(*w, conv || trans_b ? 0 : 1);
  if (!q) return false;
  const std::int64_t channels = conv || trans_b ? w->dim(0) : w->dim(1);
  const Tensor* bias = nullptr;
  if (anchor.inputs.size() > 2 && !anchor.inputs[2].empty()) {
    bias = weight(g, anchor.inputs[2]);
    if (!bias || bias->dtype() != DType::f32 || bias->numel() != channels) return false;
  }

  const auto r = readers(g);
  std::string v = anchor.outputs[0];
  // A MatMul's bias is the Add of a constant row after it (how exporters write a Linear layer).
  std::optional<std::size_t> bias_add;
  if (!conv && !gemm && !bias)
    if (const auto j = only_reader(g, r, v)) {
      const Node& n = g.nodes[*j];
      if (n.op == "Add" && n.inputs.size() == 2 && n.outputs.size() == 1 &&
          n.inputs[0] != n.inputs[1]) {
        const Tensor* b = weight(g, n.inputs[0] == v ? n.inputs[1] : n.inputs[0]);
        if (b && b->dtype() == DType::f32 && b->numel() == channels && b->rank() >= 1 &&
            b->dims().back() == channels && g.type_of(n.outputs[0]) == g.type_of(v)) {
          bias = b;
          bias_add = j;
          v = n.outputs[0];
        }
      }
    }

  // The chain after it: [Add(DQ(r))] [Relu] [QuantizeLinear], each value read once.
  std::vector<std::size_t> chain;
  std::optional<std::size_t> residual_dq, out_q;
  bool relu = false;
  while (auto j = only_reader(g, r, v)) {
    const Node& n = g.nodes[*j];
    if (n.outputs.size() != 1) break;
    if (n.op == "Add" && !residual_dq && !relu && !out_q && n.inputs.size() == 2) {
      const std::string& other = n.inputs[0] == v ? n.inputs[1] : n.inputs[0];
      const auto p = g.producer(other);
      const auto rp = p ? dq_params(g, g.nodes[*p]) : std::nullopt;
      if (!rp || !in_format(rp->type, format) || weight(g, g.nodes[*p].inputs[0]) ||
          g.type_of(other) != g.type_of(v) || g.type_of(n.outputs[0]) != g.type_of(v))
        break;
      residual_dq = p;
    } else if (n.op == "Relu" && !relu) {
      relu = true;
    } else if (is_q(n) && n.attr_int("saturate", 1) == 1 &&
               params(g, n, g.type_of(n.outputs[0]).dtype) &&
               in_format(g.type_of(n.outputs[0]).dtype, format)) {
      out_q = j;
    } else {
      break;
    }
    chain.push_back(*j);
    v = n.outputs[0];
    if (out_q) break;
  }

  // The weights of the step.
  const std::string base = anchor.name.empty() ? anchor.outputs[0] : anchor.name;
  std::vector<std::int64_t> per_channel_dims{channels};
  if (conv) {
    per_channel_dims = std::vector<std::int64_t>(w->rank(), 1);
    per_channel_dims[1] = channels;
  }
  auto add_weight = [&](const std::string& suffix, Tensor t) {
    const std::string n = g.unique_name(base + suffix);
    g.weights[n] = std::move(t);
    return n;
  };
  std::string zn;
  if (xdq.inputs.size() > 2 && !xdq.inputs[2].empty()) {
    zn = xdq.inputs[2];
  } else {
    zn = add_weight(".input_zero_point", Tensor(x_params->type, std::vector<std::int64_t>{}));
  }
  std::vector<std::string> inputs;
  auto ref = [&](const std::string& name) {
    inputs.push_back(name);
    return fused_input_ref(inputs.size() - 1);
  };
  FusedBody body;
  auto part = [&](const std::string& op, const std::string& name, std::vector<std::string> in,
                  const std::string& out, std::map<std::string, Attribute> attrs = {}) {
    Node p;
    p.op = op;
    p.name = name;
    p.inputs = std::move(in);
    p.outputs = {out};
    p.attrs = std::move(attrs);
    body.parts.push_back(std::move(p));
    return out;
  };
  const std::string y0 = anchor.outputs[0];
  std::string cur;
  if (fp8) {
    // Inputs x_q, x_scale, x_zero_point, W_q, W_scale; the product of the dequantized values.
    Tensor ws(DType::f32, {channels});
    for (std::int64_t c = 0; c < channels; ++c) ws.set(c, q->scale[static_cast<std::size_t>(c)]);
    const std::string wn = add_weight(".fp8_weight", std::move(q->q));
    const std::string sn = add_weight(".fp8_scale", std::move(ws));
    const std::string xf = part("DequantizeLinear", xdq.name,
                                {ref(xdq.inputs[0]), ref(xdq.inputs[1]), ref(zn)}, y0 + ".x");
    const std::int64_t axis = conv || trans_b ? 0 : 1;
    const std::string wf =
        part("DequantizeLinear", base + ".weight", {ref(wn), ref(sn)}, y0 + ".w", {{"axis", axis}});
    std::map<std::string, Attribute> attrs = anchor.attrs;
    attrs.erase("beta");  // Gemm: the bias is its own part
    cur = part(anchor.op, anchor.name, {xf, wf}, bias ? y0 + ".product" : y0, attrs);
  } else {
    Tensor wq = std::move(q->q);
    if (trans_b) {  // [N, K] -> [K, N] for MatMulInteger
      Tensor t(DType::i8, {w->dim(1), w->dim(0)});
      for (std::int64_t a = 0; a < w->dim(0); ++a)
        for (std::int64_t b = 0; b < w->dim(1); ++b)
          t.set(b * w->dim(0) + a, wq.get(a * w->dim(1) + b));
      wq = std::move(t);
    }
    Tensor mult(DType::f32, per_channel_dims);
    for (std::int64_t c = 0; c < channels; ++c)
      mult.set(c, x_params->scale * q->scale[static_cast<std::size_t>(c)]);
    const std::string wn = add_weight(".int8_weight", std::move(wq));
    const std::string mn = add_weight(".int8_scale", std::move(mult));
    // The body: inputs x_q, W_q, x_zero_point, multiplier, then the rest as they come.
    for (const std::string& in : {xdq.inputs[0], wn, zn, mn}) ref(in);
    std::map<std::string, Attribute> conv_attrs;
    if (conv) conv_attrs = anchor.attrs;
    cur = part(conv ? "ConvInteger" : "MatMulInteger", anchor.name, {"$0", "$1", "$2"},
               y0 + ".int32", conv_attrs);
    cur = part("Cast", anchor.name + ".float", {cur}, y0 + ".int32_f32",
               {{"to", static_cast<std::int64_t>(1)}});
    cur = part("Mul", anchor.name + ".scale", {cur, "$3"}, bias ? y0 + ".scaled" : y0);
  }
  if (bias) {
    const Node* add = bias_add ? &g.nodes[*bias_add] : nullptr;
    cur = part("Add", add ? add->name : anchor.name + ".bias",
               {cur, ref(add_weight(".bias", bias->reshaped(per_channel_dims)))},
               add ? add->outputs[0] : y0);
  }
  for (std::size_t j : chain) {
    const Node& n = g.nodes[j];
    if (n.op == "Add") {
      const Node& dq = g.nodes[*residual_dq];
      std::vector<std::string> dq_in;
      for (const auto& in : dq.inputs) dq_in.push_back(in.empty() ? in : ref(in));
      const std::string rf = part("DequantizeLinear", dq.name, dq_in, dq.outputs[0], dq.attrs);
      cur = part("Add", n.name, {cur, rf}, n.outputs[0]);
    } else if (n.op == "Relu") {
      cur = part("Relu", n.name, {cur}, n.outputs[0]);
    } else {
      std::vector<std::string> q_in{cur};
      for (std::size_t k = 1; k < n.inputs.size(); ++k)
        q_in.push_back(n.inputs[k].empty() ? n.inputs[k] : ref(n.inputs[k]));
      cur = part("QuantizeLinear", n.name, q_in, n.outputs[0], n.attrs);
    }
  }
  body.results = {cur};
  // Placed at the chain's last node: every input exists there, every reader comes after.
  const std::size_t at = !chain.empty() ? chain.back() : bias_add ? *bias_add : i;
  g.nodes[at] = make_fused_node(base, inputs, {cur}, body);
  std::set<std::size_t> drop(chain.begin(), chain.end());
  if (bias_add) drop.insert(*bias_add);
  drop.insert(i);
  drop.erase(at);
  drop_nodes(g, drop);
  return true;
}

}  // namespace

int fuse_int8(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kInt8)) return 0;
  const int n = until_fixed(g, [&](std::size_t i) {
    return fuse_8bit_at(g, i, DType::i8) || fuse_8bit_at(g, i, DType::f8e4m3fn);
  });
  if (n) eliminate_dead(g, ctx);  // input DQs and float weights left without readers
  return n;
}

int propagate_qdq(Graph& g, const PassContext& ctx) {
  if (!ctx.tgt().can_fuse(plan::fusion::kQdqPropagation)) return 0;
  int n = until_fixed(g, [&](std::size_t j) { return move_dq_forward(g, j); });
  n += until_fixed(g, [&](std::size_t j) { return move_q_backward(g, j); });
  n += until_fixed(g, [&](std::size_t j) { return cancel_pair(g, j); });
  if (n) eliminate_dead(g, ctx);  // DQs left without readers
  return n;
}

}  // namespace kiln::build
