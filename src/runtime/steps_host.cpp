// Host steps: the plan steps the GPU runtime runs on the host with the CPU reference
// (runs_on_host(): control flow, ops of data-dependent output size, every step reading or writing
// a value sized at run time, and steps kiln build --host-fallback marked). The cost, paid at each
// host step of every run: the stream is waited for, the step's inputs that GPU steps made are
// copied to the host (converted from the engine's 16-bit storage, gathered from NHWC or strided
// layouts), the reference runs the node, and its outputs that GPU steps (or the plan's outputs)
// read are copied back. Host steps hand values to each other on the host (the context's
// HostValues, each dropped after its last reader), so a run of consecutive host steps copies only
// at its ends. With CUDA graphs asked for, each run of GPU steps between host steps is its own
// graph (ExecutionContext::enqueue).
//
// The reference is reached through the IR's default evaluator (kiln/ir/graph.hpp), which the CPU
// reference registers when it is linked, so that the runtime layer does not depend on it.
#include <cstring>

#include "check.hpp"
#include "engine_impl.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"

namespace kiln::runtime::detail {
namespace {

/// The 16-bit dtype a float value of `fp` is stored as on the device.
DType stored_dtype(const DeviceValue& v) {
  if (v.fp == Precision::f16) return DType::f16;
  if (v.fp == Precision::bf16) return DType::bf16;
  return v.dtype;
}

/// The elements from a value's first to its last, by its strides.
i64 span_of(const DeviceValue& v) {
  i64 span = 1;
  for (std::size_t d = 0; d < v.dims.size(); ++d) span += (v.dims[d] - 1) * v.strides[d];
  return span;
}

/// Calls f(i, at) for each element: its index in row-major order and its offset by the strides.
template <class F>
void for_each_element(const DeviceValue& v, i64 n, F&& f) {
  const std::size_t rank = v.dims.size();
  std::vector<i64> idx(rank, 0);
  i64 at = 0;
  for (i64 i = 0; i < n; ++i) {
    f(static_cast<std::size_t>(i), static_cast<std::size_t>(at));
    for (std::size_t d = rank; d-- > 0;) {
      at += v.strides[d];
      if (++idx[d] < v.dims[d]) break;
      at -= v.strides[d] * v.dims[d];
      idx[d] = 0;
    }
  }
}

}  // namespace

Tensor download(const DeviceValue& v) {
  const DType stored = v.dtype == DType::f32 && v.half() ? stored_dtype(v) : v.dtype;
  const std::size_t es = dtype_size(stored);
  Tensor t(stored, v.dims);
  const i64 n = t.numel();
  if (n > 0) {
    std::vector<std::byte> raw(static_cast<std::size_t>(span_of(v)) * es);
    KILN_CHECK(cudaMemcpy(raw.data(), v.ptr, raw.size(), cudaMemcpyDeviceToHost));
    if (v.contiguous())
      std::memcpy(t.raw(), raw.data(), t.nbytes());
    else
      for_each_element(v, n, [&](std::size_t i, std::size_t at) {
        std::memcpy(t.raw() + i * es, raw.data() + at * es, es);
      });
  }
  return stored == v.dtype ? t : t.cast(v.dtype);
}

namespace {

/// A host tensor of the plan dtype into a device value that fills its span (row-major, or a
/// permutation such as NHWC), synchronously.
void upload(const DeviceValue& v, const Tensor& t) {
  const DType stored = v.dtype == DType::f32 && v.half() ? stored_dtype(v) : v.dtype;
  const Tensor s = stored == t.dtype() ? t : t.cast(stored);
  const i64 n = s.numel();
  if (n == 0) return;
  if (v.contiguous()) {
    KILN_CHECK(cudaMemcpy(v.ptr, s.raw(), s.nbytes(), cudaMemcpyHostToDevice));
    return;
  }
  const std::size_t es = dtype_size(stored);
  std::vector<std::byte> raw(static_cast<std::size_t>(n) * es);
  for_each_element(v, n, [&](std::size_t i, std::size_t at) {
    std::memcpy(raw.data() + at * es, s.raw() + i * es, es);
  });
  KILN_CHECK(cudaMemcpy(v.ptr, raw.data(), raw.size(), cudaMemcpyHostToDevice));
}

class HostStep final : public Step {
 public:
  explicit HostStep(const StepEnv& env)
      : node_(env.node),
        plan_(env.engine.plan),
        engine_(env.engine),
        host_(env.host),
        eval_(default_evaluator()) {
    if (!eval_)
      throw UnsupportedError(node_.where() +
                             "runs on the host with the CPU reference, which this program does "
                             "not link (link libkiln's reference layer)");
    for (std::size_t i = 0; i < plan_.steps.size(); ++i)
      if (&plan_.steps[i] == &node_) index_ = static_cast<int>(i);
    for (const auto& name : node_.inputs) inputs_.push_back(place(env, name, false));
    for (const auto& name : node_.outputs) outputs_.push_back(place(env, name, true));
    // Consecutive host steps hand values over on the host: an input another host step made is
    // read from the host copy, and an output only host steps read is not copied to the device.
    for (Place& p : inputs_)
      if (p.kind == Place::on_device && engine_.made_on_host.count(p.name)) p.kind = Place::on_host;
    for (Place& p : outputs_)
      if (p.kind == Place::on_device) p.upload = engine_.read_on_device.count(p.name) != 0;
  }

