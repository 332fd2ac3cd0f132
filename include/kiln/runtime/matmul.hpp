// Matrix products through cuBLASLt: row-major C[m,n] = alpha * op(A) op(B) (+ beta * C)
// (+ bias[n]) with a ReLU or GELU epilogue, batched with strides (0 broadcasts). FP32 computes
// without TF32 unless asked for; FP16 uses tensor cores with FP32 accumulation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kiln/runtime/library.hpp"

namespace kiln::runtime {

/// cuBLASLt's GELU is the tanh approximation (ONNX Gelu approximate="tanh").
enum class Epilogue : int { none = 0, relu, gelu_tanh };

struct MatmulShape {
  std::int64_t batch = 1, m = 1, n = 1, k = 1;
  bool trans_a = false;  ///< A stored [k, m]
  bool trans_b = false;  ///< B stored [n, k]
  /// Element strides between batches; -1 means packed (m*k, k*n, m*n), 0 broadcasts.
  std::int64_t stride_a = -1, stride_b = -1, stride_c = -1;
};

struct MatmulOptions {
  Precision precision = Precision::f32;
  bool allow_tf32 = false;
  Epilogue epilogue = Epilogue::none;
  bool bias = false;              ///< bias[n] in the layer's precision
  float alpha = 1.f, beta = 0.f;  ///< beta != 0 accumulates into the existing C
  std::size_t workspace_limit = std::size_t{64} << 20;
  /// 8-bit integers: A and B int8, C int32, exact int32 accumulation (cuBLASLt's IMMA kernels).
  /// cuBLASLt's integer product takes A row-major [m, k] and B stored [n, k] (trans_b) only, n
  /// and k multiples of 4, with no epilogue, bias, alpha or beta (the caller's epilogue scales).
  bool int8 = false;
  /// FP8: A and B E4M3 (ONNX f8e4m3fn), C f32, f32 accumulation (Hopper's FP8 tensor cores), in
  /// the INT8 product's form (A [m, k], B [n, k], no epilogue) with n and k multiples of 16.
  bool fp8 = false;
};

struct MatmulTactic {
  int index = 0;  ///< position in cuBLASLt's heuristic list
  std::size_t workspace = 0;
  float ms = 0.f;
};

class Matmul {
 public:
  Matmul(const Library& lib, const MatmulShape& shape, const MatmulOptions& options);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  /// Times cuBLASLt's candidate algorithms (up to 8 from its heuristic) on scratch buffers and
  /// keeps the fastest.
  MatmulTactic tune();
  /// Uses a known tactic (from a timing cache) without timing; an index past cuBLASLt's list
  /// keeps the heuristic's first choice.
  void set_tactic(const MatmulTactic& t);
  const MatmulTactic& tactic() const { return tactic_; }
  std::size_t workspace_bytes() const { return tactic_.workspace; }
  /// c = alpha * op(a) op(b) + beta * c (+ bias) with the epilogue.
  void run(const void* a, const void* b, const void* bias, void* c, void* workspace,
           Stream stream) const;

 private:
  struct Impl;
  const Library& lib_;
  MatmulShape shape_;
  MatmulOptions opt_;
  MatmulTactic tactic_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::runtime
