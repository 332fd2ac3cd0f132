// ExecutionContext: one stream of work over an engine (its arena, workspace, library handles and
// CUDA graphs), and run_on_gpu() for host tensors.
#include <cmath>
#include <tuple>

#include "check.hpp"
#include "copy.cuh"
#include "engine_impl.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/runtime/engine.hpp"
#include "layout.cuh"

namespace kiln::runtime {

using detail::i64;

// ---- context ------------------------------------------------------------------------------

struct ExecutionContext::Impl {
  Library lib;
  std::shared_ptr<detail::ContextMemory> mem;  // arena and workspace, maybe shared
  std::uint64_t generation = 0;                // mem's when this context's graphs were captured
  struct PerBatch {
    std::vector<std::unique_ptr<detail::Step>> steps;
    cudaGraphExec_t graph = nullptr;
    Bindings graph_bindings;
    Stream graph_stream = nullptr;
    /// A plan with steps that wait for the stream: one graph per run of steps between them, by
    /// its first step.
    std::map<std::size_t, cudaGraphExec_t> segments;
    Stream segments_stream = nullptr;
    void drop_graphs() {
      if (graph) cudaGraphExecDestroy(graph), graph = nullptr;
      for (auto& [_, g] : segments) cudaGraphExecDestroy(g);
      segments.clear();
    }
  };
  std::map<i64, PerBatch> batches;
  std::vector<cudaEvent_t> events;
  /// Values sized at run time, held by the host steps (shared by every batch's steps).
  std::shared_ptr<detail::HostValues> host = std::make_shared<detail::HostValues>();
  /// The dims of the outputs sized at run time in the last run.
  std::map<std::string, std::vector<i64>> sized_outputs;

