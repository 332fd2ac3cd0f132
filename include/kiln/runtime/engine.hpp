// The GPU engine: a Plan built for a CUDA target, executed with cuDNN, cuBLASLt and kiln's own
// kernels. The Engine owns what contexts share (the weights, uploaded once and converted to the
// plan's precision and layout, and the tactics timed for each batch size); an ExecutionContext
// owns what one stream of work needs (its activation arena, its workspace, its library handles,
// its CUDA graphs). Any number of contexts run from one engine, each on its own stream.
//
//   // plan: built for plan::cuda_target(true) ("cuda-fp16": the engine runs FP16)
//   kiln::runtime::Engine engine(plan, {.timing_cache = "kiln.cache"});
//   auto ctx = engine.create_context();
//   ctx->enqueue({{"input", d_in}, {"output", d_out}}, stream);  // device pointers, plan dtypes
//
// Bindings are device pointers in the dtypes of the plan's inputs and outputs (FP32 for FP32
// models, also in an FP16 engine: it converts on the way in and out).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kiln/plan/plan.hpp"
#include "kiln/runtime/library.hpp"

namespace kiln::runtime {

// ---- logging ------------------------------------------------------------------------------

enum class Severity : int { error = 0, warning, info, verbose };
const char* severity_name(Severity s);

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(Severity severity, const std::string& message) = 0;
};

/// Prints messages at or above `threshold` to stderr as "[kiln warning] ...".
class StderrLogger : public Logger {
 public:
  explicit StderrLogger(Severity threshold = Severity::warning) : threshold_(threshold) {}
  void log(Severity severity, const std::string& message) override;

 private:
  Severity threshold_;
};

// ---- targets ------------------------------------------------------------------------------

/// Plans for the GPU are built for plan::cuda_target(false) ("cuda": FP32, NCHW),
/// plan::cuda_target(true) ("cuda-fp16": FP16, NHWC for convolutions and pooling) or
/// plan::target_by_name("cuda-bf16") (BF16, laid out as cuda-fp16); the target names the
/// precision an engine runs the plan in (target_precision).
inline constexpr const char* kCudaTarget = plan::kCudaTarget;
inline constexpr const char* kCudaFp16Target = plan::kCudaFp16Target;
inline constexpr const char* kCudaBf16Target = plan::kCudaBf16Target;
/// The precision an engine runs plans of `target` in: FP32 for "cuda", FP16 for "cuda-fp16",
/// BF16 for "cuda-bf16"; nullopt for the targets the GPU does not run (the CPU reference's).
std::optional<Precision> target_precision(const std::string& target);

/// Ops the GPU runtime runs as steps (ONNX names; kiln.Fused steps are checked part by part).
const std::vector<std::string>& gpu_ops();
/// True when the runtime runs `op` (for `kiln ops`).
bool gpu_supports(const std::string& op);
/// Throws UnsupportedError naming the first step (and, in a fused step, the part) whose op the
/// GPU runtime does not run. Needs no GPU: `kiln build --gpu` checks a plan before writing it.
/// (Attribute-level limits, such as 3-D convolution, are found when an engine is made.)
void check_gpu_plan(const plan::Plan& plan);
/// Whether step `s` of plan `p` runs on the host with the CPU reference (Engine::host_steps()):
/// control flow, ops of data-dependent output size but NonMaxSuppression's (sizes_on_gpu()), steps
/// reading a value sized at run time, and steps marked plan::kHostAttr (kiln build
/// --host-fallback).
bool runs_on_host(const plan::Plan& p, const Node& s);
/// Whether a GPU step of `s` makes outputs sized at run time, learning their size by waiting for
/// the stream, and hands them to the host (NonMaxSuppression, on inputs of fixed size).
bool sizes_on_gpu(const Node& s);
/// Whether `value` of plan `p` is sized at run time (plan::PlannedValue::sized_at_run_time).
bool sized_at_run_time(const plan::Plan& p, const std::string& value);
/// Whether step `s` waits for the stream when it runs: host steps, and GPU steps that size their
/// outputs. CUDA graphs cover the runs of steps between them.
bool waits_for_stream(const plan::Plan& p, const Node& s);

