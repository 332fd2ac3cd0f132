// Reference kernels of the attention op family: Attention (ONNX opsets 23 to 25) and
// RotaryEmbedding, computed in double and stored in the output's dtype. Shapes are checked by
// the op's one shape rule (src/ir/ops/attention.cpp), run here on the actual tensors; the kernels
// check only what a shape cannot say (sequence lengths, position ids).
//
// Attention, per batch b and query head h (key/value head g = h / (Hq / Hkv)):
//   K', V'  = concat(past, K / V) along the sequence         present_key / present_value
//   s[i,j]  = scale * Q[i] . K'[j]                           qk_matmul_output mode 0
//   s       = softcap * tanh(s / softcap)   (softcap > 0)    mode 1
//   x       = s + bias                                       mode 2
//   p       = softmax(x) along j; 0 where every bias is -inf mode 3
//   Y[i]    = sum_j p[i,j] V'[j]
// bias[i,j] adds: attn_mask (boolean: 0 or -inf; numeric: its value; -inf past its last dim),
// the causal frontier (-inf where j > i + offset), the sliding window of opset 25 (-inf outside
// [i + offset - left, i + offset + right]) and the padding of nonpad_kv_seqlen (-inf where
// j >= nonpad_kv_seqlen[b]). offset = past length, else nonpad_kv_seqlen[b] - S, else 0.
// softmax_precision asks for at least that precision; double meets every one.
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "families.hpp"
#include "kiln/ir/op_registry.hpp"
#include "nn_util.hpp"

