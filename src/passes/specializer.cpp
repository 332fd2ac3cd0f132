// The per-shape specializing plan cache.
#include "kiln/build/specializer.hpp"

#include <fmt/format.h>

#include "kiln/ir/error.hpp"

namespace kiln::build {

using plan::check_shape;
using plan::format_shape_list;

Specializer::Specializer(Graph g, BuildOptions o, std::vector<Profile> profiles,
                         std::size_t cache_size)
    : graph_(std::move(g)),
      options_(std::move(o)),
      profiles_(std::move(profiles)),
      cache_size_(cache_size) {
  if (profiles_.empty())
    throw ShapeError(
        fmt::format("graph '{}': a dynamic build needs at least one profile", graph_.name));
  if (cache_size_ == 0) throw Error("Specializer: the plan cache must hold at least one plan");
  options_.after_pass = nullptr;
}

Specializer::Specializer(const plan::Plan& dynamic, const ConstantEvaluator* evaluator,
                         std::size_t cache_size)
    : cache_size_(cache_size) {
  if (!dynamic.is_dynamic() || !dynamic.source)
    throw ShapeError(
        fmt::format("plan '{}' is static (built without profiles): it runs at its own shape only",
                    dynamic.graph_name));
  if (cache_size_ == 0) throw Error("Specializer: the plan cache must hold at least one plan");
  graph_ = *dynamic.source;
  profiles_ = dynamic.profiles;
  tactics_ = dynamic.tactics;
  options_.target = &plan::target_by_name(dynamic.target);
  options_.evaluator = evaluator;
}

std::size_t Specializer::profile_for(const ShapeMap& s, std::size_t first) const {
  if (first >= profiles_.size())
    throw ShapeError(
        fmt::format("profile {} does not exist (the plan has {})", first, profiles_.size()));
  for (std::size_t i = first; i < profiles_.size(); ++i)
    if (profiles_[i].contains(s)) return i;
  check_shape(graph_, profiles_[first], s, first);  // throws, naming what is out of range
  throw ShapeError(fmt::format("no profile accepts the shape {}", format_shape_list(s)));
}

std::shared_ptr<const plan::Plan> Specializer::plan_for(const ShapeMap& s, std::size_t profile) {
  if (profile >= profiles_.size())
    throw ShapeError(
        fmt::format("profile {} does not exist (the plan has {})", profile, profiles_.size()));
  check_shape(graph_, profiles_[profile], s, profile);
  for (auto it = cache_.begin(); it != cache_.end(); ++it)
    if (it->first == s) {
      cache_.splice(cache_.begin(), cache_, it);
      ++stats_.hits;
      return cache_.front().second;
    }
  BuildOptions o = options_;
  o.input_dims = s;
  const auto t0 = std::chrono::steady_clock::now();
  std::shared_ptr<const plan::Plan> p;
  // A failure names the shape it was specialized for, keeping its error type.
  const auto at = [&](const Error& e) {
    return fmt::format("at shape {}: {}", format_shape_list(s), e.what());
  };
  try {
    plan::Plan made = build_plan(graph_, o);
    made.tactics = tactics_;
    p = std::make_shared<const plan::Plan>(std::move(made));
  } catch (const ShapeError& e) {
    throw ShapeError(at(e));
  } catch (const GraphError& e) {
    throw GraphError(at(e));
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(at(e));
  } catch (const MemoryLimitError& e) {
    throw MemoryLimitError(at(e));
  }
  stats_.build_ms +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ++stats_.built;
  cache_.emplace_front(s, p);
  if (cache_.size() > cache_size_) {
    cache_.pop_back();
    ++stats_.evicted;
  }
  return p;
}

plan::Plan build_dynamic_plan(const Graph& g, const BuildOptions& o, std::vector<Profile> profiles,
                              int between, std::vector<BucketPlan>* bucket_plans,
                              BuildReport* report) {
  if (profiles.empty())
    throw ShapeError(fmt::format("graph '{}': a dynamic build needs at least one profile", g.name));
  for (std::size_t i = 0; i < profiles.size(); ++i) {
    const Profile& p = profiles[i];
    try {
      plan::make_profile(g, p.min(), p.opt(), p.max());
    } catch (const ShapeError& e) {
      throw ShapeError(fmt::format("profile {}: {}", i, e.what()));
    }
  }
  BuildOptions opt = o;
  opt.input_dims = profiles[0].opt();
  plan::Plan out;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    out = build_plan(g, opt, report);
  } catch (const ShapeError& e) {
    throw ShapeError(fmt::format("at shape {}: {}", format_shape_list(opt.input_dims), e.what()));
  }
  const double opt_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  Specializer sp(g, o, profiles, 1);
  for (std::size_t i = 0; i < profiles.size(); ++i)
    for (const auto& shape : plan::bucket_shapes(profiles[i], between)) {
      if (i == 0 && shape == opt.input_dims) {  // built above: profile 0's opt is its first bucket
        if (bucket_plans) bucket_plans->push_back({i, shape, out, opt_ms});
        continue;
      }
      const double before = sp.stats().build_ms;
      auto p = sp.plan_for(shape, i);
      if (bucket_plans) bucket_plans->push_back({i, shape, *p, sp.stats().build_ms - before});
    }
  out.profiles = std::move(profiles);
  out.source = std::make_shared<const Graph>(g);
  return out;
}

}  // namespace kiln::build
