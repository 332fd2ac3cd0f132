// Shapes of IR values: each dim fixed, dynamic (unknown until run), or symbolic (named, unknown,
// equal wherever the same symbol appears). The rank is always known. A symbolic dim is a name
// (an ONNX dim_param, a DSL dim) or an expression that shape rules made of names (dim_affine,
// dim_mul, dim_add below): "(H+1)/2" after a stride-2 convolution, "N*S" after a Reshape that
// merges two dims; two dims of the same expression are the same dim.
#pragma once

#include <cstdint>
#include <functional>
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

// ---- symbolic dim arithmetic --------------------------------------------------------------
// Each gives a fixed dim where its operands are fixed, an expression where a symbolic operand's
// form allows it (expressions are kept as floor((m*B + a) / q), B a name or a product of names,
// printed canonically: "H", "2*H-1", "H/2", "(H+1)/2", "N*S"), and Dim::dynamic() otherwise
// (an anonymous dim, a name that is no identifier, a form the result cannot keep exactly).

/// floor((d * mul + add) / div), mul >= 1, div >= 1.
Dim dim_affine(const Dim& d, std::int64_t mul, std::int64_t add, std::int64_t div);
Dim dim_mul(const Dim& a, const Dim& b);
Dim dim_add(const Dim& a, const Dim& b);
/// a / c where c divides a (a Reshape's inferred -1): exact, or dynamic.
Dim dim_div_exact(const Dim& a, std::int64_t c);
/// The product of dims [begin, end).
Dim dim_product(const std::vector<Dim>& dims, std::size_t begin, std::size_t end);
/// The value of `d` with its names bound (`bind` gives a name's value, or a negative number for
/// an unbound one): the fixed value, or the expression evaluated; kDynamic when a name is
/// unbound or `d` is anonymous.
std::int64_t dim_value(const Dim& d, const std::function<std::int64_t(const std::string&)>& bind);
/// Product of the dims (1 for a scalar).
std::int64_t product(const std::vector<std::int64_t>& dims);

}  // namespace kiln
