// The attention family on the GPU: ONNX Attention (opsets 23 to 25) without a key/value cache,
// through kernels::attention (a tensor-core flash-attention kernel for f16 head dims 32 to 128,
// else an online-softmax kernel with one warp per query row; f32 statistics in every precision):
// or, for 16-bit problems without a mask, through cuDNN's SDPA operation where its engines are
// faster (timed as the step's tactic):
// 3-D ([B, S, heads * D]) and 4-D ([B, heads, S, D]) inputs, Q, K and V with any strides but a
// contiguous head dim (slices of one QKV product read in place), grouped and multi-query heads,
// boolean and additive masks, is_causal, scale, softcap and the sliding window. And
// RotaryEmbedding (opset 23) through kernels::rotary_embedding.
#include <cmath>

#include "attention.cuh"
#include "check.hpp"
#include "sdpa.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

namespace {

/// The operands a kernel reads, all in the precision of the first (`first`): row-major, or
/// (`any_rows`) with any strides but a contiguous last dim.
void require_dense_alike(const Node& n, std::initializer_list<const DeviceValue*> values,
                         const char* first, bool any_rows = false) {
  const kernels::Elem elem = (*values.begin())->elem();
  for (const DeviceValue* v : values) {
    const bool ok = any_rows ? v->strides.empty() || v->strides.back() == 1 : v->contiguous();
    if (!ok) unsupported(n, fmt::format("{} in a strided layout", v->describe()));
    if (v->elem() != elem)
      unsupported(n, fmt::format("{} in another precision than {}", v->describe(), first));
  }
}

/// (batch, head, sequence) strides of an Attention operand: 3-D [B, S, heads * D] or 4-D
/// [B, heads, S, D], each with its own strides (Q, K and V may be slices of one product).
kernels::HeadStrides head_strides(const DeviceValue& x, std::int64_t head_dim) {
  if (x.dims.size() == 3) return {x.strides[0], head_dim, x.strides[1]};
  return {x.strides[0], x.strides[1], x.strides[2]};
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
    require_dense_alike(n, {&q, &k, &v, &y}, "Q", true);
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
    } else {
      a.q_heads = q.dims[1];
      a.kv_heads = k.dims[1];
      a.q_len = q.dims[2];
      a.kv_len = k.dims[2];
      a.head_dim = q.dims[3];
      a.v_head_dim = v.dims[3];
    }
    a.qs = head_strides(q, a.head_dim);
    a.ks = head_strides(k, a.head_dim);
    a.vs = head_strides(v, a.v_head_dim);
    a.ys = head_strides(y, a.v_head_dim);
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
    // cuDNN's SDPA engines are candidates for 16-bit problems without a mask.
    const Precision precision = q.fp;
    if (CudnnAttention::takes(precision, a)) {
      sdpa_ = std::make_unique<CudnnAttention>(env.lib, precision, a,
                                               env.engine.options.workspace_limit);
      if (sdpa_->engines() == 0) sdpa_.reset();
    }
    if (sdpa_)
      key_ = fmt::format(
          "attention {} b{} h{}/{} s{} t{} d{}/{} q{},{},{} k{},{},{} v{},{},{} y{},{},{}",
          precision_name(precision), a.batch, a.q_heads, a.kv_heads, a.q_len, a.kv_len, a.head_dim,
          a.v_head_dim, a.qs.b, a.qs.h, a.qs.s, a.ks.b, a.ks.h, a.ks.s, a.vs.b, a.vs.h, a.vs.s,
          a.ys.b, a.ys.h, a.ys.s);
  }
  void run(const RunArgs& r) override {
    if (use_sdpa_)
      sdpa_->forward(args_.q, args_.k, args_.v, args_.y, r.workspace, r.stream);
    else
      KILN_CHECK(kernels::attention(elem_, args_, r.stream));
  }
  std::string kind() const override { return use_sdpa_ ? "cudnn-sdpa" : "attention"; }
  std::size_t workspace() const override { return use_sdpa_ ? sdpa_->workspace_bytes() : 0; }
  std::string tactic_key() const override { return key_; }
  /// kiln's kernel and each of cuDNN's engines, on scratch buffers of the step's strides (the
  /// engine times tactics before any context has an arena); the fastest stays.
  Tactic tune() override {
    const kernels::AttentionArgs& a = args_;
    auto scratch = [&](std::int64_t heads, std::int64_t len, std::int64_t dim,
                       const kernels::HeadStrides& st) {
      const std::int64_t span = (a.batch - 1) * st.b + (heads - 1) * st.h + (len - 1) * st.s + dim;
      DeviceBuffer b(static_cast<std::size_t>(std::max<std::int64_t>(span, 1)) * 4);
      b.fill_bytes(0);
      return b;
    };
    DeviceBuffer q = scratch(a.q_heads, a.q_len, a.head_dim, a.qs),
                 k = scratch(a.kv_heads, a.kv_len, a.head_dim, a.ks),
                 v = scratch(a.kv_heads, a.kv_len, a.v_head_dim, a.vs),
                 y = scratch(a.q_heads, a.q_len, a.v_head_dim, a.ys);
    kernels::AttentionArgs t = a;
    t.q = q.get();
    t.k = k.get();
    t.v = v.get();
    t.y = y.get();
    Tactic best{Tactic::Backend::kernel, 0, 0,
                time_ms([&] { KILN_CHECK(kernels::attention(elem_, t, nullptr)); })};
    for (int i = 0; i < sdpa_->engines(); ++i) {
      sdpa_->choose(i);
      DeviceBuffer ws(std::max<std::size_t>(sdpa_->workspace_bytes(), 16));
      try {
        const float ms = time_ms([&] { sdpa_->forward(t.q, t.k, t.v, t.y, ws.get(), nullptr); });
        if (ms < best.ms) best = {Tactic::Backend::cudnn_sdpa, i, sdpa_->workspace_bytes(), ms};
      } catch (const Error&) {
        continue;  // an engine that fails to run is no tactic
      }
    }
    set_tactic(best);
    return best;
  }
  void set_tactic(const Tactic& t) override {
    use_sdpa_ = sdpa_ && t.backend == Tactic::Backend::cudnn_sdpa && t.algorithm >= 0 &&
                t.algorithm < sdpa_->engines();
    if (use_sdpa_) sdpa_->choose(t.algorithm);
  }
  std::string tactic() const override {
    if (!sdpa_) return {};
    return use_sdpa_ ? fmt::format("cuDNN SDPA engine {}", sdpa_->chosen()) : "kiln's kernel";
  }

 private:
  kernels::AttentionArgs args_;
  kernels::Elem elem_ = kernels::Elem::f32;
  std::unique_ptr<CudnnAttention> sdpa_;
  bool use_sdpa_ = false;
  std::string key_;
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