// ---- engine -------------------------------------------------------------------------------

struct EngineOptions {
  bool allow_tf32 = false;  ///< FP32 plans only
  /// Largest workspace a convolution or matrix product may use while choosing its algorithm.
  std::size_t workspace_limit = std::size_t{256} << 20;
  /// Batch sizes, besides the plan's own, to time tactics for when the engine is made.
  std::vector<std::int64_t> batch_sizes;
  /// A timing cache file: read when the engine is made (if it exists and was made on the same
  /// GPU, driver and library versions), written back with what was timed. Empty: none.
  std::string timing_cache;
  Logger* logger = nullptr;  ///< nullptr: StderrLogger(warning)
  /// Called with (done, total, what) while tactics are timed.
  std::function<void(int, int, const std::string&)> progress;
  /// Convolutions may run through cuDNN's graph API (its fused engines); false: the legacy API
  /// only (a diagnosis aid; the CLI takes it from KILN_CONV_API=legacy).
  bool cudnn_graph = true;
  /// After each step, count the NaN and Inf values of its float outputs and log the step that
  /// first makes them (slow: it synchronizes and downloads; the CLI takes it from
  /// KILN_CHECK_FINITE).
  bool check_finite = false;
  /// Time the candidates of a convolution, matrix product or attention step whose problem has no
  /// tactic in the plan or the timing cache (what building on a GPU does). false: such a step
  /// runs its library's heuristic choice, untimed (a dynamic plan's shapes between its buckets,
  /// unless asked to tune: DynamicEngine, kiln run/bench --tune-new-shapes).
  bool time_tactics = true;
  /// Tactics by step name (tactic text, as Engine::tactics() writes them) for the steps whose own
  /// problem has none in the plan or the timing cache, taken instead of the heuristic's choice
  /// when time_tactics is off: a DynamicEngine gives an exact shape between buckets its bucket's
  /// (plan::Plan::bucket_step_tactics). Where such a tactic does not run at the step's own problem
  /// (an algorithm the library refuses there, a workspace over the limit), the heuristic's stays.
  std::map<std::string, std::string> step_tactics;
};

/// A binding: device memory for one named input or output.
using Bindings = std::map<std::string, void*>;

/// Per-step GPU time of one run, as a Profiler receives it.
struct StepTime {
  int index = 0;
  std::string name;  ///< the step's node name
  std::string op;    ///< op or fused pattern ("Conv+Add+Relu")
  std::string kind;  ///< which implementation ran it ("cudnn-conv", "cublaslt", "pointwise", ...)
  float ms = 0.f;
  double flops = 0;  ///< arithmetic of the step (multiply-adds count two)
  double bytes = 0;  ///< bytes it must read and write at least (inputs, weights, outputs)
};

/// The rates a roofline divides by: a large matrix product's FLOP/s and a device-to-device
/// copy's bytes/s, both measured on the current device (see measure_roofline()).
struct Roofline {
  double flops_per_s = 0;
  double bytes_per_s = 0;
  /// max(flops / rate, bytes / bandwidth) in ms.
  double ms(double flops, double bytes) const;
};
/// Times a cuBLASLt matrix product (`n`^3, the precision given) and a 512 MiB device copy.
Roofline measure_roofline(Precision precision, int n = 8192);

/// Receives per-step times after a profiled run.
class Profiler {
 public:
  virtual ~Profiler() = default;
  virtual void report(std::int64_t batch, const std::vector<StepTime>& steps) = 0;
};

