// Shape rules of the attention op family: Attention (opsets 23 to 25) and RotaryEmbedding.
//   Attention, 4-D: Q [N, Hq, S, D], K [N, Hkv, L, D], V [N, Hkv, L, Dv] -> Y [N, Hq, S, Dv]
//              3-D: Q [N, S, Hq*D], K [N, L, Hkv*D], V [N, L, Hkv*Dv]  -> Y [N, S, Hq*Dv]
//     (Hq, Hkv from q_num_heads / kv_num_heads), attn_mask broadcast to [N, Hq, S, <= T],
//     past_key [N, Hkv, P, D], past_value [N, Hkv, P, Dv], nonpad_kv_seqlen [N] (i64);
//     present_key [N, Hkv, T, D], present_value [N, Hkv, T, Dv], qk_matmul_output [N, Hq, S, T]
//     with T = P + L.
//   RotaryEmbedding: X [N, H, S, D] or [N, S, H*D] (num_heads), cos/sin [max_pos, R/2] with
//     position_ids [N, S], else [N, S, R/2]; Y like X.
#include <cmath>

#include <fmt/format.h>

#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {
namespace {

using i64 = std::int64_t;

void require_float(const InferContext& ctx, std::size_t i, const char* what) {
  const DType t = ctx.input(i).dtype;
  if (!is_float(t))
    throw UnsupportedError(fmt::format("{}{} has dtype {}; this op takes f32, f64, f16 or bf16",
                                       ctx.node.where(), what, dtype_name(t)));
}

void require_dtype(const InferContext& ctx, std::size_t i, DType want, const char* what,
                   const char* of) {
  if (!ctx.has_input(i)) return;
  const DType got = ctx.input(i).dtype;
  if (got != want)
    ctx.fail(fmt::format("{} has dtype {}, expected {} (the dtype of {})", what, dtype_name(got),
                         dtype_name(want), of));
}

void require_rank(const InferContext& ctx, std::size_t i, std::size_t rank, const char* what,
                  const char* form) {
  const Shape& s = ctx.input(i).shape;
  if (s.rank() != rank)
    ctx.fail(fmt::format("{} must have rank {} ({}), got {}", what, rank, form, s.to_string()));
}

/// A dim that must equal `expected` (either may be unknown); returns the known one, else
/// `expected` (so Q's symbols name the outputs).
Dim agree(const InferContext& ctx, const std::string& what, const Dim& expected, const Dim& got) {
  checked(ctx, [&] { return rules::equal_dims(what.c_str(), expected.value(), got.value()); });
  return expected.is_fixed() || !got.is_fixed() ? expected : got;
}

Dim plus(const Dim& a, const Dim& b) {
  if (a.is_fixed() && b.is_fixed()) return Dim(a.value() + b.value());
  if (a.is_fixed() && a.value() == 0) return b;
  if (b.is_fixed() && b.value() == 0) return a;
  return Dim::dynamic();
}

/// A head-count attribute: absent (0), or positive.
i64 heads_attr(const InferContext& ctx, const char* name) {
  if (!ctx.node.has_attr(name)) return 0;
  const i64 h = ctx.node.attr_int(name);
  if (h <= 0) ctx.fail(fmt::format("attribute '{}' must be positive, got {}", name, h));
  return h;
}

std::vector<TensorType> infer_attention(const InferContext& ctx) {
  const Node& n = ctx.node;
  require_float(ctx, 0, "Q");
  require_float(ctx, 2, "V");
  const DType t1 = ctx.input(0).dtype, t2 = ctx.input(2).dtype;
  require_dtype(ctx, 1, t1, "K", "Q");
  require_dtype(ctx, 4, t1, "past_key", "Q");
  require_dtype(ctx, 5, t2, "past_value", "V");

  // Attributes.
  const i64 causal = n.attr_int("is_causal", 0);
  if (causal != 0 && causal != 1)
    ctx.fail(fmt::format("attribute 'is_causal' must be 0 or 1, got {}", causal));
  const i64 mode = n.attr_int("qk_matmul_output_mode", 0);
  if (mode < 0 || mode > 3)
    ctx.fail(fmt::format("attribute 'qk_matmul_output_mode' must be 0, 1, 2 or 3, got {}", mode));
  const double softcap = n.attr_float("softcap", 0.0);
  if (!(softcap >= 0) || std::isinf(softcap))
    ctx.fail(fmt::format("attribute 'softcap' must be a finite value >= 0, got {}", softcap));
  if (n.has_attr("scale") && !std::isfinite(n.attr_float("scale", 0.0)))
    ctx.fail(fmt::format("attribute 'scale' must be finite, got {}", n.attr_float("scale", 0.0)));
  if (n.has_attr("softmax_precision")) {
    const i64 p = n.attr_int("softmax_precision");
    if (p != 1 && p != 10 && p != 11 && p != 16)  // ONNX FLOAT, FLOAT16, DOUBLE, BFLOAT16
      ctx.fail(
          fmt::format("attribute 'softmax_precision' must be a float type (1 float, 10 float16, "
                      "11 double, 16 bfloat16), got {}",
                      p));
  }
  for (const char* w : {"left_window_size", "right_window_size"})
    if (n.attr_int(w, -1) < -1)
      ctx.fail(fmt::format("attribute '{}' must be -1 (unbounded) or >= 0, got {}", w,
                           n.attr_int(w, -1)));

  // Q, K, V as [N, heads, seq, head size].
  const Shape& q = ctx.input(0).shape;
  const Shape& k = ctx.input(1).shape;
  const Shape& v = ctx.input(2).shape;
  if (q.rank() != 3 && q.rank() != 4)
    ctx.fail(
        fmt::format("Q must have rank 3 ([N,S,q_num_heads*head_size]) or 4 "
                    "([N,q_num_heads,S,head_size]), got {}",
                    q.to_string()));
  const std::size_t rank = q.rank();
  require_rank(
      ctx, 1, rank, "K",
      rank == 3 ? "[N,L,kv_num_heads*head_size], as Q" : "[N,kv_num_heads,L,head_size], as Q");
  require_rank(
      ctx, 2, rank, "V",
      rank == 3 ? "[N,L,kv_num_heads*v_head_size], as Q" : "[N,kv_num_heads,L,v_head_size], as Q");
  const i64 q_attr = heads_attr(ctx, "q_num_heads"), kv_attr = heads_attr(ctx, "kv_num_heads");
  Dim batch = q[0];
  Dim hq, hkv, sq, skv, d, dv;
  if (rank == 3) {
    if (q_attr == 0 || kv_attr == 0)
      ctx.fail("3-D Q, K and V need the attributes 'q_num_heads' and 'kv_num_heads'");
    hq = Dim(q_attr);
    hkv = Dim(kv_attr);
    sq = q[1];
    skv = agree(ctx, "key/value sequence length (dim 1 of V = dim 1 of K)", k[1], v[1]);
    d = Dim(checked(ctx, [&] { return rules::attention_head_dim(q[2].value(), q_attr); }));
    const Dim dk(checked(ctx, [&] { return rules::attention_head_dim(k[2].value(), kv_attr); }));
    d = agree(ctx, "head size of K (its width / kv_num_heads; Q's head size)", d, dk);
    dv = Dim(checked(ctx, [&] { return rules::attention_head_dim(v[2].value(), kv_attr); }));
  } else {
    hq = q[1];
    hkv = agree(ctx, "key/value heads (dim 1 of V = dim 1 of K)", k[1], v[1]);
    if (q_attr)
      hq = agree(ctx, "query heads (attribute q_num_heads = dim 1 of Q)", Dim(q_attr), hq);
    if (kv_attr)
      hkv = agree(ctx, "key/value heads (attribute kv_num_heads = dim 1 of K)", Dim(kv_attr), hkv);
    sq = q[2];
    skv = agree(ctx, "key/value sequence length (dim 2 of V = dim 2 of K)", k[2], v[2]);
    d = agree(ctx, "head size (dim 3 of K = dim 3 of Q)", q[3], k[3]);
    dv = v[3];
  }
  batch = agree(ctx, "batch (dim 0 of K = dim 0 of Q)", batch, k[0]);
  batch = agree(ctx, "batch (dim 0 of V = dim 0 of Q)", batch, v[0]);
  if (hkv.is_fixed())
    checked(ctx, [&] { return rules::attention_kv_groups(hq.value(), hkv.value()); });

  // The key/value cache.
  if (ctx.has_input(4) != ctx.has_input(5))
    ctx.fail("past_key and past_value go together: give both or neither");
  Dim past(0);
  if (ctx.has_input(4)) {
    const std::string kform = fmt::format("[N,kv_num_heads,P,head_size] = [{},{},P,{}]",
                                          batch.to_string(), hkv.to_string(), d.to_string());
    const std::string vform = fmt::format("[N,kv_num_heads,P,v_head_size] = [{},{},P,{}]",
                                          batch.to_string(), hkv.to_string(), dv.to_string());
    require_rank(ctx, 4, 4, "past_key", kform.c_str());
    require_rank(ctx, 5, 4, "past_value", vform.c_str());
    const Shape& pk = ctx.input(4).shape;
    const Shape& pv = ctx.input(5).shape;
    agree(ctx, "batch of past_key", batch, pk[0]);
    agree(ctx, "batch of past_value", batch, pv[0]);
    agree(ctx, "key/value heads of past_key", hkv, pk[1]);
    agree(ctx, "key/value heads of past_value", hkv, pv[1]);
    agree(ctx, "head size of past_key", d, pk[3]);
    agree(ctx, "value head size of past_value", dv, pv[3]);
    past =
        agree(ctx, "past sequence length (dim 2 of past_value = dim 2 of past_key)", pk[2], pv[2]);
  }
  const Dim total = plus(past, skv);

  if (ctx.has_input(6)) {
    const TensorType& s = ctx.input(6);
    if (ctx.has_input(4))
      ctx.fail(
          "nonpad_kv_seqlen (an external cache) and past_key/past_value (a cache inside the "
          "op) do not go together");
    if (s.dtype != DType::i64)
      ctx.fail(fmt::format("nonpad_kv_seqlen must be i64, got {}", dtype_name(s.dtype)));
    if (s.shape.rank() != 1)
      ctx.fail(fmt::format("nonpad_kv_seqlen must be [N], got {}", s.shape.to_string()));
    agree(ctx, "entries of nonpad_kv_seqlen (the batch)", batch, s.shape[0]);
  }

  if (ctx.has_input(3)) {
    const TensorType& m = ctx.input(3);
    if (m.dtype != DType::boolean && !is_float(m.dtype) && !is_integer(m.dtype))
      ctx.fail(fmt::format("attn_mask must be boolean or numeric, got {}", dtype_name(m.dtype)));
    if (m.shape.rank() < 1 || m.shape.rank() > 4)
      ctx.fail(
          fmt::format("attn_mask must have rank 1 to 4 (broadcast to [N,q_num_heads,S,T]), got {}",
                      m.shape.to_string()));
    const Dim target[4] = {batch, hq, sq, total};
    const std::size_t off = 4 - m.shape.rank();
    for (std::size_t i = 0; i + 1 < m.shape.rank(); ++i) {
      const Dim& md = m.shape[i];
      const Dim& want = target[off + i];
      if (md.is_fixed() && md.value() != 1 && want.is_fixed() && md.value() != want.value())
        ctx.fail(fmt::format(
            "attn_mask {} does not broadcast to [N,q_num_heads,S,T] = [{},{},{},{}]: dim {} "
            "is {}, expected 1 or {}",
            m.shape.to_string(), batch.to_string(), hq.to_string(), sq.to_string(),
            total.to_string(), i, md.value(), want.value()));
    }
    checked(ctx, [&] {
      return rules::attention_mask_keys(m.shape[m.shape.rank() - 1].value(), total.value());
    });
  }

  const Shape y =
      rank == 3 ? Shape{batch, sq, Dim(rules::known(dv.value()) ? q_attr * dv.value() : kDynamic)}
                : Shape{batch, hq, sq, dv};
  return {TensorType{t1, y}, TensorType{t1, Shape{batch, hkv, total, d}},
          TensorType{t2, Shape{batch, hkv, total, dv}},
          TensorType{t1, Shape{batch, hq, sq, total}}};
}

std::vector<TensorType> infer_rotary(const InferContext& ctx) {
  const Node& n = ctx.node;
  require_float(ctx, 0, "input X");
  const TensorType& x = ctx.input(0);
  require_dtype(ctx, 1, x.dtype, "cos_cache", "X");
  require_dtype(ctx, 2, x.dtype, "sin_cache", "X");
  const Shape& xs = x.shape;
  const i64 heads = n.attr_int("num_heads", 0);
  if (heads < 0 || (heads == 0 && n.has_attr("num_heads")))
    ctx.fail(fmt::format("attribute 'num_heads' must be positive, got {}", heads));
  const i64 interleaved = n.attr_int("interleaved", 0);
  if (interleaved != 0 && interleaved != 1)
    ctx.fail(fmt::format("attribute 'interleaved' must be 0 or 1, got {}", interleaved));
  Dim batch, seq, head;
  if (xs.rank() == 4) {
    batch = xs[0];
    if (heads) agree(ctx, "heads (attribute num_heads = dim 1 of X)", Dim(heads), xs[1]);
    seq = xs[2];
    head = xs[3];
  } else if (xs.rank() == 3) {
    if (heads == 0)
      ctx.fail("a 3-D input [N,S,num_heads*head_size] needs the attribute 'num_heads'");
    batch = xs[0];
    seq = xs[1];
    head = Dim(checked(ctx, [&] { return rules::attention_head_dim(xs[2].value(), heads); }));
  } else {
    ctx.fail(
        fmt::format("X must have rank 4 ([N,num_heads,S,head_size]) or 3 ([N,S,hidden]), got {}",
                    xs.to_string()));
  }
  const i64 rot = checked(
      ctx, [&] { return rules::rotary_dim(n.attr_int("rotary_embedding_dim", 0), head.value()); });
  const Dim half(rules::known(rot) ? rot / 2 : kDynamic);
  const Shape& cs = ctx.input(1).shape;
  const Shape& ss = ctx.input(2).shape;
  if (cs.rank() != ss.rank())
    ctx.fail(fmt::format("cos_cache {} and sin_cache {} differ in rank", cs.to_string(),
                         ss.to_string()));
  for (std::size_t i = 0; i < cs.rank(); ++i)
    agree(ctx, fmt::format("dim {} of sin_cache (= cos_cache's)", i), cs[i], ss[i]);
  if (ctx.has_input(3)) {
    const TensorType& p = ctx.input(3);
    if (p.dtype != DType::i64 && p.dtype != DType::i32)
      ctx.fail(fmt::format("position_ids must be i64, got {}", dtype_name(p.dtype)));
    if (p.shape.rank() != 2)
      ctx.fail(fmt::format("position_ids must be [N,S] = [{},{}], got {}", batch.to_string(),
                           seq.to_string(), p.shape.to_string()));
    agree(ctx, "batch of position_ids", batch, p.shape[0]);
    agree(ctx, "sequence length of position_ids", seq, p.shape[1]);
    if (cs.rank() != 2)
      ctx.fail(fmt::format(
          "with position_ids, cos_cache must be [max_position, rotated dims / 2], got {}",
          cs.to_string()));
    agree(ctx, "columns of cos_cache (rotated dims / 2)", half, cs[1]);
  } else {
    if (cs.rank() != 3)
      ctx.fail(fmt::format("without position_ids, cos_cache must be [N,S,rotated dims / 2], got {}",
                           cs.to_string()));
    agree(ctx, "batch of cos_cache", batch, cs[0]);
    agree(ctx, "sequence length of cos_cache", seq, cs[1]);
    agree(ctx, "last dim of cos_cache (rotated dims / 2)", half, cs[2]);
  }
  return {x};
}

}  // namespace

void register_attention(OpRegistry& r) {
  r.add(schema("Attention", "attention", 3, 7, 1, 4, infer_attention));
  r.add(schema("RotaryEmbedding", "attention", 3, 4, 1, 1, infer_rotary));
}

}  // namespace kiln::ops
