// Optimization profiles and bucket shapes.
#include "kiln/plan/profile.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"

namespace kiln::plan {

namespace {

const ValueInfo* find_input(const Graph& g, const std::string& name) {
  for (const auto& vi : g.inputs)
    if (vi.name == name) return &vi;
  return nullptr;
}

std::string input_names(const Graph& g) {
  std::vector<std::string> names;
  for (const auto& vi : g.inputs) names.push_back(vi.name);
  return fmt::format("{}", fmt::join(names, ", "));
}

std::string dim_label(const ValueInfo& vi, std::size_t d) {
  const Dim& dim = vi.type.shape[d];
  return dim.is_symbolic() ? fmt::format("dim {} ('{}')", d, dim.symbol_name())
                           : fmt::format("dim {}", d);
}

/// Checks `dims` against the model's declared shape of `vi`: rank, fixed dims, dims >= 1.
void check_against_model(const ValueInfo& vi, const Dims& dims, std::string_view what) {
  const Shape& shape = vi.type.shape;
  if (dims.size() != shape.rank())
    throw ShapeError(fmt::format("{}: input '{}' has rank {} (shape {}), got {} dims {}", what,
                                 vi.name, shape.rank(), shape.to_string(), dims.size(),
                                 dims_to_string(dims)));
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] < 1)
      throw ShapeError(fmt::format("{}: input '{}' {} is {}; dims must be at least 1", what,
                                   vi.name, dim_label(vi, d), dims[d]));
    if (shape[d].is_fixed() && shape[d].value() != dims[d])
      throw ShapeError(fmt::format("{}: input '{}' dim {} is fixed at {} by the model, got {}",
                                   what, vi.name, d, shape[d].value(), dims[d]));
  }
}

/// One symbol (dim_param) bound to different values in two places of `s`.
void check_symbols(const Graph& g, const ShapeMap& s, std::string_view what) {
  std::map<std::string, std::pair<std::string, std::int64_t>> seen;  // symbol -> (where, value)
  for (const auto& vi : g.inputs) {
    auto it = s.find(vi.name);
    if (it == s.end() || it->second.size() != vi.type.shape.rank()) continue;
    for (std::size_t d = 0; d < it->second.size(); ++d) {
      const Dim& dim = vi.type.shape[d];
      if (!dim.is_symbolic()) continue;
      const std::string where = fmt::format("input '{}' dim {}", vi.name, d);
      auto [at, fresh] = seen.try_emplace(dim.symbol_name(), where, it->second[d]);
      if (!fresh && at->second.second != it->second[d])
        throw ShapeError(fmt::format("{}: {} and {} are both '{}' but are given {} and {}", what,
                                     at->second.first, where, dim.symbol_name(), at->second.second,
                                     it->second[d]));
    }
  }
}

std::int64_t elements(const ShapeMap& s) {
  std::int64_t n = 0;
  for (const auto& [_, d] : s) n += product(d);
  return n;
}

}  // namespace

ShapeMap Profile::min() const {
  ShapeMap s;
  for (const auto& [n, r] : inputs) s[n] = r.min;
  return s;
}
ShapeMap Profile::opt() const {
  ShapeMap s;
  for (const auto& [n, r] : inputs) s[n] = r.opt;
  return s;
}
ShapeMap Profile::max() const {
  ShapeMap s;
  for (const auto& [n, r] : inputs) s[n] = r.max;
  return s;
}

bool Profile::contains(const ShapeMap& s) const {
  if (s.size() != inputs.size()) return false;
  for (const auto& [name, r] : inputs) {
    auto it = s.find(name);
    if (it == s.end() || it->second.size() != r.min.size()) return false;
    for (std::size_t d = 0; d < r.min.size(); ++d)
      if (it->second[d] < r.min[d] || it->second[d] > r.max[d]) return false;
  }
  return true;
}

