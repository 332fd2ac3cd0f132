// Elementwise steps (one op or a fused chain) and the shared step helpers.
#include <cmath>
#include <limits>
#include <variant>

#include "check.hpp"
#include "kiln/ir/window.hpp"
#include "norm.cuh"
#include "pointwise_table.hpp"
#include "steps_util.hpp"

namespace kiln::runtime::detail {

i64 norm_axis(const Node& n, i64 axis, std::size_t rank) {
  return ops::window_rule(n, [&] { return rules::normalize_axis(axis, static_cast<i64>(rank)); });
}

void need_contiguous(const Node& n, const DeviceValue& v) {
  if (!v.contiguous())
    throw GraphError(
        fmt::format("{}reads {} in a layout it does not take (the plan lacks a conversion)",
                    n.where(), v.describe()));
}

kernels::Dims to_dims(const std::vector<i64>& d) {
  if (d.size() > static_cast<std::size_t>(kernels::kMaxDims))
    throw UnsupportedError(fmt::format("tensors of rank {} (the GPU kernels take up to {})",
                                       d.size(), kernels::kMaxDims));
  kernels::Dims k;
  k.rank = static_cast<int>(d.size());
  for (std::size_t i = 0; i < d.size(); ++i) k.d[i] = d[i];
  return k;
}

kernels::Strides to_strides(const std::vector<i64>& s) {
  kernels::Strides k;
  for (std::size_t i = 0; i < s.size() && i < static_cast<std::size_t>(kernels::kMaxDims); ++i)
    k.s[i] = s[i];
  return k;
}

void unsupported(const Node& n, const std::string& what) {
  throw UnsupportedError(fmt::format("{}the GPU runtime does not run {}", n.where(), what));
}

std::optional<std::vector<double>> constant_input(const StepEnv& env, const Node& n,
                                                  std::size_t i) {
  if (i >= n.inputs.size() || n.inputs[i].empty()) return std::nullopt;
  const std::string name = fused_input_name(env.node.inputs, n.inputs[i]);
  auto it = env.engine.plan.weights.find(name);
  if (it == env.engine.plan.weights.end())
    unsupported(
        n, fmt::format("input {} ('{}') computed at run time (it must be a constant)", i, name));
  return it->second.to_doubles();
}

DeviceBuffer tiled_buffer(const void* block, std::size_t block_bytes, std::size_t total_bytes) {
  DeviceBuffer b(std::max<std::size_t>(total_bytes, 16));
  for (std::size_t at = 0; at < total_bytes; at += block_bytes)
    KILN_CHECK(cudaMemcpy(static_cast<std::byte*>(b.get()) + at, block,
                          std::min(block_bytes, total_bytes - at), cudaMemcpyHostToDevice));
  return b;
}

const void* pointer_of(const StepEnv& env, const DeviceValue& v) {
  return v.host ? env.engine.weight(v.name) : v.ptr;
}

// ---- the pointwise table ----------------------------------------------------------------------

namespace {
constexpr UnaryRow kUnaryRows[] = {
#define KILN_POINTWISE_UNARY(op, onnx, act, aa, ad, ai, ba, bd, bi, wa, wv) \
  {kernels::PointwiseOp::op, onnx, act != 0, aa, ad, ai, ba, bd, bi, wa, wv},
#define KILN_POINTWISE_BINARY(...)
#include "kiln/ir/pointwise_ops.def"
};
constexpr BinaryRow kBinaryRows[] = {
#define KILN_POINTWISE_UNARY(...)
#define KILN_POINTWISE_BINARY(op, onnx, variadic, act, wa, wv) \
  {kernels::PointwiseOp::op, onnx, variadic, act != 0, wa, wv},
#include "kiln/ir/pointwise_ops.def"
};

/// The row for `n` among `rows` whose ONNX name `name_of` gives: one whose `when` holds, else
/// one without a `when`.
template <class Row, class Names>
const Row* find_row(std::span<const Row> rows, const Node& n, Names names) {
  const Row* plain = nullptr;
  for (const Row& r : rows) {
    if (!names(r)) continue;
    if (!*r.when_attr)
      plain = plain ? plain : &r;
    else if (attr_is(n, r.when_attr, r.when_value))
      return &r;
  }
  return plain;
}
}  // namespace

std::span<const UnaryRow> unary_rows() { return kUnaryRows; }
std::span<const BinaryRow> binary_rows() { return kBinaryRows; }

bool attr_is(const Node& n, const char* attr, const char* value) {
  if (!*attr) return true;
  auto it = n.attrs.find(attr);
  if (it == n.attrs.end()) return false;
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s == value;
  if (const auto* i = std::get_if<std::int64_t>(&it->second)) return std::to_string(*i) == value;
  return false;
}

const UnaryRow* unary_row(const Node& n) {
  return find_row(unary_rows(), n, [&](const UnaryRow& r) { return *r.onnx && n.op == r.onnx; });
}

const BinaryRow* binary_row(const Node& n) {
  return find_row(binary_rows(), n, [&](const BinaryRow& r) {
    return (*r.onnx && n.op == r.onnx) || (*r.variadic && n.op == r.variadic);
  });
}

std::optional<Unary> unary_of(const StepEnv& env, const Node& p) {
  const UnaryRow* row = unary_row(p);
  if (!row) return std::nullopt;
  // alpha or beta: the constant input when given, else the attribute (or its default).
  auto param = [&](const char* attr, float fallback, int input) {
    if (input > 0)
      if (auto v = constant_input(env, p, static_cast<std::size_t>(input)); v && !v->empty())
        return static_cast<float>((*v)[0]);
    return *attr ? static_cast<float>(p.attr_float(attr, fallback)) : fallback;
  };
  Unary u{row->op};
  u.alpha = param(row->a_attr, row->a_default, row->a_input);
  u.beta = param(row->b_attr, row->b_default, row->b_input);
  return u;
}

std::optional<kernels::PointwiseOp> binary_of(const Node& p) {
  const BinaryRow* row = binary_row(p);
  if (!row) return std::nullopt;
  return row->op;
}

std::vector<int> physical_order(const DeviceValue& v) {
  std::vector<int> p(v.dims.size());
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<int>(i);
  if (v.nhwc()) p = {0, 2, 3, 1};
  return p;
}

kernels::Strides broadcast_strides(const DeviceValue& v, const std::vector<i64>& out,
                                   const std::vector<int>& perm) {
  const std::size_t r = out.size();
  if (v.dims.size() > r)
    throw ShapeError(fmt::format("{} does not broadcast to {}", v.describe(), dims_to_string(out)));
  std::vector<i64> logical(r, 0);
  const std::size_t lead = r - v.dims.size();
  for (std::size_t d = 0; d < v.dims.size(); ++d) {
    const i64 vd = v.dims[d], od = out[lead + d];
    if (vd == od)
      logical[lead + d] = v.strides[d];
    else if (vd == 1)
      logical[lead + d] = 0;
    else
      throw ShapeError(
          fmt::format("{} does not broadcast to {}", v.describe(), dims_to_string(out)));
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
    for (std::size_t k = pdims.size(); k-- > 0;)
      expect[static_cast<std::size_t>(perm_[k])] = s, s *= pdims[k];
    for (std::size_t d = 0; d < out.dims.size(); ++d)
      if (out.dims[d] != 1 && out.strides[d] != expect[d])
        throw UnsupportedError(
            fmt::format("{}writing the strided value {}", env.node.where(), out.describe()));
  }
  auto operand = [&](const Node& p, const std::string& ref, kernels::PointwiseOp op,
                     bool reversed) {
    const DeviceValue v = env.value(fused_input_name(inputs, ref));
    if (v.elem() != elem_)
      unsupported(p, fmt::format("mixing {} and {}", v.describe(), out.describe()));
    kernels::PointwiseStep st;
    st.kind = reversed ? kernels::PointwiseStep::binary_reversed : kernels::PointwiseStep::binary;
    st.op = op;
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
      if (x_.elem() != elem_)
        unsupported(p, fmt::format("mixing {} and {}", x_.describe(), out.describe()));
      x_strides_ = broadcast_strides(x_, out_.dims, perm_);
      running = ins[0];
    }
    if (auto u = unary_of(env, p)) {
      if (ins.empty() || ins[0] != running) unsupported(p, "a unary op off the chain");
      kernels::PointwiseStep st;
      st.kind = kernels::PointwiseStep::unary;
      st.op = u->act;
      st.alpha = u->alpha;
      st.beta = u->beta;
      steps_.push_back(st);
    } else if (auto b = binary_of(p)) {
      int at = -1;
      for (std::size_t k = 0; k < ins.size(); ++k)
        if (ins[k] == running) {
          if (at >= 0) unsupported(p, fmt::format("'{}' reading the same value twice", p.op));
          at = static_cast<int>(k);
        }
      if (at < 0) unsupported(p, "a binary op off the chain");
      if (p.op == binary_row(p)->variadic) {  // Sum, Max, Min: every other input is an operand
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
    if (x_.layout != y_.layout || (!x_.contiguous() && !x_.nhwc()))
      unsupported(n, "BatchNormalization across layouts");
    const i64 c = x_.dims.size() > 1 ? x_.dims[1] : 1;
    std::vector<std::vector<double>> p;
    for (std::size_t i = 1; i <= 4; ++i) {
      auto v = constant_input(env, n, i);
      if (!v || static_cast<i64>(v->size()) != c)
        unsupported(n, fmt::format("input {} of other than {} constants", i, c));
      p.push_back(*v);
    }
    const double eps = n.attr_float("epsilon", 1e-5);
    std::vector<float> ss(2 * static_cast<std::size_t>(c));
    for (i64 k = 0; k < c; ++k) {
      const double s = p[0][k] / std::sqrt(p[3][k] + eps);
      ss[k] = static_cast<float>(s);
      ss[c + k] = static_cast<float>(p[1][k] - p[2][k] * s);
    }
    const auto* dev = static_cast<const float*>(
        env.engine.weights.get("bn:" + n.name, ss.size() * 4,
                               [&](DeviceBuffer& b) { b.upload(ss.data(), ss.size() * 4); }));
    scale_ = dev;
    shift_ = dev + c;
    channels_ = c;
    if (x_.nhwc())
      outer_ = x_.numel() / c, inner_ = 1;
    else
      outer_ = x_.dims[0], inner_ = x_.numel() / std::max<i64>(1, x_.dims[0] * c);
  }
  void run(const RunArgs& a) override {
    KILN_CHECK(kernels::channel_affine(x_.elem(), outer_, channels_, inner_, x_.ptr, scale_, shift_,
                                       nullptr, kernels::Activation::identity, 0.f, 0.f, y_.ptr,
                                       a.stream));
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

std::unique_ptr<Step> pointwise_step(const StepEnv& env, const FusedBody& body) {
  if (!all_pointwise(body))
    unsupported(env.node,
                fmt::format("the fused pattern '{}'", env.node.attr_string("pattern", "")));
  return std::make_unique<PointwiseStep>(env, body);
}

}  // namespace

void register_pointwise_steps(StepRegistry& r) {
  for (const UnaryRow& row : unary_rows())
    if (*row.onnx && !r.find(row.onnx)) r.add(row.onnx, pointwise_step, true);
  for (const BinaryRow& row : binary_rows())
    for (const char* op : {row.onnx, row.variadic})
      if (*op && !r.find(op)) r.add(op, pointwise_step, true);
  r.add("BatchNormalization", step_factory<BatchNormStep>);
}

}  // namespace kiln::runtime::detail
