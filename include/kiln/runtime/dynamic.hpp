// Dynamic shapes on the GPU: a DynamicEngine runs a dynamic plan (built with profiles,
// kiln/build/specializer.hpp) at any shape its profiles accept.
//
//   build::Specializer sp(plan, &reference::constant_evaluator());
//   runtime::DynamicEngine engine(plan, [&](const plan::ShapeMap& s, std::size_t profile) {
//     return sp.plan_for(s, profile);  // the runtime never builds: the caller specializes
//   });
//   auto ctx = engine.create_context();
//   ctx->set_input_shape("x", {2, 3, 320, 320});   // checked against the context's profile
//   auto dims = ctx->output_dims("y");              // known before any run
//   ctx->enqueue(bindings, stream);                 // bindings sized for the shapes set
//
// What a shape switch costs: the first run at an exact shape specializes its plan on the host
// (the builder's passes and memory planner: milliseconds for a ResNet), makes an Engine of it
// (weights uploaded again, tactics taken from the plan: those of the dynamic plan's buckets and
// of shapes run before; a problem none of them covers runs the tactic its step ran at the bucket
// that covers the shape (plan::bucket_for over Plan::buckets, which `kiln build` records on a
// GPU), else its library's heuristic choice, untimed: no tuning happens at run time unless
// `tune_new_shapes` asks for it, which times such a problem once and keeps it for later shapes)
// and a context. A DynamicContext's contexts share one activation arena and workspace (one
// runs at a time): the arena is allocated on the first run for the largest shape of the profile
// (every exact shape's offsets, planned on the host when it is specialized, fit in it as a rule),
// so a shape switch allocates no arena; binding a profile whose largest shape needs more, or the
// rare shape whose own plan packs into more, allocates it again and remakes the held contexts.
// Later runs at that shape reuse all of it, and a CUDA graph captured per exact shape when
// set_cuda_graph(true). At most `max_shapes` exact shapes are held (least recently used dropped
// first, with their device memory).
#pragma once

#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/plan/plan.hpp"
#include "kiln/plan/profile.hpp"
#include "kiln/runtime/engine.hpp"

namespace kiln::runtime {

class DynamicContext;

class DynamicEngine {
 public:
  /// Returns the plan specialized for an exact shape under a profile (the shape is already
  /// checked against it).
  using Specialize =
      std::function<std::shared_ptr<const plan::Plan>(const plan::ShapeMap&, std::size_t profile)>;

  /// Takes a dynamic plan for a CUDA target. Throws FormatError for a static plan or another
  /// target, before touching a GPU: engines are made per shape when first run, with `options`
  /// but for their time_tactics, which is `tune_new_shapes`.
  DynamicEngine(const plan::Plan& dynamic, Specialize specialize, const EngineOptions& options = {},
                std::size_t max_shapes = 4, bool tune_new_shapes = false);
  ~DynamicEngine();
  DynamicEngine(const DynamicEngine&) = delete;
  DynamicEngine& operator=(const DynamicEngine&) = delete;

  const std::vector<plan::Profile>& profiles() const;
  const std::vector<ValueInfo>& inputs() const;  ///< as the model declares them (dynamic dims)
  std::unique_ptr<DynamicContext> create_context() const;

  struct Stats {
    std::size_t engines_made = 0, engines_dropped = 0;
    /// Problems of the engines made that ran untimed (their buckets' tactics did not cover them
    /// and tune_new_shapes is off), summed over engines.
    std::size_t untimed_problems = 0;
    /// Problems of the engines made that ran their bucket's tactic (the tactic their step ran at
    /// the bucket shape covering theirs, Plan::buckets), summed over engines.
    std::size_t borrowed_problems = 0;
    double specialize_ms = 0, engine_ms = 0;  ///< host time: plans made, engines made
  };
  Stats stats() const;

 private:
  friend class DynamicContext;
  struct State;
  std::shared_ptr<State> state_;
};

class DynamicContext {
 public:
  ~DynamicContext();
  DynamicContext(const DynamicContext&) = delete;
  DynamicContext& operator=(const DynamicContext&) = delete;

  /// The profile whose ranges the shapes are checked against (0 at first). Throws ShapeError for
  /// a profile that does not exist, or when the shapes set do not fit the new profile.
  void set_profile(std::size_t profile);
  std::size_t profile() const { return profile_; }
  /// Sets one input's dims for the next runs. Throws ShapeError naming the input, the dim, the
  /// value and the profile's range when they are outside it (or the rank differs, or a dim is
  /// below 1, or the input does not exist). Inputs start at the profile's opt dims.
  void set_input_shape(const std::string& name, const std::vector<std::int64_t>& dims);
  const plan::ShapeMap& input_shapes() const { return shapes_; }
  /// An output's dims at the shapes set (specializes the plan on the host if needed; no GPU).
  std::vector<std::int64_t> output_dims(const std::string& name);
  /// The plan the next run executes (specialized for the shapes set).
  const plan::Plan& plan();

  /// Replays a CUDA graph per exact shape, captured on its first run.
  void set_cuda_graph(bool on) { use_graph_ = on; }
  void set_profiler(Profiler* p) { profiler_ = p; }
  /// Runs at the shapes set; bindings are device pointers sized for them. Every shape's run uses
  /// the context's one arena: as for one ExecutionContext, runs on two streams must not overlap
  /// (one stream, or the caller orders them).
  void enqueue(const Bindings& bindings, Stream stream);
  void execute(const Bindings& bindings);
  /// The context of the current shape (made on first use: engine, arena, workspace).
  ExecutionContext& context();
  /// The one activation arena every shape's context runs in (0 before the first run), and how
  /// many times it was allocated (once, unless a later profile or shape needed more).
  std::size_t arena_bytes() const;
  std::size_t arena_allocations() const { return arena_allocations_; }

 private:
  friend class DynamicEngine;
  explicit DynamicContext(std::shared_ptr<DynamicEngine::State> engine);
  struct Shaped;
  Shaped& current();
  std::shared_ptr<DynamicEngine::State> engine_;
  std::size_t profile_ = 0;
  plan::ShapeMap shapes_;
  std::list<std::unique_ptr<Shaped>> held_;        // most recent first
  std::shared_ptr<detail::ContextMemory> memory_;  // shared by held_'s contexts
  std::size_t arena_allocations_ = 0;
  bool use_graph_ = false;
  Profiler* profiler_ = nullptr;
};

}  // namespace kiln::runtime
