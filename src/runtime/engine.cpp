#include "kiln/runtime/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "check.hpp"
#include "copy.cuh"
#include "engine_impl.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/matmul.hpp"
#include "layout.cuh"

namespace kiln::runtime {

using detail::i64;

// ---- logging ------------------------------------------------------------------------------

const char* severity_name(Severity s) {
  switch (s) {
    case Severity::error: return "error";
    case Severity::warning: return "warning";
    case Severity::info: return "info";
    case Severity::verbose: return "verbose";
  }
  return "?";
}

void StderrLogger::log(Severity severity, const std::string& message) {
  if (static_cast<int>(severity) > static_cast<int>(threshold_)) return;
  std::fprintf(stderr, "[kiln %s] %s\n", severity_name(severity), message.c_str());
}

namespace detail {

// ---- values -------------------------------------------------------------------------------

i64 DeviceValue::numel() const { return product(dims); }
std::size_t DeviceValue::elem_size() const { return half ? 2 : dtype_size(dtype); }

bool DeviceValue::contiguous() const {
  i64 expect = 1;
  for (std::size_t d = dims.size(); d-- > 0;) {
    if (dims[d] == 1) continue;
    if (strides[d] != expect) return false;
    expect *= dims[d];
  }
  return true;
}

kernels::Elem DeviceValue::elem() const {
  if (half) return kernels::Elem::f16;
  if (dtype == DType::f32) return kernels::Elem::f32;
  throw UnsupportedError(fmt::format("the GPU runtime computes in f32 and f16 only; '{}' is {}",
                                     name, dtype_name(dtype)));
}

std::string DeviceValue::describe() const {
  return fmt::format("{}{}{} '{}'", half ? "f16" : dtype_name(dtype), dims_to_string(dims),
                     nhwc() ? " NHWC" : "", name);
}

namespace {
std::vector<i64> row_major(const std::vector<i64>& dims) {
  std::vector<i64> s(dims.size(), 1);
  for (std::size_t d = dims.size(); d-- > 1;) s[d - 1] = s[d] * dims[d];
  return s;
}
bool float_kind(DType t) { return t == DType::f32 || t == DType::f16; }
}  // namespace

std::vector<std::byte> to_device_format(const float* data, i64 n, bool half) {
  std::vector<std::byte> out(static_cast<std::size_t>(n) * (half ? 2 : 4));
  if (!half) {
    if (n) std::memcpy(out.data(), data, out.size());
    return out;
  }
  auto* h = reinterpret_cast<std::uint16_t*>(out.data());
  for (i64 i = 0; i < n; ++i) h[i] = f16::from_float(data[i]);
  return out;
}

std::vector<float> download_floats(const void* device, i64 n, bool half) {
  std::vector<float> out(static_cast<std::size_t>(n));
  if (!half) {
    if (n) KILN_CHECK(cudaMemcpy(out.data(), device, out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<std::uint16_t> raw(static_cast<std::size_t>(n));
  if (n) KILN_CHECK(cudaMemcpy(raw.data(), device, raw.size() * 2, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < raw.size(); ++i) out[i] = f16::to_float(raw[i]);
  return out;
}

std::vector<float> host_floats(const Tensor& t) {
  switch (t.dtype()) {
    case DType::f32: return {t.data<float>(), t.data<float>() + t.numel()};
    case DType::f16: case DType::bf16: case DType::f64: {
      std::vector<float> v(static_cast<std::size_t>(t.numel()));
      for (i64 i = 0; i < t.numel(); ++i) v[static_cast<std::size_t>(i)] = static_cast<float>(t.get(i));
      return v;
    }
    default:
      throw UnsupportedError(fmt::format("expected a float weight, got {}", t.type_string()));
  }
}

float time_ms(const std::function<void()>& f, int repeats) {
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  KILN_CHECK(cudaEventCreate(&e0));
  float ms = 0;
  try {
    KILN_CHECK(cudaEventCreate(&e1));
    f();
    KILN_CHECK(cudaEventRecord(e0, nullptr));
    for (int i = 0; i < repeats; ++i) f();
    KILN_CHECK(cudaEventRecord(e1, nullptr));
    KILN_CHECK(cudaEventSynchronize(e1));
    KILN_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  } catch (...) {
    cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    throw;
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms / static_cast<float>(repeats);
}

// ---- weights ------------------------------------------------------------------------------

const void* WeightCache::get(const std::string& key, std::size_t bytes,
                             const std::function<void(DeviceBuffer&)>& fill) {
  std::lock_guard lock(mu_);
  auto it = buffers_.find(key);
  if (it != buffers_.end()) return it->second.get();
  DeviceBuffer b(std::max<std::size_t>(bytes, 1));
  fill(b);
  return buffers_.emplace(key, std::move(b)).first->second.get();
}

std::size_t WeightCache::bytes() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [_, b] : buffers_) n += b.bytes();
  return n;
}

const void* EngineState::weight(const std::string& name) {
  auto it = plan.weights.find(name);
  if (it == plan.weights.end()) throw GraphError(fmt::format("'{}' is not a weight of the plan", name));
  const Tensor& t = it->second;
  const bool half = precision == Precision::f16 && float_kind(t.dtype());
  if (float_kind(t.dtype()) || t.dtype() == DType::f64 || t.dtype() == DType::bf16) {
    if (t.dtype() == DType::f64 || t.dtype() == DType::bf16)
      throw UnsupportedError(fmt::format("weight '{}' is {}: the GPU runtime takes f32 and f16", name,
                                         dtype_name(t.dtype())));
    const auto f = host_floats(t);
    const bool store_half = half || t.dtype() == DType::f16;
    auto bytes = to_device_format(f.data(), t.numel(), store_half);
    return weights.get("w:" + name, bytes.size(), [&](DeviceBuffer& b) { b.upload(bytes.data(), bytes.size()); });
  }
  return weights.get("w:" + name, t.nbytes(), [&](DeviceBuffer& b) { b.upload(t.raw(), t.nbytes()); });
}

DeviceValue EngineState::value(const std::string& name, i64 batch, std::byte* arena) const {
  DeviceValue v;
  v.name = name;
  if (auto w = plan.weights.find(name); w != plan.weights.end()) {
    v.dtype = w->second.dtype();
    v.half = float_kind(v.dtype) && (precision == Precision::f16 || v.dtype == DType::f16);
    v.dims = w->second.dims();
    v.strides = row_major(v.dims);
    v.host = &w->second;
    return v;  // ptr: EngineState::weight() when a step wants the raw weight
  }
  auto it = plan.memory.values.find(name);
  if (it == plan.memory.values.end())
    throw GraphError(fmt::format("'{}' has no place in the plan's memory", name));
  const plan::PlannedValue& pv = it->second;
  v.dtype = pv.dtype;
  v.half = float_kind(v.dtype) && (precision == Precision::f16 || v.dtype == DType::f16);
  v.dims = pv.dims;
  if (batch != max_batch && !v.dims.empty()) v.dims[0] = batch;
  const bool own = pv.contiguous();
  v.strides = own ? row_major(v.dims) : pv.strides;
  if (auto l = physical.find(name); l != physical.end() && v.dims.size() == 4) {
    v.layout = l->second;
    if (v.layout == plan::Layout::NHWC) {
      const i64 c = v.dims[1], h = v.dims[2], w = v.dims[3];
      v.strides = {h * w * c, 1, w * c, c};
    }
  }
  const plan::PlannedValue& root = plan.memory.values.at(pv.root.empty() ? name : pv.root);
  const i64 plan_es = static_cast<i64>(dtype_size(pv.dtype));
  const i64 es = static_cast<i64>(v.elem_size());
  v.ptr = arena + root.offset + (pv.offset - root.offset) / plan_es * es;
  return v;
}

std::vector<std::unique_ptr<Step>> EngineState::make_steps(i64 batch, std::byte* arena, const Library& lib) {
  std::vector<std::unique_ptr<Step>> steps;
  std::size_t ws = 0;
  std::vector<std::size_t> untimed;
  for (const Node& node : plan.steps) {
    StepEnv env{node, *this, lib, batch, [&](const std::string& n) { return value(n, batch, arena); }};
    steps.push_back(make_step(env));
  }
  // Tactics: from the cache when known, timed otherwise (each distinct problem once).
  std::lock_guard lock(tactics_mu);
  std::set<std::string> to_time;
  for (const auto& s : steps)
    if (auto k = s->tactic_key(); !k.empty() && !tactics.count(k)) to_time.insert(k);
  int done = 0;
  const int total = static_cast<int>(to_time.size());
  for (auto& s : steps) {
    const auto k = s->tactic_key();
    if (k.empty()) continue;
    if (auto t = tactics.find(k); t != tactics.end()) {
      s->set_tactic(t->second);
      continue;
    }
    if (options.progress) options.progress(done, total, k);
    tactics[k] = s->tune();
    log(Severity::verbose, fmt::format("tactic for {}: {}", k, tactics[k]));
    ++done;
    tactics_changed = true;
  }
  if (options.progress && total > 0) options.progress(total, total, "done");
  for (const auto& s : steps) ws = std::max(ws, s->workspace());
  workspace[batch] = ws;
  return steps;
}

// ---- timing cache -------------------------------------------------------------------------

namespace {
constexpr const char* kCacheMagic = "kiln-timing-cache 1";

std::string cache_identity() {
  const auto devs = devices();
  int dev = 0;
  cudaGetDevice(&dev);
  int driver = 0;
  cudaDriverGetVersion(&driver);
  std::string name = "?";
  int sms = 0, major = 0, minor = 0;
  for (const auto& d : devs)
    if (d.index == dev) name = d.name, sms = d.multiprocessors, major = d.sm_major, minor = d.sm_minor;
  return fmt::format("{} | sm_{}{} | {} SMs | driver {} | {}", name, major, minor, sms, driver, library_versions());
}
}  // namespace

void EngineState::load_timing_cache() {
  const std::string& path = options.timing_cache;
  if (path.empty() || !std::filesystem::exists(path)) return;
  std::ifstream in(path);
  std::string magic, identity;
  if (!std::getline(in, magic) || magic != kCacheMagic || !std::getline(in, identity)) {
    log(Severity::warning, fmt::format("timing cache '{}' is not a kiln timing cache; it will be rewritten", path));
    return;
  }
  if (identity != cache_identity()) {
    log(Severity::info, fmt::format("timing cache '{}' was made for '{}', this is '{}'; timing again",
                                    path, identity, cache_identity()));
    return;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    tactics.emplace(line.substr(0, tab), line.substr(tab + 1));  // the plan's own win
    ++n;
  }
  log(Severity::info, fmt::format("timing cache '{}': {} tactics", path, n));
}

void EngineState::save_timing_cache() {
  const std::string& path = options.timing_cache;
  if (path.empty() || !tactics_changed) return;
  // Written next to the file and renamed over it, so a crash never leaves half a cache.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw Error(fmt::format("cannot write timing cache '{}'", path));
    out << kCacheMagic << '\n' << cache_identity() << '\n';
    for (const auto& [k, v] : tactics) out << k << '\t' << v << '\n';
    if (!out) throw Error(fmt::format("cannot write timing cache '{}'", path));
  }
  std::filesystem::rename(tmp, path);
  tactics_changed = false;
}

}  // namespace detail

// ---- which ops ------------------------------------------------------------------------------

const std::vector<std::string>& gpu_ops() {
  static const std::vector<std::string> ops = [] {
    std::vector<std::string> v = {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool",
        "GlobalMaxPool", "BatchNormalization", "Softmax", "LogSoftmax", "LRN", "LSTM", "GRU", "RNN",
        "Concat", "Slice", "Pad", "Gather", "Transpose", "Reshape", "Flatten", "Squeeze",
        "Unsqueeze", "Identity", "Expand", "Split", "Resize", "ReduceSum", "ReduceMean",
        "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
        "ReduceLogSumExp", "ReduceSumSquare", "Cast", plan::kToLayoutOp};
    for (const auto& op : plan::elementwise_ops()) v.push_back(op);
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
  }();
  return ops;
}

bool gpu_supports(const std::string& op) {
  const auto& v = gpu_ops();
  return std::binary_search(v.begin(), v.end(), op);
}

// ---- engine -------------------------------------------------------------------------------

void check_gpu_plan(const plan::Plan& p) {
  for (const Node& s : p.steps) {
    for (const auto& part : as_body(s).parts)
      if (!gpu_supports(part.op))
        throw UnsupportedError(fmt::format("{}the GPU runtime has no kernel for op '{}'{}", s.where(), part.op,
                                           is_fused(s) ? fmt::format(" (in fused step {})", s.attr_string("pattern", "")) : ""));
  }
}

Engine::Engine(const plan::Plan& plan, const EngineOptions& options)
    : state_(std::make_shared<detail::EngineState>()) {
  auto& st = *state_;
  if (plan.target != kCudaTarget && plan.target != kCudaFp16Target)
    throw FormatError(fmt::format("plan '{}' was built for target '{}'; the GPU runs plans built for "
                                  "'{}' or '{}' (kiln build --gpu or --fp16)",
                                  plan.graph_name, plan.target, kCudaTarget, kCudaFp16Target));
  if (device_count() == 0) throw Error("no GPU: " + no_device_reason());
  check_gpu_plan(plan);
  st.plan = plan;
  st.options = options;
  if (options.logger) st.logger = options.logger;
  else st.logger = (st.own_logger = std::make_unique<StderrLogger>()).get();
  st.precision = plan.target == kCudaFp16Target ? Precision::f16 : Precision::f32;
  KILN_CHECK(cudaGetDevice(&st.device));

  // The physical layout of every 4-D value: that of the step that makes it.
  for (const Node& s : st.plan.steps) {
    const std::string l = s.attr_string(plan::kLayoutAttr, "NCHW");
    for (const auto& o : s.outputs)
      if (!o.empty()) st.physical[o] = l == "NHWC" ? plan::Layout::NHWC : plan::Layout::NCHW;
  }
  // Views are no steps: they read their source's bytes in row-major order, which an NHWC
  // source has only when C or H*W is 1.
  for (const auto& [name, pv] : st.plan.memory.values) {
    if (pv.how.rfind("view of ", 0) != 0) continue;
    const std::string src = pv.how.substr(8);
    auto l = st.physical.find(src);
    if (l == st.physical.end() || l->second != plan::Layout::NHWC) continue;
    const auto& sd = st.plan.memory.values.at(src).dims;
    if (sd.size() == 4 && sd[1] != 1 && sd[2] * sd[3] != 1)
      throw GraphError(fmt::format("'{}' is a view of the NHWC value '{}'{}; the plan lacks a layout "
                                   "conversion (rebuild it with this kiln)", name, src, dims_to_string(sd)));
    st.physical[name] = plan::Layout::NCHW;
  }

  // The batch is dim 0 of the first input; a plan of constants alone runs at batch 1.
  st.max_batch = 1;
  if (!st.plan.inputs.empty() && st.plan.inputs[0].type.shape.rank() > 0)
    st.max_batch = st.plan.inputs[0].type.shape[0].value();
  st.resizable = !st.plan.inputs.empty() && st.max_batch > 0;
  if (st.max_batch < 1) st.max_batch = 1;  // an empty batch runs as the plan stands
  for (const auto& vi : st.plan.inputs)
    st.resizable &= vi.type.shape.rank() > 0 && vi.type.shape[0].value() == st.max_batch;
  for (const auto& [_, pv] : st.plan.memory.values)
    st.resizable &= !pv.dims.empty() && pv.dims[0] == st.max_batch;
  for (const auto& o : st.plan.outputs) st.resizable &= !st.plan.weights.count(o.name);

  // Tactics: the plan's own (timed when it was built on a GPU), then the timing cache's.
  st.tactics = st.plan.tactics;
  st.load_timing_cache();
  Library lib;
  std::vector<i64> batches = {st.max_batch};
  for (i64 b : options.batch_sizes) {
    if (b < 1 || b > st.max_batch)
      throw Error(fmt::format("batch size {} is outside 1..{} (the plan's batch)", b, st.max_batch));
    if (b != st.max_batch && !st.resizable)
      throw Error(fmt::format("plan '{}' runs at batch {} only (not every activation has the batch as "
                              "its first dim)", st.plan.graph_name, st.max_batch));
    batches.push_back(b);
  }
  for (i64 b : batches) {
    if (st.workspace.count(b)) continue;
    const auto steps = st.make_steps(b, nullptr, lib);
    if (b != st.max_batch) continue;
    for (const auto& step : steps) st.described.emplace_back(step->kind(), step->tactic());
  }
  st.save_timing_cache();
  KILN_CHECK(cudaDeviceSynchronize());
}

Engine::~Engine() = default;

Precision Engine::precision() const { return state_->precision; }
int Engine::device() const { return state_->device; }
std::int64_t Engine::max_batch() const { return state_->max_batch; }
bool Engine::batch_resizable() const { return state_->resizable; }
const std::vector<ValueInfo>& Engine::inputs() const { return state_->plan.inputs; }
const std::vector<ValueInfo>& Engine::outputs() const { return state_->plan.outputs; }
std::size_t Engine::weight_bytes() const { return state_->weights.bytes(); }

std::map<std::string, std::string> Engine::tactics() const {
  std::lock_guard lock(state_->tactics_mu);
  return state_->tactics;
}
std::size_t Engine::arena_bytes() const { return static_cast<std::size_t>(state_->plan.memory.arena_bytes); }

std::size_t Engine::workspace_bytes(std::int64_t batch) const {
  if (batch == 0) batch = state_->max_batch;
  std::lock_guard lock(state_->tactics_mu);
  auto it = state_->workspace.find(batch);
  return it == state_->workspace.end() ? state_->workspace.at(state_->max_batch) : it->second;
}

std::string Engine::describe() const {
  const auto& st = *state_;
  std::string s = fmt::format("engine: {} steps, {} at batch {} on device {}\n", st.described.size(),
                              st.precision == Precision::f16 ? "FP16" : "FP32", st.max_batch, st.device);
  for (std::size_t i = 0; i < st.described.size(); ++i) {
    const Node& n = st.plan.steps[i];
    const std::string what = is_fused(n) ? n.attr_string("pattern", n.op) : n.op;
    const auto& [kind, t] = st.described[i];
    s += fmt::format("  {:3} {:<28} {:<24} {:<12}{}\n", i, n.name, what, kind, t.empty() ? "" : "  " + t);
  }
  s += fmt::format("memory: weights {} bytes, arena {} bytes, workspace {} bytes per context\n",
                   weight_bytes(), arena_bytes(), workspace_bytes());
  return s;
}

std::unique_ptr<ExecutionContext> Engine::create_context() const {
  return std::unique_ptr<ExecutionContext>(new ExecutionContext(state_));
}

// ---- context ------------------------------------------------------------------------------

struct ExecutionContext::Impl {
  Library lib;
  DeviceBuffer arena;
  DeviceBuffer workspace;
  struct PerBatch {
    std::vector<std::unique_ptr<detail::Step>> steps;
    cudaGraphExec_t graph = nullptr;
    Bindings graph_bindings;
    Stream graph_stream = nullptr;
  };
  std::map<i64, PerBatch> batches;
  std::vector<cudaEvent_t> events;

  ~Impl() {
    for (auto& [_, b] : batches)
      if (b.graph) cudaGraphExecDestroy(b.graph);
    for (auto e : events) cudaEventDestroy(e);
  }
};

ExecutionContext::ExecutionContext(std::shared_ptr<detail::EngineState> engine)
    : engine_(std::move(engine)), impl_(std::make_unique<Impl>()) {
  int dev = 0;
  KILN_CHECK(cudaGetDevice(&dev));
  if (dev != engine_->device)
    throw Error(fmt::format("the engine was made on device {}, the current device is {}", engine_->device, dev));
  KILN_CHECK(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
  impl_->arena = DeviceBuffer(static_cast<std::size_t>(engine_->plan.memory.arena_bytes));
  set_batch(engine_->max_batch);
}

ExecutionContext::~ExecutionContext() {
  impl_.reset();
  if (own_stream_) cudaStreamDestroy(own_stream_);
}

void ExecutionContext::set_batch(std::int64_t batch) {
  auto& st = *engine_;
  if (batch != st.max_batch && (batch < 1 || batch > st.max_batch))
    throw Error(fmt::format("batch {} is outside 1..{} (the engine's maximum)", batch, st.max_batch));
  if (batch != st.max_batch && !st.resizable)
    throw Error(fmt::format("plan '{}' runs at batch {} only (not every activation has the batch as its "
                            "first dim)", st.plan.graph_name, st.max_batch));
  auto& per = impl_->batches[batch];
  if (per.steps.empty()) {
    per.steps = st.make_steps(batch, static_cast<std::byte*>(impl_->arena.get()), impl_->lib);
    st.save_timing_cache();
    std::size_t ws = 0;
    for (const auto& s : per.steps) ws = std::max(ws, s->workspace());
    if (ws > impl_->workspace.bytes()) {
      // A larger workspace moves every captured graph's pointers: capture again.
      for (auto& [_, b] : impl_->batches)
        if (b.graph) cudaGraphExecDestroy(b.graph), b.graph = nullptr;
      impl_->workspace = DeviceBuffer(ws);
    }
  }
  batch_ = batch;
}

std::size_t ExecutionContext::device_bytes() const { return impl_->arena.bytes() + impl_->workspace.bytes(); }

namespace {

void check_bindings(const detail::EngineState& st, const Bindings& b) {
  // An empty tensor may be bound to nullptr (there is nothing to read or write).
  auto empty = [](const ValueInfo& vi) { return vi.type.shape.is_static() && product(vi.type.shape.values()) == 0; };
  for (const auto& vi : st.plan.inputs)
    if (!b.count(vi.name) || (b.at(vi.name) == nullptr && !empty(vi)))
      throw Error(fmt::format("input '{}' ({}) is not bound", vi.name, vi.type.to_string()));
  for (const auto& vi : st.plan.outputs)
    if (!b.count(vi.name) || (b.at(vi.name) == nullptr && !empty(vi)))
      throw Error(fmt::format("output '{}' ({}) is not bound", vi.name, vi.type.to_string()));
  for (const auto& [name, _] : b) {
    bool known = false;
    for (const auto& vi : st.plan.inputs) known |= vi.name == name;
    for (const auto& vi : st.plan.outputs) known |= vi.name == name;
    if (!known) throw Error(fmt::format("'{}' is neither an input nor an output of plan '{}'", name, st.plan.graph_name));
  }
}

/// Copies (or converts to FP16 and back) between a binding and the value's place.
void move_binding(const detail::DeviceValue& v, void* binding, bool in, Stream s) {
  const i64 n = v.numel();
  if (n == 0) return;
  if (v.half && v.dtype == DType::f32) {
    if (in) KILN_CHECK(kernels::cast(kernels::Elem::f32, kernels::Elem::f16, binding, v.ptr, n, s));
    else KILN_CHECK(kernels::cast(kernels::Elem::f16, kernels::Elem::f32, v.ptr, binding, n, s));
    return;
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * v.elem_size();
  if (in) KILN_CHECK(cudaMemcpyAsync(v.ptr, binding, bytes, cudaMemcpyDeviceToDevice, s));
  else KILN_CHECK(cudaMemcpyAsync(binding, v.ptr, bytes, cudaMemcpyDeviceToDevice, s));
}

/// What a step must compute and move at least: its FLOPs (convolutions, matrix products and
/// recurrences by their multiply-adds, anything else one per output element and part) and the
/// bytes of its inputs, weights (as stored) and outputs.
std::pair<double, double> step_cost(const detail::EngineState& st, const Node& step, i64 batch, std::byte* arena) {
  double bytes = 0, flops = 0;
  auto numel = [&](const std::string& name) -> double {
    if (name.empty()) return 0;
    const auto v = st.value(name, batch, arena);
    return static_cast<double>(v.numel());
  };
  auto size = [&](const std::string& name) -> double {
    if (name.empty()) return 0;
    const auto v = st.value(name, batch, arena);
    return static_cast<double>(v.numel()) * static_cast<double>(v.elem_size());
  };
  for (const auto& in : step.inputs) bytes += size(in);
  for (const auto& out : step.outputs) bytes += size(out);
  const FusedBody body = as_body(step);
  const Node& a = body.parts.at(0);
  const double out = step.outputs.empty() ? 0 : numel(step.outputs[0]);
  if ((a.op == "Conv" || a.op == "ConvTranspose") && a.inputs.size() > 1) {
    const auto w = st.value(fused_input_name(step.inputs, a.inputs[1]), batch, arena);
    double per = 1;
    for (std::size_t d = 1; d < w.dims.size(); ++d) per *= static_cast<double>(w.dims[d]);
    if (a.op == "Conv") flops = 2 * out * per;
    else flops = 2 * numel(fused_input_name(step.inputs, a.inputs[0])) * per;  // each input element meets (K/g)*kh*kw weights
  } else if ((a.op == "Gemm" || a.op == "MatMul") && a.inputs.size() > 1) {
    const auto x = st.value(fused_input_name(step.inputs, a.inputs[0]), batch, arena);
    const bool ta = a.op == "Gemm" && a.attr_int("transA", 0) != 0;
    const double k = static_cast<double>(x.dims.empty() ? 1 : (ta ? x.dims.front() : x.dims.back()));
    flops = 2 * out * k;
  } else if (a.op == "LSTM" || a.op == "GRU" || a.op == "RNN") {
    const auto x = st.value(fused_input_name(step.inputs, a.inputs[0]), batch, arena);
    const auto r = st.value(fused_input_name(step.inputs, a.inputs[2]), batch, arena);
    if (x.dims.size() == 3 && r.dims.size() == 3)  // r [dirs, G*H, H]
      flops = 2.0 * static_cast<double>(x.dims[0] * x.dims[1] * r.dims[0] * r.dims[1]) *
              static_cast<double>(x.dims[2] + r.dims[2]);
  } else {
    flops = out;
  }
  flops += out * static_cast<double>(body.parts.size() - 1);
  return {flops, bytes};
}

/// Debugging aid (KILN_CHECK_FINITE=1): after a step, counts the NaN and Inf values of its float
/// outputs and logs the step that first makes them.
void report_non_finite(const detail::EngineState& st, const Node& step, i64 batch, std::byte* arena, Stream s) {
  KILN_CHECK(cudaStreamSynchronize(s));
  for (const auto& o : step.outputs) {
    if (o.empty()) continue;
    const auto v = st.value(o, batch, arena);
    if (!(v.half || v.dtype == DType::f32) || !v.contiguous()) continue;
    const i64 n = v.numel();
    i64 bad = 0;
    double most = 0;
    for (float f : detail::download_floats(v.ptr, n, v.half)) {
      if (!std::isfinite(f)) ++bad;
      else most = std::max(most, static_cast<double>(std::fabs(f)));
    }
    st.log(bad ? Severity::warning : Severity::info,
           fmt::format("{}{}: {} non-finite of {}, max|finite| {:.4g}", step.where(), v.describe(), bad, n, most));
  }
}

}  // namespace

void ExecutionContext::enqueue(const Bindings& bindings, Stream stream) {
  auto& st = *engine_;
  check_bindings(st, bindings);
  if (stream == nullptr) stream = own_stream_;
  int dev = 0;
  KILN_CHECK(cudaGetDevice(&dev));
  if (dev != st.device)
    throw Error(fmt::format("the engine was made on device {}, the current device is {}", st.device, dev));
  auto& per = impl_->batches.at(batch_);
  std::byte* arena = static_cast<std::byte*>(impl_->arena.get());
  const detail::RunArgs args{impl_->workspace.get(), stream};

  auto launch = [&](bool profile) {
    impl_->lib.set_stream(stream);
    for (const auto& vi : st.plan.inputs) {
      const auto v = st.value(vi.name, batch_, arena);
      move_binding(v, bindings.at(vi.name), true, stream);
    }
    static const bool check_finite = std::getenv("KILN_CHECK_FINITE") != nullptr;
    for (std::size_t i = 0; i < per.steps.size(); ++i) {
      if (profile) KILN_CHECK(cudaEventRecord(impl_->events[2 * i], stream));
      per.steps[i]->run(args);
      if (profile) KILN_CHECK(cudaEventRecord(impl_->events[2 * i + 1], stream));
      if (check_finite) report_non_finite(st, st.plan.steps[i], batch_, arena, stream);
    }
    for (const auto& vi : st.plan.outputs) {
      if (auto w = st.plan.weights.find(vi.name); w != st.plan.weights.end()) {
        if (w->second.nbytes() == 0) continue;
        KILN_CHECK(cudaMemcpyAsync(bindings.at(vi.name), w->second.raw(), w->second.nbytes(),
                                   cudaMemcpyHostToDevice, stream));
        continue;
      }
      const auto v = st.value(vi.name, batch_, arena);
      move_binding(v, bindings.at(vi.name), false, stream);
    }
  };

  if (profiler_) {
    while (impl_->events.size() < 2 * per.steps.size()) {
      cudaEvent_t e = nullptr;
      KILN_CHECK(cudaEventCreate(&e));
      impl_->events.push_back(e);
    }
    launch(true);
    KILN_CHECK(cudaStreamSynchronize(stream));
    std::vector<StepTime> times;
    for (std::size_t i = 0; i < per.steps.size(); ++i) {
      const Node& n = st.plan.steps[i];
      StepTime t{static_cast<int>(i), n.name, is_fused(n) ? n.attr_string("pattern", n.op) : n.op,
                 per.steps[i]->kind(), 0.f};
      KILN_CHECK(cudaEventElapsedTime(&t.ms, impl_->events[2 * i], impl_->events[2 * i + 1]));
      try {
        std::tie(t.flops, t.bytes) = step_cost(st, n, batch_, arena);
      } catch (const Error& e) {  // an estimate never stops a profile
        st.log(Severity::info, fmt::format("{}no cost estimate: {}", n.where(), e.what()));
      }
      times.push_back(std::move(t));
    }
    profiler_->report(batch_, times);
    return;
  }
  if (!use_graph_) {
    launch(false);
    return;
  }
  if (per.graph && (per.graph_bindings != bindings || per.graph_stream != stream)) {
    cudaGraphExecDestroy(per.graph);
    per.graph = nullptr;
  }
  if (!per.graph) {
    cudaGraph_t graph = nullptr;
    KILN_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
      launch(false);
    } catch (...) {
      cudaStreamEndCapture(stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    KILN_CHECK(cudaStreamEndCapture(stream, &graph));
    const cudaError_t e = cudaGraphInstantiate(&per.graph, graph, 0);
    cudaGraphDestroy(graph);
    KILN_CHECK(e);
    per.graph_bindings = bindings;
    per.graph_stream = stream;
  }
  KILN_CHECK(cudaGraphLaunch(per.graph, stream));
}

void ExecutionContext::execute(const Bindings& bindings) {
  enqueue(bindings, own_stream_);
  KILN_CHECK(cudaStreamSynchronize(own_stream_));
}

std::map<std::string, Tensor> run_on_gpu(ExecutionContext& ctx, const std::map<std::string, Tensor>& inputs) {
  const auto& st = *ctx.engine_;
  std::vector<DeviceBuffer> buffers;
  Bindings b;
  for (const auto& vi : st.plan.inputs) {
    auto it = inputs.find(vi.name);
    if (it == inputs.end()) throw Error(fmt::format("missing input '{}' ({})", vi.name, vi.type.to_string()));
    const Tensor& t = it->second;
    std::vector<i64> want = vi.type.shape.values();
    if (!want.empty() && ctx.batch() != st.max_batch) want[0] = ctx.batch();
    if (t.dtype() != vi.type.dtype || t.dims() != want)
      throw ShapeError(fmt::format("input '{}' is {}, the engine expects {}{}", vi.name, t.type_string(),
                                   dtype_name(vi.type.dtype), dims_to_string(want)));
    buffers.emplace_back(t.nbytes());
    buffers.back().upload(t.raw(), t.nbytes());
    b[vi.name] = buffers.back().get();
  }
  std::vector<std::pair<std::string, Tensor>> outs;
  for (const auto& vi : st.plan.outputs) {
    std::vector<i64> dims = vi.type.shape.values();
    if (!dims.empty() && !st.plan.weights.count(vi.name) && ctx.batch() != st.max_batch) dims[0] = ctx.batch();
    Tensor t(vi.type.dtype, dims);
    buffers.emplace_back(t.nbytes());
    b[vi.name] = buffers.back().get();
    outs.emplace_back(vi.name, std::move(t));
  }
  for (const auto& [name, _] : inputs)
    if (!b.count(name)) throw Error(fmt::format("'{}' is not an input of plan '{}'", name, st.plan.graph_name));
  ctx.execute(b);
  std::map<std::string, Tensor> result;
  for (auto& [name, t] : outs) {
    DeviceBuffer* buf = nullptr;
    for (auto& d : buffers)
      if (d.get() == b[name]) buf = &d;
    buf->download(t.raw(), t.nbytes());
    result.emplace(name, std::move(t));
  }
  return result;
}

// ---- profiler -----------------------------------------------------------------------------

double Roofline::ms(double flops, double bytes) const {
  if (flops_per_s <= 0 || bytes_per_s <= 0) return 0;
  return 1e3 * std::max(flops / flops_per_s, bytes / bytes_per_s);
}

Roofline measure_roofline(Precision precision, int n) {
  Roofline r;
  Library lib;
  MatmulShape shape;
  shape.m = shape.n = shape.k = n;
  MatmulOptions o;
  o.precision = precision;
  Matmul mm(lib, shape, o);
  const MatmulTactic t = mm.tune();
  r.flops_per_s = 2.0 * n * static_cast<double>(n) * n / (t.ms * 1e-3);
  const std::size_t bytes = std::size_t{512} << 20;
  DeviceBuffer a(bytes), b(bytes);
  a.fill_bytes(0x3c);
  const float ms = detail::time_ms([&] {
    KILN_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr));
  });
  r.bytes_per_s = 2.0 * static_cast<double>(bytes) / (ms * 1e-3);  // read and write
  return r;
}

void TraceProfiler::report(std::int64_t /*batch*/, const std::vector<StepTime>& steps) { runs_.push_back(steps); }

std::string TraceProfiler::chrome_trace_json() const {
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  double t = 0;
  for (std::size_t r = 0; r < runs_.size(); ++r) {
    for (const auto& st : runs_[r]) {
      events.push_back({{"name", st.name}, {"cat", st.kind}, {"ph", "X"}, {"ts", t}, {"dur", st.ms * 1000.0},
                        {"pid", 1}, {"tid", 1}, {"args", {{"op", st.op}, {"run", r}, {"step", st.index}}}});
      t += st.ms * 1000.0;
    }
    t += 10.0;  // a gap between runs
  }
  return nlohmann::ordered_json{{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}}
             .dump(1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string TraceProfiler::table(std::size_t top) const {
  if (runs_.empty()) return "no profiled runs\n";
  const auto& first = runs_.front();
  std::vector<double> mean(first.size(), 0.0);
  for (const auto& r : runs_)
    for (std::size_t i = 0; i < r.size() && i < mean.size(); ++i) mean[i] += r[i].ms;
  double total = 0;
  for (auto& m : mean) total += (m /= static_cast<double>(runs_.size()));
  std::vector<std::size_t> order(mean.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return mean[a] > mean[b]; });
  if (top != 0 && order.size() > top) order.resize(top);
  const bool roof = roofline_.flops_per_s > 0 && roofline_.bytes_per_s > 0;
  std::string s = fmt::format("{:>4}  {:<32} {:<26} {:<12} {:>10} {:>7}", "step", "name", "op", "kind", "mean ms", "share");
  if (roof) s += fmt::format(" {:>9} {:>9} {:>11} {:>8}", "GFLOP", "MB", "roofline ms", "x roof");
  s += "\n";
  double roof_total = 0;
  for (std::size_t i = 0; i < first.size(); ++i) roof_total += roofline_.ms(first[i].flops, first[i].bytes);
  for (auto i : order) {
    s += fmt::format("{:>4}  {:<32} {:<26} {:<12} {:>10.4f} {:>6.1f}%", i, first[i].name.substr(0, 32),
                     first[i].op.substr(0, 26), first[i].kind, mean[i], total > 0 ? 100.0 * mean[i] / total : 0.0);
    if (roof) {
      const double r = roofline_.ms(first[i].flops, first[i].bytes);
      s += fmt::format(" {:>9.4f} {:>9.3f} {:>11.4f} {:>7.1f}x", first[i].flops / 1e9, first[i].bytes / 1e6, r,
                       r > 0 ? mean[i] / r : 0.0);
    }
    s += "\n";
  }
  if (roof)
    s += fmt::format("roofline: {:.1f} TFLOP/s (matrix product), {:.0f} GB/s (device copy); all steps at the roofline "
                     "{:.4f} ms\n", roofline_.flops_per_s / 1e12, roofline_.bytes_per_s / 1e9, roof_total);
  s += fmt::format("total {:.4f} ms over {} steps (mean of {} runs)\n", total, mean.size(), runs_.size());
  return s;
}

}  // namespace kiln::runtime
