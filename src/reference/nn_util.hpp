// Helpers shared by the nn reference kernels (conv.cpp, pool.cpp, norm.cpp, matmul.cpp, nn.cpp):
// double buffers, float-dtype checks, and windows normalized to three spatial axes.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "kernel_util.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/ir/window.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::reference {

using i64 = std::int64_t;

void register_conv(KernelRegistry& r);    // conv.cpp: Conv, ConvTranspose
void register_pool(KernelRegistry& r);    // pool.cpp: MaxPool, AveragePool, LpPool, Global*Pool
void register_norm(KernelRegistry& r);    // norm.cpp: LRN, *Normalization, Scale
void register_matmul(KernelRegistry& r);  // matmul.cpp: Gemm, MatMul

/// All elements of a tensor as doubles (any dtype).
inline std::vector<double> to_f64(const Tensor& t) {
  if (is_storage_only(t.dtype())) return t.to_doubles();
  std::vector<double> v(static_cast<std::size_t>(t.numel()));
  visit_dtype(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.data<T>();
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(to_compute(p[i]));
  });
  return v;
}

/// A tensor of `dtype` holding `v` (rounded to the dtype).
inline Tensor from_f64(DType dtype, std::vector<i64> dims, const std::vector<double>& v) {
  Tensor t(dtype, std::move(dims));
  if (is_storage_only(dtype)) {
    for (std::size_t i = 0; i < v.size(); ++i) t.set(static_cast<i64>(i), v[i]);
    return t;
  }
  visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (std::size_t i = 0; i < v.size(); ++i)
      p[i] = from_compute<T>(static_cast<compute_t<T>>(v[i]));
  });
  return t;
}

/// Throws UnsupportedError unless input i is a float tensor.
inline const Tensor& float_input(KernelContext& ctx, std::size_t i) {
  const Tensor& t = ctx.in(i);
  if (!is_float(t.dtype()))
    ctx.unsupported(fmt::format("input {} has dtype {}; this op takes f32, f64, f16 or bf16", i,
                                dtype_name(t.dtype())));
  return t;
}

/// Checks that input i has `n` elements (a per-channel parameter).
inline void require_count(KernelContext& ctx, const Tensor& t, i64 n, const char* what) {
  if (t.numel() != n)
    throw ShapeError(fmt::format("{}expected {} {}, got {} (shape {})", ctx.node.where(), n, what,
                                 t.numel(), dims_to_string(t.dims())));
}

/// Runs the op's shape rule (the IR's) on the tensors this kernel was given; returns the output
/// types. For kernels whose input checks are the shape rule's own (attention, detection).
inline std::vector<TensorType> check_shapes(const KernelContext& ctx) {
  std::vector<TensorType> types(ctx.num_inputs());
  std::vector<const TensorType*> in(ctx.num_inputs(), nullptr);
  for (std::size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has(i)) {
      types[i] = TensorType{ctx.in(i).dtype(), ctx.in(i).shape()};
      in[i] = &types[i];
    }
  const OpSchema* s = OpRegistry::instance().find(ctx.node.op);
  return s->infer(
      InferContext(ctx.node, in, std::vector<const Tensor*>(ctx.num_inputs(), nullptr)));
}

inline std::vector<i64> spatial_dims(const Tensor& t) {
  return std::vector<i64>(t.dims().begin() + 2, t.dims().end());
}

/// A window over three spatial axes (leading axes of size 1 added for 1-D and 2-D inputs).
struct Geo3 {
  std::array<i64, 3> in{1, 1, 1}, k{1, 1, 1}, s{1, 1, 1}, d{1, 1, 1}, pb{0, 0, 0}, pe{0, 0, 0},
      out{1, 1, 1};
  i64 in_size() const { return in[0] * in[1] * in[2]; }
  i64 out_size() const { return out[0] * out[1] * out[2]; }
  i64 k_size() const { return k[0] * k[1] * k[2]; }
};

inline Geo3 geo3(KernelContext& ctx, const std::vector<i64>& in, const ops::Window& w) {
  const std::size_t r = in.size();
  if (r > 3) ctx.unsupported(fmt::format("{} spatial axes (the reference handles 1 to 3)", r));
  if (r == 0) ctx.fail("input must have at least one spatial axis ([N,C,spatial...])");
  Geo3 g;
  const std::size_t o = 3 - r;
  for (std::size_t a = 0; a < r; ++a) {
    g.in[o + a] = in[a];
    g.k[o + a] = w.kernel[a];
    g.s[o + a] = w.strides[a];
    g.d[o + a] = w.dilations[a];
    g.pb[o + a] = w.pad_begin[a];
    g.pe[o + a] = w.pad_end[a];
    g.out[o + a] = w.out[a];
  }
  return g;
}

}  // namespace kiln::reference
