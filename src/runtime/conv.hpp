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

/// An INT8 convolution and its whole epilogue as one cuDNN graph (issue 13's fused INT8 step):
/// NHWC int8 input and [K, kh, kw, C] int8 filters with int32 accumulation, then in f32 the
/// per-channel multiplier, [+ bias], [+ an int8 residual times its scales], [Relu], and either the
/// output's quantization (division by its scales, rounding to nearest even, saturation to the
/// 8-bit type: zero points 0) or a float output. Where cuDNN's engines take no division, the
/// output is multiplied by the scales' reciprocals instead (divides() says which). Throws
/// UnsupportedError when no engine takes the graph. Tactics are positions in cuDNN's heuristic
/// list.
class Int8GraphConvolution {
 public:
  enum class Out { s8, u8, f32, f16, bf16 };
  struct Spec {
    ConvShape shape;  ///< one group, symmetric pads
    bool bias = false;
    bool residual = false;    ///< an int8 residual of the output's shape
    int residual_scales = 1;  ///< 1 (per tensor) or shape.k
    bool relu = false;
    Out out = Out::s8;
    int y_scales = 1;  ///< quantized outputs: 1 or shape.k
    std::size_t workspace_limit = std::size_t{256} << 20;
  };
  /// Device pointers of one run (f32 arrays: multiplier[K], bias[K], the scales).
  struct Data {
    const void* x = nullptr;
    const void* w = nullptr;
    const float* multiplier = nullptr;
    const float* bias = nullptr;
    const void* residual = nullptr;
    const float* residual_scale = nullptr;
    const float* y_scale = nullptr;  ///< the divisors (divides()) or their reciprocals
    void* y = nullptr;
  };
  Int8GraphConvolution(const Library& lib, const Spec& spec);
  ~Int8GraphConvolution();
  Int8GraphConvolution(const Int8GraphConvolution&) = delete;
  Int8GraphConvolution& operator=(const Int8GraphConvolution&) = delete;

  static bool quantized(Out o) { return o == Out::s8 || o == Out::u8; }
  /// Whether the output's scales divide (as QuantizeLinear does) or their reciprocals multiply.
  bool divides() const { return divides_; }
  std::size_t candidates() const;
  /// Times every candidate on `data` (its output written to data.y), each first checked by
  /// `accept` (given the candidate's index after its output is computed and synchronized), and
  /// keeps the fastest accepted; UnsupportedError when none is.
  ConvTactic tune(const Data& data, const std::function<bool(int)>& accept);
  /// Uses candidate t.algorithm; false (keeping the current one) when it does not finalize.
  bool set_tactic(const ConvTactic& t);
  const ConvTactic& tactic() const { return tactic_; }
  std::size_t workspace_bytes() const { return tactic_.workspace; }
  void forward(const Data& data, void* workspace, Stream stream) const;

 private:
  bool choose(int index);
  struct Impl;
  const Library& lib_;
  Spec spec_;
  bool divides_ = true;
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
