#include "cli_gpu.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_build.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/engine.hpp"
#include "run_io.hpp"
#include "runtime/check.hpp"

namespace kiln::tools {
namespace {

using Argv = std::vector<std::string>;
using clock_type = std::chrono::steady_clock;

bool stderr_is_terminal() { return isatty(fileno(stderr)) != 0; }

/// Prints "kiln CMD: no GPU: <reason>" and returns true when there is no usable GPU.
bool no_gpu(const std::string& command) {
  if (runtime::device_count() > 0) return false;
  std::fflush(stdout);
  fmt::print(stderr, "kiln {}: no GPU: {}\n", command, runtime::no_device_reason());
  return true;
}

std::string mib(std::size_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
}

double milliseconds(clock_type::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

std::int64_t positive_int(const Args& args, const std::string& command, const std::string& flag,
                          std::int64_t fallback, std::int64_t least) {
  const double v = args.number(flag, static_cast<double>(fallback));
  if (v < static_cast<double>(least) || v != std::floor(v) || v > 1e12)
    throw Error(fmt::format("kiln {}: {} expects a whole number >= {}, got '{}'", command, flag,
                            least, args.get(flag)));
  return static_cast<std::int64_t>(v);
}

/// Declares what the GPU commands share: --gpu, --fp16, --bf16, --batch N and --shape.
void add_gpu_model_options(Command& c) {
  c.flag("--gpu", "run on the GPU (FP32 unless the plan is FP16 or BF16)")
      .flag("--tune-new-shapes",
            "a dynamic plan at a shape between its buckets: time the problems no bucket timed "
            "(default: each step runs the tactic it ran at the bucket covering the shape, or "
            "its library's heuristic choice, untimed)")
      .flag("--fp16", "build an ONNX model for cuda-fp16 (implies --gpu)")
      .flag("--bf16", "build an ONNX model for cuda-bf16 (implies --gpu)")
      .number("--batch", "N",
              "dim 0 of every input of an ONNX model; a plan's batch, at most its own");
  add_shape_option(c);
}

/// --tolerance's default: the largest |gpu - expected| / max|expected| a correct run of the
/// precision stays under (BF16 keeps 8 bits of mantissa to FP16's 11).
double default_tolerance(runtime::Precision p) {
  switch (p) {
    case runtime::Precision::f32: return 1e-4;
    case runtime::Precision::f16: return 1e-2;
    case runtime::Precision::bf16: return 5e-2;
  }
  return 1e-4;
}

/// The model (ONNX) or plan file at `path` as a plan for the GPU: an ONNX model is built for
/// cuda (cuda-fp16 with --fp16, cuda-bf16 with --bf16) with dim 0 of every input = `batch` (when >
/// 0) and the dims of the input files; a plan file must have been built for a CUDA target. `graph`
/// receives the imported graph of an ONNX model (for --compare-reference).
plan::Plan gpu_plan(const Args& args, const std::string& path, std::int64_t batch,
                    Graph* graph = nullptr, bool* fixed_shapes = nullptr,
                    bool* specialized = nullptr,
                    std::map<std::string, std::string>* bucket_tactics = nullptr) {
  if (fixed_shapes) *fixed_shapes = false;
  if (specialized) *specialized = false;
  if (is_plan_file(path)) {
    plan::Plan p = plan::load_plan(path);
    const auto precision = runtime::target_precision(p.target);
    if (!precision)
      throw Error(
          fmt::format("plan '{}' was built for target '{}', not for the GPU (build it with "
                      "`kiln build MODEL --gpu`, `--fp16` or `--bf16`)",
                      path, p.target));
    for (const auto& [flag, want] : {std::pair{"--fp16", runtime::Precision::f16},
                                     std::pair{"--bf16", runtime::Precision::bf16}})
      if (args.has(flag) && *precision != want)
        throw Error(fmt::format(
            "{}: plan '{}' was built for target '{}' ({}); the plan decides the precision (build "
            "it again with {})",
            flag, path, p.target, runtime::precision_name(*precision), flag));
    if (args.has("--shape"))
      throw Error(
          fmt::format("--shape: plan '{}' has its shapes fixed when it was built{}", path,
                      p.is_dynamic() ? " (it is dynamic: give --shapes NAME:DxD,...)" : ""));
    if (!p.is_dynamic()) {
      shapes_option(args, p.inputs);  // a static plan takes only its own dims
      if (args.has("--profile"))
        throw Error(fmt::format("--profile: plan '{}' is static (built without profiles)", path));
      return p;
    }
    if (batch > 0)
      throw Error(fmt::format(
          "--batch: plan '{}' is dynamic; give every input's dims with --shapes", path));
    if (specialized) *specialized = true;
    return specialize_for_run(args, p, path, bucket_tactics);
  }
  if (args.has("--profile"))
    throw Error(fmt::format(
        "--profile selects a profile of a dynamic plan; '{}' is an ONNX model (build a dynamic "
        "plan with --min-shapes/--max-shapes, or give --shapes)",
        path));
  Graph g = load_onnx(path);
  if (graph) *graph = g;
  // A model whose inputs are all fixed (an export at one batch size) keeps its shapes: --batch
  // then only names its batch for throughput (the batch need not be dim 0, as in [T, N, C]).
  bool fixed = true;
  for (const auto& vi : g.inputs) fixed &= vi.type.shape.is_static();
  if (fixed && !args.has("--shape")) batch = 0;
  if (fixed_shapes) *fixed_shapes = fixed && !args.has("--shape");
  build::BuildOptions o = build_options(args, g, batch, run_inputs(args, g.inputs, false));
  o.target = &target_from(args, plan::kCudaTarget);
  return build::build_plan(std::move(g), o);
}

/// Inputs or outputs as bound at `batch`: at the engine's own batch the plan's types (whose batch
/// need not be dim 0, as in [T, N, C]), below it dim 0 set to `batch`.
std::vector<ValueInfo> batch_inputs(const std::vector<ValueInfo>& inputs, std::int64_t batch,
                                    std::int64_t max_batch) {
  if (batch == max_batch) return inputs;
  std::vector<ValueInfo> out = inputs;
  for (auto& vi : out) {
    std::vector<std::int64_t> dims;
    for (const auto& d : vi.type.shape) dims.push_back(d.is_fixed() ? d.value() : 1);
    if (!dims.empty()) dims[0] = batch;
    vi.type.shape = Shape::of(dims);
  }
  return out;
}

std::int64_t numel_of(const TensorType& t) {
  std::int64_t n = 1;
  for (const auto& d : t.shape) n *= d.is_fixed() ? d.value() : 1;
  return n;
}

/// Device and pinned host memory for every input and output of an engine at one batch size.
class IoBuffers {
 public:
  IoBuffers(const runtime::Engine& engine, std::int64_t batch) {
    auto add = [&](const ValueInfo& vi, bool input) {
      if (!input && !vi.type.shape.is_static()) {  // sized at run time: the allocator's
        allocator.info.push_back(vi);
        return;
      }
      Buffer b;
      b.info = batch_inputs({vi}, batch, engine.max_batch())[0];
      b.bytes = static_cast<std::size_t>(numel_of(b.info.type)) * dtype_size(b.info.type.dtype);
      KILN_CHECK(cudaMalloc(&b.device, std::max<std::size_t>(b.bytes, 1)));
      KILN_CHECK(cudaHostAlloc(&b.host, std::max<std::size_t>(b.bytes, 1), cudaHostAllocDefault));
      bindings[vi.name] = b.device;
      (input ? inputs : outputs).push_back(b);
    };
    try {
      for (const auto& vi : engine.inputs()) add(vi, true);
      for (const auto& vi : engine.outputs()) add(vi, false);
    } catch (...) {
      release();
      throw;
    }
  }
  ~IoBuffers() { release(); }
  IoBuffers(const IoBuffers&) = delete;
  IoBuffers& operator=(const IoBuffers&) = delete;

  /// Copies host tensors (the engine's dtypes and dims) into the pinned buffers.
  void set_inputs(const reference::TensorMap& tensors) {
    for (auto& b : inputs) {
      const Tensor& t = tensors.at(b.info.name);
      if (t.nbytes() != b.bytes || t.dtype() != b.info.type.dtype)
        throw Error(fmt::format("input '{}': {} given, the engine takes {}{}", b.info.name,
                                t.type_string(), dtype_name(b.info.type.dtype),
                                b.info.type.shape.to_string()));
      if (b.bytes) std::memcpy(b.host, t.raw(), b.bytes);
    }
  }
  /// Copies every input host -> device on `s` (not waiting).
  void upload(cudaStream_t s) {
    for (auto& b : inputs)
      if (b.bytes)
        KILN_CHECK(cudaMemcpyAsync(b.device, b.host, b.bytes, cudaMemcpyHostToDevice, s));
  }
  /// Copies every output device -> host on `s` (not waiting).
  void download(cudaStream_t s) {
    for (auto& b : outputs)
      if (b.bytes)
        KILN_CHECK(cudaMemcpyAsync(b.host, b.device, b.bytes, cudaMemcpyDeviceToHost, s));
  }
  /// The outputs in the pinned buffers as host tensors (after download() and a wait), and those
  /// sized at run time from the allocator's buffers.
  reference::TensorMap output_tensors() const {
    reference::TensorMap m;
    for (const auto& vi : allocator.info) {
      auto it = allocator.buffers.find(vi.name);
      if (it == allocator.buffers.end()) continue;
      Tensor t(vi.type.dtype, it->second.dims);
      if (t.nbytes())
        KILN_CHECK(cudaMemcpy(t.raw(), it->second.device, t.nbytes(), cudaMemcpyDeviceToHost));
      m[vi.name] = t;
    }
    for (const auto& b : outputs) {
      std::vector<std::int64_t> dims;
      for (const auto& d : b.info.type.shape) dims.push_back(d.value());
      Tensor t(b.info.type.dtype, dims);
      if (b.bytes) std::memcpy(t.raw(), b.host, b.bytes);
      m[b.info.name] = t;
    }
    return m;
  }
  std::size_t input_bytes() const { return total(inputs); }
  std::size_t output_bytes() const { return total(outputs); }

  struct Buffer {
    ValueInfo info;
    std::size_t bytes = 0;
    void* device = nullptr;
    void* host = nullptr;
  };
  std::vector<Buffer> inputs, outputs;
  runtime::Bindings bindings;
  /// The outputs sized at run time: device buffers kept from run to run, grown when too small.
  struct Allocator final : runtime::OutputAllocator {
    struct Held {
      void* device = nullptr;
      std::size_t capacity = 0;
      std::vector<std::int64_t> dims;
    };
    std::vector<ValueInfo> info;
    std::map<std::string, Held> buffers;
    void* allocate(const std::string& name, const std::vector<std::int64_t>& dims,
                   std::size_t bytes) override {
      Held& h = buffers[name];
      if (bytes > h.capacity) {
        if (h.device) cudaFree(h.device);
        h.device = nullptr;
        KILN_CHECK(cudaMalloc(&h.device, bytes));
        h.capacity = bytes;
      }
      h.dims = dims;
      return h.device;
    }
  } allocator;

 private:
  static std::size_t total(const std::vector<Buffer>& v) {
    std::size_t n = 0;
    for (const auto& b : v) n += b.bytes;
    return n;
  }
  void release() {
    for (auto& [_, h] : allocator.buffers)
      if (h.device) cudaFree(h.device), h.device = nullptr;
    for (auto* v : {&inputs, &outputs})
      for (auto& b : *v) {
        if (b.device) cudaFree(b.device);
        if (b.host) cudaFreeHost(b.host);
        b.device = b.host = nullptr;
      }
  }
};

/// cudaEvent pair timing work on a stream.
class EventTimer {
 public:
  EventTimer() {
    KILN_CHECK(cudaEventCreate(&start_));
    KILN_CHECK(cudaEventCreate(&stop_));
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  void start(cudaStream_t s) { KILN_CHECK(cudaEventRecord(start_, s)); }
  void stop(cudaStream_t s) { KILN_CHECK(cudaEventRecord(stop_, s)); }
  /// Milliseconds between start and stop (waits for stop).
  double ms() {
    KILN_CHECK(cudaEventSynchronize(stop_));
    float v = 0;
    KILN_CHECK(cudaEventElapsedTime(&v, start_, stop_));
    return v;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

std::size_t free_device_memory() {
  std::size_t free = 0, total = 0;
  KILN_CHECK(cudaMemGetInfo(&free, &total));
  return free;
}

std::string device_name(int index) {
  for (const auto& d : runtime::devices())
    if (d.index == index)
      return fmt::format("{} (sm_{}{}, {} GiB)", d.name, d.sm_major, d.sm_minor,
                         d.memory_bytes >> 30);
  return fmt::format("device {}", index);
}

/// The sorted samples' statistics.
struct Stats {
  double min = 0, mean = 0, median = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  double sum = 0;
  for (double x : v) sum += x;
  auto pct = [&](double p) {  // nearest rank
    const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(n)));
    return v[std::min(n - 1, rank == 0 ? 0 : rank - 1)];
  };
  s.min = v.front();
  s.max = v.back();
  s.mean = sum / static_cast<double>(n);
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.p90 = pct(90);
  s.p95 = pct(95);
  s.p99 = pct(99);
  return s;
}

/// What `kiln bench` and `kiln profile` share: the plan, the engine, a context at the batch
/// asked for, and its input and output buffers with the inputs uploaded.
struct GpuSession {
  std::string model;
  plan::Plan plan;
  std::size_t free_before = 0;
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<runtime::ExecutionContext> ctx;
  std::int64_t batch = 0;
  std::unique_ptr<IoBuffers> io;
  cudaStream_t stream = nullptr;

  GpuSession(const Args& args, const std::string& command) {
    model = args.one_positional("model or plan file");
    const std::int64_t asked =
        args.has("--batch") ? positive_int(args, command, "--batch", 1, 1) : 0;
    bool fixed_model = false, specialized = false;
    std::map<std::string, std::string> bucket_tactics;
    plan = gpu_plan(args, model, asked, nullptr, &fixed_model, &specialized, &bucket_tactics);
    free_before = free_device_memory();
    runtime::EngineOptions eo = engine_options(args, specialized);
    eo.step_tactics = std::move(bucket_tactics);
    engine = std::make_unique<runtime::Engine>(plan, eo);
    ctx = engine->create_context();
    batch = asked > 0 ? asked : engine->max_batch();
    // A model with fixed shapes runs as exported: its --batch only names the batch (throughput).
    const std::int64_t run = fixed_model ? engine->max_batch() : batch;
    if (run != engine->max_batch()) {
      if (run > engine->max_batch())
        throw Error(fmt::format(
            "--batch {}: plan '{}' was built for at most {} (build it with --max-batch {})", run,
            model, engine->max_batch(), run));
      ctx->set_batch(run);
    }
    io = std::make_unique<IoBuffers>(*engine, run);
    ctx->set_output_allocator(&io->allocator);
    io->set_inputs(run_inputs(args, batch_inputs(engine->inputs(), run, engine->max_batch())));
    stream = reinterpret_cast<cudaStream_t>(ctx->stream());
    io->upload(stream);
    KILN_CHECK(cudaStreamSynchronize(stream));
  }
  void run_once() {
    ctx->enqueue(io->bindings, ctx->stream());
    KILN_CHECK(cudaStreamSynchronize(stream));
  }
};

/// Shows "what i/n" on stderr at most every 0.25 s when it is a terminal.
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), on_(stderr_is_terminal()) {}
  void update(std::int64_t i, std::int64_t n, double elapsed_s) {
    if (!on_) return;
    const auto now = clock_type::now();
    if (now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    fmt::print(stderr, "\r\033[K{} {}/{} ({:.1f} s)", what_, i, n, elapsed_s);
    std::fflush(stderr);
    shown_ = true;
  }
  ~Progress() {
    if (shown_) fmt::print(stderr, "\r\033[K");
  }

 private:
  std::string what_;
  bool on_;
  bool shown_ = false;
  clock_type::time_point last_{};
};

}  // namespace

runtime::EngineOptions engine_options(const Args& args, bool specialized) {
  runtime::EngineOptions o;
  // A dynamic plan's shape runs its buckets' tactics; what they do not cover is timed only when
  // asked for (no tuning at run time otherwise).
  o.time_tactics = !specialized || args.has("--tune-new-shapes");
  if (args.has("--workspace")) {
    const double w = args.number("--workspace", 0);
    if (!(w >= 0) || w > 1e7)
      throw Error(fmt::format("--workspace expects MiB (>= 0), got '{}'", args.get("--workspace")));
    o.workspace_limit = static_cast<std::size_t>(w * (1 << 20));
  }
  o.timing_cache = args.get("--timing-cache");
  // Diagnosis switches, from the environment: KILN_CONV_API=legacy, KILN_CHECK_FINITE=1.
  if (const char* api = std::getenv("KILN_CONV_API")) o.cudnn_graph = std::string(api) != "legacy";
  o.check_finite = std::getenv("KILN_CHECK_FINITE") != nullptr;
  if (stderr_is_terminal()) {
    o.progress = [](int done, int total, const std::string& what) {
      fmt::print(stderr, "\r\033[Ktiming tactics {}/{} {}", done, total, what);
      if (done >= total) fmt::print(stderr, "\n");
      std::fflush(stderr);
    };
  }
  return o;
}

// ---- build ---------------------------------------------------------------------------------

void add_engine_options(Command& c) {
  c.number("--workspace", "MiB", "largest workspace a tactic may use (default 256)")
      .option("--timing-cache", "FILE", "read timed tactics from FILE and write them back");
}

std::map<std::string, std::string> build_engine_report(plan::Plan& p, const Args& args) {
  if (runtime::device_count() == 0) {
    fmt::print(
        "no GPU ({}): the plan for {} is built{}; tactics were not timed (they are timed when an "
        "engine is made from the plan on a GPU)\n",
        runtime::no_device_reason(), p.target, args.has("--save") ? " (and written)" : "");
    return {};
  }
  const auto t0 = clock_type::now();
  const runtime::Engine engine(p, engine_options(args));
  const double ms = milliseconds(clock_type::now() - t0);
  fmt::print("{}", engine.describe());
  fmt::print("engine on {}: {}, max batch {}, made in {:.0f} ms (tactics timed{})\n",
             device_name(engine.device()), runtime::precision_name(engine.precision()),
             engine.max_batch(), ms,
             args.has("--timing-cache") ? ", timing cache " + args.get("--timing-cache") : "");
  fmt::print("device memory: weights {}, arena {}, workspace {}\n", mib(engine.weight_bytes()),
             mib(engine.arena_bytes()), mib(engine.workspace_bytes()));
  p.tactics = engine.tactics();
  return engine.step_problems();
}

// ---- calibration ---------------------------------------------------------------------------

CalibrationRunnerFactory gpu_calibration_runner(const Args& args, std::string* runs_on) {
  const runtime::EngineOptions eo = engine_options(args);
  return [eo, runs_on](const Graph& probe) -> CalibrationRunner {
    // One engine per set of input dims (calibration batches normally share them); the CPU
    // reference from the first network the GPU runtime refuses on.
    struct State {
      Graph graph;
      std::map<
          std::vector<std::vector<std::int64_t>>,
          std::pair<std::unique_ptr<runtime::Engine>, std::unique_ptr<runtime::ExecutionContext>>>
          engines;
      std::unique_ptr<reference::Executor> cpu;
    };
    auto st = std::make_shared<State>();
    st->graph = probe;
    return [st, eo, runs_on](const reference::TensorMap& in) -> reference::TensorMap {
      if (st->cpu) return st->cpu->run(in);
      std::vector<std::vector<std::int64_t>> key;
      build::BuildOptions o;
      o.target = &plan::target_by_name(plan::kCudaTarget);
      o.evaluator = &reference::constant_evaluator();
      for (const auto& vi : st->graph.inputs) {
        key.push_back(in.at(vi.name).dims());
        o.input_dims[vi.name] = key.back();
      }
      auto e = st->engines.find(key);
      if (e == st->engines.end()) {
        // An input the calibration observes is passed through, not made a plan output.
        Graph g = st->graph;
        std::erase_if(g.outputs, [&](const std::string& name) {
          return std::any_of(g.inputs.begin(), g.inputs.end(),
                             [&](const ValueInfo& vi) { return vi.name == name; });
        });
        try {
          plan::Plan p = build::build_plan(std::move(g), o);
          runtime::check_gpu_plan(p);
          auto engine = std::make_unique<runtime::Engine>(p, eo);
          auto ctx = engine->create_context();
          e = st->engines.emplace(key, std::pair{std::move(engine), std::move(ctx)}).first;
        } catch (const UnsupportedError& err) {
          fmt::print(
              "calibrating on the CPU reference instead of the GPU: the GPU runtime cannot run "
              "this network ({})\n",
              err.what());
          st->cpu = std::make_unique<reference::Executor>(st->graph);
          if (runs_on) *runs_on = "CPU reference: the GPU runtime cannot run the network";
          return st->cpu->run(in);
        }
      }
      reference::TensorMap out = runtime::run_on_gpu(*e->second.second, in);
      for (const auto& name : st->graph.outputs)
        if (!out.count(name) && in.count(name)) out[name] = in.at(name);
      return out;
    };
  };
}

// ---- bench ---------------------------------------------------------------------------------

/// One row of `kiln bench --sweep`.
struct SweepRow {
  std::string shapes;
  double median_ms = 0, p99_ms = 0, gpu_ms = 0, throughput = 0;
  std::size_t arena = 0;
};

/// kiln bench at the shapes `args` gives: prints the full report; fills `row` when given.
void bench_run(const Args& args, std::int64_t warmup, std::int64_t iterations, double duration_s,
               SweepRow* row) {
  GpuSession s(args, "bench");
  const bool graph = args.has("--cuda-graph");
  s.ctx->set_cuda_graph(graph);
  std::size_t least_free = free_device_memory();
  {
    Progress progress("warmup");
    const auto w0 = clock_type::now();
    for (std::int64_t i = 0; i < warmup; ++i) {
      s.run_once();
      progress.update(i + 1, warmup, milliseconds(clock_type::now() - w0) / 1000);
    }
  }
  least_free = std::min(least_free, free_device_memory());

  std::vector<double> latency, enqueue, gpu;
  EventTimer events;
  const auto start = clock_type::now();
  {
    Progress progress("bench");
    while (true) {
      const double elapsed_s = milliseconds(clock_type::now() - start) / 1000;
      if (static_cast<std::int64_t>(latency.size()) >= iterations && elapsed_s >= duration_s) break;
      events.start(s.stream);
      const auto t0 = clock_type::now();
      s.ctx->enqueue(s.io->bindings, s.ctx->stream());
      const auto t1 = clock_type::now();
      events.stop(s.stream);
      KILN_CHECK(cudaStreamSynchronize(s.stream));
      const auto t2 = clock_type::now();
      latency.push_back(milliseconds(t2 - t0));
      enqueue.push_back(milliseconds(t1 - t0));
      gpu.push_back(events.ms());
      progress.update(static_cast<std::int64_t>(latency.size()), iterations, elapsed_s);
    }
  }
  const double total_s = milliseconds(clock_type::now() - start) / 1000;
  least_free = std::min(least_free, free_device_memory());

  // Copies: all inputs host -> device, all outputs device -> host, mean of 10 each.
  constexpr int kCopies = 10;
  double h2d = 0, d2h = 0;
  for (int i = 0; i < kCopies; ++i) {
    events.start(s.stream);
    s.io->upload(s.stream);
    events.stop(s.stream);
    h2d += events.ms() / kCopies;
    events.start(s.stream);
    s.io->download(s.stream);
    events.stop(s.stream);
    d2h += events.ms() / kCopies;
  }
  KILN_CHECK(cudaStreamSynchronize(s.stream));
  least_free = std::min(least_free, free_device_memory());

  const Stats lat = stats_of(latency), enq = stats_of(enqueue), g = stats_of(gpu);
  const double throughput = lat.mean > 0 ? static_cast<double>(s.batch) * 1000.0 / lat.mean : 0;
  const std::size_t peak = s.free_before > least_free ? s.free_before - least_free : 0;
  const std::string device = device_name(s.engine->device());
  const std::string libraries = runtime::library_versions();
  const std::size_t workspace = s.engine->workspace_bytes(s.batch);

  fmt::print("=== kiln bench: {} ===\n", s.model);
  fmt::print("target {}, batch {}, CUDA graph {}, device {}\n", s.plan.target, s.batch,
             graph ? "on" : "off", device);
  fmt::print("{} iterations in {:.3f} s after {} warmup\n", latency.size(), total_s, warmup);
  fmt::print("throughput: {:.2f} inferences/s\n", throughput);
  fmt::print(
      "latency (enqueue + synchronize): min = {:.4f} ms, mean = {:.4f} ms, median = {:.4f} ms, "
      "p90 = {:.4f} ms, p95 = {:.4f} ms, p99 = {:.4f} ms, max = {:.4f} ms\n",
      lat.min, lat.mean, lat.median, lat.p90, lat.p95, lat.p99, lat.max);
  fmt::print("enqueue time (host): min = {:.4f} ms, mean = {:.4f} ms, median = {:.4f} ms\n",
             enq.min, enq.mean, enq.median);
  fmt::print(
      "GPU compute time: min = {:.4f} ms, mean = {:.4f} ms, median = {:.4f} ms, p99 = {:.4f} ms\n",
      g.min, g.mean, g.median, g.p99);
  fmt::print("H2D (all inputs, {}): mean = {:.4f} ms; D2H (all outputs, {}): mean = {:.4f} ms\n",
             mib(s.io->input_bytes()), h2d, mib(s.io->output_bytes()), d2h);
  fmt::print("device memory: weights {}, arena {}, workspace {}, peak {}\n",
             mib(s.engine->weight_bytes()), mib(s.engine->arena_bytes()), mib(workspace),
             mib(peak));
  fmt::print("versions: kiln {}; {}\n", plan::library_version(), libraries);

  if (args.has("--output-dir")) {
    s.ctx->set_cuda_graph(false);
    s.io->upload(s.stream);
    s.run_once();
    s.io->download(s.stream);
    KILN_CHECK(cudaStreamSynchronize(s.stream));
    std::vector<std::string> names;
    for (const auto& vi : s.engine->outputs()) names.push_back(vi.name);
    write_outputs_npy(args.get("--output-dir"), names, s.io->output_tensors(), true);
  }
  if (args.has("--json")) {
    const nlohmann::ordered_json j = {
        {"model", s.model},
        {"target", s.plan.target},
        {"batch", s.batch},
        {"cuda_graph", graph},
        {"iterations", latency.size()},
        {"latency_ms",
         {{"min", lat.min},
          {"mean", lat.mean},
          {"median", lat.median},
          {"p90", lat.p90},
          {"p95", lat.p95},
          {"p99", lat.p99}}},
        {"throughput_per_s", throughput},
        {"enqueue_ms", enq.mean},
        {"h2d_ms", h2d},
        {"d2h_ms", d2h},
        {"gpu_ms", g.mean},
        {"memory_bytes",
         {{"weights", s.engine->weight_bytes()},
          {"arena", s.engine->arena_bytes()},
          {"workspace", workspace},
          {"peak", peak}}},
        {"device", device},
        {"versions", {{"kiln", plan::library_version()}, {"libraries", libraries}}}};
    const std::string json =
        j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    write_text_file(args.get("--json"), json, "kiln bench --json");
    fmt::print("results written to {}\n", args.get("--json"));
  }
  if (row) {
    row->median_ms = lat.median;
    row->p99_ms = lat.p99;
    row->gpu_ms = g.mean;
    row->throughput = throughput;
    row->arena = s.engine->arena_bytes();
  }
}

int cmd_bench(const Argv& argv) {
  Command c(
      "bench",
      R"(Measures a model on the GPU. An ONNX model is built for cuda (FP32) or, with --fp16 or --bf16,
cuda-fp16 or cuda-bf16, with dim 0 of every input = --batch; a plan file (kiln build
--gpu|--fp16|--bf16 --save) runs as built
(--batch may lower its batch where the engine allows). The engine times its tactics first.
Inputs are random (seeded by --seed) unless given with --input, and are uploaded once.
)");
  c.positionals("MODEL.onnx|PLAN", "the ONNX model or plan file");
  add_gpu_model_options(c);
  c.number("--warmup", "N", "untimed runs first (default 20)")
      .number("--iterations", "N", "timed runs, at least (default 200)")
      .number("--duration", "S", "run at least S seconds as well")
      .flag("--cuda-graph", "replay a CUDA graph of the whole plan instead of launching each step");
  add_engine_options(c);
  add_input_options(c);
  c.option("--output-dir", "DIR", "write each output as DIR/NAME.npy (float32)")
      .option("--json", "FILE", "write the results as JSON")
      .option("--sweep", "LIST;LIST;...",
              "bench each shape in turn (--shapes lists separated by ';'; a dynamic plan or model) "
              "and end with "
              "a table, one row per shape");
  c.footer(
      R"(Reports: throughput (inferences/s = batch * 1000 / mean latency), latency (host time of enqueue
+ stream synchronize) min, mean, median, p90, p95, p99; the host time of enqueue alone; GPU time
(events around the enqueue); host-to-device time of all inputs and device-to-host time of all
outputs (pinned memory, mean of 10 copies); device memory (weights, arena, workspace, and peak:
free memory before the engine minus the least free memory seen after, buffers included).
Without a GPU: "no GPU: <reason>", exit 1.
)");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  const std::int64_t warmup = positive_int(args, "bench", "--warmup", 20, 0);
  const std::int64_t iterations = positive_int(args, "bench", "--iterations", 200, 1);
  const double duration_s = args.number("--duration", 0);
  if (!(duration_s >= 0))
    throw Error(fmt::format("kiln bench: --duration expects seconds >= 0, got '{}'",
                            args.get("--duration")));
  args.one_positional("model or plan file");
  if (no_gpu("bench")) return 1;
  if (!args.has("--sweep")) {
    bench_run(args, warmup, iterations, duration_s, nullptr);
    return 0;
  }
  if (args.has("--shapes") || args.has("--json") || args.has("--output-dir"))
    throw Error(
        "kiln bench --sweep: --shapes, --json and --output-dir go with one shape (run bench per "
        "shape for them)");
  std::vector<SweepRow> rows;
  const std::string sweep = args.get("--sweep");
  for (std::size_t at = 0; at <= sweep.size();) {
    const std::size_t semi = std::min(sweep.find(';', at), sweep.size());
    const std::string one = sweep.substr(at, semi - at);
    at = semi + 1;
    if (one.empty()) continue;
    SweepRow r;
    r.shapes = one;
    bench_run(args.with("--shapes", one), warmup, iterations, duration_s, &r);
    rows.push_back(r);
  }
  fmt::print("=== kiln bench --sweep: {} ===\n", args.one_positional("model or plan file"));
  fmt::print("{:<44} {:>11} {:>11} {:>11} {:>14} {:>12}\n", "shapes", "median ms", "p99 ms",
             "GPU ms", "inferences/s", "arena MiB");
  for (const auto& r : rows)
    fmt::print("{:<44} {:>11.4f} {:>11.4f} {:>11.4f} {:>14.1f} {:>12.1f}\n", r.shapes, r.median_ms,
               r.p99_ms, r.gpu_ms, r.throughput, static_cast<double>(r.arena) / (1 << 20));
  return 0;
}

// ---- profile -------------------------------------------------------------------------------

int cmd_profile(const Argv& argv) {
  Command c(
      "profile",
      R"(Builds as `kiln bench` does, then times every step of --iterations runs (after --warmup untimed
runs) with CUDA events. Prints a per-layer table (step, op, kind, mean ms, share of the total)
and with --trace writes a Chrome trace (chrome://tracing or https://ui.perfetto.dev).
)");
  c.positionals("MODEL.onnx|PLAN", "the ONNX model or plan file");
  add_gpu_model_options(c);
  c.number("--warmup", "N", "untimed runs first (default 3)")
      .number("--iterations", "N", "timed runs (default 20)");
  add_engine_options(c);
  add_input_options(c);
  c.option("--trace", "FILE.json", "write a Chrome trace of the timed runs")
      .number("--top", "N", "list only the N slowest steps")
      .flag("--roofline",
            "measure this GPU's matrix rate (an 8192^3 cuBLASLt product in the plan's precision) "
            "and copy "
            "bandwidth (512 MiB device to device) and add each step's GFLOP, MB and roofline time "
            "(max of "
            "FLOPs / rate, bytes / bandwidth)");
  c.footer("Without a GPU: \"no GPU: <reason>\", exit 1.\n");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  const std::int64_t warmup = positive_int(args, "profile", "--warmup", 3, 0);
  const std::int64_t iterations = positive_int(args, "profile", "--iterations", 20, 1);
  const std::int64_t top = positive_int(args, "profile", "--top", 0, 0);
  args.one_positional("model or plan file");
  if (no_gpu("profile")) return 1;

  GpuSession s(args, "profile");
  for (std::int64_t i = 0; i < warmup; ++i) s.run_once();
  runtime::TraceProfiler profiler;
  if (args.has("--roofline")) {
    const auto r = runtime::measure_roofline(*runtime::target_precision(s.plan.target));
    profiler.set_roofline(r);
  }
  s.ctx->set_profiler(&profiler);
  {
    Progress progress("profile");
    const auto t0 = clock_type::now();
    for (std::int64_t i = 0; i < iterations; ++i) {
      s.run_once();
      progress.update(i + 1, iterations, milliseconds(clock_type::now() - t0) / 1000);
    }
  }
  s.ctx->set_profiler(nullptr);
  fmt::print("=== kiln profile: {} (target {}, batch {}, {} runs) ===\n", s.model, s.plan.target,
             s.batch, iterations);
  fmt::print("{}", profiler.table(static_cast<std::size_t>(top)));
  if (args.has("--trace")) {
    write_text_file(args.get("--trace"), profiler.chrome_trace_json(), "kiln profile --trace");
    fmt::print("trace written to {}\n", args.get("--trace"));
  }
  return 0;
}

// ---- run --gpu -----------------------------------------------------------------------------

int cmd_run_gpu(const Argv& argv) {
  Command c(
      "run",
      "Runs a model on the GPU: an ONNX model is built for cuda (FP32), cuda-fp16 (--fp16) or "
      "cuda-bf16\n"
      "(--bf16; both imply --gpu) with the dims of the input files; a plan file must be built for "
      "a CUDA target. "
      "Inputs not\n"
      "given with --input are random (or input_N.pb of --expected-dir). Prints each output's "
      "shape,\n"
      "checksum and first values.\n",
      "run --gpu");
  c.positionals("MODEL.onnx", "the ONNX model (or --plan FILE)")
      .option("--plan", "FILE", "the plan file");
  add_gpu_model_options(c);
  add_input_options(c);
  add_output_options(c);
  add_expected_options(c, "1e-4; 1e-2 for FP16, 5e-2 for BF16");
  c.flag("--compare-reference", "also run the CPU reference and print the error of each output");
  add_engine_options(c);
  c.footer(
      "Exit status 1, with a line naming the output, when an error is over the tolerance.\n"
      "Without a GPU: \"no GPU: <reason>\", exit 1.\n");
  const auto parsed = c.parse(argv);
  if (!parsed) return 0;
  const Args& args = *parsed;
  std::string path = args.get("--plan");
  if (path.empty()) {
    path = args.one_positional("model file (or --plan FILE)");
  } else if (!args.positional().empty()) {
    throw Error("kiln run --plan takes no model file (the plan holds the network)");
  }
  const std::int64_t batch = args.has("--batch") ? positive_int(args, "run", "--batch", 1, 1) : 0;
  if (no_gpu("run")) return 1;

  Graph graph;
  bool specialized = false;
  std::map<std::string, std::string> bucket_tactics;
  const plan::Plan p = gpu_plan(args, path, batch, &graph, nullptr, &specialized, &bucket_tactics);
  runtime::EngineOptions eo = engine_options(args, specialized);
  eo.step_tactics = std::move(bucket_tactics);
  const runtime::Engine engine(p, eo);
  auto ctx = engine.create_context();
  if (batch > 0 && batch != engine.max_batch()) {
    if (batch > engine.max_batch())
      throw Error(fmt::format(
          "--batch {}: plan '{}' was built for at most {} (build it with --max-batch {})", batch,
          path, engine.max_batch(), batch));
    ctx->set_batch(batch);
  }
  std::vector<std::string> names;
  for (const auto& vi : p.outputs) names.push_back(vi.name);
  const reference::TensorMap inputs =
      run_inputs(args, batch > 0 ? batch_inputs(p.inputs, batch, engine.max_batch()) : p.inputs);
  const auto outputs = runtime::run_on_gpu(*ctx, inputs);
  fmt::print("ran on {} ({})\n", device_name(engine.device()), p.target);
  if (specialized)  // a dynamic plan's shape: what its problems ran
    fmt::print("tactics: {} problems ran their bucket's tactic, {} ran untimed\n",
               engine.borrowed_problems(), engine.untimed_problems());
  report_outputs(args, names, outputs);

  const double tolerance =
      args.number("--tolerance", default_tolerance(*runtime::target_precision(p.target)));
  bool ok = true;
  const auto expected = expected_outputs(args, names);
  if (!expected.empty() && !check_expected(expected, outputs, tolerance)) ok = false;
  if (args.has("--compare-reference")) {
    reference::TensorMap ref;
    if (!graph.nodes.empty() || !graph.outputs.empty()) {
      ref = reference::Executor(graph).run(inputs);
    } else {
      try {
        ref = reference::PlanExecutor(p).run(inputs);
      } catch (const Error& e) {
        throw Error(fmt::format(
            "--compare-reference: the CPU reference cannot run plan '{}' ({}); compare the "
            "ONNX model instead (kiln run MODEL.onnx --gpu --compare-reference)",
            path, e.what()));
      }
    }
    for (const auto& name : names) {
      const double err = relative_error(outputs.at(name), ref.at(name), name);
      const bool over = !(err <= tolerance);
      ok &= !over;
      fmt::print("reference {}: max|gpu-cpu|/max|cpu| = {:.3g} (tolerance {:.3g}) {}\n", name, err,
                 tolerance, over ? "OVER" : "ok");
    }
  }
  if (!ok) {
    std::fflush(stdout);
    fmt::print(
        stderr,
        "kiln run: an output differs by more than the tolerance {:.3g} (see the OVER lines)\n",
        tolerance);
    return 1;
  }
  return 0;
}

}  // namespace kiln::tools
