#include "sdpa.hpp"

#include "cudnn_backend.hpp"
#include "library_types.hpp"

namespace kiln::runtime {

using detail::backend_tensor;
using detail::Desc;
using detail::DescPtr;

namespace {
enum Uid : std::int64_t { kQ = 1, kK, kV, kO, kScale };
}  // namespace

struct CudnnAttention::Impl {
  std::vector<DescPtr> keep;  // the tensors and the operation the graph refers to
  DescPtr graph;
  std::vector<DescPtr> plans;  // one per usable engine, heuristic order
  std::vector<std::int64_t> workspaces;
  mutable detail::VariantPack pack;
};

bool CudnnAttention::takes(Precision precision, const kernels::AttentionArgs& a) {
  return precision != Precision::f32 && a.mask_kind == 0 && !a.causal && a.softcap == 0.f &&
         a.left_window < 0 && a.right_window < 0 && a.kv_heads > 0 && a.q_heads % a.kv_heads == 0 &&
         a.head_dim % 8 == 0 && a.v_head_dim % 8 == 0 && a.head_dim <= 256 && a.v_head_dim <= 256;
}

CudnnAttention::CudnnAttention(const Library& lib, Precision precision,
                               const kernels::AttentionArgs& a, std::size_t workspace_limit)
    : lib_(lib), scale_(a.scale), impl_(std::make_unique<Impl>()) {
  if (!takes(precision, a)) return;
  Impl& d = *impl_;
  const cudnnDataType_t io = detail::cudnn_type(precision);
  auto bhsd = [&](std::int64_t uid, std::int64_t heads, std::int64_t len, std::int64_t dim,
                  const kernels::HeadStrides& st) -> Desc* {
    return d.keep
        .emplace_back(
            backend_tensor(uid, io, {a.batch, heads, len, dim}, {st.b, st.h, st.s, 1}, false))
        .get();
  };
  Desc* q = bhsd(kQ, a.q_heads, a.q_len, a.head_dim, a.qs);
  Desc* k = bhsd(kK, a.kv_heads, a.kv_len, a.head_dim, a.ks);
  Desc* v = bhsd(kV, a.kv_heads, a.kv_len, a.v_head_dim, a.vs);
  Desc* o = bhsd(kO, a.q_heads, a.q_len, a.v_head_dim, a.ys);
  Desc* scale = d.keep
                    .emplace_back(backend_tensor(kScale, CUDNN_DATA_FLOAT, {1, 1, 1, 1},
                                                 {1, 1, 1, 1}, false, true))
                    .get();
  Desc* op =
      d.keep.emplace_back(std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR))
          .get();
  op->set(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &q->d);
  op->set(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &k->d);
  op->set(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v->d);
  op->set(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o->d);
  op->set(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &scale->d);
  // An older cuDNN (or a problem the operation refuses) leaves no engine: kiln's kernel runs.
  if (cudnnBackendFinalize(op->d) != CUDNN_STATUS_SUCCESS) return;
  auto graph = std::make_unique<Desc>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  cudnnHandle_t h = lib_.cudnn();
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op->d);
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
  if (cudnnBackendFinalize(graph->d) != CUDNN_STATUS_SUCCESS) return;
  d.graph = std::move(graph);
  for (cudnnBackendHeurMode_t hm : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    for (const DescPtr& cfg : detail::engine_configs(*d.graph, hm, 8)) {
      std::int64_t ws = 0;
      DescPtr plan = detail::execution_plan(h, *cfg, &ws);
      if (!plan || static_cast<std::size_t>(ws) > workspace_limit) continue;
      d.plans.push_back(std::move(plan));
      d.workspaces.push_back(ws);
    }
    if (!d.plans.empty()) break;
  }
}

CudnnAttention::~CudnnAttention() = default;

int CudnnAttention::engines() const { return static_cast<int>(impl_->plans.size()); }

void CudnnAttention::choose(int index) {
  if (index < 0 || index >= engines())
    throw Error(fmt::format("[Attention] cuDNN engine {} of {}", index, engines()));
  chosen_ = index;
  impl_->pack.reset();
}

std::size_t CudnnAttention::workspace_bytes() const {
  return engines() ? static_cast<std::size_t>(impl_->workspaces[static_cast<std::size_t>(chosen_)])
                   : 0;
}

void CudnnAttention::forward(const void* q, const void* k, const void* v, void* y, void* workspace,
                             Stream stream) const {
  const Impl& d = *impl_;
  if (!engines()) throw Error("[Attention] cuDNN's SDPA has no engine for this problem");
  const std::vector<std::int64_t> uids{kQ, kK, kV, kO, kScale};
  const std::vector<void*> ptrs{const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), y,
                                const_cast<float*>(&scale_)};
  const Desc& pack = d.pack.get(uids, ptrs, workspace);
  lib_.set_stream(stream);
  KILN_CHECK(
      cudnnBackendExecute(lib_.cudnn(), d.plans[static_cast<std::size_t>(chosen_)]->d, pack.d));
}

}  // namespace kiln::runtime