/// Collects profiled runs and writes them as a Chrome trace (chrome://tracing, Perfetto) and as
/// a per-layer table.
class TraceProfiler : public Profiler {
 public:
  void report(std::int64_t batch, const std::vector<StepTime>& steps) override;
  /// {"traceEvents": [...]}: one complete event ("ph": "X") per step and run, in microseconds.
  std::string chrome_trace_json() const;
  /// Steps by mean time over the runs: name, op, kind, mean ms, share of the total; with a
  /// roofline, also each step's GFLOP, MB and roofline time.
  std::string table(std::size_t top = 0) const;
  void set_roofline(const Roofline& r) { roofline_ = r; }
  const std::vector<std::vector<StepTime>>& runs() const { return runs_; }

 private:
  std::vector<std::vector<StepTime>> runs_;
  Roofline roofline_;
};

class ExecutionContext;
namespace detail {
struct EngineState;
struct ContextMemory;
}  // namespace detail
class DynamicContext;

/// Gives device memory to the outputs whose dims are known only when the plan has run
/// (plan::PlannedValue::sized_at_run_time: a detector's boxes after NMS), as TensorRT's
/// IOutputAllocator does: the context calls allocate() once per such output and run, after the
/// step that makes it, and copies the output there before enqueue() returns.
class OutputAllocator {
 public:
  virtual ~OutputAllocator() = default;
  /// Device memory for output `name` of `dims` (plan dtype, row-major), `bytes` long; nullptr is
  /// allowed when bytes is 0.
  virtual void* allocate(const std::string& name, const std::vector<std::int64_t>& dims,
                         std::size_t bytes) = 0;
};

class Engine {
 public:
  /// Uploads the plan's weights to the current device (converted to FP16 and to the layout each
  /// step takes for a cuda-fp16 plan) and times the tactics of every convolution, matrix product
  /// and recurrence for the plan's batch and options.batch_sizes, except those the plan records
  /// (Plan::tactics) or the timing cache holds. Throws UnsupportedError naming the
  /// step when the plan holds an op the GPU runtime does not run, and FormatError when the plan
  /// was built for a target that is not a CUDA target.
  Engine(const plan::Plan& plan, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  Precision precision() const;
  int device() const;              ///< the device it was made on
  std::int64_t max_batch() const;  ///< the plan's batch (dim 0 of its inputs)
  /// Whether contexts may run batches below max_batch() (every activation's dim 0 is the batch).
  bool batch_resizable() const;
  const std::vector<ValueInfo>& inputs() const;
  const std::vector<ValueInfo>& outputs() const;
  std::size_t weight_bytes() const;  ///< device memory of the uploaded weights
  std::size_t arena_bytes() const;   ///< one context's activation arena
  /// One context's workspace for `batch` (0: max_batch()): the largest any step needs.
  std::size_t workspace_bytes(std::int64_t batch = 0) const;
  /// The steps as they will run (one line each: name, op, kind, tactic).
  std::string describe() const;
  /// How many steps run on the host with the CPU reference (runs_on_host()): control flow (If,
  /// Loop, Scan), ops of data-dependent output size (NonZero, Unique, Compress; NonMaxSuppression
  /// of inputs sized at run time) and every step that reads a value sized at run time. Each waits
  /// for the stream, copies its inputs to the host and its outputs back
  /// (src/runtime/steps_host.cpp).
  int host_steps() const;
  /// How many distinct problems run their library's heuristic choice untimed, having no tactic in
  /// the plan, the timing cache or EngineOptions::step_tactics (time_tactics off; else 0).
  std::size_t untimed_problems() const;
  /// How many distinct problems were given a tactic timed at another shape
  /// (EngineOptions::step_tactics) for want of their own (a step keeps the heuristic's choice
  /// where that tactic does not run at its problem).
  std::size_t borrowed_problems() const;
  /// The problem (tactic key) of each step that has one, by step name, at the maximum batch: what
  /// `kiln build` records for each bucket of a dynamic plan (plan::Plan::buckets).
  std::map<std::string, std::string> step_problems() const;
  /// Every tactic the engine knows (the plan's, the timing cache's and those it timed), by problem
  /// key: what `kiln build --gpu --save` records in the plan.
  std::map<std::string, std::string> tactics() const;

  std::unique_ptr<ExecutionContext> create_context() const;

 private:
  friend class ExecutionContext;
  friend class DynamicContext;
  /// A context running in `memory` (its arena at least arena_bytes()), which other contexts
  /// share: a DynamicContext's shapes, one running at a time.
  std::unique_ptr<ExecutionContext> create_context(
      std::shared_ptr<detail::ContextMemory> memory) const;
  std::shared_ptr<detail::EngineState> state_;
};

class ExecutionContext {
 public:
  ~ExecutionContext();
  ExecutionContext(const ExecutionContext&) = delete;
  ExecutionContext& operator=(const ExecutionContext&) = delete;

