// The engine: logging, where each value of the plan lives on the device, and Engine itself
// (what contexts share, made once per plan).
#include "kiln/runtime/engine.hpp"

#include <algorithm>

#include "check.hpp"
#include "engine_impl.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/runtime/device.hpp"
#include "library_types.hpp"

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

// ---- targets ------------------------------------------------------------------------------

std::optional<Precision> target_precision(const std::string& target) {
  if (target != kCudaTarget && target != kCudaFp16Target && target != kCudaBf16Target)
    return std::nullopt;
  // The target says its float format ("fp32", "fp16", "bf16"; plan::Target::precision).
  const std::string& p = plan::target_by_name(target).precision;
  static const std::pair<const char*, Precision> kFormats[] = {
      {"fp32", Precision::f32}, {"fp16", Precision::f16}, {"bf16", Precision::bf16}};
  for (const auto& [name, c] : kFormats)
    if (p == name) return c;
  throw Error(
      fmt::format("target '{}' computes in '{}', which the GPU runtime does not", target, p));
}

namespace detail {

std::string gpu_target_names() {
  return fmt::format("'{}', '{}' or '{}'", kCudaTarget, kCudaFp16Target, kCudaBf16Target);
}

// ---- values -------------------------------------------------------------------------------

i64 DeviceValue::numel() const { return product(dims); }
std::size_t DeviceValue::elem_size() const { return half() ? 2 : dtype_size(dtype); }

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
  if (half() || dtype == DType::f32) return elem_of(fp);
  throw UnsupportedError(fmt::format(
      "the GPU runtime computes in f32, f16 and bf16 only; '{}' is {}", name, dtype_name(dtype)));
}

std::string DeviceValue::describe() const {
  return fmt::format("{}{}{} '{}'", half() ? element_name(fp) : dtype_name(dtype),
                     dims_to_string(dims), nhwc() ? " NHWC" : "", name);
}

namespace {
std::vector<i64> row_major(const std::vector<i64>& dims) {
  std::vector<i64> s(dims.size(), 1);
  for (std::size_t d = dims.size(); d-- > 1;) s[d - 1] = s[d] * dims[d];
  return s;
}
}  // namespace

void EngineState::check_batch(i64 batch) const {
  if (batch < 1 || batch > max_batch)
    throw Error(fmt::format("batch {} is outside 1..{} (the plan's batch)", batch, max_batch));
  if (batch != max_batch && !resizable)
    throw Error(
        fmt::format("plan '{}' runs at batch {} only (not every activation has the batch as its "
                    "first dim)",
                    plan.graph_name, max_batch));
}

