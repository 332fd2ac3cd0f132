// Shapes of IR values: each dim fixed, dynamic (unknown until run), or symbolic (named, unknown,
// equal wherever the same symbol appears). The rank is always known.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace kiln {

/// The integer that stands for "not known yet" in shape rules and in Dim::value().
inline constexpr std::int64_t kDynamic = -1;

class Dim {
 public:
  constexpr Dim() = default;
  constexpr Dim(std::int64_t v) : value_(v < 0 ? kDynamic : v) {}  // NOLINT: dims read like ints
  static Dim dynamic() { return Dim(kDynamic); }
  static Dim symbol(std::string name) {
    Dim d(kDynamic);
    d.symbol_ = std::move(name);
    return d;
  }
  bool is_fixed() const { return value_ >= 0; }
  bool is_symbolic() const { return !is_fixed() && !symbol_.empty(); }
  /// The fixed value, or kDynamic.
  std::int64_t value() const { return value_; }
  const std::string& symbol_name() const { return symbol_; }
  std::string to_string() const;
  /// Same fixed value, or same symbol.
  bool same_as(const Dim& o) const {
    if (is_fixed() || o.is_fixed()) return value_ == o.value_;
    return !symbol_.empty() && symbol_ == o.symbol_;
  }
  friend bool operator==(const Dim& a, const Dim& b) {
    return a.value_ == b.value_ && a.symbol_ == b.symbol_;
  }

 private:
  std::int64_t value_ = 0;
  std::string symbol_;
};

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<Dim> d) : dims_(d) {}
  explicit Shape(std::vector<Dim> d) : dims_(std::move(d)) {}
  static Shape of(const std::vector<std::int64_t>& d) {
    Shape s;
    for (auto v : d) s.dims_.emplace_back(v);
    return s;
  }
  std::size_t rank() const { return dims_.size(); }
  const Dim& operator[](std::size_t i) const { return dims_[i]; }
  Dim& operator[](std::size_t i) { return dims_[i]; }
  auto begin() const { return dims_.begin(); }
  auto end() const { return dims_.end(); }
  const std::vector<Dim>& dims() const { return dims_; }
  void push_back(Dim d) { dims_.push_back(std::move(d)); }
  bool is_static() const {
    for (const auto& d : dims_)
      if (!d.is_fixed()) return false;
    return true;
  }
  /// Dim values, kDynamic where not fixed.
  std::vector<std::int64_t> values() const {
    std::vector<std::int64_t> v;
    v.reserve(dims_.size());
    for (const auto& d : dims_) v.push_back(d.value());
    return v;
  }
  /// Product of the dims, or kDynamic if any is not fixed.
  std::int64_t numel() const;
  /// "[N,256,56,56]"; dynamic dims print as '?'.
  std::string to_string() const;
  friend bool operator==(const Shape& a, const Shape& b) { return a.dims_ == b.dims_; }

 private:
  std::vector<Dim> dims_;
};

/// "[2,3,4]"
std::string dims_to_string(const std::vector<std::int64_t>& dims);
/// Product of the dims (1 for a scalar).
std::int64_t product(const std::vector<std::int64_t>& dims);

}  // namespace kiln
