// The Plan: what building produces and what back ends execute. Ordered steps (IR nodes, fused
// ones as "kiln.Fused"), the input and output bindings, the weights in their final layout, and
// every activation placed in one arena by a liveness-based planner (buffers reused once dead,
// outputs written in place over a dying input, concat inputs written straight into their slice
// of the concat's output, reshapes as views).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/ir/fused.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/plan/profile.hpp"
#include "kiln/plan/target.hpp"

namespace kiln::plan {

/// Node attributes by which the builder's passes tell the planner what costs nothing:
/// a Reshape/Flatten/Squeeze/Unsqueeze whose output is a view of its input, and a Concat whose
/// inputs are written in place into its output. Such nodes become no step.
inline constexpr const char* kViewAttr = "kiln.view";
inline constexpr const char* kConcatInPlaceAttr = "kiln.in_place_concat";
/// A Split whose outputs are slices of its input (build::elide_split; Target::split_in_place).
inline constexpr const char* kSplitInPlaceAttr = "kiln.in_place_split";
/// Whether the planner makes no step of `n` (a view, a concat or split done in place), as the
/// builder marked it; the planner may still make a step where the mark cannot be honoured.
inline bool marked_elided(const Node& n) {
  return n.attr_int(kViewAttr, 0) != 0 || n.attr_int(kConcatInPlaceAttr, 0) != 0 ||
         n.attr_int(kSplitInPlaceAttr, 0) != 0;
}
/// The layout a step runs in ("NCHW" or "NHWC"), chosen by the layout pass.
inline constexpr const char* kLayoutAttr = "kiln.layout";
/// A GPU plan's step that runs on the host with the CPU reference (kiln build --host-fallback: an
/// op the GPU runtime lacks, or integer or bool values its GPU step does not compute in): 1.
/// Control flow and values of data-dependent size run on the host without it.
inline constexpr const char* kHostAttr = "kiln.host";
/// The conversion step the layout pass inserts (kiln/ir/fused.hpp, where the IR registers its
/// shape rule); its kLayoutAttr says the layout it writes.
using ::kiln::kToLayoutAttr;
using ::kiln::kToLayoutOp;

/// Where one activation lives: element (0,..,0) at `offset` bytes into the arena, with element
/// strides (row-major contiguous unless it is a slice of a concat's output).
struct PlannedValue {
  std::string name;
  DType dtype = DType::f32;
  std::vector<std::int64_t> dims;
  std::vector<std::int64_t> strides;  ///< in elements
  std::int64_t offset = 0;            ///< bytes
  std::string root;                   ///< the buffer it lives in (itself when it owns one)
  std::string how;                    ///< "own", "view of X", "slice of X", "in place of X"
  int first = 0;                      ///< live from step `first` (inputs: -1) ...
  int last = 0;                       ///< ... to step `last` (outputs: the step count)

