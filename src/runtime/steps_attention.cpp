// The attention family on the GPU: ONNX Attention (opsets 23 to 25) without a key/value cache,
// through kernels::attention (a tensor-core flash-attention kernel for f16 head dims 32 to 128,
// else an online-softmax kernel with one warp per query row; f32 statistics in every precision):
// 3-D ([B, S, heads * D]) and 4-D ([B, heads, S, D]) inputs, grouped and multi-query heads,
// boolean and additive masks, is_causal, scale, softcap and the sliding window. And
// RotaryEmbedding (opset 23) through kernels::rotary_embedding.
#include <cmath>

#include "attention.cuh"
#include "check.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

/// The operands a kernel reads row-major, all in the precision of the first (`first`).
void require_dense_alike(const Node& n, std::initializer_list<const DeviceValue*> values,
                         const char* first) {
  const kernels::Elem elem = (*values.begin())->elem();
  for (const DeviceValue* v : values) {
    if (!v->contiguous()) unsupported(n, fmt::format("{} in a strided layout", v->describe()));
    if (v->elem() != elem)
      unsupported(n, fmt::format("{} in another precision than {}", v->describe(), first));
  }
}

class AttentionStep final : public Step {
 public:
  explicit AttentionStep(const StepEnv& env) {
    const Node& n = env.node;
    for (std::size_t i = 4; i < n.inputs.size(); ++i)
      if (!n.inputs[i].empty())
        unsupported(n, i == 6 ? "nonpad_kv_seqlen" : "a key/value cache (past_key, past_value)");
    for (std::size_t o = 1; o < n.outputs.size(); ++o)
      if (!n.outputs[o].empty())
        unsupported(n,
                    o == 3 ? "the qk_matmul_output output" : "present_key/present_value outputs");
    const DeviceValue q = env.value(n.inputs.at(0)), k = env.value(n.inputs.at(1)),
                      v = env.value(n.inputs.at(2)), y = env.value(n.outputs.at(0));
    require_dense_alike(n, {&q, &k, &v, &y}, "Q");
    elem_ = q.elem();
    const bool rank3 = q.dims.size() == 3;
    auto& a = args_;
    a.batch = q.dims[0];
    if (rank3) {
      a.q_heads = n.attr_int("q_num_heads", 0);
      a.kv_heads = n.attr_int("kv_num_heads", 0);
      if (a.q_heads <= 0 || a.kv_heads <= 0)
        unsupported(n, "3-D inputs without q_num_heads/kv_num_heads");
      a.q_len = q.dims[1];
      a.kv_len = k.dims[1];
      a.head_dim = q.dims[2] / a.q_heads;
      a.v_head_dim = v.dims[2] / a.kv_heads;
      // [B, S, heads, D] in memory.
      a.qs = {q.dims[1] * q.dims[2], a.head_dim, q.dims[2]};
      a.ks = {k.dims[1] * k.dims[2], a.head_dim, k.dims[2]};
      a.vs = {v.dims[1] * v.dims[2], a.v_head_dim, v.dims[2]};
      a.ys = {y.dims[1] * y.dims[2], a.v_head_dim, y.dims[2]};
    } else {
      a.q_heads = q.dims[1];
      a.kv_heads = k.dims[1];
      a.q_len = q.dims[2];
      a.kv_len = k.dims[2];
      a.head_dim = q.dims[3];
      a.v_head_dim = v.dims[3];
      auto bhs = [](const DeviceValue& x) {
        return kernels::HeadStrides{x.dims[1] * x.dims[2] * x.dims[3], x.dims[2] * x.dims[3],
                                    x.dims[3]};
      };
      a.qs = bhs(q);
      a.ks = bhs(k);
      a.vs = bhs(v);
      a.ys = bhs(y);
    }
    if (a.head_dim > kernels::kMaxAttentionHeadDim || a.v_head_dim > kernels::kMaxAttentionHeadDim)
      unsupported(n,
                  fmt::format("head size {} (the GPU kernel takes at most {})",
                              std::max(a.head_dim, a.v_head_dim), kernels::kMaxAttentionHeadDim));
    a.q = pointer_of(env, q);
    a.k = pointer_of(env, k);
    a.v = pointer_of(env, v);
    a.y = y.ptr;
    a.scale =
        static_cast<float>(n.has_attr("scale") ? n.attr_float("scale", 0.0)
                                               : 1.0 / std::sqrt(static_cast<double>(a.head_dim)));
    a.softcap = static_cast<float>(n.attr_float("softcap", 0.0));
    a.causal = n.attr_int("is_causal", 0) != 0;
    a.left_window = n.attr_int("left_window_size", -1);
    a.right_window = n.attr_int("right_window_size", -1);
    if (n.has_input(3)) {
      const DeviceValue m = env.value(n.inputs[3]);
      if (!m.contiguous())
        unsupported(n, fmt::format("attn_mask {} in a strided layout", m.describe()));
      if (m.dtype == DType::boolean) {
        a.mask_kind = 1;
      } else {
        if (m.elem() != elem_)
          unsupported(n, fmt::format("attn_mask {} in another precision than Q", m.describe()));
        a.mask_kind = 2;
      }
      if (m.dims.size() > 4) unsupported(n, "an attn_mask of rank > 4");
      for (std::size_t d = 0; d < m.dims.size(); ++d)
        a.mask_dims[4 - m.dims.size() + d] = m.dims[d];
      a.mask = pointer_of(env, m);
    }
  }
  void run(const RunArgs& r) override { KILN_CHECK(kernels::attention(elem_, args_, r.stream)); }
  std::string kind() const override { return "attention"; }

