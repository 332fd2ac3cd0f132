#include "kiln/runtime/matmul.hpp"

#include <algorithm>
#include <vector>

#include <cublasLt.h>

#include "check.hpp"
#include "library_types.hpp"

namespace kiln::runtime {

namespace {
cublasLtEpilogue_t epilogue_of(Epilogue e, bool bias) {
  switch (e) {
    case Epilogue::none: return bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::relu: return bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
    case Epilogue::gelu_tanh: return bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU;
  }
  throw Error("[MatMul] unknown epilogue");
}
}  // namespace

struct Matmul::Impl {
  cublasLtMatmulDesc_t op = nullptr;
  // Row-major C = A B is column-major C^T = B^T A^T: cuBLASLt's "A" is our B, its "B" our A.
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  std::vector<cublasLtMatmulHeuristicResult_t> candidates;

  ~Impl() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

Matmul::Matmul(const Library& lib, const MatmulShape& s, const MatmulOptions& o)
    : lib_(lib), shape_(s), opt_(o), impl_(std::make_unique<Impl>()) {
  if (s.m < 1 || s.n < 1 || s.k < 1 || s.batch < 1)
    throw Error(
        fmt::format("[MatMul] bad shape: batch {}, m {}, n {}, k {}", s.batch, s.m, s.n, s.k));
  if (o.bias && o.beta != 0.f && o.epilogue != Epilogue::none)
    throw Error("[MatMul] beta with an activation epilogue is not supported");
  const bool eight = o.int8 || o.fp8;  // cuBLASLt's 8-bit products: one operand form
  const int multiple = o.fp8 ? 16 : 4;
  if (o.int8 && o.fp8) throw Error("[MatMul] INT8 and FP8 at once");
  if (eight && (s.trans_a || !s.trans_b || s.n % multiple != 0 || s.k % multiple != 0 || o.bias ||
                o.epilogue != Epilogue::none || o.alpha != 1.f || o.beta != 0.f))
    throw Error(fmt::format(
        "[MatMul] an {} product takes A [m, k] and B [n, k] with n and k multiples of {} and no "
        "epilogue (got m {}, n {}, k {}, trans_a {}, trans_b {})",
        o.fp8 ? "FP8" : "INT8", multiple, s.m, s.n, s.k, s.trans_a, s.trans_b));
  Impl& d = *impl_;
  const cublasComputeType_t compute = o.int8 ? CUBLAS_COMPUTE_32I
                                      : o.precision == Precision::f32 && o.allow_tf32
                                          ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  KILN_CHECK(cublasLtMatmulDescCreate(&d.op, compute, o.int8 ? CUDA_R_32I : CUDA_R_32F));
  const cublasOperation_t op_a = s.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A = our B
  const cublasOperation_t op_b = s.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  KILN_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  KILN_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  const cublasLtEpilogue_t epi = epilogue_of(o.epilogue, o.bias);
  KILN_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));

  const cudaDataType_t t = o.int8  ? CUDA_R_8I
                           : o.fp8 ? CUDA_R_8F_E4M3
                                   : detail::blas_type(o.precision);
  const cudaDataType_t tc = o.int8 ? CUDA_R_32I : o.fp8 ? CUDA_R_32F : t;
  // Our B, column-major: [n, k] (ld n), or [k, n] (ld k) when stored transposed.
  const std::uint64_t a_rows = s.trans_b ? s.k : s.n, a_cols = s.trans_b ? s.n : s.k;
  const std::uint64_t b_rows = s.trans_a ? s.m : s.k, b_cols = s.trans_a ? s.k : s.m;
  KILN_CHECK(
      cublasLtMatrixLayoutCreate(&d.la, t, a_rows, a_cols, static_cast<std::int64_t>(a_rows)));
  KILN_CHECK(
      cublasLtMatrixLayoutCreate(&d.lb, t, b_rows, b_cols, static_cast<std::int64_t>(b_rows)));
  KILN_CHECK(cublasLtMatrixLayoutCreate(&d.lc, tc, s.n, s.m, s.n));
  if (s.batch > 1) {
    const int batch = static_cast<int>(s.batch);
    const std::int64_t sa = s.stride_b >= 0 ? s.stride_b : s.k * s.n;  // cuBLASLt's A = our B
    const std::int64_t sb = s.stride_a >= 0 ? s.stride_a : s.m * s.k;
    const std::int64_t sc = s.stride_c >= 0 ? s.stride_c : s.m * s.n;
    for (auto [l, stride] : {std::pair{d.la, sa}, std::pair{d.lb, sb}, std::pair{d.lc, sc}}) {
      KILN_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                  sizeof batch));
      KILN_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                  &stride, sizeof stride));
    }
  }
  KILN_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
  const std::uint64_t limit = o.workspace_limit;
  KILN_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                  &limit, sizeof limit));
  d.candidates.resize(8);
  int returned = 0;
  KILN_CHECK(cublasLtMatmulAlgoGetHeuristic(lib_.cublaslt(), d.op, d.la, d.lb, d.lc, d.lc, d.pref,
                                            static_cast<int>(d.candidates.size()),
                                            d.candidates.data(), &returned));
  d.candidates.resize(static_cast<std::size_t>(returned));
  if (returned == 0)
    throw Error(fmt::format("[MatMul] cuBLASLt has no algorithm for batch {}, m {}, n {}, k {}",
                            s.batch, s.m, s.n, s.k));
  tactic_ = {0, d.candidates[0].workspaceSize, -1.f};
}