  std::int64_t bytes() const;  ///< of its elements (not of a strided span); 0 if sized at run time
  bool contiguous() const;
  /// A value whose dims are known only when the step making it has run (NonZero's,
  /// NonMaxSuppression's, what follows them): -1 in `dims` where a dim is not known, no strides,
  /// no place in the arena (offset -1); executors hold it apart, sized when it is made.
  bool sized_at_run_time() const { return how == kSizedAtRunTime; }
  static constexpr const char* kSizedAtRunTime = "sized at run time";
};

struct MemoryPlan {
  std::map<std::string, PlannedValue> values;  ///< every input, step output and view
  std::int64_t arena_bytes = 0;
  std::int64_t naive_bytes = 0;  ///< the sum of all tensors, each in its own buffer
  int buffers = 0;               ///< distinct buffers (roots)
  int in_place = 0, views = 0, slices = 0;
};

/// Plans the activation memory of `g` (types inferred, every shape static) for target `t`.
/// Throws ShapeError naming a value whose shape is not static. `steps` receives the indices of
/// the nodes that remain steps (views and in-place concats that could be honoured are not).
MemoryPlan plan_memory(const Graph& g, const Target& t, std::vector<std::size_t>* steps = nullptr);

/// The problem each step of one bucket shape ran (step name -> problem key, a key of
/// Plan::tactics), recorded by `kiln build` on a GPU for every bucket of every profile: an exact
/// shape between buckets runs each step with its bucket's tactic (plan::bucket_for chooses the
/// bucket; runtime::DynamicEngine applies it).
struct BucketTactics {
  std::size_t profile = 0;
  ShapeMap shape;
  std::map<std::string, std::string> steps;
};

struct Plan {
  std::string target;  ///< Target::name
  std::string graph_name;
  std::vector<ValueInfo> inputs;  ///< static shapes
  std::vector<ValueInfo> outputs;
  std::map<std::string, Tensor> weights;  ///< every constant a step reads
  std::vector<Node> steps;                ///< in order; each an ordinary op or kiln.Fused
  MemoryPlan memory;
  std::uint64_t weights_hash = 0;  ///< of the weights the plan was built from
  /// Tactics a GPU back end timed for this plan (problem key -> tactic text), recorded by
  /// `kiln build --gpu/--fp16` on a GPU; an engine made from the plan uses them without timing.
  std::map<std::string, std::string> tactics;
  /// A dynamic plan (built with profiles): the profiles whose shapes it accepts, and the graph,
  /// as imported with its dynamic dims, that it is specialized from per exact shape
  /// (kiln/build/specializer.hpp). Its steps, bindings and memory are those of its specialization
  /// at the first profile's opt shape. Empty and null for a static plan.
  std::vector<Profile> profiles;
  std::shared_ptr<const Graph> source;
  bool is_dynamic() const { return !profiles.empty(); }
  /// A dynamic plan built on a GPU: each bucket's problems by step (empty otherwise).
  std::vector<BucketTactics> buckets;
  /// The tactics, by step name (tactic text), of the bucket that exact shape `s` of profile
  /// `profile` falls in (plan::bucket_for among that profile's recorded buckets); empty when the
  /// plan records no bucket for the profile or none covers `s`. Steps whose bucket problem has no
  /// tactic are left out.
  std::map<std::string, std::string> bucket_step_tactics(const ShapeMap& s,
                                                         std::size_t profile) const;

  /// A stable text dump: steps with what each absorbed, bindings and the memory plan. Weights
  /// are listed by name and type, not by value. Golden tests compare it.
  /// The precision step `s` computes in: "int8" for a step on 8-bit integers (an integer
  /// convolution or product, a quantize, a pool or reshape of quantized values: an 8-bit output),
  /// "fp8" likewise for FP8 (an FP8 product step, an FP8 output), else the float precision of the
  /// plan's target ("fp32", "fp16", "bf16").
  std::string step_precision(const Node& s) const;
  std::string dump() const;
  /// The memory plan alone (a table of values and offsets).
  std::string memory_report() const;
};

/// Makes a Plan from a graph that the passes have rewritten for `t` (types inferred, shapes
/// static): steps in order, weights that steps read, memory planned.
Plan make_plan(const Graph& g, const Target& t, std::uint64_t weights_hash);
/// Plans hold tensors: an UnsupportedError naming the first value of `g` (inferred) that is a
/// sequence or an optional (kiln::ValueKind; inside a control-flow body, which its step runs on
/// the CPU reference, one may be). make_plan and the builder check it.
void require_tensor_values(const Graph& g);

/// The largest activation arena a plan may have (1 TiB): sizes past it are refused before any
/// offset arithmetic, so none can overflow.
inline constexpr std::int64_t kMaxArenaBytes = std::int64_t{1} << 40;

/// Checks what executors rely on: every value inside the arena, every name a step reads or writes
/// placed, inputs and outputs placed with their declared types, and every step's planned output
/// types equal to what its op's shape rule computes from its planned inputs. Throws FormatError
/// naming the value or step. Run on every plan made or loaded.
void validate_plan(const Plan& p);

}  // namespace kiln::plan