 private:
  kernels::AttentionArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

/// ONNX RotaryEmbedding (opset 23): 3-D [B, S, heads * D] (num_heads) or 4-D [B, heads, S, D]
/// input, caches [positions, rotary_dim / 2] with position_ids or [B, S, rotary_dim / 2] without,
/// interleaved or halves, a partial rotary_embedding_dim.
class RotaryStep final : public Step {
 public:
  explicit RotaryStep(const StepEnv& env) {
    const Node& n = env.node;
    const DeviceValue x = env.value(n.inputs.at(0)), c = env.value(n.inputs.at(1)),
                      s = env.value(n.inputs.at(2)), y = env.value(n.outputs.at(0));
    require_dense_alike(n, {&x, &c, &s, &y}, "the input");
    elem_ = x.elem();
    auto& a = args_;
    a.rank3 = x.dims.size() == 3;
    a.batch = x.dims[0];
    a.heads = a.rank3 ? n.attr_int("num_heads", 0) : x.dims[1];
    if (a.heads <= 0) unsupported(n, "a 3-D input without num_heads");
    a.seq = a.rank3 ? x.dims[1] : x.dims[2];
    a.head_dim = a.rank3 ? x.dims[2] / a.heads : x.dims[3];
    a.rotary_dim = n.attr_int("rotary_embedding_dim", 0) == 0
                       ? a.head_dim
                       : n.attr_int("rotary_embedding_dim", 0);
    a.interleaved = n.attr_int("interleaved", 0) != 0;
    a.cache_rows = c.dims.size() == 2 ? c.dims[0] : c.dims[0] * c.dims[1];  // [B, S, R/2]: b*S+s
    a.x = pointer_of(env, x);
    a.y = y.ptr;
    a.cos = pointer_of(env, c);
    a.sin = pointer_of(env, s);
    if (n.has_input(3)) {
      const DeviceValue p = env.value(n.inputs[3]);
      if (p.dtype != DType::i64 || !p.contiguous())
        unsupported(n, fmt::format("position_ids {} (int64, contiguous)", p.describe()));
      a.positions = static_cast<const std::int64_t*>(pointer_of(env, p));
    }
  }
  void run(const RunArgs& r) override {
    KILN_CHECK(kernels::rotary_embedding(elem_, args_, r.stream));
  }
  std::string kind() const override { return "rotary"; }

 private:
  kernels::RotaryArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
};

}  // namespace

void register_attention_steps(StepRegistry& r) {
  r.add("Attention", [](const StepEnv& env, const FusedBody&) -> std::unique_ptr<Step> {
    return std::make_unique<AttentionStep>(env);
  });
  r.add("RotaryEmbedding", [](const StepEnv& env, const FusedBody&) -> std::unique_ptr<Step> {
    return std::make_unique<RotaryStep>(env);
  });
}

}  // namespace kiln::runtime::detail
