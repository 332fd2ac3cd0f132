// What the engine's parts share inside the runtime: where a value lives on the device, the
// steps (one per plan step, each knowing how to run itself on a stream), and the engine state
// that contexts share (device weights in the forms steps asked for, tactics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernel_types.cuh"
#include "kiln/plan/plan.hpp"
#include "kiln/runtime/engine.hpp"
#include "kiln/runtime/library.hpp"

namespace kiln::runtime::detail {

using i64 = std::int64_t;

/// One value as a step sees it, at one batch size: logical dims (NCHW order for 4-D), the
/// physical strides of its elements in logical order (an NHWC 4-D value has strides
/// [H*W*C, 1, W*C, C]), and its address.
struct DeviceValue {
  std::string name;
  DType dtype = DType::f32;  ///< the plan's dtype
  /// How a float value is stored: f32, or 16-bit (a 16-bit engine's every float value, an f16 or
  /// bf16 value in any engine; storage_of()). f32 for values that are no floats (dtype says).
  Precision fp = Precision::f32;
  std::vector<i64> dims;
  std::vector<i64> strides;
  plan::Layout layout = plan::Layout::NCHW;  ///< physical layout of a 4-D value
  void* ptr = nullptr;
  const Tensor* host = nullptr;  ///< the weight's host tensor, for weights

  i64 numel() const;
  std::size_t elem_size() const;  ///< as stored
  bool contiguous() const;        ///< strides are row-major over dims (size-1 dims ignored)
  bool nhwc() const { return dims.size() == 4 && layout == plan::Layout::NHWC; }
  bool half() const { return fp != Precision::f32; }  ///< a float stored in 16 bits
  kernels::Elem elem() const;                         ///< float values only (throws otherwise)
  std::string describe() const;                       ///< "f32[1,64,56,56] NHWC 'x'"
};

/// The targets a GPU engine runs, for messages: "'cuda', 'cuda-fp16' or 'cuda-bf16'".
std::string gpu_target_names();

/// What a step gets when it runs.
struct RunArgs {
  void* workspace = nullptr;
  Stream stream = nullptr;
};

/// A step's tactic: the back end that runs it and that back end's choice (a cuDNN algorithm or
/// graph engine, a position in cuBLASLt's heuristic list), with its workspace and measured time.
/// Plans (Plan::tactics) and timing caches hold it as to_text() writes it; parse_tactic() is the
/// one reader.
struct Tactic {
  /// kernel: kiln's own kernel (a step with no other candidate has no tactic at all).
  enum class Backend : int { cudnn, cudnn_graph, cublaslt, cudnn_sdpa, kernel };
  Backend backend = Backend::cudnn;
  int algorithm = 0;
  std::size_t workspace = 0;
  float ms = 0.f;
  bool operator==(const Tactic&) const = default;
};
/// "cudnn-graph 3 ws 1048576 ms 0.0123" (the time as the shortest text that reads back exactly).
std::string to_text(const Tactic& t);
/// The inverse of to_text(); throws FormatError quoting `text` for anything else (such as the
/// free-text tactics of plan format 2).
Tactic parse_tactic(const std::string& text);

class Step {
 public:
  virtual ~Step() = default;
  virtual void run(const RunArgs& a) = 0;
  virtual std::size_t workspace() const { return 0; }
  /// Which implementation runs it ("cudnn-conv", "cublaslt", "pointwise", "pool", ...).
  virtual std::string kind() const = 0;
  /// Steps with algorithm choices: a key that names the problem exactly (shape, precision,
  /// options), tune() to time the candidates and use the fastest, set_tactic() to use a known
  /// one (ignored when it no longer fits the step), and tactic() to describe the one in use.
  virtual std::string tactic_key() const { return {}; }
  virtual Tactic tune() { return {}; }
  virtual void set_tactic(const Tactic& /*t*/) {}
  virtual std::string tactic() const { return {}; }
};

struct EngineState;

/// One context's values sized at run time (plan::PlannedValue::sized_at_run_time), held on the
/// host by the host steps that make and read them.
struct HostValues {
  std::map<std::string, Tensor> values;
};

using runtime::runs_on_host;
using runtime::sized_at_run_time;
using runtime::waits_for_stream;

/// Everything a step factory needs to know.
struct StepEnv {
  const Node& node;
  EngineState& engine;
  const Library& lib;
  i64 batch = 1;
  /// The value of a name at this batch (activations and weights alike); throws naming it.
  std::function<DeviceValue(const std::string&)> value;
  /// The context's values sized at run time (host steps only).
  std::shared_ptr<HostValues> host;
};

/// The step of a host step (steps_host.cpp).
std::unique_ptr<Step> make_host_step(const StepEnv& env);
/// A device value as a host tensor of its plan dtype (logical row-major order), synchronously:
/// callers have waited for the stream that makes it (steps_host.cpp).
Tensor download(const DeviceValue& v);

/// Makes the step of one plan step; throws UnsupportedError naming the node for what the GPU
/// runtime does not run.
std::unique_ptr<Step> make_step(const StepEnv& env);

/// Device copies of weights in the forms steps asked for (FP16, NHWC filters, folded
/// BatchNorm, packed RNN weights), made once per engine and shared by every context.
class WeightCache {
 public:
  /// The buffer under `key`, made by `fill(buffer)` the first time (bytes long).
  const void* get(const std::string& key, std::size_t bytes,
                  const std::function<void(DeviceBuffer&)>& fill);
  std::size_t bytes() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, DeviceBuffer> buffers_;
};

/// The device memory a context runs in. A DynamicContext's contexts (one per exact shape, one
/// running at a time) share one, so that a shape switch allocates nothing; `generation` counts
/// workspace reallocations (a context's graphs captured before one hold a stale pointer).
struct ContextMemory {
  DeviceBuffer arena;
  DeviceBuffer workspace;
  std::uint64_t generation = 0;
};

struct EngineState {
  const plan::Plan* plan_ptr = nullptr;  ///< points at `plan`
  plan::Plan plan;
  EngineOptions options;
  Precision precision = Precision::f32;
  int device = 0;
  i64 max_batch = 1;
  bool resizable = false;
  std::unique_ptr<StderrLogger> own_logger;
  Logger* logger = nullptr;
  WeightCache weights;
  /// Tactics by Step::tactic_key(), timed or read from the timing cache.
  std::mutex tactics_mu;
  std::map<std::string, Tactic> tactics;
  /// Workspace each batch size's steps need (filled when its steps are first made).
  std::map<i64, std::size_t> workspace;
  bool tactics_changed = false;
  /// Each step's kind and tactic at the maximum batch, as made when the engine was (describe()).
  std::vector<std::pair<std::string, std::string>> described;
  /// The physical layout of each 4-D activation (that of the step that makes it).
  std::map<std::string, plan::Layout> physical;

