#include "kiln/runtime/rnn.hpp"

#include <cstdint>
#include <vector>

#include "check.hpp"
#include "copy.cuh"
#include "engine_impl.hpp"
#include "kiln/ir/dtype.hpp"
#include "library_types.hpp"

namespace kiln::runtime {

namespace {

constexpr std::size_t kAlign = 256;
std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

cudnnRNNMode_t dnn_mode(RnnCell c) {
  switch (c) {
    case RnnCell::lstm: return CUDNN_LSTM;
    case RnnCell::gru: return CUDNN_GRU;
    case RnnCell::rnn_tanh: return CUDNN_RNN_TANH;
    case RnnCell::rnn_relu: return CUDNN_RNN_RELU;
  }
  throw Error("[RNN] unknown cell kind");
}

/// The ONNX gate that cuDNN's gate `g` (the linear layer g, or g + G for R) holds.
/// cuDNN LSTM: i, f, g(c), o; ONNX: i, o, f, c. cuDNN GRU: r, z, h; ONNX: z, r, h.
int onnx_gate(RnnCell c, int g) {
  static constexpr int lstm[4] = {0, 2, 3, 1};
  static constexpr int gru[3] = {1, 0, 2};
  switch (c) {
    case RnnCell::lstm: return lstm[g];
    case RnnCell::gru: return gru[g];
    default: return g;
  }
}

/// A cuDNN tensor descriptor freed on scope exit (for the queries of pack_weights).
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { KILN_CHECK(cudnnCreateTensorDescriptor(&d)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
};
}  // namespace

const char* rnn_op_name(RnnCell cell) {
  switch (cell) {
    case RnnCell::lstm: return "LSTM";
    case RnnCell::gru: return "GRU";
    case RnnCell::rnn_tanh:
    case RnnCell::rnn_relu: return "RNN";
  }
  return "RNN";
}

int rnn_gates(RnnCell cell) {
  switch (cell) {
    case RnnCell::lstm: return 4;
    case RnnCell::gru: return 3;
    default: return 1;
  }
}

std::string rnn_shape_text(const RnnShape& s) {
  const char* act = s.cell == RnnCell::rnn_relu   ? " (relu)"
                    : s.cell == RnnCell::rnn_tanh ? " (tanh)"
                                                  : "";
  const char* dir = s.directions == 2 ? "bidirectional" : s.reverse ? "reverse" : "forward";
  std::string text = fmt::format("{}{} seq {}, batch {}, input {}, hidden {}, ",
                                 rnn_op_name(s.cell), act, s.seq, s.batch, s.input, s.hidden);
  if (s.directions == 1 || s.directions == 2) return text + dir;
  return text + fmt::format("directions {}", s.directions);
}

struct Rnn::Impl {
  cudnnRNNDescriptor_t rnn = nullptr;
  cudnnRNNDataDescriptor_t x = nullptr, y = nullptr;
  cudnnTensorDescriptor_t h = nullptr;  // [dirs, batch, hidden], also for c
  DeviceBuffer seq_lengths;             // int32 [batch], all `seq`: cuDNN's devSeqLengths
  std::size_t weight_bytes = 0;
  std::size_t cudnn_workspace = 0;
  // Workspace: [cuDNN's workspace | Y in cuDNN's layout | X reversed in time]
  std::size_t y_offset = 0, x_offset = 0, total_workspace = 0;

