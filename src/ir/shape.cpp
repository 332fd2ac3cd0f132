#include "kiln/ir/shape.hpp"

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/shape_rules.hpp"

namespace kiln {

std::string Dim::to_string() const {
  if (is_fixed()) return std::to_string(value_);
  return symbol_.empty() ? "?" : symbol_;
}

std::int64_t Shape::numel() const {
  std::int64_t n = 1;
  for (const auto& d : dims_) {
    if (!d.is_fixed()) return kDynamic;
    n = rules::count_mul(n, d.value());
  }
  return n;
}

std::string Shape::to_string() const {
  std::string s = "[";
  for (std::size_t i = 0; i < dims_.size(); ++i) s += (i ? "," : "") + dims_[i].to_string();
  return s + "]";
}

std::string dims_to_string(const std::vector<std::int64_t>& dims) {
  return fmt::format("[{}]", fmt::join(dims, ","));
}

std::int64_t product(const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (auto d : dims) {
    if (d > 0 && (n > (std::int64_t{1} << 62) / d || n < -(std::int64_t{1} << 62) / d))
      throw ShapeError(fmt::format("the element count of {} overflows", dims_to_string(dims)));
    n *= d;
  }
  return n;
}

namespace rules {
void rule_violation(const char* what, i64 expected, i64 got) {
  throw ShapeError(fmt::format("expected {} {}, got {}", expected, what, got));
}
void rule_violation_fmt(const char* what, i64 a, i64 b) {
  throw ShapeError(fmt::format(fmt::runtime(what), a, b));
}
}  // namespace rules

}  // namespace kiln
