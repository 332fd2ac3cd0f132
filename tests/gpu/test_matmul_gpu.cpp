// cuBLASLt matrix products (tuned tactics, bias and activation epilogues, batches, broadcast B)
// against the CPU reference: FP32 without TF32 and FP16 with FP32 accumulation.
#include "gpu_check.hpp"
#include "kiln/runtime/matmul.hpp"

using namespace gpu_test;
namespace kr = kiln::runtime;

int main() {
  skip_without_gpu();
  Report report;
  const kr::Library lib;

  // MatMul: [batch, m, k] x [batch or none, k, n].
  struct MM {
    i64 batch, m, n, k;
    bool broadcast_b;
  };
  for (const MM c :
       {MM{1, 1, 1, 1, false}, MM{1, 37, 29, 53, false}, MM{4, 64, 48, 32, false},
        MM{3, 5, 4, 7, true}, MM{2, 256, 512, 384, false}, MM{1, 1, 1000, 500, false}}) {
    for (bool f16 : {false, true}) {
      const std::vector<i64> ad =
          c.batch > 1 ? std::vector<i64>{c.batch, c.m, c.k} : std::vector<i64>{c.m, c.k};
      const std::vector<i64> bd = c.batch > 1 && !c.broadcast_b
                                      ? std::vector<i64>{c.batch, c.k, c.n}
                                      : std::vector<i64>{c.k, c.n};
      const std::string what = "MatMul " + dims_text(ad) + " x " + dims_text(bd);
      report.run(what, [&] {
        auto a = random_values(numel(ad)), b = random_values(numel(bd));
        if (f16) a = round_f16(a), b = round_f16(b);
        const kiln::Tensor ta = tensor(ad, a), tb = tensor(bd, b);
        const kiln::Tensor ref = reference(node("MatMul", 2), {&ta, &tb});
        kr::MatmulShape s{c.batch, c.m, c.n, c.k};
        if (c.broadcast_b) s.stride_b = 0;
        kr::MatmulOptions o;
        o.precision = f16 ? kr::Precision::f16 : kr::Precision::f32;
        kr::Matmul mm(lib, s, o);
        const kr::MatmulTactic t = mm.tune();
        DeviceBuffer da = upload(a, f16), db = upload(b, f16), dc = poisoned(ref.numel(), f16),
                     ws(t.workspace);
        mm.run(da.get(), db.get(), nullptr, dc.get(), ws.get(), nullptr);
        report.check(what + fmt::format(" [candidate {}, {:.4f} ms]", t.index, t.ms),
                     download(dc, ref.numel(), f16), ref, f16);
      });
    }
  }

  // Gemm with transposes, alpha, a bias vector and an activation epilogue.
  struct G {
    i64 m, n, k;
    bool ta, tb;
    kr::Epilogue epi;
    float alpha;
  };
  for (const G c : {G{16, 500, 800, false, true, kr::Epilogue::none, 1.f},
                    G{8, 10, 500, false, true, kr::Epilogue::relu, 1.f},
                    G{33, 65, 17, true, false, kr::Epilogue::relu, 0.5f},
                    G{12, 96, 64, true, true, kr::Epilogue::gelu_tanh, 1.f},
                    G{128, 256, 128, false, false, kr::Epilogue::gelu_tanh, 2.f}}) {
    for (bool f16 : {false, true}) {
      const std::vector<i64> ad = c.ta ? std::vector<i64>{c.k, c.m} : std::vector<i64>{c.m, c.k};
      const std::vector<i64> bd = c.tb ? std::vector<i64>{c.n, c.k} : std::vector<i64>{c.k, c.n};
      const char* epi = c.epi == kr::Epilogue::relu        ? "+Relu"
                        : c.epi == kr::Epilogue::gelu_tanh ? "+Gelu(tanh)"
                                                           : "";
      const std::string what = fmt::format("Gemm{} transA={} transB={} alpha={} {} x {} +bias", epi,
                                           c.ta, c.tb, c.alpha, dims_text(ad), dims_text(bd));
      report.run(what, [&] {
        auto a = random_values(numel(ad)), b = random_values(numel(bd)), bias = random_values(c.n);
        if (f16) a = round_f16(a), b = round_f16(b), bias = round_f16(bias);
        const kiln::Tensor ta = tensor(ad, a), tb = tensor(bd, b), tbias = tensor({c.n}, bias);
        kiln::Tensor ref = reference(
            node("Gemm", 3,
                 {{"transA", i64{c.ta}}, {"transB", i64{c.tb}}, {"alpha", double(c.alpha)}}),
            {&ta, &tb, &tbias});
        if (c.epi == kr::Epilogue::relu) ref = reference(node("Relu", 1), {&ref});
        if (c.epi == kr::Epilogue::gelu_tanh)
          ref = reference(node("Gelu", 1, {{"approximate", std::string("tanh")}}), {&ref});
        kr::MatmulShape s{1, c.m, c.n, c.k, c.ta, c.tb};
        kr::MatmulOptions o;
        o.precision = f16 ? kr::Precision::f16 : kr::Precision::f32;
        o.epilogue = c.epi;
        o.bias = true;
        o.alpha = c.alpha;
        kr::Matmul mm(lib, s, o);
        const kr::MatmulTactic t = mm.tune();
        DeviceBuffer da = upload(a, f16), db = upload(b, f16), dbias = upload(bias, f16),
                     dc = poisoned(c.m * c.n, f16), ws(t.workspace);
        mm.run(da.get(), db.get(), dbias.get(), dc.get(), ws.get(), nullptr);
        report.check(what, download(dc, c.m * c.n, f16), ref, f16);
      });
    }
  }

  // beta accumulates into C (Gemm with a full C matrix, or a residual add).
  report.run("Gemm beta=0.5 C[m,n]", [&] {
    const i64 m = 24, n = 40, k = 31;
    auto a = random_values(m * k), b = random_values(k * n), cm = random_values(m * n);
    const kiln::Tensor ta = tensor({m, k}, a), tb = tensor({k, n}, b), tc = tensor({m, n}, cm);
    const kiln::Tensor ref = reference(node("Gemm", 3, {{"beta", 0.5}}), {&ta, &tb, &tc});
    kr::MatmulOptions o;
    o.beta = 0.5f;
    kr::Matmul mm(lib, {1, m, n, k}, o);
    DeviceBuffer da = upload(a), db = upload(b), dc = upload(cm), ws(mm.workspace_bytes());
    mm.run(da.get(), db.get(), nullptr, dc.get(), ws.get(), nullptr);
    report.check("Gemm beta=0.5 C[m,n]", download(dc, m * n), ref);
  });
  return report.finish("gpu-matmul");
}
