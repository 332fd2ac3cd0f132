// Elementwise steps (one op or a fused chain), the shared step helpers, and the dispatch from a
// plan step to the factory that makes it.
#include <cmath>
#include <limits>

#include "check.hpp"
#include "norm.cuh"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

kernels::Dims to_dims(const std::vector<i64>& d) {
  if (d.size() > static_cast<std::size_t>(kernels::kMaxDims))
    throw UnsupportedError(fmt::format("tensors of rank {} (the GPU kernels take up to {})", d.size(), kernels::kMaxDims));
  kernels::Dims k;
  k.rank = static_cast<int>(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) k.d[i] = d[i];
  return k;
}

kernels::Strides to_strides(const std::vector<i64>& s) {
  kernels::Strides k;
  for (std::size_t i = 0; i < s.size() && i < static_cast<std::size_t>(kernels::kMaxDims); ++i) k.s[i] = s[i];
  return k;
}

void unsupported(const Node& n, const std::string& what) {
  throw UnsupportedError(fmt::format("{}the GPU runtime does not run {}", n.where(), what));
}

std::optional<std::vector<double>> constant_input(const StepEnv& env, const Node& n, std::size_t i) {
  if (i >= n.inputs.size() || n.inputs[i].empty()) return std::nullopt;
  const std::string name = fused_input_name(env.node.inputs, n.inputs[i]);
  auto it = env.engine.plan.weights.find(name);
  if (it == env.engine.plan.weights.end())
    unsupported(n, fmt::format("input {} ('{}') computed at run time (it must be a constant)", i, name));
  return it->second.to_doubles();
}

const void* pointer_of(const StepEnv& env, const DeviceValue& v) {
  return v.host ? env.engine.weight(v.name) : v.ptr;
}

std::optional<Unary> unary_of(const StepEnv& env, const Node& p) {
  using A = kernels::Activation;
  const std::string& op = p.op;
  auto f = [&](const char* k, double d) { return static_cast<float>(p.attr_float(k, d)); };
  if (op == "Relu") return Unary{A::relu};
  if (op == "Sigmoid") return Unary{A::sigmoid};
  if (op == "Tanh") return Unary{A::tanh};
  if (op == "LeakyRelu") return Unary{A::leaky_relu, f("alpha", 0.01)};
  if (op == "Elu") return Unary{A::elu, f("alpha", 1.0)};
  if (op == "Selu") return Unary{A::selu, f("alpha", 1.67326319217681884765625), f("gamma", 1.05070102214813232421875)};
  if (op == "Celu") return Unary{A::celu, f("alpha", 1.0)};
  if (op == "Gelu") return Unary{p.attr_string("approximate", "none") == "tanh" ? A::gelu_tanh : A::gelu};
  if (op == "Softplus") return Unary{A::softplus};
  if (op == "Softsign") return Unary{A::softsign};
  if (op == "HardSigmoid") return Unary{A::hard_sigmoid, f("alpha", 0.2), f("beta", 0.5)};
  if (op == "HardSwish") return Unary{A::hard_swish};
  if (op == "ThresholdedRelu") return Unary{A::thresholded_relu, f("alpha", 1.0)};
  if (op == "Mish") return Unary{A::mish};
  if (op == "Abs") return Unary{A::abs};
  if (op == "Neg") return Unary{A::neg};
  if (op == "Exp") return Unary{A::exp};
  if (op == "Log") return Unary{A::log};
  if (op == "Sqrt") return Unary{A::sqrt};
  if (op == "Reciprocal") return Unary{A::reciprocal};
  if (op == "Erf") return Unary{A::erf};
  if (op == "Floor") return Unary{A::floor};
  if (op == "Ceil") return Unary{A::ceil};
  if (op == "Sin") return Unary{A::sin};
  if (op == "Cos") return Unary{A::cos};
  if (op == "Clip") {
    const float inf = std::numeric_limits<float>::infinity();
    Unary u{A::clip, -inf, inf};
    if (auto lo = constant_input(env, p, 1); lo && !lo->empty()) u.alpha = static_cast<float>((*lo)[0]);
    if (auto hi = constant_input(env, p, 2); hi && !hi->empty()) u.beta = static_cast<float>((*hi)[0]);
    return u;
  }
  return std::nullopt;
}

std::optional<kernels::Binary> binary_of(const std::string& op) {
  using B = kernels::Binary;
  if (op == "Add" || op == "Sum") return B::add;
  if (op == "Sub") return B::sub;
  if (op == "Mul") return B::mul;
  if (op == "Div") return B::div;
  if (op == "Pow") return B::pow;
  if (op == "Max") return B::max;
  if (op == "Min") return B::min;
  if (op == "PRelu") return B::prelu;
  return std::nullopt;
}

