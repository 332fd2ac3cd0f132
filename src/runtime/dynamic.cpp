// DynamicEngine: engines and contexts per exact shape of a dynamic plan, each made on first use
// and held in bounded least-recently-used lists.
#include "kiln/runtime/dynamic.hpp"

#include <chrono>
#include <utility>

#include <fmt/format.h>

#include "engine_impl.hpp"
#include "kiln/ir/error.hpp"

namespace kiln::runtime {

namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

/// One exact shape's plan and engine, shared by every context running that shape.
struct ShapedEngine {
  plan::ShapeMap shape;
  std::shared_ptr<const plan::Plan> plan;
  std::unique_ptr<Engine> engine;  // made on first run
};

struct DynamicEngine::State {
  plan::Plan dynamic;  // steps at profile 0's opt; the profiles and source graph
  Specialize specialize;
  EngineOptions options;
  std::size_t max_shapes = 4;
  std::mutex mu;
  std::list<std::shared_ptr<ShapedEngine>> shaped;  // most recent first
  std::map<std::string, std::string> tactics;       // the plan's, and every engine's since
  Stats stats;

  std::map<std::size_t, std::size_t> largest_arena;  // by profile: the arena at its max shape

  /// The arena bytes of the plan specialized at profile `profile`'s max shape (its largest).
  std::size_t max_arena(std::size_t profile) {
    std::lock_guard lock(mu);
    auto it = largest_arena.find(profile);
    if (it != largest_arena.end()) return it->second;
    auto p = specialize(dynamic.profiles[profile].max(), profile);
    const auto bytes = p ? static_cast<std::size_t>(p->memory.arena_bytes) : 0;
    return largest_arena[profile] = bytes;
  }