  ~Impl() {
    if (h) cudnnDestroyTensorDescriptor(h);
    if (y) cudnnDestroyRNNDataDescriptor(y);
    if (x) cudnnDestroyRNNDataDescriptor(x);
    if (rnn) cudnnDestroyRNNDescriptor(rnn);
  }
};

Rnn::Rnn(const Library& lib, const RnnShape& s, Precision precision)
    : lib_(lib), shape_(s), precision_(precision), impl_(std::make_unique<Impl>()) {
  const int cell = static_cast<int>(s.cell);
  if (cell < 0 || cell > static_cast<int>(RnnCell::rnn_relu))
    throw Error(fmt::format("[RNN] unknown cell kind {}", cell));
  const std::string op = rnn_op_name(s.cell);
  if (s.seq < 1 || s.batch < 1 || s.input < 1 || s.hidden < 1 ||
      (s.directions != 1 && s.directions != 2))
    throw Error(fmt::format("[{}] bad shape: {} (every size must be positive, directions 1 or 2)",
                            op, rnn_shape_text(s)));
  if (s.reverse && s.directions != 1)
    throw Error(
        fmt::format("[{}] bad shape: {} (reverse needs directions 1)", op, rnn_shape_text(s)));

  Impl& d = *impl_;
  const cudnnDataType_t dt = detail::cudnn_type(precision);
  const std::size_t es = element_size(precision);
  try {
    KILN_CHECK(cudnnCreateRNNDescriptor(&d.rnn));
    KILN_CHECK(cudnnCreateRNNDataDescriptor(&d.x));
    KILN_CHECK(cudnnCreateRNNDataDescriptor(&d.y));
    KILN_CHECK(cudnnCreateTensorDescriptor(&d.h));
    // FP32: FMA only (no TF32). FP16/BF16: tensor cores, float accumulation.
    const cudnnMathType_t math =
        precision == Precision::f32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    KILN_CHECK(cudnnSetRNNDescriptor_v8(
        d.rnn, CUDNN_RNN_ALGO_STANDARD, dnn_mode(s.cell), CUDNN_RNN_DOUBLE_BIAS,
        s.directions == 2 ? CUDNN_BIDIRECTIONAL : CUDNN_UNIDIRECTIONAL, CUDNN_LINEAR_INPUT, dt,
        CUDNN_DATA_FLOAT, math, s.input, s.hidden, /*projSize=*/s.hidden, /*numLayers=*/1,
        /*dropoutDesc=*/nullptr, CUDNN_RNN_PADDED_IO_DISABLED));
    // Every sequence has `seq` steps: the packed layout is then plain [seq, batch, vector].
    const std::vector<int> lens(static_cast<std::size_t>(s.batch), s.seq);
    KILN_CHECK(cudnnSetRNNDataDescriptor(d.x, dt, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, s.seq,
                                         s.batch, s.input, lens.data(), nullptr));
    KILN_CHECK(cudnnSetRNNDataDescriptor(d.y, dt, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, s.seq,
                                         s.batch, s.directions * s.hidden, lens.data(), nullptr));
    const int hdims[3] = {s.directions, s.batch, s.hidden};
    const int hstrides[3] = {s.batch * s.hidden, s.hidden, 1};
    KILN_CHECK(cudnnSetTensorNdDescriptor(d.h, dt, 3, hdims, hstrides));
    d.seq_lengths = DeviceBuffer(lens.size() * sizeof(int));
    d.seq_lengths.upload(lens.data(), lens.size() * sizeof(int));

    KILN_CHECK(cudnnGetRNNWeightSpaceSize(lib_.cudnn(), d.rnn, &d.weight_bytes));
    std::size_t reserve = 0;
    KILN_CHECK(cudnnGetRNNTempSpaceSizes(lib_.cudnn(), d.rnn, CUDNN_FWD_MODE_INFERENCE, d.x,
                                         &d.cudnn_workspace, &reserve));
  } catch (const Error& e) {
    throw Error(fmt::format("[{}] cuDNN refuses {}: {}", op, rnn_shape_text(s), e.what()));
  }
  const std::size_t y_bytes = std::size_t(s.seq) * s.batch * s.directions * s.hidden * es;
  const std::size_t x_bytes = s.reverse ? std::size_t(s.seq) * s.batch * s.input * es : 0;
  d.y_offset = align_up(d.cudnn_workspace);
  d.x_offset = d.y_offset + align_up(y_bytes);
  d.total_workspace = d.x_offset + align_up(x_bytes);
}

Rnn::~Rnn() = default;

std::size_t Rnn::weight_space_bytes() const { return impl_->weight_bytes; }
std::size_t Rnn::workspace_bytes() const { return impl_->total_workspace; }

void Rnn::pack_weights(const float* W, const float* R, const float* B, void* weight_space) const {
  const Impl& d = *impl_;
  const RnnShape& s = shape_;
  const std::string op = rnn_op_name(s.cell);
  if (W == nullptr || R == nullptr || weight_space == nullptr)
    throw Error(fmt::format("[{}] pack_weights needs W, R and the weight space", op));
  const int G = rnn_gates(s.cell), H = s.hidden, I = s.input;
  const std::size_t es = element_size(precision_);
  std::vector<float> host(d.weight_bytes / es, 0.f);  // unused padding stays zero
  TensorDesc mdesc, bdesc;
  auto offset_of = [&](const void* addr) {
    const std::ptrdiff_t bytes =
        static_cast<const char*>(addr) - static_cast<const char*>(weight_space);
    if (bytes < 0 || static_cast<std::size_t>(bytes) >= d.weight_bytes ||
        bytes % static_cast<std::ptrdiff_t>(es) != 0)
      throw Error(fmt::format("[{}] cuDNN placed a parameter at byte {} of a {}-byte weight space",
                              op, bytes, d.weight_bytes));
    return static_cast<std::size_t>(bytes) / es;
  };
  auto describe = [](cudnnTensorDescriptor_t t, int(&dims)[3], int(&strides)[3]) {
    cudnnDataType_t type{};
    int nb = 0;
    dims[0] = dims[1] = dims[2] = 1;
    strides[0] = strides[1] = strides[2] = 1;
    KILN_CHECK(cudnnGetTensorNdDescriptor(t, 3, &type, &nb, dims, strides));
    return nb;
  };

  for (int dir = 0; dir < s.directions; ++dir) {
    for (int id = 0; id < 2 * G; ++id) {
      const bool recurrent = id >= G;  // cuDNN: linear layers 0..G-1 act on x, G..2G-1 on h
      const int gate = onnx_gate(s.cell, id % G);
      const int cols = recurrent ? H : I;
      void* maddr = nullptr;
      void* baddr = nullptr;
      KILN_CHECK(cudnnGetRNNWeightParams(lib_.cudnn(), d.rnn, dir, d.weight_bytes, weight_space, id,
                                         mdesc.d, &maddr, bdesc.d, &baddr));
      int dims[3], strides[3];
      if (maddr != nullptr) {
        // The matrix of one gate: [1, hidden, cols], row-major in cuDNN's packing.
        const int nb = describe(mdesc.d, dims, strides);
        if (nb != 3 || dims[0] != 1 || dims[1] != H || dims[2] != cols)
          throw Error(fmt::format(
              "[{}] cuDNN's matrix {} of direction {} is [{},{},{}] ({} dims), expected [1,{},{}]",
              op, id, dir, dims[0], dims[1], dims[2], nb, H, cols));
        const float* src =
            (recurrent ? R : W) + (std::size_t(dir) * G * H + std::size_t(gate) * H) * cols;
        const std::size_t base = offset_of(maddr);
        const std::size_t last =
            base + std::size_t(H - 1) * strides[1] + std::size_t(cols - 1) * strides[2];
        if (strides[1] < 1 || strides[2] < 1 || last >= host.size())
          throw Error(fmt::format(
              "[{}] cuDNN's matrix {} of direction {} (strides {},{}) overruns the weight space",
              op, id, dir, strides[1], strides[2]));
        for (int k = 0; k < H; ++k)
          for (int j = 0; j < cols; ++j)
            host[base + std::size_t(k) * strides[1] + std::size_t(j) * strides[2]] =
                src[std::size_t(k) * cols + j];
      }
      if (baddr != nullptr) {
        // The bias of one gate: H values (Wb for linear layers on x, Rb on h).
        const int nb = describe(bdesc.d, dims, strides);
        const long n = long(dims[0]) * dims[1] * (nb > 2 ? dims[2] : 1);
        if (n != H)
          throw Error(
              fmt::format("[{}] cuDNN's bias {} of direction {} holds {} values, expected {}", op,
                          id, dir, n, H));
        const std::size_t base = offset_of(baddr);
        if (base + H > host.size())
          throw Error(fmt::format("[{}] cuDNN's bias {} of direction {} overruns the weight space",
                                  op, id, dir));
        const float* src = B == nullptr
                               ? nullptr
                               : B + std::size_t(dir) * 2 * G * H +
                                     (recurrent ? std::size_t(G) * H : 0) + std::size_t(gate) * H;
        for (int k = 0; k < H; ++k) host[base + std::size_t(k)] = src ? src[k] : 0.f;
      }
    }
  }
  const auto stored =
      detail::to_device_format(host.data(), static_cast<std::int64_t>(host.size()), precision_);
  KILN_CHECK(cudaMemcpy(weight_space, stored.data(), stored.size(), cudaMemcpyHostToDevice));
}

void Rnn::forward(const void* x, const void* h0, const void* c0, const void* weight_space, void* y,
                  void* y_h, void* y_c, void* workspace, Stream stream) const {
  const Impl& d = *impl_;
  const RnnShape& s = shape_;
  const std::size_t es = element_size(precision_);
  const std::int64_t S = s.seq, N = s.batch, D = s.directions, H = s.hidden, I = s.input;
  char* ws = static_cast<char*>(workspace);
  if (d.total_workspace != 0 && ws == nullptr)
    throw Error(fmt::format("[{}] forward needs a workspace of {} bytes", rnn_op_name(s.cell),
                            d.total_workspace));
  lib_.set_stream(stream);

  // Reverse: run cuDNN forward in time on X reversed, then reverse Y back.
  const void* x_in = x;
  if (s.reverse) {
    kernels::Dims dims;
    dims.rank = 2, dims.d[0] = S, dims.d[1] = N * I;
    kernels::Strides src, dst = kernels::contiguous_strides(dims);
    src.s[0] = -N * I, src.s[1] = 1;
    KILN_CHECK(kernels::strided_copy(es, dims, static_cast<const char*>(x) + (S - 1) * N * I * es,
                                     src, ws + d.x_offset, dst, stream));
    x_in = ws + d.x_offset;
  }
  // cuDNN's Y is [seq, batch, dirs*hidden]; it is ONNX's [seq, dirs, batch, hidden] only for one
  // forward direction.
  void* y_dnn = (y != nullptr && D == 1 && !s.reverse) ? y : ws + d.y_offset;
  const bool lstm = s.cell == RnnCell::lstm;
  KILN_CHECK(cudnnRNNForward(lib_.cudnn(), d.rnn, CUDNN_FWD_MODE_INFERENCE,
                             d.seq_lengths.as<std::int32_t>(), d.x, x_in, d.y, y_dnn, d.h, h0, y_h,
                             d.h, lstm ? c0 : nullptr, lstm ? y_c : nullptr, d.weight_bytes,
                             weight_space, d.cudnn_workspace, ws, 0, nullptr));
  if (y != nullptr && y_dnn != y) {
    kernels::Dims dims;  // over ONNX Y [S, D, N, H]
    dims.rank = 4, dims.d[0] = S, dims.d[1] = D, dims.d[2] = N, dims.d[3] = H;
    kernels::Strides src, dst = kernels::contiguous_strides(dims);
    src.s[0] = N * D * H, src.s[1] = H, src.s[2] = D * H, src.s[3] = 1;
    const char* from = static_cast<const char*>(y_dnn);
    if (s.reverse) {
      from += (S - 1) * N * D * H * es;
      src.s[0] = -src.s[0];
    }
    KILN_CHECK(kernels::strided_copy(es, dims, from, src, y, dst, stream));
  }
}

}  // namespace kiln::runtime