Matmul::~Matmul() = default;

MatmulTactic Matmul::tune() {
  Impl& d = *impl_;
  const std::size_t es = opt_.int8 || opt_.fp8 ? 1 : element_size(opt_.precision);
  const std::size_t es_c = opt_.int8 || opt_.fp8 ? 4 : es;
  auto span = [&](std::int64_t stride, std::int64_t one, std::size_t bytes) {
    const std::int64_t st = stride >= 0 ? stride : one;
    return static_cast<std::size_t>((shape_.batch - 1) * st + one) * bytes;
  };
  DeviceBuffer a(span(shape_.stride_a, shape_.m * shape_.k, es)),
      b(span(shape_.stride_b, shape_.k * shape_.n, es));
  DeviceBuffer c(span(shape_.stride_c, shape_.m * shape_.n, es_c)),
      bias(static_cast<std::size_t>(shape_.n) * es);
  for (DeviceBuffer* buf : {&a, &b, &c, &bias}) buf->fill_bytes(0x3c);  // not zeros
  std::size_t most = 0;
  for (const auto& r : d.candidates) most = std::max(most, r.workspaceSize);
  DeviceBuffer ws(most);
  cudaEvent_t start = nullptr, stop = nullptr;
  KILN_CHECK(cudaEventCreate(&start));
  KILN_CHECK(cudaEventCreate(&stop));
  MatmulTactic best{0, d.candidates[0].workspaceSize, -1.f};
  for (std::size_t i = 0; i < d.candidates.size(); ++i) {
    MatmulTactic t{static_cast<int>(i), d.candidates[i].workspaceSize, 0.f};
    tactic_ = t;
    try {
      run(a.get(), b.get(), opt_.bias ? bias.get() : nullptr, c.get(), ws.get(),
          nullptr);  // warm-up
      KILN_CHECK(cudaEventRecord(start, nullptr));
      constexpr int kRepeats = 5;
      for (int r = 0; r < kRepeats; ++r)
        run(a.get(), b.get(), opt_.bias ? bias.get() : nullptr, c.get(), ws.get(), nullptr);
      KILN_CHECK(cudaEventRecord(stop, nullptr));
      KILN_CHECK(cudaEventSynchronize(stop));
      KILN_CHECK(cudaEventElapsedTime(&t.ms, start, stop));
      t.ms /= kRepeats;
    } catch (const Error&) {
      continue;  // a candidate that fails to run is no tactic
    }
    if (best.ms < 0 || t.ms < best.ms) best = t;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  tactic_ = best;
  return tactic_;
}

void Matmul::set_tactic(const MatmulTactic& t) {
  const auto& c = impl_->candidates;
  if (t.index < 0 || static_cast<std::size_t>(t.index) >= c.size()) return;
  tactic_ = {t.index, c[static_cast<std::size_t>(t.index)].workspaceSize, t.ms};
}

void Matmul::run(const void* a, const void* b, const void* bias, void* c, void* workspace,
                 Stream stream) const {
  const Impl& d = *impl_;
  if (opt_.bias) {
    if (bias == nullptr) throw Error("[MatMul] bias missing");
    KILN_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                              sizeof bias));
  }
  const float alpha = opt_.alpha, beta = opt_.beta;
  const std::int32_t alpha_i = 1, beta_i = 0;  // an INT8 product's scale type is int32
  const void* pa = opt_.int8 ? static_cast<const void*>(&alpha_i) : &alpha;
  const void* pb = opt_.int8 ? static_cast<const void*>(&beta_i) : &beta;
  KILN_CHECK(cublasLtMatmul(lib_.cublaslt(), d.op, pa, b, d.la, a, d.lb, pb, c, d.lc, c, d.lc,
                            &d.candidates[static_cast<std::size_t>(tactic_.index)].algo, workspace,
                            tactic_.workspace, stream));
}

}  // namespace kiln::runtime