  void log(Severity s, const std::string& m) const {
    if (logger) logger->log(s, m);
  }

  /// Throws unless the engine can run `batch`: 1..max_batch, and max_batch only when not every
  /// activation has the batch as its first dim.
  void check_batch(i64 batch) const;
  /// The DeviceValue of `name` for `batch` with `arena` as the base of the activation arena.
  DeviceValue value(const std::string& name, i64 batch, std::byte* arena) const;
  /// The weight `name` as stored on the device in the engine's precision (FP16 for float weights
  /// of an FP16 engine), uploaded once.
  const void* weight(const std::string& name);
  /// Every step of the plan for `batch`, tactics applied (timed when unknown).
  std::vector<std::unique_ptr<Step>> make_steps(i64 batch, std::byte* arena, const Library& lib,
                                                std::shared_ptr<HostValues> host = nullptr);
  int host_steps = 0;              ///< steps that run on the host
  int waiting_steps = 0;           ///< steps that wait for the stream (host steps among them)
  std::set<std::string> untimed;   ///< problems run untimed (EngineOptions::time_tactics off)
  std::set<std::string> borrowed;  ///< problems run another shape's tactic (step_tactics)
  std::map<std::string, std::string> step_problems;  ///< step name -> tactic key, max batch
  std::vector<bool> on_host;                         ///< by step: runs_on_host()
  std::vector<bool> waits;                           ///< by step: waits_for_stream()
  /// Values host steps make, and values GPU steps or the plan's outputs read (host steps hand
  /// the others to each other on the host).
  std::set<std::string> made_on_host, read_on_device;
  /// on_host of a step of `plan` (by address).
  bool step_on_host(const Node& step) const {
    return on_host.at(static_cast<std::size_t>(&step - plan.steps.data()));
  }
  void load_timing_cache();
  void save_timing_cache();
};

/// Mean milliseconds of `f` on the default stream over `repeats` runs, after one warm-up run
/// (events around the loop; the events are released even when `f` throws).
float time_ms(const std::function<void()>& f, int repeats = 5);

/// What a step must compute and move at least: its FLOPs (convolutions, matrix products and
/// recurrences by their multiply-adds, anything else one per output element and part) and the
/// bytes of its inputs, weights (as stored) and outputs (profiler.cpp).
std::pair<double, double> step_cost(const EngineState& st, const Node& step, i64 batch,
                                    std::byte* arena);

/// Whether values of `t` are stored as floats the engine may convert (f32, f16, bf16).
inline bool float_kind(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::bf16; }
/// How an engine of `precision` stores a value of `t`: an f16 or bf16 value as itself, an f32
/// value in the engine's precision, anything else as f32 (i.e. as its dtype).
inline Precision storage_of(DType t, Precision precision) {
  if (t == DType::f16) return Precision::f16;
  if (t == DType::bf16) return Precision::bf16;
  return t == DType::f32 ? precision : Precision::f32;
}

/// Host float data converted to the stored element type `fp` (f32 copy, f16 or bf16).
std::vector<std::byte> to_device_format(const float* data, i64 n, Precision fp);
/// The inverse: `n` elements stored as `fp` read back from the device as floats, synchronously.
std::vector<float> download_floats(const void* device, i64 n, Precision fp);
/// A float weight's values as f32 on the host (f16/bf16/f64 converted); throws for other dtypes.
std::vector<float> host_floats(const Tensor& t);

}  // namespace kiln::runtime::detail
