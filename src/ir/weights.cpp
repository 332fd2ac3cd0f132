#include "kiln/ir/weights.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <string_view>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/hash.hpp"

namespace kiln {

void WeightMap::add(const std::string& name, Tensor t) {
  if (!map_.emplace(name, std::move(t)).second)
    throw WeightError("weight '" + name + "' appears twice");
}

const Tensor& WeightMap::at(const std::string& name) const {
  auto it = map_.find(name);
  if (it == map_.end()) {
    auto near = near_misses(name, names());
    throw WeightError(fmt::format(
        "no weight named '{}'{}", name,
        near.empty() ? "" : fmt::format(" (did you mean '{}'?)", fmt::join(near, "', '"))));
  }
  return it->second;
}

std::vector<std::string> WeightMap::names() const {
  std::vector<std::string> v;
  for (const auto& [k, _] : map_) v.push_back(k);
  return v;
}

void WeightMap::check_finite() const {
  for (const auto& [name, t] : map_) {
    if (!is_float(t.dtype())) continue;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const double v = t.get(i);
      if (!std::isfinite(v))
        throw WeightError(
            fmt::format("weight '{}' has {} at index {}", name, std::isnan(v) ? "NaN" : "Inf", i));
    }
  }
}

std::uint64_t hash_weights(const std::map<std::string, Tensor>& w) {
  Fnv1a64 h;
  h.str("kiln-weights-v1");
  h.u64(w.size());
  for (const auto& [name, t] : w) {
    h.str(name);
    h.str(dtype_name(t.dtype()));
    h.u64(t.rank());
    for (auto d : t.dims()) h.u64(static_cast<std::uint64_t>(d));
    h.u64(t.nbytes());
    if constexpr (std::endian::native == std::endian::little) {
      h.bytes(t.raw(), t.nbytes());
    } else {
      const std::size_t sz = dtype_size(t.dtype());
      for (std::size_t i = 0; i < t.nbytes(); i += sz)
        for (std::size_t b = sz; b-- > 0;) h.bytes(t.raw() + i + b, 1);
    }
  }
  return h.value();
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::vector<std::string> near_misses(const std::string& name,
                                     const std::vector<std::string>& candidates) {
  std::vector<std::pair<std::size_t, std::string>> scored;
  const std::size_t limit = std::max<std::size_t>(2, name.size() / 3);
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(name, c);
    if (d <= limit) scored.emplace_back(d, c);
  }
  std::sort(scored.begin(), scored.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < scored.size() && i < 3; ++i) out.push_back(scored[i].second);
  return out;
}

WeightBinder::WeightBinder(const WeightMap& map, BindOptions opts)
    : map_(map), opts_(std::move(opts)) {
  for (const auto& [k, _] : map_) used_[k] = false;
}

bool WeightBinder::has(const std::string& name) const { return map_.contains(opts_.resolve(name)); }

void WeightBinder::add_view(const BindOptions& view) {
  opts_.strict |= view.strict;
  for (const auto& s : view.ignore_suffixes)
    if (std::find(opts_.ignore_suffixes.begin(), opts_.ignore_suffixes.end(), s) ==
        opts_.ignore_suffixes.end())
      opts_.ignore_suffixes.push_back(s);
}

Tensor WeightBinder::take(const std::string& layer, const std::string& name,
                          const std::vector<std::int64_t>& dims) {
  return take(layer, name, dims, DType::f32);
}

Tensor WeightBinder::take(const std::string& layer, const std::string& name,
                          const std::vector<std::int64_t>& dims, DType dtype) {
  const std::string key = opts_.resolve(name);
  if (!map_.contains(key)) {
    auto near = near_misses(key, map_.names());
    problems_.push_back(fmt::format(
        "missing '{}' for layer '{}' (expected {} {}){}", key, layer, dtype_name(dtype),
        dims_to_string(dims),
        near.empty() ? "" : fmt::format("; did you mean '{}'?", fmt::join(near, "', '"))));
    return Tensor(dtype, dims);
  }
  used_[key] = true;
  const Tensor& t = map_.at(key);
  const std::int64_t want = product(dims);
  if (t.numel() != want) {
    problems_.push_back(fmt::format("'{}' for layer '{}' has {} elements {}, expected {} {}", key,
                                    layer, t.numel(), dims_to_string(t.dims()), want,
                                    dims_to_string(dims)));
    return Tensor(dtype, dims);
  }
  // Same count: a flat WTS weight takes the layer's shape; a shaped one must match exactly,
  // except for size-1 dims (a [10] bias given as [1,10]).
  auto squeeze = [](std::vector<std::int64_t> d) {
    std::erase(d, 1);
    return d;
  };
  if (t.rank() > 1 && squeeze(t.dims()) != squeeze(dims)) {
    problems_.push_back(fmt::format("'{}' for layer '{}' has shape {}, expected {}", key, layer,
                                    dims_to_string(t.dims()), dims_to_string(dims)));
    return Tensor(dtype, dims);
  }
  if (t.dtype() != dtype) {
    const bool float_ok = is_float(t.dtype()) && is_float(dtype);
    if (!float_ok) {
      problems_.push_back(fmt::format("'{}' for layer '{}' has dtype {}, expected {}", key, layer,
                                      dtype_name(t.dtype()), dtype_name(dtype)));
      return Tensor(dtype, dims);
    }
    return t.cast(dtype).reshaped(dims);
  }
  return t.reshaped(dims);
}

std::vector<std::string> WeightBinder::finish() {
  std::vector<std::string> unused;
  for (const auto& [k, u] : used_) {
    if (u) continue;
    bool ignored = false;
    for (const auto& s : opts_.ignore_suffixes)
      ignored |= k.size() >= s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0;
    if (!ignored) unused.push_back(fmt::format("weight '{}' is not used by the network", k));
  }
  std::vector<std::string> all = problems_;
  if (opts_.strict) all.insert(all.end(), unused.begin(), unused.end());
  if (!all.empty())
    throw WeightError(fmt::format("{} weight problem{}:\n  {}", all.size(),
                                  all.size() == 1 ? "" : "s", fmt::join(all, "\n  ")));
  return unused;
}

}  // namespace kiln
