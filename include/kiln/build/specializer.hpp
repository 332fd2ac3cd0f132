// Dynamic shapes: plans specialized per exact shape. A model whose inputs have dynamic dims
// (ONNX dim_param, DSL dyn("N")) is built for one or more profiles (kiln/plan/profile.hpp). A plan
// is made for each exact shape on the host when the shape is first asked for: input dims are
// bound, the subgraphs that compute shapes (Shape, Gather, Concat, Slice, Range, ConstantOfShape,
// ...) fold to constants by the builder's constant folding (the shape program, evaluated on the
// host, never a step), and the passes and the memory planner run on the static graph. Specialized
// plans are kept in a bounded cache.
#pragma once

#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <utility>
#include <vector>

#include "kiln/build/builder.hpp"
#include "kiln/plan/plan.hpp"
#include "kiln/plan/profile.hpp"

namespace kiln::build {

using plan::Profile;
using plan::ShapeMap;

/// A graph built for every shape its profiles accept. Holds the imported graph (dynamic dims
/// kept) and the build options; plan_for() checks a shape against the profile and returns the
/// plan specialized for it, from the cache or built now. The cache holds `cache_size` plans
/// (least recently used dropped first); a plan returned stays valid until `cache_size` other
/// shapes have been asked for since, so callers that keep one hold the shared_ptr. Not
/// thread-safe: callers on several threads serialize plan_for (DynamicEngine calls it under its
/// lock).
class Specializer {
 public:
  Specializer(Graph g, BuildOptions o, std::vector<Profile> profiles, std::size_t cache_size = 8);
  /// Specializes a dynamic plan (build_dynamic_plan, or one loaded from a file) for its target;
  /// each plan made carries the dynamic plan's tactics. Throws ShapeError for a static plan.
  Specializer(const plan::Plan& dynamic, const ConstantEvaluator* evaluator,
              std::size_t cache_size = 8);

  const Graph& graph() const { return graph_; }
  const std::vector<Profile>& profiles() const { return profiles_; }
  const BuildOptions& options() const { return options_; }

  /// The first profile (from `first`) that accepts `s`; throws the ShapeError of profile `first`
  /// when none does (or of `only` when only that one may be used).
  std::size_t profile_for(const ShapeMap& s, std::size_t first = 0) const;
  /// The plan for exactly `s` under profile `profile` (checked), specialized on first use.
  std::shared_ptr<const plan::Plan> plan_for(const ShapeMap& s, std::size_t profile);

  struct Stats {
    std::size_t built = 0, hits = 0, evicted = 0;
    double build_ms = 0;  ///< host time spent specializing, all builds together
  };
  const Stats& stats() const { return stats_; }

 private:
  Graph graph_;
  BuildOptions options_;
  std::vector<Profile> profiles_;
  std::map<std::string, std::string> tactics_;  // given to every plan made
  std::size_t cache_size_;
  std::list<std::pair<ShapeMap, std::shared_ptr<const plan::Plan>>> cache_;  // most recent first
  Stats stats_;
};

/// Builds a dynamic plan: `g` (dynamic dims kept) specialized at the first profile's opt shape,
/// with the profiles and `g` itself recorded for specializing at other shapes. Checks every
/// profile against `g` (make_profile's rules) and builds every bucket shape of every profile
/// (bucket_shapes(p, between)) once, so that a shape program that fails inside a profile is
/// found now, naming the node and the shape. `bucket_plans`, when given, receives those plans
/// (profile, shape, plan), e.g. for timing their tactics.
struct BucketPlan {
  std::size_t profile = 0;
  ShapeMap shape;
  plan::Plan plan;
  double build_ms = 0;
};
plan::Plan build_dynamic_plan(const Graph& g, const BuildOptions& o, std::vector<Profile> profiles,
                              int between = 1, std::vector<BucketPlan>* bucket_plans = nullptr,
                              BuildReport* report = nullptr);

}  // namespace kiln::build
