// Convolution and deconvolution through cuDNN, with bias, activation and a residual add fused
// where cuDNN can (cudnnConvolutionBiasActivationForward for ReLU) and by one pointwise kernel
// otherwise. The algorithm is chosen by timing cuDNN's candidates within a workspace limit.
// A runtime-internal header (not installed): its options carry the kernels' Activation.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "kiln/runtime/library.hpp"
#include "pointwise.cuh"

namespace kiln::runtime {

/// A 2-D convolution (1-D is H = 1). Pads are symmetric.
struct ConvShape {
  int n = 1, c = 1, h = 1, w = 1;  ///< input
  int k = 1;                       ///< output channels
  int kh = 1, kw = 1;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int groups = 1;
  /// Deconvolution only: extra rows and columns at the end of the output.
  int out_pad_h = 0, out_pad_w = 0;
};

struct ConvOptions {
  Precision precision = Precision::f32;
  Layout layout = Layout::nchw;
  bool allow_tf32 = false;
  kernels::Activation activation = kernels::Activation::identity;
  float act_alpha = 0.f, act_beta = 0.f;
  bool residual = false;  ///< y = act(conv + bias + residual)
  std::size_t workspace_limit = std::size_t{256} << 20;
};

/// One tactic: the algorithm, its workspace and its measured time.
struct ConvTactic {
  int algorithm = -1;
  std::size_t workspace = 0;
  float ms = 0.f;
  bool fused = false;  ///< bias + ReLU (+ residual) run inside cuDNN's fused call
  std::string describe() const;
};

/// What Convolution and Deconvolution share: the shape, the options, the output dims, the chosen
/// tactic and cuDNN's descriptors.
class CudnnConvolutionBase {
 public:
  CudnnConvolutionBase(const CudnnConvolutionBase&) = delete;
  CudnnConvolutionBase& operator=(const CudnnConvolutionBase&) = delete;

  /// [N, K, OH, OW] (logical dims; NHWC stores them as N, OH, OW, K).
  std::array<int, 4> output_dims() const { return out_; }
  const ConvTactic& tactic() const { return tactic_; }
  std::size_t workspace_bytes() const { return tactic_.workspace; }

 protected:
  CudnnConvolutionBase(const Library& lib, const ConvShape& shape, const ConvOptions& options);
  ~CudnnConvolutionBase();

  struct Impl;
  const Library& lib_;
  ConvShape shape_;
  ConvOptions opt_;
  std::array<int, 4> out_{};
  ConvTactic tactic_;
  std::unique_ptr<Impl> impl_;
};

class Convolution : public CudnnConvolutionBase {
 public:
  /// Weights: [K, C/g, kh, kw] for NCHW, [K, kh, kw, C/g] for NHWC, in the layer's precision;
  /// bias: [K] in the layer's precision. Throws kiln::Error naming the shape when cuDNN refuses.
  Convolution(const Library& lib, const ConvShape& shape, const ConvOptions& options);

  /// Times every candidate algorithm on scratch buffers and keeps the fastest that fits the
  /// workspace limit (and, in FP32 without TF32, uses no tensor-op math).
  ConvTactic tune();
  /// Uses a known tactic (from a plan or a timing cache) without timing.
  void set_tactic(const ConvTactic& t);

  /// y = act(conv(x, w) + bias + residual); bias may be null; residual has y's shape and is
  /// required when options.residual. workspace holds workspace_bytes().
  void forward(const void* x, const void* w, const void* bias, const void* residual, void* y,
               void* workspace, Stream stream) const;
};

/// The same convolution through cuDNN's graph (backend) API: conv, bias, residual add and the
/// activation as one operation graph, run by cuDNN's fused engines (on Hopper the fast ones are
/// reachable only this way). Activations: identity, ReLU, Clip, LeakyReLU, Sigmoid, Tanh.
/// Throws UnsupportedError when cuDNN has no engine for the graph (the caller falls back to
/// Convolution). Tactics are positions in cuDNN's heuristic list (stable for one cuDNN version).
class GraphConvolution {
 public:
  GraphConvolution(const Library& lib, const ConvShape& shape, const ConvOptions& options,
                   bool bias);
  ~GraphConvolution();
  GraphConvolution(const GraphConvolution&) = delete;
  GraphConvolution& operator=(const GraphConvolution&) = delete;

  /// Whether the activation of `options` is one the graph can fuse.
  static bool fusable(const ConvOptions& options);
  std::array<int, 4> output_dims() const { return out_; }
  /// Device data to tune on and a check of each candidate's output (a wrong engine is no
  /// tactic): x, w, bias, residual as forward() takes them, y the output buffer.
  struct TuneData {
    const void *x = nullptr, *w = nullptr, *bias = nullptr, *residual = nullptr;
    void* y = nullptr;
    std::function<bool(int candidate)> accept;
  };
  ConvTactic tune(const TuneData* data = nullptr);
  void set_tactic(const ConvTactic& t);
  const ConvTactic& tactic() const { return tactic_; }
  std::size_t workspace_bytes() const { return tactic_.workspace; }
  /// As Convolution::forward (bias required when made with bias; pads symmetric).
  void forward(const void* x, const void* w, const void* bias, const void* residual, void* y,
               void* workspace, Stream stream) const;

 private:
  bool choose(int index);
  struct Impl;
  const Library& lib_;
  ConvShape shape_;
  ConvOptions opt_;
  bool bias_ = false;
  std::array<int, 4> out_{};
  ConvTactic tactic_;
  std::unique_ptr<Impl> impl_;
};

/// ONNX ConvTranspose as cuDNN's backward-data convolution. Input [N, C, H, W], weights
/// [C, K/g, kh, kw] (NCHW) or [C, kh, kw, K/g] (NHWC), output [N, K, OH, OW] with
/// OH = stride*(H-1) + dil*(kh-1) + 1 - 2*pad + out_pad.
class Deconvolution : public CudnnConvolutionBase {
 public:
  Deconvolution(const Library& lib, const ConvShape& shape, const ConvOptions& options);

  ConvTactic tune();
  void set_tactic(const ConvTactic& t);
  void forward(const void* x, const void* w, const void* bias, const void* residual, void* y,
               void* workspace, Stream stream) const;
};

}  // namespace kiln::runtime
