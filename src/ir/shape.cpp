#include "kiln/ir/shape.hpp"

#include <algorithm>
#include <cctype>
#include <limits>
#include <numeric>
#include <optional>

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

// ---- symbolic dim arithmetic --------------------------------------------------------------

namespace {

/// floor((mul * base + add) / div) over a base that is a name or a product of names (sorted).
struct Affine {
  std::vector<std::string> names;
  std::int64_t mul = 1, add = 0, div = 1;
};

constexpr std::int64_t kExprLimit = std::int64_t{1} << 40;  // coefficients kept exactly

bool small(std::int64_t v) { return v > -kExprLimit && v < kExprLimit; }

/// v within the limits coefficients are kept in (products of two of them fit in 128 bits).
std::optional<std::int64_t> fit(__int128 v) {
  if (v <= -kExprLimit || v >= kExprLimit) return std::nullopt;
  return static_cast<std::int64_t>(v);
}

bool is_name(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == ':'))
      return false;
  return true;
}

bool parse_int(const std::string& s, std::int64_t& v) {
  if (s.empty() || s.size() > 15) return false;
  v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

/// The expression of a symbolic dim in the canonical form dim_of() prints; nullopt for
/// anonymous dims and names of other characters.
std::optional<Affine> affine_of(const Dim& d) {
  if (!d.is_symbolic()) return std::nullopt;
  std::string s = d.symbol_name();
  Affine f;
  if (const auto slash = s.rfind('/'); slash != std::string::npos) {
    if (!parse_int(s.substr(slash + 1), f.div) || f.div < 2) return std::nullopt;
    s = s.substr(0, slash);
    if (s.size() > 2 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
  }
  if (const auto sign = s.find_first_of("+-"); sign != std::string::npos) {
    if (!parse_int(s.substr(sign + 1), f.add) || f.add == 0) return std::nullopt;
    if (s[sign] == '-') f.add = -f.add;
    s = s.substr(0, sign);
  }
  std::size_t at = 0;
  for (;;) {
    const auto star = s.find('*', at);
    const std::string part =
        s.substr(at, star == std::string::npos ? std::string::npos : star - at);
    std::int64_t m = 0;
    if (at == 0 && parse_int(part, m) && star != std::string::npos && m >= 2)
      f.mul = m;
    else if (is_name(part))
      f.names.push_back(part);
    else
      return std::nullopt;
    if (star == std::string::npos) break;
    at = star + 1;
  }
  if (f.names.empty() || !std::is_sorted(f.names.begin(), f.names.end())) return std::nullopt;
  if (!small(f.mul) || !small(f.add) || !small(f.div)) return std::nullopt;
  return f;
}

/// The canonical dim of f (its common factors divided out), or dynamic past the limits.
Dim dim_of(Affine f) {
  if (f.div > 1) {
    const std::int64_t g = std::gcd(std::gcd(f.mul, f.add < 0 ? -f.add : f.add), f.div);
    f.mul /= g, f.add /= g, f.div /= g;
  }
  if (f.mul < 1 || f.mul > kExprLimit || f.add > kExprLimit || f.add < -kExprLimit ||
      f.div > kExprLimit || f.names.size() > 8)
    return Dim::dynamic();
  std::string core = f.mul == 1 ? "" : std::to_string(f.mul) + "*";
  for (std::size_t i = 0; i < f.names.size(); ++i) core += (i ? "*" : "") + f.names[i];
  if (f.add) core += (f.add > 0 ? "+" : "-") + std::to_string(f.add > 0 ? f.add : -f.add);
  if (f.div == 1) return Dim::symbol(core);
  if (f.mul == 1 && f.add == 0 && f.names.size() == 1)
    return Dim::symbol(core + "/" + std::to_string(f.div));
  return Dim::symbol("(" + core + ")/" + std::to_string(f.div));
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

}  // namespace

Dim dim_affine(const Dim& d, std::int64_t mul, std::int64_t add, std::int64_t div) {
  if (mul < 1 || div < 1 || !small(mul) || !small(add) || !small(div)) return Dim::dynamic();
  using wide = __int128;
  if (d.is_fixed()) {
    const auto v = small(d.value()) ? fit(wide{d.value()} * mul + add) : std::nullopt;
    return v ? Dim(floor_div(*v, div)) : Dim::dynamic();
  }
  auto f = affine_of(d);
  if (!f) return Dim::dynamic();
  std::optional<std::int64_t> m = f->mul, a, q;
  if (f->div == 1) {  // floor(((m*B + a) * mul + add) / div)
    m = fit(wide{f->mul} * mul), a = fit(wide{f->add} * mul + add), q = div;
  } else if (mul == 1) {
    // floor((floor((m*B + a)/q) + add)/div) = floor((m*B + a + add*q)/(q*div))
    a = fit(wide{f->add} + wide{add} * f->div), q = fit(wide{f->div} * div);
  } else {
    return Dim::dynamic();  // floor(x/q) * mul is no floor of one quotient
  }
  if (!m || !a || !q) return Dim::dynamic();
  f->mul = *m, f->add = *a, f->div = *q;
  return dim_of(*f);
}

Dim dim_mul(const Dim& a, const Dim& b) {
  if (a.is_fixed() && b.is_fixed()) {
    const auto v = small(a.value()) && small(b.value())
                       ? fit(static_cast<__int128>(a.value()) * b.value())
                       : std::nullopt;
    return v ? Dim(*v) : Dim::dynamic();
  }
  if (b.is_fixed()) return dim_mul(b, a);
  if (a.is_fixed()) {
    if (a.value() == 0) return Dim(0);
    auto f = affine_of(b);
    if (a.value() == 1) return b;
    if (!f || f->div != 1) return Dim::dynamic();
    return dim_affine(b, a.value(), 0, 1);
  }
  auto fa = affine_of(a), fb = affine_of(b);
  if (!fa || !fb || fa->div != 1 || fb->div != 1 || fa->add || fb->add) return Dim::dynamic();
  const auto m = fit(static_cast<__int128>(fa->mul) * fb->mul);
  if (!m) return Dim::dynamic();
  Affine f;
  f.mul = *m;
  f.names = fa->names;
  f.names.insert(f.names.end(), fb->names.begin(), fb->names.end());
  std::sort(f.names.begin(), f.names.end());
  return dim_of(f);
}

Dim dim_add(const Dim& a, const Dim& b) {
  if (a.is_fixed() && b.is_fixed())
    return small(a.value()) && small(b.value()) ? Dim(a.value() + b.value()) : Dim::dynamic();
  if (b.is_fixed()) return dim_add(b, a);
  if (a.is_fixed()) return small(a.value()) ? dim_affine(b, 1, a.value(), 1) : Dim::dynamic();
  auto fa = affine_of(a), fb = affine_of(b);
  if (!fa || !fb || fa->div != 1 || fb->div != 1 || fa->names != fb->names) return Dim::dynamic();
  fa->mul += fb->mul, fa->add += fb->add;
  return dim_of(*fa);
}

Dim dim_div_exact(const Dim& a, std::int64_t c) {
  if (c < 1) return Dim::dynamic();
  if (a.is_fixed()) return a.value() % c == 0 ? Dim(a.value() / c) : Dim::dynamic();
  auto f = affine_of(a);
  if (!f || f->div != 1 || f->mul % c != 0 || f->add % c != 0) return Dim::dynamic();
  f->mul /= c, f->add /= c;
  return dim_of(*f);
}

std::int64_t dim_value(const Dim& d, const std::function<std::int64_t(const std::string&)>& bind) {
  if (d.is_fixed()) return d.value();
  const auto f = affine_of(d);
  if (!f) return kDynamic;
  std::int64_t base = 1;
  for (const auto& n : f->names) {
    const std::int64_t v = bind(n);
    const auto b = v < 0 ? std::nullopt : fit(static_cast<__int128>(base) * v);
    if (!b) return kDynamic;
    base = *b;
  }
  const __int128 num = static_cast<__int128>(f->mul) * base + f->add;
  if (num > std::numeric_limits<std::int64_t>::max() || num < 0) return kDynamic;
  return floor_div(static_cast<std::int64_t>(num), f->div);
}

Dim dim_product(const std::vector<Dim>& dims, std::size_t begin, std::size_t end) {
  Dim p(1);
  for (std::size_t i = begin; i < end; ++i) p = dim_mul(p, dims[i]);
  return p;
}

}  // namespace kiln