namespace kiln::reference {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

std::vector<i64> dims_of(const TensorType& t) { return t.shape.values(); }

void attention(KernelContext& ctx) {
  const std::vector<TensorType> out_types = check_shapes(ctx);
  const Node& n = ctx.node;
  const Tensor& Q = ctx.in(0);
  const Tensor& K = ctx.in(1);
  const Tensor& V = ctx.in(2);
  const bool rank3 = Q.rank() == 3;
  // [N, heads, seq, head size] of each input, read from the output types the rule gave.
  const std::vector<i64> pk_dims = dims_of(out_types[1]), pv_dims = dims_of(out_types[2]),
                         qk_dims = dims_of(out_types[3]);
  const i64 B = qk_dims[0], Hq = qk_dims[1], S = qk_dims[2], T = qk_dims[3];
  const i64 Hkv = pk_dims[1], D = pk_dims[3], Dv = pv_dims[3];
  const i64 L = rank3 ? K.dim(1) : K.dim(2);
  const i64 P = T - L;
  const i64 group = Hq / Hkv;

  const double scale =
      n.has_attr("scale") ? n.attr_float("scale", 0.0) : 1.0 / std::sqrt(static_cast<double>(D));
  const double softcap = n.attr_float("softcap", 0.0);
  const bool causal = n.attr_int("is_causal", 0) != 0;
  const i64 left = n.attr_int("left_window_size", -1), right = n.attr_int("right_window_size", -1);
  const i64 mode = n.attr_int("qk_matmul_output_mode", 0);

  // present_key / present_value [N, Hkv, T, D|Dv]: the past, then the new keys and values.
  auto present = [&](const Tensor& x, const Tensor* past, i64 hd) {
    const std::vector<double> xv = to_f64(x);
    const std::vector<double> pv = past ? to_f64(*past) : std::vector<double>{};
    std::vector<double> out(static_cast<std::size_t>(B * Hkv * T * hd));
    for (i64 b = 0; b < B; ++b)
      for (i64 g = 0; g < Hkv; ++g)
        for (i64 t = 0; t < T; ++t) {
          double* dst = out.data() + ((b * Hkv + g) * T + t) * hd;
          const double* src = t < P   ? pv.data() + ((b * Hkv + g) * P + t) * hd
                              : rank3 ? xv.data() + ((b * L + (t - P)) * Hkv + g) * hd
                                      : xv.data() + ((b * Hkv + g) * L + (t - P)) * hd;
          std::copy_n(src, hd, dst);
        }
    return out;
  };
  const std::vector<double> pk = present(K, ctx.has(4) ? &ctx.in(4) : nullptr, D);
  const std::vector<double> pv = present(V, ctx.has(5) ? &ctx.in(5) : nullptr, Dv);
  const std::vector<double> q = to_f64(Q);

  // attn_mask, its dims left-padded to 4.
  std::vector<double> mask;
  std::array<i64, 4> md{1, 1, 1, 1};
  bool mask_bool = false;
  if (ctx.has(3)) {
    const Tensor& M = ctx.in(3);
    mask = to_f64(M);
    mask_bool = M.dtype() == DType::boolean;
    for (std::size_t i = 0; i < M.rank(); ++i) md[4 - M.rank() + i] = M.dim(i);
  }
  std::vector<i64> nonpad;
  if (ctx.has(6)) {
    nonpad = ctx.in(6).to_int64s();
    for (i64 b = 0; b < B; ++b)
      if (nonpad[b] < 0 || nonpad[b] > T)
        ctx.fail(fmt::format(
            "nonpad_kv_seqlen[{}] = {} is outside 0..{} (the key/value sequence length)", b,
            nonpad[b], T));
  }

  const bool want_qk = ctx.wants(3);
  std::vector<double> y(static_cast<std::size_t>(B * Hq * S * Dv), 0.0);
  std::vector<double> qk(want_qk ? static_cast<std::size_t>(B * Hq * S * T) : 0);
  std::vector<double> qbh(static_cast<std::size_t>(S * D)), scores(static_cast<std::size_t>(S * T)),
      ybh(static_cast<std::size_t>(S * Dv)), bias(static_cast<std::size_t>(T));
  for (i64 b = 0; b < B; ++b) {
    const i64 offset = ctx.has(4) ? P : (ctx.has(6) ? nonpad[b] - S : 0);
    for (i64 h = 0; h < Hq; ++h) {
      const i64 g = h / group;
      for (i64 i = 0; i < S; ++i)
        std::copy_n(q.data() + (rank3 ? ((b * S + i) * Hq + h) * D : ((b * Hq + h) * S + i) * D), D,
                    qbh.data() + i * D);
      gemm_f64(false, true, S, T, D, scale, qbh.data(), D, pk.data() + (b * Hkv + g) * T * D, D,
               0.0, scores.data(), T);
      for (i64 i = 0; i < S; ++i) {
        double* s = scores.data() + i * T;
        double* out = want_qk ? qk.data() + ((b * Hq + h) * S + i) * T : nullptr;
        if (out && mode == 0) std::copy_n(s, T, out);
        if (softcap > 0)
          for (i64 j = 0; j < T; ++j) s[j] = softcap * std::tanh(s[j] / softcap);
        if (out && mode == 1) std::copy_n(s, T, out);
        bool all_masked = true;
        const i64 pos = i + offset;  // the query's place among the keys
        for (i64 j = 0; j < T; ++j) {
          double v = 0.0;
          if (!mask.empty()) {
            if (j >= md[3]) {
              v = kNegInf;
            } else {
              const i64 at = (((md[0] == 1 ? 0 : b) * md[1] + (md[1] == 1 ? 0 : h)) * md[2] +
                              (md[2] == 1 ? 0 : i)) *
                                 md[3] +
                             j;
              v = mask_bool ? (mask[at] != 0 ? 0.0 : kNegInf) : mask[at];
            }
          }
          if (causal && j > pos) v += kNegInf;
          if (left >= 0 && j < pos - left) v += kNegInf;
          if (right >= 0 && j > pos + right) v += kNegInf;
          if (!nonpad.empty() && j >= nonpad[b]) v += kNegInf;
          bias[j] = v;
          all_masked = all_masked && v == kNegInf;
          s[j] += v;
        }
        if (out && mode == 2) std::copy_n(s, T, out);
        if (all_masked) {
          std::fill_n(s, T, 0.0);
        } else {
          double mx = kNegInf;
          for (i64 j = 0; j < T; ++j) mx = std::max(mx, s[j]);
          double sum = 0;
          for (i64 j = 0; j < T; ++j) sum += (s[j] = std::exp(s[j] - mx));
          for (i64 j = 0; j < T; ++j) s[j] /= sum;
        }
        if (out && mode == 3) std::copy_n(s, T, out);
      }
      gemm_f64(false, false, S, Dv, T, 1.0, scores.data(), T, pv.data() + (b * Hkv + g) * T * Dv,
               Dv, 0.0, ybh.data(), Dv);
      for (i64 i = 0; i < S; ++i)
        std::copy_n(ybh.data() + i * Dv, Dv,
                    y.data() + (rank3 ? ((b * S + i) * Hq + h) * Dv : ((b * Hq + h) * S + i) * Dv));
    }
  }
  ctx.set(0, from_f64(out_types[0].dtype, dims_of(out_types[0]), y));
  if (ctx.wants(1)) ctx.set(1, from_f64(out_types[1].dtype, pk_dims, pk));
  if (ctx.wants(2)) ctx.set(2, from_f64(out_types[2].dtype, pv_dims, pv));
  if (want_qk) ctx.set(3, from_f64(out_types[3].dtype, qk_dims, qk));
}

void rotary_embedding(KernelContext& ctx) {
  check_shapes(ctx);
  const Node& n = ctx.node;
  const Tensor& X = ctx.in(0);
  const bool rank3 = X.rank() == 3;
  const i64 B = X.dim(0);
  const i64 H = rank3 ? n.attr_int("num_heads") : X.dim(1);
  const i64 S = rank3 ? X.dim(1) : X.dim(2);
  const i64 D = rank3 ? X.dim(2) / H : X.dim(3);
  const i64 R =
      n.attr_int("rotary_embedding_dim", 0) == 0 ? D : n.attr_int("rotary_embedding_dim", 0);
  const i64 half = R / 2;
  const bool interleaved = n.attr_int("interleaved", 0) != 0;
  const std::vector<double> x = to_f64(X), cos = to_f64(ctx.in(1)), sin = to_f64(ctx.in(2));
  std::vector<i64> rows(static_cast<std::size_t>(B * S));  // the cache row of each (b, s)
  if (ctx.has(3)) {
    const std::vector<i64> pos = ctx.in(3).to_int64s();
    const i64 max_pos = ctx.in(1).dim(0);
    for (i64 r = 0; r < B * S; ++r) {
      if (pos[r] < 0 || pos[r] >= max_pos)
        ctx.fail(fmt::format("position_ids[{}][{}] = {} is outside 0..{} (the rows of cos_cache)",
                             r / S, r % S, pos[r], max_pos - 1));
      rows[r] = pos[r];
    }
  } else {
    for (i64 r = 0; r < B * S; ++r) rows[r] = r;
  }
  std::vector<double> y = x;
  for (i64 b = 0; b < B; ++b)
    for (i64 h = 0; h < H; ++h)
      for (i64 s = 0; s < S; ++s) {
        const i64 at = rank3 ? ((b * S + s) * H + h) * D : ((b * H + h) * S + s) * D;
        const double* c = cos.data() + rows[b * S + s] * half;
        const double* sn = sin.data() + rows[b * S + s] * half;
        for (i64 k = 0; k < half; ++k) {
          const i64 i1 = interleaved ? 2 * k : k, i2 = interleaved ? 2 * k + 1 : k + half;
          const double x1 = x[at + i1], x2 = x[at + i2];
          y[at + i1] = c[k] * x1 - sn[k] * x2;
          y[at + i2] = sn[k] * x1 + c[k] * x2;
        }
      }
  ctx.set(0, from_f64(X.dtype(), X.dims(), y));
}

}  // namespace

void register_attention(KernelRegistry& r) {
  r.add("Attention", attention);
  r.add("RotaryEmbedding", rotary_embedding);
}

}  // namespace kiln::reference