std::vector<int> physical_order(const DeviceValue& v) {
  std::vector<int> p(v.dims.size());
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int>(i);
  if (v.nhwc()) p = {0, 2, 3, 1};
  return p;
}

kernels::Strides broadcast_strides(const DeviceValue& v, const std::vector<i64>& out, const std::vector<int>& perm) {
  const std::size_t r = out.size();
  if (v.dims.size() > r)
    throw ShapeError(fmt::format("{} does not broadcast to {}", v.describe(), dims_to_string(out)));
  std::vector<i64> logical(r, 0);
  const std::size_t lead = r - v.dims.size();
  for (std::size_t d = 0; d < v.dims.size(); ++d) {
    const i64 vd = v.dims[d], od = out[lead + d];
    if (vd == od) logical[lead + d] = v.strides[d];
    else if (vd == 1) logical[lead + d] = 0;
    else throw ShapeError(fmt::format("{} does not broadcast to {}", v.describe(), dims_to_string(out)));
  }
  kernels::Strides s;
  for (std::size_t k = 0; k < r; ++k) s.s[k] = logical[static_cast<std::size_t>(perm[k])];
  return s;
}

// ---- the chain ------------------------------------------------------------------------------

Chain::Chain(const StepEnv& env, const std::vector<Node>& parts, std::string running,
             const std::vector<std::string>& inputs, const DeviceValue& out)
    : out_(out) {
  elem_ = out.elem();
  perm_ = physical_order(out);
  std::vector<i64> pdims;
  for (int p : perm_) pdims.push_back(out.dims[static_cast<std::size_t>(p)]);
  dims_ = to_dims(pdims);
  // y is written contiguously in physical order: its strides must say the same.
  {
    std::vector<i64> expect(out.dims.size());
    i64 s = 1;
    for (std::size_t k = pdims.size(); k-- > 0;) expect[static_cast<std::size_t>(perm_[k])] = s, s *= pdims[k];
    for (std::size_t d = 0; d < out.dims.size(); ++d)
      if (out.dims[d] != 1 && out.strides[d] != expect[d])
        throw UnsupportedError(fmt::format("{}writing the strided value {}", env.node.where(), out.describe()));
  }
  auto operand = [&](const Node& p, const std::string& ref, kernels::Binary op, bool reversed) {
    const DeviceValue v = env.value(fused_input_name(inputs, ref));
    if (v.elem() != elem_) unsupported(p, fmt::format("mixing {} and {}", v.describe(), out.describe()));
    kernels::PointwiseStep st;
    st.kind = reversed ? kernels::PointwiseStep::binary_reversed : kernels::PointwiseStep::binary;
    st.op = static_cast<int>(op);
    st.operand = pointer_of(env, v);
    st.strides = broadcast_strides(v, out_.dims, perm_);
    steps_.push_back(st);
  };
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Node& p = parts[i];
    std::vector<std::string> ins;
    for (const auto& s : p.inputs) ins.push_back(s);
    if (running.empty()) {  // the first part's first input starts the chain
      if (ins.empty() || ins[0].empty()) unsupported(p, "an elementwise op without inputs");
      x_ = env.value(fused_input_name(inputs, ins[0]));
      if (x_.elem() != elem_) unsupported(p, fmt::format("mixing {} and {}", x_.describe(), out.describe()));
      x_strides_ = broadcast_strides(x_, out_.dims, perm_);
      running = ins[0];
    }
    if (auto u = unary_of(env, p)) {
      if (ins.empty() || ins[0] != running) unsupported(p, "a unary op off the chain");
      kernels::PointwiseStep st;
      st.kind = kernels::PointwiseStep::unary;
      st.op = static_cast<int>(u->act);
      st.alpha = u->alpha;
      st.beta = u->beta;
      steps_.push_back(st);
    } else if (auto b = binary_of(p.op)) {
      int at = -1;
      for (std::size_t k = 0; k < ins.size(); ++k)
        if (ins[k] == running) {
          if (at >= 0) unsupported(p, fmt::format("'{}' reading the same value twice", p.op));
          at = static_cast<int>(k);
        }
      if (at < 0) unsupported(p, "a binary op off the chain");
      if (p.op == "Sum" || p.op == "Max" || p.op == "Min") {
        for (std::size_t k = 0; k < ins.size(); ++k)
          if (static_cast<int>(k) != at && !ins[k].empty()) operand(p, ins[k], *b, false);
      } else {
        if (ins.size() != 2) unsupported(p, fmt::format("'{}' with {} inputs", p.op, ins.size()));
        operand(p, ins[1 - at], *b, at == 1);
      }
    } else {
      unsupported(p, fmt::format("'{}' inside a pointwise chain", p.op));
    }
    if (p.outputs.empty()) unsupported(p, "an op without outputs");
    running = p.outputs[0];
  }
}

