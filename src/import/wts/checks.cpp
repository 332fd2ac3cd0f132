// Identity (a stable hash) and content checks of weight maps.
#include <cmath>

#include <fmt/format.h>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln {

namespace {

std::string index_string(const Tensor& t, std::int64_t flat) {
  std::vector<std::int64_t> idx(t.rank());
  for (std::size_t d = t.rank(); d-- > 0;) {
    const std::int64_t n = t.dim(d);
    idx[d] = n ? flat % n : 0;
    flat = n ? flat / n : 0;
  }
  return fmt::format("[{}]", fmt::join(idx, ","));
}

}  // namespace

std::uint64_t weights_hash(const WeightMap& w) { return hash_weights(w.tensors()); }

std::string weights_hash_string(std::uint64_t hash) { return fmt::format("fnv1a64:{:016x}", hash); }

void check_weights_hash(const WeightMap& w, std::uint64_t expected, std::string_view what) {
  const std::uint64_t got = weights_hash(w);
  if (got != expected)
    throw WeightError(
        fmt::format("{} was built from weights {}, but these weights hash to {}; "
                    "rebuild it from these weights, or use the weights it was built from",
                    what, weights_hash_string(expected), weights_hash_string(got)));
}

void check_weights_finite(const WeightMap& w) {
  std::vector<std::string> bad;
  for (const auto& [name, t] : w) {
    if (!is_float(t.dtype())) continue;
    std::int64_t first = -1, nan = 0, inf = 0;
    visit_dtype(t.dtype(), [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_floating_point_v<compute_t<T>>) {
        const T* p = reinterpret_cast<const T*>(t.raw());
        for (std::int64_t i = 0; i < t.numel(); ++i) {
          const auto v = to_compute(p[i]);
          if (std::isfinite(v)) continue;
          if (first < 0) first = i;
          (std::isnan(v) ? nan : inf) += 1;
        }
      }
    });
    if (first < 0) continue;
    const double v = t.get(first);
    bad.push_back(fmt::format("weight '{}' {} has {} at index {} {} ({} NaN, {} Inf in all)", name,
                              t.type_string(), std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf"),
                              first, index_string(t, first), nan, inf));
  }
  if (bad.size() == 1) throw WeightError(bad[0]);
  if (!bad.empty())
    throw WeightError(
        fmt::format("{} weights hold NaN or Inf:\n  {}", bad.size(), fmt::join(bad, "\n  ")));
}

void check_weight_dtype(const WeightMap& w, const std::string& name, std::string_view layer,
                        std::initializer_list<DType> allowed) {
  if (!w.contains(name)) return;
  const DType got = w.at(name).dtype();
  std::vector<std::string_view> names;
  for (auto d : allowed) {
    if (d == got) return;
    names.push_back(dtype_name(d));
  }
  std::string expected;
  for (std::size_t i = 0; i < names.size(); ++i)
    expected += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + std::string(names[i]);
  throw WeightError(fmt::format("{} weight '{}' has dtype {}, expected {}", layer, name,
                                dtype_name(got), expected));
}

}  // namespace kiln