  ~Impl() {
    for (auto& [_, b] : batches) b.drop_graphs();
    for (auto e : events) cudaEventDestroy(e);
  }
};

ExecutionContext::ExecutionContext(std::shared_ptr<detail::EngineState> engine,
                                   std::shared_ptr<detail::ContextMemory> memory)
    : engine_(std::move(engine)), impl_(std::make_unique<Impl>()) {
  int dev = 0;
  KILN_CHECK(cudaGetDevice(&dev));
  if (dev != engine_->device)
    throw Error(fmt::format("the engine was made on device {}, the current device is {}",
                            engine_->device, dev));
  KILN_CHECK(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
  const auto arena = static_cast<std::size_t>(engine_->plan.memory.arena_bytes);
  if (memory) {
    if (memory->arena.bytes() < arena)
      throw Error(fmt::format("a shared arena of {} bytes is too small for this plan's {} bytes",
                              memory->arena.bytes(), arena));
    impl_->mem = std::move(memory);
  } else {
    impl_->mem = std::make_shared<detail::ContextMemory>();
    impl_->mem->arena = DeviceBuffer(arena);
  }
  impl_->generation = impl_->mem->generation;
  set_batch(engine_->max_batch);
}

ExecutionContext::~ExecutionContext() {
  impl_.reset();
  if (own_stream_) cudaStreamDestroy(own_stream_);
}

void ExecutionContext::set_batch(std::int64_t batch) {
  auto& st = *engine_;
  st.check_batch(batch);
  auto& per = impl_->batches[batch];
  if (per.steps.empty()) {
    per.steps = st.make_steps(batch, static_cast<std::byte*>(impl_->mem->arena.get()), impl_->lib,
                              impl_->host);
    st.save_timing_cache();
    std::size_t ws = 0;
    for (const auto& s : per.steps) ws = std::max(ws, s->workspace());
    if (ws > impl_->mem->workspace.bytes()) {
      // A larger workspace moves every captured graph's pointers (those of the contexts sharing
      // it too, which see the generation change): capture again.
      for (auto& [_, b] : impl_->batches) b.drop_graphs();
      impl_->mem->workspace = DeviceBuffer(ws);
      impl_->generation = ++impl_->mem->generation;
    }
  }
  batch_ = batch;
}

std::size_t ExecutionContext::device_bytes() const {
  return impl_->mem->arena.bytes() + impl_->mem->workspace.bytes();
}

namespace {

/// Whether plan output `name` is sized at run time (it goes to the output allocator).
bool sized_output(const detail::EngineState& st, const std::string& name) {
  auto v = st.plan.memory.values.find(name);
  return v != st.plan.memory.values.end() && v->second.sized_at_run_time();
}

void check_bindings(const detail::EngineState& st, const Bindings& b, const OutputAllocator* a) {
  // An empty tensor may be bound to nullptr (there is nothing to read or write).
  auto empty = [](const ValueInfo& vi) {
    return vi.type.shape.is_static() && product(vi.type.shape.values()) == 0;
  };
  for (const auto& vi : st.plan.inputs)
    if (!b.count(vi.name) || (b.at(vi.name) == nullptr && !empty(vi)))
      throw Error(fmt::format("input '{}' ({}) is not bound", vi.name, vi.type.to_string()));
  for (const auto& vi : st.plan.outputs) {
    if (sized_output(st, vi.name)) {
      if (!a)
        throw Error(
            fmt::format("output '{}' ({}) is sized at run time: give the context an "
                        "OutputAllocator (set_output_allocator)",
                        vi.name, vi.type.to_string()));
      if (b.count(vi.name))
        throw Error(
            fmt::format("output '{}' ({}) is sized at run time: it goes to the output "
                        "allocator, not to a binding",
                        vi.name, vi.type.to_string()));
      continue;
    }
    if (!b.count(vi.name) || (b.at(vi.name) == nullptr && !empty(vi)))
      throw Error(fmt::format("output '{}' ({}) is not bound", vi.name, vi.type.to_string()));
  }
  for (const auto& [name, _] : b) {
    bool known = false;
    for (const auto& vi : st.plan.inputs) known |= vi.name == name;
    for (const auto& vi : st.plan.outputs) known |= vi.name == name;
    if (!known)
      throw Error(fmt::format("'{}' is neither an input nor an output of plan '{}'", name,
                              st.plan.graph_name));
  }
}

/// Copies (or converts to the engine's 16-bit format and back) between a binding and the value's
/// place.
void move_binding(const detail::DeviceValue& v, void* binding, bool in, Stream s) {
  const i64 n = v.numel();
  if (n == 0) return;
  if (v.half() && v.dtype == DType::f32) {
    if (in)
      KILN_CHECK(kernels::cast(kernels::Elem::f32, v.elem(), binding, v.ptr, n, s));
    else
      KILN_CHECK(kernels::cast(v.elem(), kernels::Elem::f32, v.ptr, binding, n, s));
    return;
  }
  const std::size_t bytes = static_cast<std::size_t>(n) * v.elem_size();
  if (in)
    KILN_CHECK(cudaMemcpyAsync(v.ptr, binding, bytes, cudaMemcpyDeviceToDevice, s));
  else
    KILN_CHECK(cudaMemcpyAsync(binding, v.ptr, bytes, cudaMemcpyDeviceToDevice, s));
}

/// Debugging aid (EngineOptions::check_finite): after a step, counts the NaN and Inf values of its
/// float outputs and logs the step that first makes them.
void report_non_finite(const detail::EngineState& st, const Node& step, i64 batch, std::byte* arena,
                       Stream s) {
  KILN_CHECK(cudaStreamSynchronize(s));
  for (const auto& o : step.outputs) {
    if (o.empty()) continue;
    const auto v = st.value(o, batch, arena);
    if (!(v.half() || v.dtype == DType::f32) || !v.contiguous()) continue;
    const i64 n = v.numel();
    i64 bad = 0;
    double most = 0;
    for (float f : detail::download_floats(v.ptr, n, v.fp)) {
      if (!std::isfinite(f))
        ++bad;
      else
        most = std::max(most, static_cast<double>(std::fabs(f)));
    }
    st.log(bad ? Severity::warning : Severity::info,
           fmt::format("{}{}: {} non-finite of {}, max|finite| {:.4g}", step.where(), v.describe(),
                       bad, n, most));
  }
}

}  // namespace

void ExecutionContext::enqueue(const Bindings& bindings, Stream stream) {
  auto& st = *engine_;
  check_bindings(st, bindings, allocator_);
  if (stream == nullptr) stream = own_stream_;
  int dev = 0;
  KILN_CHECK(cudaGetDevice(&dev));
  if (dev != st.device)
    throw Error(
        fmt::format("the engine was made on device {}, the current device is {}", st.device, dev));
  if (impl_->generation != impl_->mem->generation) {  // another context grew the workspace
    for (auto& [_, b] : impl_->batches) b.drop_graphs();
    impl_->generation = impl_->mem->generation;
  }
  auto& per = impl_->batches.at(batch_);
  std::byte* arena = static_cast<std::byte*>(impl_->mem->arena.get());
  const detail::RunArgs args{impl_->mem->workspace.get(), stream};

  // With steps that wait for the stream (host steps, GPU steps sizing their outputs) and CUDA
  // graphs asked for: each run of GPU steps between them is captured once (per batch and stream)
  // and replayed; the waiting steps run between the replays.
  const bool segmented = use_graph_ && st.waiting_steps > 0 && !profiler_;
  if (segmented && per.segments_stream != stream) {
    for (auto& [_, g] : per.segments) cudaGraphExecDestroy(g);
    per.segments.clear();
    per.segments_stream = stream;
  }
  auto run_segment = [&](std::size_t first, std::size_t end) {
    auto it = per.segments.find(first);
    if (it == per.segments.end()) {
      cudaGraph_t graph = nullptr;
      KILN_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      try {
        for (std::size_t i = first; i < end; ++i) per.steps[i]->run(args);
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      KILN_CHECK(cudaStreamEndCapture(stream, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      KILN_CHECK(e);
      it = per.segments.emplace(first, exec).first;
    }
    KILN_CHECK(cudaGraphLaunch(it->second, stream));
  };

  auto launch = [&](bool profile) {
    impl_->lib.set_stream(stream);
    for (const auto& vi : st.plan.inputs) {
      const auto v = st.value(vi.name, batch_, arena);
      move_binding(v, bindings.at(vi.name), true, stream);
    }
    for (std::size_t i = 0; i < per.steps.size(); ++i) {
      if (segmented && !st.waits[i]) {
        std::size_t end = i + 1;
        while (end < per.steps.size() && !st.waits[end]) ++end;
        run_segment(i, end);
        i = end - 1;
        continue;
      }
      if (profile) KILN_CHECK(cudaEventRecord(impl_->events[2 * i], stream));
      per.steps[i]->run(args);
      if (profile) KILN_CHECK(cudaEventRecord(impl_->events[2 * i + 1], stream));
      if (st.options.check_finite && !st.waits[i])
        report_non_finite(st, st.plan.steps[i], batch_, arena, stream);
    }
    impl_->sized_outputs.clear();
    for (const auto& vi : st.plan.outputs) {
      if (sized_output(st, vi.name)) {  // made on the host by now: to the allocator's memory
        auto h = impl_->host->values.find(vi.name);
        if (h == impl_->host->values.end())
          throw Error(fmt::format("output '{}' was not made", vi.name));
        const Tensor& t = h->second;
        void* dst = allocator_->allocate(vi.name, t.dims(), t.nbytes());
        if (t.nbytes() && !dst)
          throw Error(fmt::format("the output allocator gave no memory for '{}' ({} bytes)",
                                  vi.name, t.nbytes()));
        if (t.nbytes())
          KILN_CHECK(cudaMemcpyAsync(dst, t.raw(), t.nbytes(), cudaMemcpyHostToDevice, stream));
        KILN_CHECK(cudaStreamSynchronize(stream));  // the host tensor may go with the next run
        impl_->sized_outputs[vi.name] = t.dims();
        continue;
      }
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
        std::tie(t.flops, t.bytes) = detail::step_cost(st, n, batch_, arena);
      } catch (const Error& e) {  // an estimate never stops a profile
        st.log(Severity::info, fmt::format("{}no cost estimate: {}", n.where(), e.what()));
      }
      times.push_back(std::move(t));
    }
    profiler_->report(batch_, times);
    return;
  }
  if (!use_graph_ || segmented) {
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

std::vector<std::int64_t> ExecutionContext::output_dims(const std::string& name) const {
  if (auto it = impl_->sized_outputs.find(name); it != impl_->sized_outputs.end())
    return it->second;
  const auto& st = *engine_;
  for (const auto& vi : st.plan.outputs)
    if (vi.name == name) {
      if (sized_output(st, name))
        throw Error(
            fmt::format("output '{}' is sized at run time and has not been made yet", name));
      std::vector<i64> dims = vi.type.shape.values();
      if (!dims.empty() && !st.plan.weights.count(name) && batch_ != st.max_batch) dims[0] = batch_;
      return dims;
    }
  throw Error(fmt::format("'{}' is not an output of plan '{}'", name, st.plan.graph_name));
}

void ExecutionContext::execute(const Bindings& bindings) {
  enqueue(bindings, own_stream_);
  KILN_CHECK(cudaStreamSynchronize(own_stream_));
}

std::map<std::string, Tensor> run_on_gpu(ExecutionContext& ctx,
                                         const std::map<std::string, Tensor>& inputs) {
  const auto& st = *ctx.engine_;
  std::vector<DeviceBuffer> buffers;
  Bindings b;
  for (const auto& vi : st.plan.inputs) {
    auto it = inputs.find(vi.name);
    if (it == inputs.end())
      throw Error(fmt::format("missing input '{}' ({})", vi.name, vi.type.to_string()));
    const Tensor& t = it->second;
    std::vector<i64> want = vi.type.shape.values();
    if (!want.empty() && ctx.batch() != st.max_batch) want[0] = ctx.batch();
    if (!t.is_tensor() || t.dtype() != vi.type.dtype || t.dims() != want)
      throw ShapeError(fmt::format("input '{}' is {}, the engine expects {}{}", vi.name,
                                   t.type_string(), dtype_name(vi.type.dtype),
                                   dims_to_string(want)));
    buffers.emplace_back(t.nbytes());
    buffers.back().upload(t.raw(), t.nbytes());
    b[vi.name] = buffers.back().get();
  }
  std::vector<std::pair<std::string, Tensor>> outs;
  // Outputs sized at run time: device buffers of the size the run gives.
  struct Allocator final : OutputAllocator {
    std::map<std::string, DeviceBuffer> buffers;
    void* allocate(const std::string& name, const std::vector<std::int64_t>&,
                   std::size_t bytes) override {
      return (buffers[name] = DeviceBuffer(bytes)).get();
    }
  } sized;
  OutputAllocator* previous = ctx.allocator_;
  for (const auto& vi : st.plan.outputs) {
    if (sized_output(st, vi.name)) {
      ctx.set_output_allocator(&sized);
      continue;
    }
    std::vector<i64> dims = vi.type.shape.values();
    if (!dims.empty() && !st.plan.weights.count(vi.name) && ctx.batch() != st.max_batch)
      dims[0] = ctx.batch();
    Tensor t(vi.type.dtype, dims);
    buffers.emplace_back(t.nbytes());
    b[vi.name] = buffers.back().get();
    outs.emplace_back(vi.name, std::move(t));
  }
  for (const auto& [name, _] : inputs)
    if (!b.count(name))
      throw Error(fmt::format("'{}' is not an input of plan '{}'", name, st.plan.graph_name));
  try {
    ctx.execute(b);
  } catch (...) {
    ctx.set_output_allocator(previous);
    throw;
  }
  ctx.set_output_allocator(previous);
  std::map<std::string, Tensor> result;
  for (auto& [name, buf] : sized.buffers) {
    DType dtype = DType::f32;
    for (const auto& vi : st.plan.outputs)
      if (vi.name == name) dtype = vi.type.dtype;
    Tensor t(dtype, ctx.output_dims(name));
    if (t.nbytes()) buf.download(t.raw(), t.nbytes());
    result.emplace(name, std::move(t));
  }
  for (auto& [name, t] : outs) {
    DeviceBuffer* buf = nullptr;
    for (auto& d : buffers)
      if (d.get() == b[name]) buf = &d;
    buf->download(t.raw(), t.nbytes());
    result.emplace(name, std::move(t));
  }
  return result;
}

}  // namespace kiln::runtime