  void run(const RunArgs& a) override {
    KILN_CHECK(cudaStreamSynchronize(a.stream));
    std::vector<Tensor> held;
    held.reserve(inputs_.size());
    std::vector<const Tensor*> ins;
    for (const Place& p : inputs_) {
      switch (p.kind) {
        case Place::absent: ins.push_back(nullptr); break;
        case Place::in_plan: ins.push_back(p.weight); break;
        case Place::on_host: {
          auto it = host_->values.find(p.name);
          if (it == host_->values.end())
            throw Error(fmt::format("{}'{}' is read before it is made", node_.where(), p.name));
          ins.push_back(&it->second);
          break;
        }
        case Place::on_device:
          held.push_back(download(p.device));
          ins.push_back(&held.back());
          break;
      }
    }
    std::vector<Tensor> outs = eval_->evaluate(node_, ins);
    for (std::size_t o = 0; o < outputs_.size(); ++o) {
      const Place& p = outputs_[o];
      if (p.kind == Place::absent) continue;
      if (o >= outs.size() || !outs[o].defined())
        throw Error(fmt::format("{}the reference made no output {}", node_.where(), o));
      const Tensor& t = outs[o];
      const plan::PlannedValue& pv = plan_.memory.values.at(p.name);
      bool ok = t.is_tensor() && t.dtype() == pv.dtype && t.rank() == pv.dims.size();
      for (std::size_t d = 0; ok && d < pv.dims.size(); ++d)
        ok = p.kind == Place::on_host ? pv.dims[d] < 0 || pv.dims[d] == t.dim(d)
                                      : p.device.dims[d] == t.dim(d);
      if (!ok)
        throw Error(fmt::format("{}made '{}' as {}, the plan expects {}{}", node_.where(), p.name,
                                t.type_string(), dtype_name(pv.dtype),
                                p.kind == Place::on_host ? Shape::of(pv.dims).to_string()
                                                         : dims_to_string(p.device.dims)));
      host_->values[p.name] = t;
      if (p.kind == Place::on_device && p.upload) upload(p.device, t);
    }
    // A host copy is dropped after its last reader (graph outputs: after the run).
    for (const Place& p : inputs_)
      if (p.kind == Place::on_host && plan_.memory.values.at(p.name).last == index_)
        host_->values.erase(p.name);
  }

  std::string kind() const override { return "host"; }

 private:
  struct Place {
    enum Kind { absent, in_plan, on_host, on_device } kind = absent;
    std::string name;
    const Tensor* weight = nullptr;
    DeviceValue device;
    bool upload = true;  ///< an output a GPU step (or the plan's outputs) reads
  };

  Place place(const StepEnv& env, const std::string& name, bool output) const {
    Place p;
    p.name = name;
    if (name.empty()) return p;
    if (auto w = plan_.weights.find(name); w != plan_.weights.end()) {
      p.kind = Place::in_plan;
      p.weight = &w->second;
      return p;
    }
    auto v = plan_.memory.values.find(name);
    if (v == plan_.memory.values.end())
      throw GraphError(fmt::format("{}'{}' has no place in the plan", node_.where(), name));
    if (v->second.sized_at_run_time()) {
      p.kind = Place::on_host;
      return p;
    }
    p.kind = Place::on_device;
    p.device = env.value(name);
    // An output is written whole: row-major, or a permutation of it (NHWC) that fills its span.
    if (output && !p.device.contiguous() && span_of(p.device) != p.device.numel())
      throw UnsupportedError(
          fmt::format("{}runs on the host, and its output {} is a strided "
                      "part of a larger buffer",
                      node_.where(), p.device.describe()));
    return p;
  }

  const Node& node_;
  const plan::Plan& plan_;
  const EngineState& engine_;
  std::shared_ptr<HostValues> host_;
  const ConstantEvaluator* eval_;
  int index_ = -1;
  std::vector<Place> inputs_, outputs_;
};

}  // namespace

std::unique_ptr<Step> make_host_step(const StepEnv& env) { return std::make_unique<HostStep>(env); }

}  // namespace kiln::runtime::detail
