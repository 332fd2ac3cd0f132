// Porting conversions: PyTorch and TensorFlow weight layouts to the IR's.
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln::port {

namespace {

/// A float weight as f32 (any float dtype), or a WeightError naming it.
Tensor as_f32(const Tensor& t, std::string_view what) {
  if (!t.defined()) throw WeightError(fmt::format("{} is missing", what));
  if (!is_float(t.dtype()))
    throw WeightError(
        fmt::format("{} has dtype {}, expected a float type", what, dtype_name(t.dtype())));
  return t.dtype() == DType::f32 ? t : t.cast(DType::f32);
}

void expect_dims(const Tensor& t, const std::vector<std::int64_t>& dims, std::string_view what) {
  if (t.dims() != dims)
    throw WeightError(fmt::format("{} has dims {}, expected {}", what, dims_to_string(t.dims()),
                                  dims_to_string(dims)));
}

/// Rows [begin, end) of a row-major tensor's first axis.
Tensor rows(const Tensor& t, std::int64_t begin, std::int64_t end) {
  std::vector<std::int64_t> dims = t.dims();
  const std::size_t row_bytes = t.nbytes() / static_cast<std::size_t>(dims[0] ? dims[0] : 1);
  dims[0] = end - begin;
  Tensor out(t.dtype(), dims);
  if (out.nbytes()) std::memcpy(out.raw(), t.raw() + begin * row_bytes, out.nbytes());
  return out;
}

Tensor concat1d(const Tensor& a, const Tensor& b) {
  Tensor out(a.dtype(), {a.numel() + b.numel()});
  if (a.nbytes()) std::memcpy(out.raw(), a.raw(), a.nbytes());
  if (b.nbytes()) std::memcpy(out.raw() + a.nbytes(), b.raw(), b.nbytes());
  return out;
}

char canonical_gate(char g) { return g == 'g' ? 'c' : g; }

struct TfParts {
  Tensor w, r, bias;  // [4H,in], [4H,H], [4H], gates in the requested order
};

TfParts tf_parts(const Tensor& kernel_in, const Tensor& bias_in, std::int64_t input_size,
                 double forget_bias, std::string_view to) {
  const Tensor kernel = as_f32(kernel_in, "TF LSTM kernel");
  if (kernel.rank() != 2 || kernel.dim(1) % 4 != 0 || kernel.dim(1) == 0)
    throw WeightError(fmt::format("TF LSTM kernel has dims {}, expected [input+hidden, 4*hidden]",
                                  dims_to_string(kernel.dims())));
  const std::int64_t hidden = kernel.dim(1) / 4;
  if (input_size < 0 || kernel.dim(0) != input_size + hidden)
    throw WeightError(fmt::format(
        "TF LSTM kernel has dims {}: {} rows, expected input {} + hidden {} = {}",
        dims_to_string(kernel.dims()), kernel.dim(0), input_size, hidden, input_size + hidden));
  const Tensor bias =
      bias_in.defined() ? as_f32(bias_in, "TF LSTM bias") : Tensor(DType::f32, {4 * hidden});
  if (bias.numel() != 4 * hidden)
    throw WeightError(fmt::format("TF LSTM bias has dims {}, expected [{}]",
                                  dims_to_string(bias.dims()), 4 * hidden));
  Tensor b = bias.reshaped({4 * hidden}).clone();
  float* pb = b.data<float>();
  const std::size_t f = kTfLstmGates.find('f');
  for (std::int64_t j = 0; j < hidden; ++j)
    pb[static_cast<std::int64_t>(f) * hidden + j] += static_cast<float>(forget_bias);
  const std::int64_t perm[] = {1, 0};
  TfParts out;
  out.w = reorder_gates(permute(rows(kernel, 0, input_size), perm), 0, kTfLstmGates, to);
  out.r = reorder_gates(permute(rows(kernel, input_size, input_size + hidden), perm), 0,
                        kTfLstmGates, to);
  out.bias = reorder_gates(b, 0, kTfLstmGates, to);
  return out;
}

}  // namespace

Tensor permute(const Tensor& t, std::span<const std::int64_t> perm) {
  const std::size_t rank = t.rank();
  if (perm.size() != rank)
    throw ShapeError(
        fmt::format("permutation of {} axes given for a tensor of rank {}", perm.size(), rank));
  std::vector<bool> used(rank, false);
  std::vector<std::int64_t> dims(rank);
  for (std::size_t i = 0; i < rank; ++i) {
    const std::int64_t p = perm[i];
    if (p < 0 || p >= static_cast<std::int64_t>(rank) || used[p])
      throw ShapeError(fmt::format("[{}] is not a permutation of {} axes",
                                   fmt::join(perm.begin(), perm.end(), ","), rank));
    used[p] = true;
    dims[i] = t.dim(p);
  }
  Tensor out(t.dtype(), dims);
  if (out.numel() == 0) return out;
  const std::size_t es = dtype_size(t.dtype());
  std::vector<std::int64_t> in_stride(rank, 1);
  for (std::size_t d = rank; d-- > 1;) in_stride[d - 1] = in_stride[d] * t.dim(d);
  std::vector<std::int64_t> stride(rank);  // input stride of each output axis
  for (std::size_t i = 0; i < rank; ++i) stride[i] = in_stride[perm[i]];
  std::vector<std::int64_t> idx(rank, 0);
  std::int64_t src = 0;
  std::byte* dst = out.raw();
  for (std::int64_t n = 0; n < out.numel(); ++n) {
    std::memcpy(dst + n * es, t.raw() + src * es, es);
    for (std::size_t d = rank; d-- > 0;) {  // odometer over the output index
      ++idx[d];
      src += stride[d];
      if (idx[d] < dims[d]) break;
      src -= stride[d] * dims[d];
      idx[d] = 0;
    }
  }
  return out;
}

Tensor hwio_to_kcrs(const Tensor& kernel) {
  if (kernel.rank() != 4)
    throw WeightError(fmt::format("TF convolution kernel has dims {}, expected [H,W,I,O]",
                                  dims_to_string(kernel.dims())));
  const std::int64_t perm[] = {3, 2, 0, 1};
  return permute(kernel, perm);
}

Tensor dense_to_ir(const Tensor& kernel) {
  if (kernel.rank() != 2)
    throw WeightError(fmt::format("TF dense kernel has dims {}, expected [in, out]",
                                  dims_to_string(kernel.dims())));
  const std::int64_t perm[] = {1, 0};
  return permute(kernel, perm);
}

Tensor reorder_gates(const Tensor& t, std::int64_t axis, std::string_view from,
                     std::string_view to) {
  const std::int64_t rank = static_cast<std::int64_t>(t.rank());
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    throw ShapeError(fmt::format("gate axis out of range for dims {}", dims_to_string(t.dims())));
  const std::size_t n = from.size();
  std::vector<std::size_t> src(n);
  bool ok = n > 0 && to.size() == n;
  for (std::size_t j = 0; ok && j < n; ++j) {
    std::size_t hits = 0;
    for (std::size_t k = 0; k < n; ++k)
      if (canonical_gate(from[k]) == canonical_gate(to[j])) src[j] = k, ++hits;
    ok = hits == 1;
  }
  if (!ok)
    throw Error(
        fmt::format("gate orders '{}' and '{}' do not name the same gates once each", from, to));
  if (t.dim(axis) % static_cast<std::int64_t>(n) != 0)
    throw ShapeError(fmt::format("dims {}: axis {} ({}) does not split into {} gates",
                                 dims_to_string(t.dims()), axis, t.dim(axis), n));
  std::int64_t outer = 1, inner = static_cast<std::int64_t>(dtype_size(t.dtype()));
  for (std::int64_t d = 0; d < axis; ++d) outer *= t.dim(d);
  for (std::int64_t d = axis + 1; d < rank; ++d) inner *= t.dim(d);
  const std::int64_t block = t.dim(axis) / static_cast<std::int64_t>(n) * inner;  // bytes per gate
  Tensor out(t.dtype(), t.dims());
  for (std::int64_t o = 0; o < outer; ++o) {
    const std::byte* in = t.raw() + o * block * static_cast<std::int64_t>(n);
    std::byte* dst = out.raw() + o * block * static_cast<std::int64_t>(n);
    for (std::size_t j = 0; j < n; ++j)
      if (block) std::memcpy(dst + j * block, in + src[j] * block, static_cast<std::size_t>(block));
  }
  return out;
}

LstmWeights lstm_from_torch(const Tensor& w_ih_in, const Tensor& w_hh_in, const Tensor& b_ih_in,
                            const Tensor& b_hh_in) {
  const Tensor w_ih = as_f32(w_ih_in, "LSTM weight_ih");
  const Tensor w_hh = as_f32(w_hh_in, "LSTM weight_hh");
  if (w_ih.rank() != 2 || w_ih.dim(0) % 4 != 0 || w_ih.dim(0) == 0)
    throw WeightError(fmt::format("LSTM weight_ih has dims {}, expected [4*hidden, input]",
                                  dims_to_string(w_ih.dims())));
  const std::int64_t h4 = w_ih.dim(0);
  expect_dims(w_hh, {h4, h4 / 4}, "LSTM weight_hh");
  auto bias = [&](const Tensor& b, std::string_view what) {
    if (!b.defined()) return Tensor(DType::f32, {h4});
    Tensor f = as_f32(b, what);
    if (f.numel() != h4)
      throw WeightError(
          fmt::format("{} has dims {}, expected [{}]", what, dims_to_string(f.dims()), h4));
    return f.reshaped({h4});
  };
  LstmWeights out;
  out.w = reorder_gates(w_ih, 0, kTorchLstmGates, kIrLstmGates);
  out.r = reorder_gates(w_hh, 0, kTorchLstmGates, kIrLstmGates);
  out.b = concat1d(reorder_gates(bias(b_ih_in, "LSTM bias_ih"), 0, kTorchLstmGates, kIrLstmGates),
                   reorder_gates(bias(b_hh_in, "LSTM bias_hh"), 0, kTorchLstmGates, kIrLstmGates));
  return out;
}

LstmWeights lstm_from_tf(const Tensor& kernel, const Tensor& bias, std::int64_t input_size,
                         double forget_bias) {
  TfParts p = tf_parts(kernel, bias, input_size, forget_bias, kIrLstmGates);
  LstmWeights out;
  out.w = std::move(p.w);
  out.r = std::move(p.r);
  out.b = concat1d(p.bias, Tensor(DType::f32, {p.bias.numel()}));
  return out;
}

void tf_lstm_to_torch(WeightMap& w, const std::string& kernel_name, const std::string& bias_name,
                      std::int64_t input_size, const std::string& prefix, int layer,
                      double forget_bias, bool erase_source) {
  const Tensor& kernel = w.at(kernel_name);
  const Tensor bias = w.contains(bias_name) ? w.at(bias_name) : Tensor();
  TfParts p;
  try {
    p = tf_parts(kernel, bias, input_size, forget_bias, kTorchLstmGates);
  } catch (const Error& e) {
    throw WeightError(fmt::format("TF LSTM '{}': {}", kernel_name, e.what()));
  }
  const std::string sfx = "_l" + std::to_string(layer);
  const Tensor zeros(DType::f32, {p.bias.numel()});
  if (erase_source) {
    WeightMap rest;
    for (const auto& [name, t] : w)
      if (name != kernel_name && name != bias_name) rest.add(name, t);
    w = std::move(rest);
  }
  w.set(prefix + "weight_ih" + sfx, std::move(p.w));
  w.set(prefix + "weight_hh" + sfx, std::move(p.r));
  w.set(prefix + "bias_ih" + sfx, std::move(p.bias));
  w.set(prefix + "bias_hh" + sfx, zeros);
}

ScaleShift fold_batchnorm(const Tensor& gamma_in, const Tensor& beta_in, const Tensor& mean_in,
                          const Tensor& var_in, double eps) {
  const Tensor gamma = as_f32(gamma_in, "BatchNorm weight (gamma)");
  const Tensor beta = as_f32(beta_in, "BatchNorm bias (beta)");
  const Tensor mean = as_f32(mean_in, "BatchNorm running_mean");
  const Tensor var = as_f32(var_in, "BatchNorm running_var");
  const std::int64_t c = gamma.numel();
  for (const Tensor* t : {&beta, &mean, &var})
    if (t->numel() != c)
      throw WeightError(
          fmt::format("BatchNorm tensors differ in size: gamma {}, beta {}, mean {}, var {}",
                      gamma.numel(), beta.numel(), mean.numel(), var.numel()));
  if (!(eps >= 0))
    throw WeightError(fmt::format("BatchNorm eps must be non-negative, got {}", eps));
  ScaleShift out{Tensor(DType::f32, gamma.dims()), Tensor(DType::f32, gamma.dims())};
  const float* g = gamma.data<float>();
  const float* b = beta.data<float>();
  const float* m = mean.data<float>();
  const float* v = var.data<float>();
  for (std::int64_t i = 0; i < c; ++i) {
    const double denom = static_cast<double>(v[i]) + eps;
    if (!(denom > 0))
      throw WeightError(
          fmt::format("BatchNorm running_var[{}] = {} with eps {} gives no positive "
                      "variance",
                      i, v[i], eps));
    const double scale = g[i] / std::sqrt(denom);
    out.scale.data<float>()[i] = static_cast<float>(scale);
    out.shift.data<float>()[i] = static_cast<float>(b[i] - m[i] * scale);
  }
  return out;
}

ScaleShift fold_batchnorm(const WeightMap& w, const std::string& prefix, double eps) {
  try {
    return fold_batchnorm(w.at(prefix + ".weight"), w.at(prefix + ".bias"),
                          w.at(prefix + ".running_mean"), w.at(prefix + ".running_var"), eps);
  } catch (const WeightError& e) {
    throw WeightError(fmt::format("BatchNorm '{}': {}", prefix, e.what()));
  }
}

}  // namespace kiln::port