void Chain::run(const void* x, Stream s) const {
  const std::size_t n = steps_.size();
  const void* in = x ? x : out_.ptr;
  kernels::Strides xs = x ? x_strides_ : kernels::contiguous_strides(dims_);
  std::size_t at = 0;
  do {
    kernels::PointwiseChain c;
    c.dims = dims_;
    c.x_strides = xs;
    const std::size_t take = std::min<std::size_t>(n - at, kernels::kMaxChainSteps);
    for (std::size_t k = 0; k < take; ++k) c.step[c.steps++] = steps_[at + k];
    KILN_CHECK(kernels::pointwise_chain(elem_, c, in, out_.ptr, s));
    at += take;
    in = out_.ptr;  // the next group runs in place over the output
    xs = kernels::contiguous_strides(dims_);
  } while (at < n);
}

// ---- steps ----------------------------------------------------------------------------------

namespace {

class PointwiseStep final : public Step {
 public:
  PointwiseStep(const StepEnv& env, const FusedBody& body)
      : chain_(env, body.parts, "", env.node.inputs, env.value(env.node.outputs.at(0))),
        x_(pointer_of(env, chain_.x())) {}
  void run(const RunArgs& a) override { chain_.run(x_, a.stream); }
  std::string kind() const override { return "pointwise"; }

 private:
  Chain chain_;
  const void* x_;
};

/// BatchNormalization that no convolution absorbed: a per-channel affine.
class BatchNormStep final : public Step {
 public:
  explicit BatchNormStep(const StepEnv& env) {
    const Node& n = env.node;
    x_ = env.value(n.inputs.at(0));
    y_ = env.value(n.outputs.at(0));
    if (x_.layout != y_.layout || (!x_.contiguous() && !x_.nhwc())) unsupported(n, "BatchNormalization across layouts");
    const i64 c = x_.dims.size() > 1 ? x_.dims[1] : 1;
    std::vector<std::vector<double>> p;
    for (std::size_t i = 1; i <= 4; ++i) {
      auto v = constant_input(env, n, i);
      if (!v || static_cast<i64>(v->size()) != c) unsupported(n, fmt::format("input {} of other than {} constants", i, c));
      p.push_back(*v);
    }
    const double eps = n.attr_float("epsilon", 1e-5);
    std::vector<float> ss(2 * static_cast<std::size_t>(c));
    for (i64 k = 0; k < c; ++k) {
      const double s = p[0][k] / std::sqrt(p[3][k] + eps);
      ss[k] = static_cast<float>(s);
      ss[c + k] = static_cast<float>(p[1][k] - p[2][k] * s);
    }
    const auto* dev = static_cast<const float*>(env.engine.weights.get(
        "bn:" + n.name, ss.size() * 4, [&](DeviceBuffer& b) { b.upload(ss.data(), ss.size() * 4); }));
    scale_ = dev;
    shift_ = dev + c;
    channels_ = c;
    if (x_.nhwc()) outer_ = x_.numel() / c, inner_ = 1;
    else outer_ = x_.dims[0], inner_ = x_.numel() / std::max<i64>(1, x_.dims[0] * c);
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::channel_affine(x_.elem(), outer_, channels_, inner_, x_.ptr, scale_, shift_, nullptr,
                                       kernels::Activation::identity, 0.f, 0.f, y_.ptr, a.stream));
  }
  std::string kind() const override { return "affine"; }

 private:
  DeviceValue x_, y_;
  const float *scale_ = nullptr, *shift_ = nullptr;
  i64 outer_ = 1, channels_ = 1, inner_ = 1;
};

bool all_pointwise(const FusedBody& b) {
  for (const auto& p : b.parts)
    if (!plan::elementwise_ops().count(p.op)) return false;
  return true;
}

}  // namespace

std::unique_ptr<Step> make_step(const StepEnv& env) {
  const Node& n = env.node;
  const FusedBody body = as_body(n);
  const std::string& anchor = body.parts.at(0).op;
  try {
    if (anchor == "Conv" || anchor == "ConvTranspose") return make_conv_step(env, body);
    if (anchor == "Gemm" || anchor == "MatMul") return make_gemm_step(env, body);
    if (all_pointwise(body)) return std::make_unique<PointwiseStep>(env, body);
    if (is_fused(n)) unsupported(n, fmt::format("the fused pattern '{}'", n.attr_string("pattern", "")));
    if (n.op == "BatchNormalization") return std::make_unique<BatchNormStep>(env);
    if (n.op == "LSTM" || n.op == "GRU" || n.op == "RNN") return make_rnn_step(env);
    return make_data_step(env);
  } catch (const UnsupportedError&) {
    throw;
  } catch (const Error& e) {
    const std::string msg = e.what();
    if (msg.rfind("[", 0) == 0) throw;
    throw Error(n.where() + msg);
  }
}

}  // namespace kiln::runtime::detail