std::string Profile::describe() const {
  std::string out;
  for (const auto& [name, r] : inputs)
    out += fmt::format("{}: {} .. {} .. {}\n", name, dims_to_string(r.min), dims_to_string(r.opt),
                       dims_to_string(r.max));
  return out;
}

ShapeMap parse_shape_list(std::string_view text, std::string_view what) {
  ShapeMap out;
  const auto bad = [&](std::string_view item, std::string_view why) {
    return ShapeError(
        fmt::format("{}: '{}' {}; expected NAME:DxDx... separated by commas (e.g. "
                    "x:1x3x224x224,mask:1x128)",
                    what, item, why));
  };
  if (text.empty()) throw bad(text, "is empty");
  std::size_t at = 0;
  while (at <= text.size()) {
    const std::size_t comma = std::min(text.find(',', at), text.size());
    const std::string_view item = text.substr(at, comma - at);
    // The name may itself hold ':' (ONNX names do): the dims follow the last one.
    const std::size_t sep = item.find_last_of(":=");
    if (sep == std::string_view::npos || sep == 0) throw bad(item, "has no NAME:");
    const std::string name(item.substr(0, sep));
    std::string_view rest = item.substr(sep + 1);
    Dims dims;
    if (!rest.empty() && rest != "scalar") {
      std::size_t p = 0;
      while (p <= rest.size()) {
        const std::size_t x = std::min(rest.find('x', p), rest.size());
        const std::string_view d = rest.substr(p, x - p);
        if (d.empty() || d.size() > 12 ||
            d.find_first_not_of("0123456789") != std::string_view::npos)
          throw bad(item, fmt::format("has dim '{}', not a whole number", d));
        dims.push_back(std::stoll(std::string(d)));
        p = x + 1;
      }
    }
    if (!out.emplace(name, std::move(dims)).second)
      throw bad(item, fmt::format("names '{}' twice", name));
    at = comma + 1;
  }
  return out;
}

std::string format_shape_list(const ShapeMap& s) {
  std::vector<std::string> items;
  for (const auto& [name, dims] : s) {
    std::vector<std::string> ds;
    for (auto d : dims) ds.push_back(std::to_string(d));
    items.push_back(name + ":" +
                    (dims.empty() ? std::string("scalar") : fmt::format("{}", fmt::join(ds, "x"))));
  }
  return fmt::format("{}", fmt::join(items, ","));
}

Profile make_profile(const Graph& g, const ShapeMap& min, const ShapeMap& opt,
                     const ShapeMap& max) {
  for (const auto* given : {&min, &opt, &max})
    for (const auto& [name, _] : *given)
      if (!find_input(g, name))
        throw ShapeError(fmt::format("profile: the model has no input '{}' (its inputs: {})", name,
                                     input_names(g)));
  Profile p;
  for (const auto& vi : g.inputs) {
    const auto get = [&](const ShapeMap& m) -> const Dims* {
      auto it = m.find(vi.name);
      return it == m.end() ? nullptr : &it->second;
    };
    const Dims* mx = get(max);
    const Dims* op = get(opt);
    const Dims* mn = get(min);
    if (!mx && !op && !mn) {
      if (!vi.type.shape.is_static())
        throw ShapeError(
            fmt::format("profile: input '{}' has shape {}; give its dims in --min-shapes, "
                        "--opt-shapes and --max-shapes",
                        vi.name, vi.type.shape.to_string()));
      const Dims d = vi.type.shape.values();
      p.inputs[vi.name] = {d, d, d};
      continue;
    }
    InputRange r;
    r.max = mx ? *mx : op ? *op : *mn;
    r.opt = op ? *op : mx ? *mx : *mn;
    r.min = mn ? *mn : r.opt;
    check_against_model(vi, r.min, "profile min");
    check_against_model(vi, r.opt, "profile opt");
    check_against_model(vi, r.max, "profile max");
    for (std::size_t d = 0; d < r.min.size(); ++d)
      if (r.min[d] > r.opt[d] || r.opt[d] > r.max[d])
        throw ShapeError(
            fmt::format("profile: input '{}' {} has min {}, opt {}, max {}; expected min <= opt "
                        "<= max",
                        vi.name, dim_label(vi, d), r.min[d], r.opt[d], r.max[d]));
    p.inputs[vi.name] = std::move(r);
  }
  check_symbols(g, p.min(), "profile min");
  check_symbols(g, p.opt(), "profile opt");
  check_symbols(g, p.max(), "profile max");
  return p;
}

