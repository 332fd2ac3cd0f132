// The transformer kernels against the CPU reference: LayerNormalization and RMSNormalization
// (kernels::row_norm: widths of BERT and GPT, f32 statistics in f16, a residual added first, the
// Mean and InvStdDev outputs) and Attention (kernels::attention: BERT-base's heads, causal,
// additive and boolean masks, grouped heads, softcap, a sliding window; the tensor-core kernel in
// f16 and bf16), RotaryEmbedding, a whole encoder layer built for cuda, cuda-fp16 and
// cuda-bf16, and Q/K/V projections joined into one product whose slices Attention reads in place.
#include "attention.cuh"
#include "gpu_check.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"
#include "norm.cuh"
#include "runtime/sdpa.hpp"

using namespace gpu_test;
namespace kk = kiln::kernels;

namespace {

/// Weights and nodes of a test graph, named by a counter.
struct GraphMaker {
  kiln::Graph g;
  int counter = 0;
  std::string w(std::vector<i64> dims, float lo = -0.2f, float hi = 0.2f) {
    const std::string n = fmt::format("w{}", counter++);
    g.weights[n] = tensor(dims, random_values(numel(dims), lo, hi));
    return n;
  }
  std::string c(float v) {
    const std::string n = fmt::format("c{}", counter++);
    g.weights[n] = kiln::Tensor::scalar(v);
    return n;
  }
  std::string ints(std::vector<i64> v) {
    const std::string n = fmt::format("i{}", counter++);
    g.weights[n] = tensor_i64({static_cast<i64>(v.size())}, v);
    return n;
  }
  std::string op(const std::string& o, std::vector<std::string> in,
                 std::map<std::string, kiln::Attribute> a = {}) {
    kiln::Node n;
    n.op = o;
    n.name = fmt::format("{}_{}", o, counter++);
    n.inputs = std::move(in);
    n.outputs = {n.name};
    n.attrs = std::move(a);
    return g.add_node(std::move(n)).outputs[0];
  }
  std::string linear(const std::string& x, i64 in, i64 out) {
    return op("Add", {op("MatMul", {x, w({in, out})}), w({out})});
  }
  std::string layer_norm(const std::string& x, i64 e) {
    auto mean = op("ReduceMean", {x, ints({-1})});
    auto dev = op("Sub", {x, mean});
    auto var = op("ReduceMean", {op("Pow", {dev, c(2.f)}), ints({-1})});
    auto y = op("Div", {dev, op("Sqrt", {op("Add", {var, c(1e-5f)})})});
    return op("Add", {op("Mul", {y, w({e}, 0.5f, 1.5f)}), w({e})});
  }
};

/// A post-norm encoder layer as PyTorch 1.13's TorchScript exporter writes
/// nn.TransformerEncoderLayer (width E, H heads, sequence S, batch B): Q/K/V as MatMul + bias,
/// heads split by Reshape and Transpose into [B*H, S, D], Q divided by sqrt(D), MatMul with K^T, an
/// additive causal mask, Softmax, MatMul with V, heads merged, the output projection, residual,
/// LayerNorm written out (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), the MLP with
/// the Erf GELU.
struct EncoderGraph : GraphMaker {
  EncoderGraph(i64 B, i64 S, i64 E, i64 H) {
    const i64 D = E / H;
    g.name = "encoder_layer";
    g.inputs.push_back(
        {"x", {kiln::DType::f32, kiln::Shape::of({S, B, E})}});  // PyTorch's [S, B, E]
    auto heads = [&](const std::string& v) {                     // [S, B, E] -> [B*H, S, D]
      return op("Transpose", {op("Reshape", {v, ints({S, B * H, D})})},
                {{"perm", std::vector<i64>{1, 0, 2}}});
    };
    auto q = op("Div", {heads(linear("x", E, E)), c(std::sqrt(static_cast<float>(D)))});
    auto k = heads(linear("x", E, E));
    auto v = heads(linear("x", E, E));
    std::vector<float> mask(static_cast<std::size_t>(S * S));
    for (i64 i = 0; i < S; ++i)
      for (i64 j = 0; j < S; ++j)
        mask[static_cast<std::size_t>(i * S + j)] = j > i ? -INFINITY : 0.f;
    const std::string m = fmt::format("mask{}", counter++);
    g.weights[m] = tensor({S, S}, mask);
    auto s = op(
        "Add", {op("MatMul", {q, op("Transpose", {k}, {{"perm", std::vector<i64>{0, 2, 1}}})}), m});
    auto a = op("MatMul", {op("Softmax", {s}, {{"axis", i64{-1}}}), v});
    a = op("Reshape",
           {op("Transpose", {a}, {{"perm", std::vector<i64>{1, 0, 2}}}), ints({S, B, E})});
    auto x1 = layer_norm(op("Add", {"x", linear(a, E, E)}), E);
    auto u = linear(x1, E, 4 * E);
    auto gelu = op(
        "Mul",
        {op("Mul", {u, op("Add", {op("Erf", {op("Div", {u, c(1.4142135f)})}), c(1.f)})}), c(0.5f)});
    auto y = layer_norm(op("Add", {x1, linear(gelu, 4 * E, E)}), E);
    g.outputs = {y};
    g.infer(&kiln::reference::constant_evaluator());
  }
};

/// Attention's sizes for Q [B, Hq, S, D] and K, V [B, Hkv, T, D], laid out [B, H, S, D] or (bshd)
/// [B, S, H, D] (the head split as strides), scale 1/sqrt(D); pointers and options left unset.
kk::AttentionArgs attention_shape(i64 b, i64 hq, i64 hkv, i64 s, i64 t, i64 d, bool bshd) {
  kk::AttentionArgs a;
  a.batch = b;
  a.q_heads = hq;
  a.kv_heads = hkv;
  a.q_len = s;
  a.kv_len = t;
  a.head_dim = a.v_head_dim = d;
  a.qs = a.ys =
      bshd ? kk::HeadStrides{hq * s * d, d, hq * d} : kk::HeadStrides{hq * s * d, s * d, d};
  a.ks = a.vs =
      bshd ? kk::HeadStrides{hkv * t * d, d, hkv * d} : kk::HeadStrides{hkv * t * d, t * d, d};
  a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  return a;
}

/// `g` built for the target of precision `el` (the fusions of that target).
kiln::plan::Plan build_for(const kiln::Graph& g, Elem el) {
  kiln::build::BuildOptions o;
  o.target = &kiln::plan::target_by_name(plan_precision(el).target);
  o.evaluator = &kiln::reference::constant_evaluator();
  return kiln::build::build_plan(g, o);
}

/// Plan `p` of `g` run by an Engine on input x (rounded to `el`) against the reference's `g`.
void check_on_gpu(Report& report, const std::string& what, const kiln::Graph& g,
                  const kiln::plan::Plan& p, const std::vector<i64>& x_dims, Elem el) {
  const auto x = round_to(random_values(numel(x_dims)), el);
  const std::map<std::string, kiln::Tensor> in{{"x", tensor(x_dims, x)}};
  const auto ref = kiln::reference::Executor(g).run(in);
  kiln::runtime::Engine engine(p);
  auto ctx = engine.create_context();
  const auto got = kiln::runtime::run_on_gpu(*ctx, in);
  const kiln::Tensor& y = got.at(g.outputs[0]);
  std::vector<float> yv(static_cast<std::size_t>(y.numel()));
  for (i64 i = 0; i < y.numel(); ++i)
    yv[static_cast<std::size_t>(i)] = static_cast<float>(y.get(i));
  report.check(what, yv, ref.at(g.outputs[0]), el);
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;

  // LayerNorm / RMSNorm over the last axis (and the last two for one case).
  struct NormCase {
    std::vector<i64> dims;
    i64 axis;
  };
  for (const NormCase& c :
       {NormCase{{2, 3, 768}, -1}, NormCase{{8, 1000}, -1}, NormCase{{3, 5}, -1},
        NormCase{{4, 4096}, -1}, NormCase{{2, 6, 7, 8}, -2}}) {
    const i64 rank = static_cast<i64>(c.dims.size());
    const i64 axis = c.axis < 0 ? c.axis + rank : c.axis;
    i64 n = 1;
    for (i64 d = axis; d < rank; ++d) n *= c.dims[static_cast<std::size_t>(d)];
    const i64 rows = numel(c.dims) / n;
    const std::vector<i64> norm_dims(c.dims.begin() + axis, c.dims.end());
    for (const char* op : {"LayerNormalization", "RMSNormalization"}) {
      for (bool residual : {false, true}) {
        for (bool f16 : {false, true}) {
          const bool rms = std::string(op) == "RMSNormalization";
          const std::string what = fmt::format("{}{} {} axis={}", op, residual ? "+residual" : "",
                                               dims_text(c.dims), c.axis);
          report.run(what, [&] {
            // An offset mean: the E[x^2] - E[x]^2 form would lose it in f16, the kernel must not.
            auto x = random_values(numel(c.dims), 3.f, 5.f), r = random_values(numel(c.dims));
            auto scale = random_values(n, 0.5f, 1.5f), bias = random_values(n);
            if (f16) {
              x = round_f16(x);
              r = round_f16(r);
              scale = round_f16(scale);
              bias = round_f16(bias);
            }
            kiln::Tensor tx = tensor(c.dims, x);
            if (residual) {
              const kiln::Tensor tr = tensor(c.dims, r);
              tx = reference(node("Add", 2), {&tx, &tr});
            }
            const kiln::Tensor ts = tensor(norm_dims, scale), tb = tensor(norm_dims, bias);
            kiln::Node nd = node(op, rms ? 2 : 3, {{"axis", c.axis}, {"epsilon", 1e-5}});
            if (!rms) nd.outputs = {"out", "mean", "invstd"};
            std::vector<const kiln::Tensor*> ins{&tx, &ts};
            if (!rms) ins.push_back(&tb);
            const auto ref = kiln::reference::run_node(nd, ins);
            DeviceBuffer dx = upload(x, f16), dr = upload(r, f16), ds = upload(scale, f16),
                         db = upload(bias, f16);
            DeviceBuffer dy = poisoned(numel(c.dims), f16), dm = poisoned(rows, f16),
                         di = poisoned(rows, f16), dsum = poisoned(numel(c.dims), f16);
            kk::RowNormArgs a;
            a.rows = rows;
            a.n = n;
            a.x = dx.get();
            a.residual = residual ? dr.get() : nullptr;
            a.scale = ds.get();
            a.scale_len = n;
            a.bias = rms ? nullptr : db.get();
            a.bias_len = n;
            a.eps = 1e-5f;
            a.rms = rms;
            a.y = dy.get();
            a.mean_out = rms ? nullptr : dm.get();
            a.invstd_out = rms ? nullptr : di.get();
            a.sum_out = residual ? dsum.get() : nullptr;  // fuse_residual_norm's shared sum
            KILN_CHECK(kk::row_norm(elem(f16), a, nullptr));
            report.check(what, download(dy, numel(c.dims), f16), ref[0], f16);
            if (residual) report.check(what + " sum", download(dsum, numel(c.dims), f16), tx, f16);
            if (!rms) {
              report.check(what + " Mean", download(dm, rows, f16), ref[1], f16);
              report.check(what + " InvStdDev", download(di, rows, f16), ref[2], f16);
            }
          });
        }
      }
    }
  }

  // Attention, 4-D [B, heads, S, D].
  struct AttnCase {
    i64 b, hq, hkv, s, t, d;
    bool causal;
    int mask;  // 0 none, 1 additive [S, T], 2 boolean [B, 1, S, T]
    double softcap;
    i64 window;
    bool bshd = false;  // Q, K, V and Y laid out [B, S, heads, D] (the head split as strides)
  };
  // [B, H, S, D] <-> [B, S, H, D] on the host.
  auto swap_hs = [](const std::vector<float>& x, i64 b, i64 h, i64 s, i64 d, bool to_bshd) {
    std::vector<float> y(x.size());
    for (i64 ib = 0; ib < b; ++ib)
      for (i64 ih = 0; ih < h; ++ih)
        for (i64 is = 0; is < s; ++is)
          for (i64 id = 0; id < d; ++id) {
            const auto bhsd = static_cast<std::size_t>(((ib * h + ih) * s + is) * d + id);
            const auto bshd = static_cast<std::size_t>(((ib * s + is) * h + ih) * d + id);
            if (to_bshd)
              y[bshd] = x[bhsd];
            else
              y[bhsd] = x[bshd];
          }
    return y;
  };
  for (const AttnCase& c :
       {AttnCase{1, 12, 12, 128, 128, 64, false, 0, 0, -1},
        AttnCase{2, 12, 12, 128, 128, 64, true, 0, 0, -1},
        AttnCase{2, 4, 4, 37, 53, 32, false, 1, 0, -1},
        AttnCase{2, 8, 2, 20, 20, 128, true, 2, 0, -1},
        AttnCase{1, 4, 1, 9, 17, 80, false, 2, 30.0, -1},
        AttnCase{1, 2, 2, 64, 64, 256, true, 0, 0, 8}, AttnCase{3, 3, 3, 5, 7, 8, false, 1, 0, -1},
        // f16 with these head dims runs on tensor cores: several key tiles, a
        // partial last tile, the window skipping whole tiles, softcap, strides
        AttnCase{2, 6, 3, 200, 150, 64, false, 1, 20.0, 40},
        AttnCase{2, 4, 4, 70, 130, 64, true, 0, 0, -1, true},
        AttnCase{1, 2, 1, 129, 129, 96, true, 2, 0, -1, true}}) {
    for (Elem e : {Elem::f32, Elem::f16, Elem::bf16}) {
      const std::string what =
          fmt::format("Attention B{} Hq{} Hkv{} S{} T{} D{}{}{}{}{}", c.b, c.hq, c.hkv, c.s, c.t,
                      c.d, c.causal ? " causal" : "",
                      c.mask == 1   ? " additive-mask"
                      : c.mask == 2 ? " bool-mask"
                                    : "",
                      c.softcap > 0 ? " softcap" : "", c.window >= 0 ? " window" : "") +
          (c.bshd ? " [B,S,H,D]" : "");
      report.run(what, [&] {
        const std::vector<i64> qd{c.b, c.hq, c.s, c.d}, kd{c.b, c.hkv, c.t, c.d},
            yd{c.b, c.hq, c.s, c.d};
        auto q = random_values(numel(qd)), k = random_values(numel(kd)),
             v = random_values(numel(kd));
        std::vector<i64> mdims;
        std::vector<float> mask;
        if (c.mask == 1) {
          mdims = {c.s, c.t};
          mask = random_values(c.s * c.t, -3.f, 1.f);
        } else if (c.mask == 2) {
          mdims = {c.b, 1, c.s, c.t};
          mask = random_values(numel(mdims), -0.3f, 1.f);
          for (auto& m : mask) m = m > 0 ? 1.f : 0.f;
          for (i64 i = 0; i < c.b * c.s; ++i)
            mask[static_cast<std::size_t>(i * c.t)] = 0.f;  // first key masked too
          for (i64 t = 0; t < c.t; ++t)
            mask[static_cast<std::size_t>(t)] = 0.f;  // one row entirely masked
        }
        q = round_to(q, e);
        k = round_to(k, e);
        v = round_to(v, e);
        mask = round_to(mask, e);
        const kiln::Tensor tq = tensor(qd, q), tk = tensor(kd, k), tv = tensor(kd, v);
        kiln::Tensor tm;
        if (c.mask == 1) tm = tensor(mdims, mask);
        if (c.mask == 2) {
          tm = kiln::Tensor(kiln::DType::boolean, mdims);
          for (i64 i = 0; i < tm.numel(); ++i) tm.set(i, mask[static_cast<std::size_t>(i)]);
        }
        std::map<std::string, kiln::Attribute> attrs{{"is_causal", i64{c.causal}}};
        if (c.softcap > 0) attrs["softcap"] = c.softcap;
        if (c.window >= 0) attrs["left_window_size"] = c.window;
        const kiln::Tensor ref = reference(node("Attention", c.mask ? 4 : 3, attrs),
                                           {&tq, &tk, &tv, c.mask ? &tm : nullptr});
        DeviceBuffer dq = upload(c.bshd ? swap_hs(q, c.b, c.hq, c.s, c.d, true) : q, e),
                     dk = upload(c.bshd ? swap_hs(k, c.b, c.hkv, c.t, c.d, true) : k, e),
                     dv = upload(c.bshd ? swap_hs(v, c.b, c.hkv, c.t, c.d, true) : v, e),
                     dy = poisoned(numel(yd), e);
        std::vector<unsigned char> bytes(mask.size());
        for (std::size_t i = 0; i < mask.size(); ++i) bytes[i] = mask[i] != 0.f;
        DeviceBuffer dm =
            c.mask == 1 ? upload(mask, e) : DeviceBuffer(std::max<std::size_t>(bytes.size(), 1));
        if (c.mask == 2)
          KILN_CHECK(cudaMemcpy(dm.get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
        kk::AttentionArgs a = attention_shape(c.b, c.hq, c.hkv, c.s, c.t, c.d, c.bshd);
        a.q = dq.get();
        a.k = dk.get();
        a.v = dv.get();
        a.y = dy.get();
        a.softcap = static_cast<float>(c.softcap);
        a.causal = c.causal;
        a.left_window = c.window;
        a.mask_kind = c.mask == 1   ? 2
                      : c.mask == 2 ? 1
                                    : 0;  // the kernel's codes: 1 boolean, 2 additive
        a.mask = c.mask ? dm.get() : nullptr;
        for (std::size_t d = 0; d < mdims.size(); ++d) a.mask_dims[4 - mdims.size() + d] = mdims[d];
        KILN_CHECK(kk::attention(e, a, nullptr));
        const auto got = download(dy, numel(yd), e);
        report.check(what, c.bshd ? swap_hs(got, c.b, c.hq, c.s, c.d, false) : got, ref, e);
      });
    }
  }
  // cuDNN's SDPA operation (the Attention step's other tactic for 16-bit problems without a
  // mask): every engine its heuristics list, [B, H, S, D] and [B, S, H, D] strides, grouped heads.
  // BERT-base's problem must have an engine on Hopper; the others report what cuDNN took.
  struct SdpaCase {
    i64 b, hq, hkv, s, t, d;
    bool bshd, required;
  };
  kiln::runtime::Library lib;
  for (const SdpaCase& c : {SdpaCase{32, 12, 12, 128, 128, 64, true, true},
                            SdpaCase{2, 12, 12, 128, 128, 64, false, true},
                            SdpaCase{2, 8, 2, 100, 77, 128, false, false},
                            SdpaCase{1, 16, 16, 197, 197, 64, true, false},
                            SdpaCase{2, 4, 4, 64, 64, 256, false, false}}) {
    for (Elem e : {Elem::f16, Elem::bf16}) {
      const std::string what = fmt::format("cuDNN SDPA B{} Hq{} Hkv{} S{} T{} D{}{}", c.b, c.hq,
                                           c.hkv, c.s, c.t, c.d, c.bshd ? " [B,S,H,D]" : "");
      report.run(what, [&] {
        const std::vector<i64> qd{c.b, c.hq, c.s, c.d}, kd{c.b, c.hkv, c.t, c.d};
        auto q = round_to(random_values(numel(qd)), e), k = round_to(random_values(numel(kd)), e),
             v = round_to(random_values(numel(kd)), e);
        const kiln::Tensor tq = tensor(qd, q), tk = tensor(kd, k), tv = tensor(kd, v);
        const kiln::Tensor ref = reference(node("Attention", 3, {}), {&tq, &tk, &tv});
        DeviceBuffer dq = upload(c.bshd ? swap_hs(q, c.b, c.hq, c.s, c.d, true) : q, e),
                     dk = upload(c.bshd ? swap_hs(k, c.b, c.hkv, c.t, c.d, true) : k, e),
                     dv = upload(c.bshd ? swap_hs(v, c.b, c.hkv, c.t, c.d, true) : v, e);
        const kk::AttentionArgs a = attention_shape(c.b, c.hq, c.hkv, c.s, c.t, c.d, c.bshd);
        const auto p =
            e == Elem::f16 ? kiln::runtime::Precision::f16 : kiln::runtime::Precision::bf16;
        kiln::runtime::CudnnAttention sdpa(lib, p, a, std::size_t{256} << 20);
        std::printf("  %s: %d cuDNN engine(s)\n", what.c_str(), sdpa.engines());
        if (c.required) report.expect(what + " has a cuDNN engine", sdpa.engines() > 0);
        for (int i = 0; i < sdpa.engines(); ++i) {
          sdpa.choose(i);
          DeviceBuffer dy = poisoned(numel(qd), e),
                       ws(std::max<std::size_t>(sdpa.workspace_bytes(), 16));
          sdpa.forward(dq.get(), dk.get(), dv.get(), dy.get(), ws.get(), nullptr);
          KILN_CHECK(cudaDeviceSynchronize());
          const auto got = download(dy, numel(qd), e);
          report.check(fmt::format("{} engine {}", what, i),
                       c.bshd ? swap_hs(got, c.b, c.hq, c.s, c.d, false) : got, ref, e);
        }
      });
    }
  }

  // RotaryEmbedding: 3-D and 4-D inputs, halves and interleaved pairs, a partial rotary dim,
  // caches indexed by position_ids or by (batch, sequence).
  struct RopeCase {
    bool rank3;
    i64 b, h, s, d, r;  // r: rotary_embedding_dim (0: the whole head)
    bool interleaved, positions;
  };
  for (const RopeCase& c :
       {RopeCase{false, 2, 4, 10, 64, 0, false, true}, RopeCase{true, 2, 3, 7, 32, 16, true, false},
        RopeCase{false, 1, 2, 5, 16, 8, false, false},
        RopeCase{true, 3, 2, 9, 128, 0, true, true}}) {
    for (Elem e : {Elem::f32, Elem::f16, Elem::bf16}) {
      const std::string what = fmt::format(
          "RotaryEmbedding {}-D B{} H{} S{} D{} rotary {}{}{}", c.rank3 ? 3 : 4, c.b, c.h, c.s, c.d,
          c.r ? c.r : c.d, c.interleaved ? " interleaved" : "", c.positions ? " position_ids" : "");
      report.run(what, [&] {
        const i64 rot = c.r ? c.r : c.d, half = rot / 2, max_pos = 20;
        const std::vector<i64> xd =
            c.rank3 ? std::vector<i64>{c.b, c.s, c.h * c.d} : std::vector<i64>{c.b, c.h, c.s, c.d};
        const std::vector<i64> cd =
            c.positions ? std::vector<i64>{max_pos, half} : std::vector<i64>{c.b, c.s, half};
        auto x = random_values(numel(xd)), cs = random_values(numel(cd)),
             sn = random_values(numel(cd));
        x = round_to(x, e), cs = round_to(cs, e), sn = round_to(sn, e);
        std::vector<i64> pos(static_cast<std::size_t>(c.b * c.s));
        for (std::size_t i = 0; i < pos.size(); ++i)
          pos[i] = static_cast<i64>((i * 7 + 3) % max_pos);
        const kiln::Tensor tx = tensor(xd, x), tc = tensor(cd, cs), ts = tensor(cd, sn),
                           tp = tensor_i64({c.b, c.s}, pos);
        std::map<std::string, kiln::Attribute> attrs{{"interleaved", i64{c.interleaved}}};
        if (c.r) attrs["rotary_embedding_dim"] = c.r;
        if (c.rank3) attrs["num_heads"] = c.h;
        const kiln::Tensor ref = reference(node("RotaryEmbedding", c.positions ? 4 : 3, attrs),
                                           {&tx, &tc, &ts, c.positions ? &tp : nullptr});
        DeviceBuffer dx = upload(x, e), dc = upload(cs, e), ds = upload(sn, e),
                     dy = poisoned(numel(xd), e);
        DeviceBuffer dp(pos.size() * sizeof(i64));
        KILN_CHECK(
            cudaMemcpy(dp.get(), pos.data(), pos.size() * sizeof(i64), cudaMemcpyHostToDevice));
        kk::RotaryArgs a;
        a.rank3 = c.rank3;
        a.batch = c.b;
        a.heads = c.h;
        a.seq = c.s;
        a.head_dim = c.d;
        a.rotary_dim = rot;
        a.interleaved = c.interleaved;
        a.cache_rows = c.positions ? max_pos : c.b * c.s;
        a.x = dx.get();
        a.y = dy.get();
        a.cos = dc.get();
        a.sin = ds.get();
        a.positions = c.positions ? dp.as<i64>() : nullptr;
        KILN_CHECK(kk::rotary_embedding(e, a, nullptr));
        report.check(what, download(dy, numel(xd), e), ref, e);
      });
    }
  }

  // A whole encoder layer through the builder: the fusions must fire (one Attention, two
  // LayerNormalization, one GELU joined to its MatMul and bias) and the plan must compute what the
  // unfused graph computes on the reference.
  for (const auto& [b, s, e, h] :
       {std::array<i64, 4>{2, 16, 64, 4}, std::array<i64, 4>{1, 128, 768, 12}}) {
    for (Elem el : {Elem::f32, Elem::f16, Elem::bf16}) {
      const std::string what = fmt::format("encoder layer B{} S{} E{} H{}", b, s, e, h);
      report.run(what, [&] {
        EncoderGraph eg(b, s, e, h);
        const kiln::plan::Plan p = build_for(eg.g, el);
        int attention = 0, layernorm = 0, gelu = 0, residual = 0;
        for (const auto& st : p.steps) {
          const std::string pattern = st.attr_string("pattern", st.op);
          attention += st.op == "Attention";
          layernorm += st.op == "LayerNormalization" || pattern == "Add+LayerNormalization";
          residual += pattern == "Add+LayerNormalization";
          gelu += pattern == "MatMul+Add+Gelu";
        }
        report.expect(
            what + fmt::format(" fused: {} Attention, {} LayerNormalization ({} with their "
                               "residual Add), {} MatMul+Add+Gelu",
                               attention, layernorm, residual, gelu),
            attention == 1 && layernorm == 2 && residual == 2 && gelu == 1);
        check_on_gpu(report, what, eg.g, p, {s, b, e}, el);
      });
    }
  }
  // Q, K and V projections of one input (as the DSL encoder and Hugging Face exports write them):
  // one product over the concatenated weights, whose Q, K and V slices the Attention step reads
  // in place (no Split step), f16/bf16 rows aligned for the tensor-core kernel or not (E = 40).
  for (const auto& [b, s, e, h] :
       {std::array<i64, 4>{2, 128, 768, 12}, std::array<i64, 4>{3, 17, 40, 5}}) {
    for (Elem el : {Elem::f32, Elem::f16, Elem::bf16}) {
      const std::string what =
          fmt::format("QKV product + strided Attention B{} S{} E{} H{}", b, s, e, h);
      report.run(what, [&] {
        GraphMaker eg;
        eg.g.name = "qkv";
        eg.g.inputs.push_back({"x", {kiln::DType::f32, kiln::Shape::of({b, s, e})}});
        auto q = eg.linear("x", e, e), k = eg.linear("x", e, e), v = eg.linear("x", e, e);
        auto y = eg.op("Attention", {q, k, v}, {{"q_num_heads", h}, {"kv_num_heads", h}});
        eg.g.outputs = {eg.linear(y, e, e)};
        eg.g.infer(&kiln::reference::constant_evaluator());
        const kiln::plan::Plan p = build_for(eg.g, el);
        int splits = 0, strided = 0;
        for (const auto& st : p.steps) {
          splits += st.op == "Split";
          if (st.op == "Attention")
            for (std::size_t i = 0; i < 3; ++i)
              strided += !p.memory.values.at(st.inputs[i]).contiguous();
        }
        report.expect(
            what + fmt::format(": {} Split steps, {} strided Attention inputs", splits, strided),
            splits == 0 && strided == 3 && p.steps.size() == 3);
        check_on_gpu(report, what, eg.g, p, {b, s, e}, el);
      });
    }
  }
  return report.finish("transformer kernels");
}