  /// The plan and (when `with_engine`) the engine for `s` under `profile`.
  std::shared_ptr<ShapedEngine> get(const plan::ShapeMap& s, std::size_t profile,
                                    bool with_engine) {
    std::lock_guard lock(mu);
    std::shared_ptr<ShapedEngine> e;
    for (auto it = shaped.begin(); it != shaped.end(); ++it)
      if ((*it)->shape == s) {
        shaped.splice(shaped.begin(), shaped, it);
        e = shaped.front();
        break;
      }
    if (!e) {
      auto t0 = std::chrono::steady_clock::now();
      auto p = specialize(s, profile);
      if (!p)
        throw Error(
            fmt::format("the specializer returned no plan for {}", plan::format_shape_list(s)));
      stats.specialize_ms += ms_since(t0);
      e = std::make_shared<ShapedEngine>(ShapedEngine{s, std::move(p), nullptr});
      shaped.push_front(e);
      if (shaped.size() > max_shapes) {
        shaped.pop_back();  // contexts that hold it keep it alive until they drop it
        ++stats.engines_dropped;
      }
    }
    if (with_engine && !e->engine) {
      // Tactics timed by engines of other shapes (and the dynamic plan's buckets) are reused; the
      // problems they do not cover are timed only when asked for (tune_new_shapes).
      plan::Plan p = *e->plan;
      for (const auto& [k, v] : tactics) p.tactics.emplace(k, v);
      // A problem none of them covers runs the tactic its step ran at the shape's bucket.
      EngineOptions o = options;
      o.step_tactics = dynamic.bucket_step_tactics(s, profile);
      auto t0 = std::chrono::steady_clock::now();
      e->engine = std::make_unique<Engine>(p, o);
      stats.engine_ms += ms_since(t0);
      ++stats.engines_made;
      stats.untimed_problems += e->engine->untimed_problems();
      stats.borrowed_problems += e->engine->borrowed_problems();
      for (const auto& [k, v] : e->engine->tactics()) tactics.emplace(k, v);
    }
    return e;
  }
};

DynamicEngine::DynamicEngine(const plan::Plan& dynamic, Specialize specialize,
                             const EngineOptions& options, std::size_t max_shapes,
                             bool tune_new_shapes)
    : state_(std::make_shared<State>()) {
  if (!dynamic.is_dynamic() || !dynamic.source)
    throw FormatError(fmt::format(
        "plan '{}' is static (built without profiles): run it with an Engine", dynamic.graph_name));
  if (!target_precision(dynamic.target))
    throw FormatError(fmt::format("plan '{}' was built for target '{}'; a GPU engine takes {}",
                                  dynamic.graph_name, dynamic.target, detail::gpu_target_names()));
  if (!specialize) throw Error("DynamicEngine: no specializer given");
  if (max_shapes == 0) throw Error("DynamicEngine: max_shapes must be at least 1");
  check_gpu_plan(dynamic);
  state_->dynamic = dynamic;
  state_->specialize = std::move(specialize);
  state_->options = options;
  state_->options.time_tactics = tune_new_shapes;
  state_->max_shapes = max_shapes;
  state_->tactics = dynamic.tactics;
}

DynamicEngine::~DynamicEngine() = default;

const std::vector<plan::Profile>& DynamicEngine::profiles() const {
  return state_->dynamic.profiles;
}
const std::vector<ValueInfo>& DynamicEngine::inputs() const {
  return state_->dynamic.source->inputs;
}

DynamicEngine::Stats DynamicEngine::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

std::unique_ptr<DynamicContext> DynamicEngine::create_context() const {
  return std::unique_ptr<DynamicContext>(new DynamicContext(state_));
}

// ---- context ------------------------------------------------------------------------------

struct DynamicContext::Shaped {
  std::shared_ptr<ShapedEngine> engine;
  std::unique_ptr<ExecutionContext> context;  // made on first run
};

DynamicContext::DynamicContext(std::shared_ptr<DynamicEngine::State> engine)
    : engine_(std::move(engine)) {
  shapes_ = engine_->dynamic.profiles[0].opt();
}

DynamicContext::~DynamicContext() = default;

void DynamicContext::set_profile(std::size_t profile) {
  const auto& profiles = engine_->dynamic.profiles;
  if (profile >= profiles.size())
    throw ShapeError(
        fmt::format("profile {} does not exist (the plan has {})", profile, profiles.size()));
  if (profile == profile_) return;
  // Inputs move to the new profile's opt dims, as a fresh context's do.
  profile_ = profile;
  shapes_ = profiles[profile].opt();
}

void DynamicContext::set_input_shape(const std::string& name,
                                     const std::vector<std::int64_t>& dims) {
  plan::ShapeMap next = shapes_;
  if (!next.count(name)) {
    std::vector<std::string> names;
    for (const auto& [n, _] : shapes_) names.push_back(n);
    throw ShapeError(fmt::format("set_input_shape: the model has no input '{}' (its inputs: {})",
                                 name, fmt::join(names, ", ")));
  }
  next[name] = dims;
  // One input at a time: a symbol shared with inputs not set yet is checked when the shapes are
  // used (current()), so only this input's own dims are checked here.
  const plan::Profile one{{{name, engine_->dynamic.profiles[profile_].inputs.at(name)}}};
  Graph only;
  for (const auto& vi : engine_->dynamic.source->inputs)
    if (vi.name == name) only.inputs.push_back(vi);
  plan::check_shape(only, one, {{name, dims}}, profile_);
  shapes_ = std::move(next);
}

DynamicContext::Shaped& DynamicContext::current() {
  for (auto it = held_.begin(); it != held_.end(); ++it)
    if ((*it)->engine->shape == shapes_) {
      held_.splice(held_.begin(), held_, it);
      return *held_.front();
    }
  plan::check_shape(*engine_->dynamic.source, engine_->dynamic.profiles[profile_], shapes_,
                    profile_);
  auto s = std::make_unique<Shaped>();
  s->engine = engine_->get(shapes_, profile_, false);
  held_.push_front(std::move(s));
  if (held_.size() > engine_->max_shapes) held_.pop_back();
  return *held_.front();
}

const plan::Plan& DynamicContext::plan() { return *current().engine->plan; }

std::vector<std::int64_t> DynamicContext::output_dims(const std::string& name) {
  const plan::Plan& p = plan();
  for (const auto& o : p.outputs)
    if (o.name == name) return o.type.shape.values();
  throw GraphError(fmt::format("output_dims: the model has no output '{}'", name));
}

ExecutionContext& DynamicContext::context() {
  Shaped& s = current();
  if (!s.context) {
    // The engine is made (or found) under the engine's lock: contexts on other threads may ask
    // for the same shape at the same time.
    s.engine = engine_->get(shapes_, profile_, true);
    // Every shape's context runs in one arena, sized for the largest shape of the profiles bound
    // so far; the rare shape whose own plan packs into more (each shape's offsets are planned
    // on its own) grows it, and the contexts that pointed into the old one are made again.
    const auto need = std::max(static_cast<std::size_t>(s.engine->plan->memory.arena_bytes),
                               engine_->max_arena(profile_));
    if (!memory_ || memory_->arena.bytes() < need) {
      for (auto& h : held_) h->context.reset();
      memory_ = std::make_shared<detail::ContextMemory>();
      memory_->arena = DeviceBuffer(need);
      ++arena_allocations_;
    }
    s.context = s.engine->engine->create_context(memory_);
  }
  s.context->set_cuda_graph(use_graph_);
  s.context->set_profiler(profiler_);
  return *s.context;
}

std::size_t DynamicContext::arena_bytes() const { return memory_ ? memory_->arena.bytes() : 0; }

void DynamicContext::enqueue(const Bindings& bindings, Stream stream) {
  context().enqueue(bindings, stream);
}

void DynamicContext::execute(const Bindings& bindings) { context().execute(bindings); }

}  // namespace kiln::runtime