Profile fixed_profile(const Graph& g, const ShapeMap& shapes, std::int64_t dynamic_default) {
  ShapeMap s;
  for (const auto& [name, dims] : shapes) {
    if (!find_input(g, name))
      throw ShapeError(
          fmt::format("the model has no input '{}' (its inputs: {})", name, input_names(g)));
    s[name] = dims;
  }
  for (const auto& vi : g.inputs) {
    if (s.count(vi.name)) continue;
    Dims d;
    for (const auto& dim : vi.type.shape)
      d.push_back(dim.is_fixed() ? dim.value() : dynamic_default);
    s[vi.name] = d;
  }
  return make_profile(g, s, s, s);
}

void check_shape(const Graph& g, const Profile& p, const ShapeMap& s, std::size_t profile) {
  for (const auto& [name, _] : s)
    if (!find_input(g, name))
      throw ShapeError(
          fmt::format("the model has no input '{}' (its inputs: {})", name, input_names(g)));
  for (const auto& vi : g.inputs) {
    auto it = s.find(vi.name);
    if (it == s.end())
      throw ShapeError(
          fmt::format("no shape given for input '{}' {}", vi.name, vi.type.shape.to_string()));
    check_against_model(vi, it->second, "shape");
    auto r = p.inputs.find(vi.name);
    if (r == p.inputs.end())
      throw ShapeError(fmt::format("profile {} has no range for input '{}'", profile, vi.name));
    for (std::size_t d = 0; d < it->second.size(); ++d)
      if (it->second[d] < r->second.min[d] || it->second[d] > r->second.max[d])
        throw ShapeError(
            fmt::format("input '{}' {} is {}, outside profile {}'s range {}..{} (shape {}, profile "
                        "{} .. {})",
                        vi.name, dim_label(vi, d), it->second[d], profile, r->second.min[d],
                        r->second.max[d], dims_to_string(it->second), dims_to_string(r->second.min),
                        dims_to_string(r->second.max)));
  }
  check_symbols(g, s, "shape");
}

std::vector<ShapeMap> bucket_shapes(const Profile& p, int between) {
  std::vector<ShapeMap> out;
  const auto add = [&](ShapeMap s) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(std::move(s));
  };
  add(p.opt());
  add(p.min());
  add(p.max());
  for (int k = 1; k <= between; ++k) {
    const double f = static_cast<double>(k) / (between + 1);
    ShapeMap s;
    for (const auto& [name, r] : p.inputs) {
      Dims d(r.min.size());
      for (std::size_t i = 0; i < d.size(); ++i)
        d[i] = r.min[i] + static_cast<std::int64_t>(
                              std::llround(f * static_cast<double>(r.max[i] - r.min[i])));
      s[name] = d;
    }
    add(std::move(s));
  }
  return out;
}

std::size_t bucket_for(const std::vector<ShapeMap>& buckets, const ShapeMap& s) {
  std::size_t best = buckets.size();
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    bool covers = buckets[b].size() == s.size();
    for (const auto& [name, dims] : s) {
      auto it = buckets[b].find(name);
      covers = covers && it != buckets[b].end() && it->second.size() == dims.size();
      for (std::size_t i = 0; covers && i < dims.size(); ++i) covers = it->second[i] >= dims[i];
      if (!covers) break;
    }
    if (covers && (best == buckets.size() || elements(buckets[b]) < elements(buckets[best])))
      best = b;
  }
  if (best == buckets.size())
    throw ShapeError(fmt::format("no bucket covers the shape {}", format_shape_list(s)));
  return best;
}

}  // namespace kiln::plan
