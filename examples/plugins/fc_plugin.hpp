// A fully connected layer as a kiln plugin: y = x W^T (+ b), x [N, K], W [M, K], b [M].
// The type (here, for the DSL's custom<FullyConnected, ...>); fc_plugin.cpp registers it.
// cuBLASLt on the GPU (the bias fused as its epilogue), a loop on the CPU. Built into a program
// or into a shared library that `kiln build/run --plugin` loads; ONNX nodes of domain
// "kiln.examples" (version 1) op "FullyConnected" run it.
#pragma once

#include <cublasLt.h>

#include <stdexcept>
#include <string>

#include "kiln/ir/shape_rules.hpp"
#include "kiln/plugin.hpp"

namespace kiln_examples {

using kiln::DType;
using kiln::TensorType;

struct FullyConnected {
  static constexpr const char* domain = "kiln.examples";
  static constexpr const char* op = "FullyConnected";
  static constexpr int version = 1;
  static constexpr int min_inputs = 2, max_inputs = 3, outputs = 1;
  struct Attrs {
    std::int64_t out_features = 0;
    template <class V>
    void visit(V& v) {
      v("out_features", out_features);
    }
  };

  // The shape, once: the IR's inference and the DSL's compile-time check (custom<>) both run it.
  static constexpr std::array<std::size_t, 3> input_ranks = {2, 2, 1};
  template <class... Bias>
  static constexpr std::array<std::int64_t, 2> rule(const Attrs& a, std::array<std::int64_t, 2> x,
                                                    std::array<std::int64_t, 2> w, Bias... b) {
    namespace r = kiln::rules;
    r::positive("out_features must be 1 or more, got {}", a.out_features);
    r::equal_dims("rows of W (out_features)", a.out_features, w[0]);
    r::equal_dims("columns of W (x's columns)", x[1], w[1]);
    (r::equal_dims("bias values (out_features)", a.out_features, b[0]), ...);
    return {x[0], a.out_features};
  }
  static bool supports(DType t) { return t == DType::f32 || t == DType::f16; }

  static void reference(const Attrs& a, const std::vector<const kiln::Tensor*>& in,
                        std::vector<kiln::Tensor>& out) {
    const std::vector<double> x = in[0]->to_doubles(), w = in[1]->to_doubles();
    const std::vector<double> b =
        in.size() > 2 && in[2] ? in[2]->to_doubles() : std::vector<double>{};
    const std::int64_t n = in[0]->dim(0), k = in[0]->dim(1), m = a.out_features;
    std::vector<double> y(static_cast<std::size_t>(n * m));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < m; ++j) {
        double s = b.empty() ? 0.0 : b[j];
        for (std::int64_t p = 0; p < k; ++p) s += x[i * k + p] * w[j * k + p];
        y[i * m + j] = s;
      }
    out[0] = kiln::Tensor::from_doubles(in[0]->dtype(), {n, m}, y);
  }

  static cublasLtHandle_t handle() {  // made when a step is made (workspace()), never in a capture
    static cublasLtHandle_t h = [] {
      cublasLtHandle_t made = nullptr;
      if (cublasLtCreate(&made) != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("cublasLtCreate");
      return made;
    }();
    return h;
  }
  static std::size_t workspace(const Attrs&, const std::vector<TensorType>&) {
    handle();
    return 0;
  }

  // Column-major: y^T [M, N] = W [M, K] (W^T stored [K, M]) times x^T [K, N], + b per row.
  static void enqueue(const Attrs& a, const kiln::plugin::DeviceIo& io) {
    const auto &x = io.inputs[0], &w = io.inputs[1];
    const bool bias = io.inputs.size() > 2 && io.inputs[2].data;
    const std::uint64_t n = x.dims[0], k = x.dims[1], m = a.out_features;
    const cudaDataType_t t = x.dtype == DType::f16 ? CUDA_R_16F : CUDA_R_32F;
    auto check = [](cublasStatus_t s) {
      if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("FullyConnected: cuBLASLt failed");
    };
    cublasLtMatmulDesc_t d = nullptr;
    cublasLtMatrixLayout_t lw = nullptr, lx = nullptr, ly = nullptr;
    check(cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t tr = CUBLAS_OP_T;
    check(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    if (bias) {
      const cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
      const void* b = io.inputs[2].data;
      check(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
      check(cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
    }
    check(cublasLtMatrixLayoutCreate(&lw, t, k, m, k));
    check(cublasLtMatrixLayoutCreate(&lx, t, k, n, k));
    check(cublasLtMatrixLayoutCreate(&ly, t, m, n, m));
    const float one = 1.f, zero = 0.f;
    const auto s = cublasLtMatmul(handle(), d, &one, w.data, lw, x.data, lx, &zero,
                                  io.outputs[0].data, ly, io.outputs[0].data, ly, nullptr, nullptr,
                                  0, static_cast<cudaStream_t>(io.stream));
    cublasLtMatrixLayoutDestroy(ly);
    cublasLtMatrixLayoutDestroy(lx);
    cublasLtMatrixLayoutDestroy(lw);
    cublasLtMatmulDescDestroy(d);
    check(s);
  }
};

}  // namespace kiln_examples
