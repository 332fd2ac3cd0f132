#include "pointwise_ops.cuh"

namespace kiln::kernels {

namespace {
using detail::apply;
using detail::load;
using detail::store;

template <class T, bool Contiguous>
__global__ void chain_kernel(const PointwiseChain c, const T* __restrict__ x, T* y,
                             std::int64_t n) {
  KILN_GRID_LOOP(i, n) {
    float v = load(x, Contiguous ? i : detail::offset_of(i, c.dims, c.x_strides));
    for (int s = 0; s < c.steps; ++s) {
      const PointwiseStep& st = c.step[s];
      if (st.kind == PointwiseStep::unary) {
        v = apply(st.op, v, 0.f, st.alpha, st.beta);
      } else {
        const float o = load(static_cast<const T*>(st.operand),
                             Contiguous ? i : detail::offset_of(i, c.dims, st.strides));
        v = st.kind == PointwiseStep::binary ? apply(st.op, v, o, 0.f, 0.f)
                                             : apply(st.op, o, v, 0.f, 0.f);
      }
    }
    store(y, i, v);
  }
}

bool is_contiguous(const Dims& d, const Strides& s) {
  const Strides c = contiguous_strides(d);
  for (int k = 0; k < d.rank; ++k)
    if (d.d[k] != 1 && s.s[k] != c.s[k]) return false;
  return true;
}
}  // namespace

cudaError_t pointwise_chain(Elem elem, const PointwiseChain& chain, const void* x, void* y,
                            cudaStream_t stream) {
  if (chain.steps < 0 || chain.steps > kMaxChainSteps || chain.dims.rank < 0 ||
      chain.dims.rank > kMaxDims)
    return cudaErrorInvalidValue;
  bool contiguous = is_contiguous(chain.dims, chain.x_strides);
  for (int s = 0; s < chain.steps; ++s) {
    const PointwiseStep& st = chain.step[s];
    if (!is_op(st.op) || is_unary(st.op) != (st.kind == PointwiseStep::unary))
      return cudaErrorInvalidValue;
    if (st.kind != PointwiseStep::unary) {
      if (st.operand == nullptr) return cudaErrorInvalidValue;
      contiguous = contiguous && is_contiguous(chain.dims, st.strides);
    }
  }
  const std::int64_t n = chain.dims.numel();
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const unsigned blocks = detail::grid_for(n, threads);
  return detail::dispatch(elem, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    if (contiguous)
      chain_kernel<T, true>
          <<<blocks, threads, 0, stream>>>(chain, static_cast<const T*>(x), static_cast<T*>(y), n);
    else
      chain_kernel<T, false>
          <<<blocks, threads, 0, stream>>>(chain, static_cast<const T*>(x), static_cast<T*>(y), n);
    return cudaGetLastError();
  });
}

cudaError_t activation(Elem elem, Activation act, float alpha, float beta, const void* x, void* y,
                       std::int64_t n, cudaStream_t stream) {
  PointwiseChain c;
  c.dims.rank = 1;
  c.dims.d[0] = n;
  c.x_strides.s[0] = 1;
  c.steps = 1;
  c.step[0].kind = PointwiseStep::unary;
  c.step[0].op = act;
  c.step[0].alpha = alpha;
  c.step[0].beta = beta;
  return pointwise_chain(elem, c, x, y, stream);
}

cudaError_t activation_f32(Activation act, const float* x, float* y, std::int64_t n,
                           cudaStream_t stream) {
  return activation(Elem::f32, act, 0.f, 0.f, x, y, n, stream);
}

cudaError_t binary(Elem elem, PointwiseOp op, const Dims& dims, const void* a,
                   const Strides& a_strides, const void* b, const Strides& b_strides, void* y,
                   cudaStream_t stream) {
  PointwiseChain c;
  c.dims = dims;
  c.x_strides = a_strides;
  c.steps = 1;
  c.step[0].kind = PointwiseStep::binary;
  c.step[0].op = op;
  c.step[0].operand = b;
  c.step[0].strides = b_strides;
  return pointwise_chain(elem, c, a, y, stream);
}

}  // namespace kiln::kernels