  /// The batch of the next runs (1..max_batch(); below the maximum only when the engine is
  /// batch_resizable()). Tactics for a batch size not timed when the engine was made are timed
  /// now.
  void set_batch(std::int64_t batch);
  std::int64_t batch() const { return batch_; }

  /// Replays a CUDA graph of the whole plan (captured on the first run of each batch size)
  /// instead of launching each step.
  void set_cuda_graph(bool on) { use_graph_ = on; }
  /// Times every step of each following run with events (graphs are not used while profiling).
  void set_profiler(Profiler* p) { profiler_ = p; }

  /// Runs the plan on `stream` without waiting for it. Every input and output of the plan must
  /// be bound (device pointers, `batch()` rows of the plan's dtypes), except outputs sized at run
  /// time, which go to the output allocator. A plan with host steps (control flow, values of
  /// data-dependent size: Engine::host_steps()) or GPU steps that size their outputs
  /// (NonMaxSuppression: waits_for_stream()) waits for the stream at each of them; with CUDA
  /// graphs on, each run of GPU steps between them is captured (once) as its own graph.
  void enqueue(const Bindings& bindings, Stream stream);
  /// Where the outputs sized at run time go (required when the plan has any).
  void set_output_allocator(OutputAllocator* a) { allocator_ = a; }
  /// The dims output `name` had in the last run (for outputs sized at run time; the plan's dims
  /// at batch() otherwise).
  std::vector<std::int64_t> output_dims(const std::string& name) const;
  /// enqueue() on the context's own stream, then waits for it.
  void execute(const Bindings& bindings);
  Stream stream() const { return own_stream_; }

  /// Device memory this context holds: arena plus workspace (weights are the engine's; a
  /// DynamicContext's shapes share theirs).
  std::size_t device_bytes() const;

 private:
  friend class Engine;
  friend std::map<std::string, Tensor> run_on_gpu(ExecutionContext&,
                                                  const std::map<std::string, Tensor>&);
  ExecutionContext(std::shared_ptr<detail::EngineState> engine,
                   std::shared_ptr<detail::ContextMemory> memory);
  struct Impl;
  std::shared_ptr<detail::EngineState> engine_;
  std::unique_ptr<Impl> impl_;
  Stream own_stream_ = nullptr;
  std::int64_t batch_ = 0;
  bool use_graph_ = false;
  Profiler* profiler_ = nullptr;
  OutputAllocator* allocator_ = nullptr;
};

/// An engine's GPU time at its max batch: what the builder's precision choice compares.
struct EngineTiming {
  double ms = 0;  ///< median of the timed runs of the whole plan (a CUDA graph)
  /// Mean ms per step over the profiled runs, by step (node) name.
  std::map<std::string, double> step_ms;
};
/// Times `engine` on inputs of a fixed byte pattern (finite in every dtype): `runs` profiled runs
/// (each step between events) and `runs` replays of a CUDA graph after warming up.
EngineTiming time_engine(const Engine& engine, int runs = 20);

/// Host convenience: uploads `inputs` (plan dtypes), executes, downloads every output.
std::map<std::string, Tensor> run_on_gpu(ExecutionContext& ctx,
                                         const std::map<std::string, Tensor>& inputs);

}  // namespace kiln::runtime