DeviceValue EngineState::value(const std::string& name, i64 batch, std::byte* arena) const {
  DeviceValue v;
  v.name = name;
  if (auto w = plan.weights.find(name); w != plan.weights.end()) {
    v.dtype = w->second.dtype();
    v.fp = storage_of(v.dtype, precision);
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
  v.fp = storage_of(v.dtype, precision);
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

}  // namespace detail

// ---- engine -------------------------------------------------------------------------------

Engine::Engine(const plan::Plan& plan, const EngineOptions& options)
    : state_(std::make_shared<detail::EngineState>()) {
  auto& st = *state_;
  const std::optional<Precision> precision = target_precision(plan.target);
  if (!precision)
    throw FormatError(
        fmt::format("plan '{}' was built for target '{}'; the GPU runs plans built for {} "
                    "(kiln build --gpu, --fp16 or --bf16)",
                    plan.graph_name, plan.target, detail::gpu_target_names()));
  check_gpu_plan(plan);
  std::map<std::string, detail::Tactic> recorded;  // checked before any GPU work
  for (const auto& [key, text] : plan.tactics) {
    try {
      recorded[key] = detail::parse_tactic(text);
    } catch (const FormatError& e) {
      throw FormatError(
          fmt::format("plan '{}': the tactic of '{}': {}", plan.graph_name, key, e.what()));
    }
  }
  if (device_count() == 0) throw Error("no GPU: " + no_device_reason());
  st.plan = plan;
  st.options = options;
  if (options.logger)
    st.logger = options.logger;
  else
    st.logger = (st.own_logger = std::make_unique<StderrLogger>()).get();
  st.precision = *precision;
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
      throw GraphError(
          fmt::format("'{}' is a view of the NHWC value '{}'{}; the plan lacks a layout "
                      "conversion (rebuild it with this kiln)",
                      name, src, dims_to_string(sd)));
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
  st.tactics = std::move(recorded);
  st.load_timing_cache();
  Library lib;
  for (const Node& s : st.plan.steps) {
    const bool host = runs_on_host(st.plan, s), waits = waits_for_stream(st.plan, s);
    st.on_host.push_back(host);
    st.waits.push_back(waits);
    st.host_steps += host ? 1 : 0;
    st.waiting_steps += waits ? 1 : 0;
    for (const auto& o : s.outputs)  // host steps' outputs, and those GPU steps size on the host
      if (!o.empty() && (host || sized_at_run_time(st.plan, o))) st.made_on_host.insert(o);
    for (const auto& i : s.inputs)
      if (!host && !i.empty()) st.read_on_device.insert(i);
  }
  for (const auto& o : st.plan.outputs) st.read_on_device.insert(o.name);
  // A value a host step makes may share its buffer with others (views of it, the concat it is a
  // slice of): those are read from the device, by GPU steps and host steps alike (a host step
  // downloads a value no host step made), so it goes up whenever any of them is read.
  std::map<std::string, std::vector<std::string>> by_buffer;
  for (const auto& [name, pv] : st.plan.memory.values)
    if (!pv.sized_at_run_time()) by_buffer[pv.root.empty() ? name : pv.root].push_back(name);
  std::set<std::string> read;
  for (const Node& s : st.plan.steps) read.insert(s.inputs.begin(), s.inputs.end());
  for (const auto& o : st.plan.outputs) read.insert(o.name);
  for (const auto& made : st.made_on_host) {
    auto pv = st.plan.memory.values.find(made);
    if (pv == st.plan.memory.values.end() || pv->second.sized_at_run_time()) continue;
    const auto& root = pv->second.root.empty() ? made : pv->second.root;
    for (const auto& other : by_buffer[root])
      if (other != made && read.count(other) && !st.made_on_host.count(other))
        st.read_on_device.insert(made);
  }
  std::vector<i64> batches = {st.max_batch};
  for (i64 b : options.batch_sizes) {
    st.check_batch(b);
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
int Engine::host_steps() const { return state_->host_steps; }
std::size_t Engine::untimed_problems() const {
  std::lock_guard lock(state_->tactics_mu);
  return state_->untimed.size();
}

std::size_t Engine::borrowed_problems() const {
  std::lock_guard lock(state_->tactics_mu);
  return state_->borrowed.size();
}
std::map<std::string, std::string> Engine::step_problems() const {
  std::lock_guard lock(state_->tactics_mu);
  return state_->step_problems;
}

std::map<std::string, std::string> Engine::tactics() const {
  std::lock_guard lock(state_->tactics_mu);
  std::map<std::string, std::string> m;
  for (const auto& [key, t] : state_->tactics) m[key] = detail::to_text(t);
  return m;
}
std::size_t Engine::arena_bytes() const {
  return static_cast<std::size_t>(state_->plan.memory.arena_bytes);
}

std::size_t Engine::workspace_bytes(std::int64_t batch) const {
  if (batch == 0) batch = state_->max_batch;
  std::lock_guard lock(state_->tactics_mu);
  auto it = state_->workspace.find(batch);
  return it == state_->workspace.end() ? state_->workspace.at(state_->max_batch) : it->second;
}

std::string Engine::describe() const {
  const auto& st = *state_;
  std::string s =
      fmt::format("engine: {} steps, {} at batch {} on device {}\n", st.described.size(),
                  precision_name(st.precision), st.max_batch, st.device);
  for (std::size_t i = 0; i < st.described.size(); ++i) {
    const Node& n = st.plan.steps[i];
    const std::string what = is_fused(n) ? n.attr_string("pattern", n.op) : n.op;
    const auto& [kind, t] = st.described[i];
    s += fmt::format("  {:3} {:<28} {:<24} {:<12}{}\n", i, n.name, what, kind,
                     t.empty() ? "" : "  " + t);
  }
  s += fmt::format("memory: weights {} bytes, arena {} bytes, workspace {} bytes per context\n",
                   weight_bytes(), arena_bytes(), workspace_bytes());
  return s;
}

std::unique_ptr<ExecutionContext> Engine::create_context() const {
  return std::unique_ptr<ExecutionContext>(new ExecutionContext(state_, nullptr));
}

std::unique_ptr<ExecutionContext> Engine::create_context(
    std::shared_ptr<detail::ContextMemory> memory) const {
  return std::unique_ptr<ExecutionContext>(new ExecutionContext(state_, std::move(memory)));
}

}  // namespace kiln::runtime
