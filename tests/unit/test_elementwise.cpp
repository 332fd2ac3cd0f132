// Elementwise op family: shape rules and reference kernels. Laws over random broadcast shapes,
// hand-computed and numpy-checked values, and the errors that bad inputs give.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"

using namespace kiln;
using reference::run_node;

namespace {

Node make_node(const std::string& op, std::size_t inputs,
               std::map<std::string, Attribute> attrs = {}) {
  Node n;
  n.op = op;
  n.name = "n";
  for (std::size_t i = 0; i < inputs; ++i) n.inputs.push_back("x" + std::to_string(i));
  n.outputs = {"y"};
  n.attrs = std::move(attrs);
  return n;
}

Tensor run1(const Node& n, const std::vector<Tensor>& ins) {
  std::vector<const Tensor*> p;
  for (const auto& t : ins) p.push_back(t.defined() ? &t : nullptr);
  return run_node(n, p).at(0);
}

Tensor run_op(const std::string& op, const std::vector<Tensor>& ins,
              std::map<std::string, Attribute> attrs = {}) {
  return run1(make_node(op, ins.size(), std::move(attrs)), ins);
}

/// Infers the output type of a one-node graph whose inputs have the given types.
TensorType infer_op(const std::string& op, const std::vector<TensorType>& ins,
                    std::map<std::string, Attribute> attrs = {}) {
  Graph g;
  for (std::size_t i = 0; i < ins.size(); ++i)
    g.inputs.push_back({"x" + std::to_string(i), ins[i]});
  g.add_node(make_node(op, ins.size(), std::move(attrs)));
  g.outputs = {"y"};
  g.infer();
  return g.type_of("y");
}

Tensor f32(std::vector<std::int64_t> dims, std::vector<float> v) { return Tensor::from(dims, v); }
Tensor f64(std::vector<std::int64_t> dims, std::vector<double> v) { return Tensor::from(dims, v); }
template <class T>
Tensor vec(std::vector<T> v) {
  const auto n = static_cast<std::int64_t>(v.size());
  return Tensor::from<T>({n}, v);
}

void check_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(t.numel() == static_cast<std::int64_t>(want.size()));
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i);
    if (std::isnan(want[i]))
      CHECK(std::isnan(t.get(i)));
    else
      CHECK(t.get(i) == doctest::Approx(want[i]).epsilon(tol));
  }
}

template <class T>
std::vector<T> values_of(const Tensor& t) {
  auto s = t.values<T>();
  return {s.begin(), s.end()};
}

/// Random dims for a broadcast: an output shape and, for each input, a right-aligned suffix of
/// it with some dims set to 1.
struct BroadcastCase {
  std::vector<std::int64_t> out;
  std::vector<std::vector<std::int64_t>> ins;
};
BroadcastCase random_case(std::mt19937& rng, std::size_t inputs) {
  BroadcastCase c;
  const std::size_t rank = rng() % 6;
  for (std::size_t i = 0; i < rank; ++i) c.out.push_back(rng() % 9 == 0 ? 1 : 1 + rng() % 4);
  if (rank > 0 && rng() % 20 == 0) c.out[rng() % rank] = 0;
  bool has_full_rank = false;
  for (std::size_t k = 0; k < inputs; ++k) {
    const std::size_t r = (k + 1 == inputs && !has_full_rank) ? rank : rng() % (rank + 1);
    has_full_rank |= r == rank;
    std::vector<std::int64_t> d(c.out.end() - static_cast<std::ptrdiff_t>(r), c.out.end());
    for (auto& v : d)
      if (rng() % 3 == 0) v = 1;
    c.ins.push_back(d);
  }
  // The output is what the inputs broadcast to (a dim set to 1 everywhere shrinks it).
  for (std::size_t a = 0; a < rank; ++a) {
    std::int64_t m = 1;
    for (const auto& d : c.ins) {
      const std::size_t off = rank - d.size();
      if (a >= off && d[a - off] != 1) m = d[a - off];
    }
    c.out[a] = m;
  }
  return c;
}

/// Index of output element `flat` in an input of dims `in` under broadcasting (independent of the
/// kernels' run-based plan: unravel, clamp broadcast axes, ravel).
std::int64_t source_index(std::int64_t flat, const std::vector<std::int64_t>& out,
                          const std::vector<std::int64_t>& in) {
  std::vector<std::int64_t> coord(out.size());
  for (std::size_t a = out.size(); a-- > 0;) {
    coord[a] = flat % out[a];
    flat /= out[a];
  }
  std::int64_t idx = 0;
  const std::size_t off = out.size() - in.size();
  for (std::size_t a = 0; a < in.size(); ++a) idx = idx * in[a] + (in[a] == 1 ? 0 : coord[off + a]);
  return idx;
}

Tensor random_tensor(std::mt19937& rng, DType t, const std::vector<std::int64_t>& dims) {
  Tensor x(t, dims);
  std::uniform_int_distribution<int> d(-20, 20);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.set(i, d(rng) * 0.25);
  return x;
}

}  // namespace

// ---- broadcasting laws -----------------------------------------------------------------------

TEST_CASE("binary ops broadcast like numpy over random shapes") {
  std::mt19937 rng(7);
  for (int iter = 0; iter < 400; ++iter) {
    const BroadcastCase c = random_case(rng, 2);
    CAPTURE(dims_to_string(c.ins[0]));
    CAPTURE(dims_to_string(c.ins[1]));
    const Tensor a = random_tensor(rng, DType::f64, c.ins[0]);
    const Tensor b = random_tensor(rng, DType::f64, c.ins[1]);
    const Tensor s = run_op("Sub", {a, b});
    const Tensor lt = run_op("Less", {a, b});
    REQUIRE(s.dims() == c.out);
    REQUIRE(lt.dtype() == DType::boolean);
    bool ok = true;
    for (std::int64_t i = 0; i < s.numel(); ++i) {
      const double x = a.get(source_index(i, c.out, c.ins[0]));
      const double y = b.get(source_index(i, c.out, c.ins[1]));
      ok &= s.get(i) == x - y && lt.get(i) == (x < y ? 1.0 : 0.0);
    }
    CHECK(ok);
    // Shape inference agrees with the kernel, with a symbolic dim kept where both inputs have it.
    const TensorType t =
        infer_op("Sub", {{DType::f64, Shape::of(c.ins[0])}, {DType::f64, Shape::of(c.ins[1])}});
    CHECK(t.shape == Shape::of(c.out));
  }
}

TEST_CASE("Where and variadic ops broadcast three inputs over random shapes") {
  std::mt19937 rng(11);
  for (int iter = 0; iter < 300; ++iter) {
    const BroadcastCase c = random_case(rng, 3);
    Tensor cond(DType::boolean, c.ins[0]);
    for (std::int64_t i = 0; i < cond.numel(); ++i) cond.set(i, rng() % 2);
    const Tensor x = random_tensor(rng, DType::f32, c.ins[1]);
    const Tensor y = random_tensor(rng, DType::f32, c.ins[2]);
    const Tensor w = run_op("Where", {cond, x, y});
    const Tensor x0 = random_tensor(rng, DType::f32, c.ins[0]);
    const Tensor sum = run_op("Sum", {x0, x, y});
    const Tensor mx = run_op("Max", {x0, x, y});
    REQUIRE(w.dims() == c.out);
    REQUIRE(sum.dims() == c.out);
    bool ok = true;
    for (std::int64_t i = 0; i < w.numel(); ++i) {
      const double cv = cond.get(source_index(i, c.out, c.ins[0]));
      const double a = x0.get(source_index(i, c.out, c.ins[0]));
      const double xv = x.get(source_index(i, c.out, c.ins[1]));
      const double yv = y.get(source_index(i, c.out, c.ins[2]));
      ok &= w.get(i) == (cv != 0 ? xv : yv);
      ok &= sum.get(i) == a + xv + yv;  // quarters: exact
      ok &= mx.get(i) == std::max({a, xv, yv});
    }
    CHECK(ok);
  }
}

TEST_CASE("broadcast mismatches name the node and the dims") {
  CHECK_THROWS_WITH_AS(run_op("Add", {f32({2, 3}, {1, 2, 3, 4, 5, 6}), f32({2}, {1, 2})}),
                       "[Add 'n'] cannot broadcast dims 3 and 2", ShapeError);
  CHECK_THROWS_WITH_AS(
      infer_op("Mul", {{DType::f32, Shape{Dim::symbol("N"), 3}}, {DType::f32, Shape{4}}}),
      "[Mul 'n'] cannot broadcast [N,3] with [4]: dims 3 and 4 differ", ShapeError);
  CHECK_THROWS_WITH_AS(infer_op("Add", {{DType::f32, Shape{3}}, {DType::f16, Shape{3}}}),
                       "[Add 'n'] inputs 0 and 1 must have the same dtype, got f32 and f16",
                       ShapeError);
  CHECK_THROWS_WITH_AS(run_op("Add", {f32({1}, {1}), f64({1}, {1})}),
                       "[Add 'n'] inputs 0 and 1 must have the same dtype, got f32 and f64", Error);
  CHECK_THROWS_AS(run_op("Add", {Tensor::from<bool>({1}, {true}), Tensor::from<bool>({1}, {true})}),
                  UnsupportedError);
  CHECK_THROWS_WITH_AS(infer_op("And", {{DType::f32, Shape{3}}, {DType::f32, Shape{3}}}),
                       "[And 'n'] input 0 has dtype f32; this op accepts bool", ShapeError);
}

TEST_CASE("shape inference keeps symbols and dynamic dims") {
  const Dim n = Dim::symbol("N");
  CHECK(infer_op("Add", {{DType::f32, Shape{n, 1, 4}}, {DType::f32, Shape{3, 1}}}).shape ==
        (Shape{n, 3, 4}));
  CHECK(infer_op("Add", {{DType::f32, Shape{n}}, {DType::f32, Shape{n}}}).shape == (Shape{n}));
  CHECK(infer_op("Add", {{DType::f32, Shape{Dim::dynamic()}}, {DType::f32, Shape{5}}}).shape ==
        (Shape{5}));
  CHECK(infer_op("Equal", {{DType::i64, Shape{2}}, {DType::i64, Shape{}}}) ==
        TensorType{DType::boolean, Shape{2}});
  CHECK(infer_op("Where",
                 {{DType::boolean, Shape{2, 1}}, {DType::i32, Shape{3}}, {DType::i32, Shape{}}}) ==
        TensorType{DType::i32, Shape{2, 3}});
  CHECK(infer_op("Sum", {{DType::f16, Shape{2, 1}},
                         {DType::f16, Shape{3}},
                         {DType::f16, Shape{1, 1, 1}}}) == TensorType{DType::f16, Shape{1, 2, 3}});
  CHECK(infer_op("Pow", {{DType::i32, Shape{2}}, {DType::f32, Shape{}}}).dtype == DType::i32);
  CHECK(infer_op("IsNaN", {{DType::bf16, Shape{n}}}) == TensorType{DType::boolean, Shape{n}});
}

// ---- arithmetic --------------------------------------------------------------------------------

TEST_CASE("integer arithmetic truncates and wraps like numpy") {
  using I = std::int32_t;
  auto a = vec<I>({7, -7, 7, -7, 5, std::numeric_limits<I>::min()});
  auto b = vec<I>({2, 2, -2, -2, 0, -1});
  CHECK(values_of<I>(run_op("Div", {a, b})) ==
        std::vector<I>{3, -3, -3, 3, 0, std::numeric_limits<I>::min()});
  auto big = vec<I>({std::numeric_limits<I>::max()});
  CHECK(values_of<I>(run_op("Add", {big, vec<I>({1})}))[0] == std::numeric_limits<I>::min());
  CHECK(values_of<I>(run_op("Mul", {big, vec<I>({2})}))[0] == -2);
  auto u16 = vec<std::uint16_t>({65535, 3});
  CHECK(values_of<std::uint16_t>(run_op("Mul", {u16, u16})) == std::vector<std::uint16_t>{1, 9});
  CHECK(values_of<std::uint8_t>(
            run_op("Sub", {vec<std::uint8_t>({1}), vec<std::uint8_t>({2})}))[0] == 255);
  CHECK(values_of<std::int8_t>(
            run_op("Div", {vec<std::int8_t>({-128}), vec<std::int8_t>({-1})}))[0] == -128);
}

TEST_CASE("float arithmetic in every float dtype") {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    CAPTURE(dtype_name(t));
    const Tensor a = Tensor::from_doubles(t, {2, 2}, {1, 2, 3, 4});
    const Tensor b = Tensor::from_doubles(t, {2}, {0.5, -2});
    check_close(run_op("Add", {a, b}), {1.5, 0, 3.5, 2});
    check_close(run_op("Sub", {a, b}), {0.5, 4, 2.5, 6});
    check_close(run_op("Mul", {a, b}), {0.5, -4, 1.5, -8});
    check_close(run_op("Div", {a, b}), {2, -1, 6, -2});
    CHECK(run_op("Div", {a, b}).dtype() == t);
  }
  const Tensor z = run_op("Div", {f32({3}, {1, -1, 0}), f32({3}, {0, 0, 0})});
  CHECK(std::isinf(z.get(0)));
  CHECK(z.get(1) < 0);
  CHECK(std::isnan(z.get(2)));
}

TEST_CASE("Mod follows Python sign rules unless fmod=1") {
  using I = std::int32_t;
  const auto a = vec<I>({-4, 7, -7, 5});
  const auto b = vec<I>({3, -3, -3, 0});
  CHECK(values_of<I>(run_op("Mod", {a, b})) == std::vector<I>{2, -2, -1, 0});  // numpy.mod
  CHECK(values_of<I>(run_op("Mod", {a, b}, {{"fmod", std::int64_t{1}}})) ==
        std::vector<I>{-1, 1, -1, 0});
  CHECK(values_of<std::int64_t>(
            run_op("Mod", {vec<std::int64_t>({std::numeric_limits<std::int64_t>::min()}),
                           vec<std::int64_t>({-1})}))[0] == 0);
  check_close(run_op("Mod", {f64({4}, {-4.5, 7.5, -0.0, 3.0}), f64({4}, {2, -2, 3, -3})}),
              {1.5, -0.5, 0, -0.0});
  check_close(
      run_op("Mod", {f32({2}, {-4.5, 7.5}), f32({2}, {2, -2})}, {{"fmod", std::int64_t{1}}}),
      {-0.5, 1.5});
  CHECK(std::signbit(run_op("Mod", {f64({1}, {3}), f64({1}, {-3})}).get(0)));
  CHECK_THROWS_WITH_AS(infer_op("Mod", {{DType::i32, Shape{1}}, {DType::i32, Shape{1}}},
                                {{"fmod", std::int64_t{2}}}),
                       "[Mod 'n'] attribute 'fmod' must be 0 or 1, got 2", ShapeError);
}

TEST_CASE("Pow takes exponents of another dtype") {
  const auto fb = f32({4}, {2, 3, 4, -2});
  check_close(run_op("Pow", {fb, vec<std::int64_t>({3, 2, -1, 3})}), {8, 9, 0.25, -8});
  check_close(run_op("Pow", {fb, f32({}, {0.5})}), {std::sqrt(2.0), std::sqrt(3.0), 2, NAN});
  const auto ib = vec<std::int32_t>({2, 3, -2, 1, 5});
  CHECK(values_of<std::int32_t>(run_op("Pow", {ib, vec<std::int32_t>({10, 3, 3, -5, -1})})) ==
        std::vector<std::int32_t>{1024, 27, -8, 1, 0});
  CHECK(values_of<std::int64_t>(run_op("Pow", {vec<std::int64_t>({2, 9}), f32({2}, {0.5, 0.5})})) ==
        std::vector<std::int64_t>{1, 3});  // numpy: float result truncated
  CHECK(run_op("Pow", {ib, vec<std::uint64_t>({1, 1, 1, 1, 1})}).dtype() == DType::i32);
}

TEST_CASE("bit shifts and bitwise ops") {
  const auto x = vec<std::uint8_t>({16, 4, 1, 255});
  const auto s = vec<std::uint8_t>({1, 2, 3, 8});
  CHECK(values_of<std::uint8_t>(run_op("BitShift", {x, s}, {{"direction", std::string("LEFT")}})) ==
        std::vector<std::uint8_t>{32, 16, 8, 0});
  CHECK(
      values_of<std::uint8_t>(run_op("BitShift", {x, s}, {{"direction", std::string("RIGHT")}})) ==
      std::vector<std::uint8_t>{8, 1, 0, 0});
  CHECK(values_of<std::uint64_t>(run_op("BitShift",
                                        {vec<std::uint64_t>({1}), vec<std::uint64_t>({63})},
                                        {{"direction", std::string("LEFT")}}))[0] == (1ull << 63));
  CHECK_THROWS_WITH_AS(infer_op("BitShift", {{DType::u8, Shape{1}}, {DType::u8, Shape{1}}},
                                {{"direction", std::string("UP")}}),
                       "[BitShift 'n'] attribute 'direction' must be 'LEFT' or 'RIGHT', got 'UP'",
                       ShapeError);
  CHECK_THROWS_AS(run_op("BitShift", {vec<std::int32_t>({1}), vec<std::int32_t>({1})},
                         {{"direction", std::string("LEFT")}}),
                  UnsupportedError);
  const auto a = vec<std::int16_t>({0x0f0f, -1});
  const auto b = vec<std::int16_t>({0x00ff, 0x1234});
  CHECK(values_of<std::int16_t>(run_op("BitwiseAnd", {a, b})) ==
        std::vector<std::int16_t>{0x000f, 0x1234});
  CHECK(values_of<std::int16_t>(run_op("BitwiseOr", {a, b})) ==
        std::vector<std::int16_t>{0x0fff, -1});
  CHECK(values_of<std::int16_t>(run_op("BitwiseXor", {a, b})) ==
        std::vector<std::int16_t>{0x0ff0, static_cast<std::int16_t>(~0x1234)});
  CHECK(values_of<std::uint8_t>(run_op("BitwiseNot", {vec<std::uint8_t>({0, 0xf0})})) ==
        std::vector<std::uint8_t>{0xff, 0x0f});
}

// ---- comparison, logic, variadic ---------------------------------------------------------------

TEST_CASE("comparisons give bool, NaN compares false") {
  const auto a = f32({4}, {1, 2, NAN, 3});
  const auto b = f32({4}, {1, 3, NAN, 2});
  CHECK(values_of<bool>(run_op("Equal", {a, b})) == std::vector<bool>{true, false, false, false});
  CHECK(values_of<bool>(run_op("Less", {a, b})) == std::vector<bool>{false, true, false, false});
  CHECK(values_of<bool>(run_op("Greater", {a, b})) == std::vector<bool>{false, false, false, true});
  CHECK(values_of<bool>(run_op("LessOrEqual", {a, b})) ==
        std::vector<bool>{true, true, false, false});
  CHECK(values_of<bool>(run_op("GreaterOrEqual", {a, b})) ==
        std::vector<bool>{true, false, false, true});
  const auto u = vec<std::uint64_t>({0, ~0ull});
  CHECK(values_of<bool>(run_op("Less", {u, vec<std::uint64_t>({1, 1})})) ==
        std::vector<bool>{true, false});
  const auto t = Tensor::from<bool>({4}, {true, true, false, false});
  const auto f = Tensor::from<bool>({4}, {true, false, true, false});
  CHECK(values_of<bool>(run_op("Equal", {t, f})) == std::vector<bool>{true, false, false, true});
  CHECK(values_of<bool>(run_op("And", {t, f})) == std::vector<bool>{true, false, false, false});
  CHECK(values_of<bool>(run_op("Or", {t, f})) == std::vector<bool>{true, true, true, false});
  CHECK(values_of<bool>(run_op("Xor", {t, f})) == std::vector<bool>{false, true, true, false});
  CHECK(values_of<bool>(run_op("Not", {t})) == std::vector<bool>{false, false, true, true});
}

TEST_CASE("Sum, Mean, Max, Min over one or more inputs") {
  const auto a = f32({2, 1}, {1, 2});
  const auto b = f32({3}, {10, 20, 30});
  check_close(run_op("Sum", {a}), {1, 2});
  check_close(run_op("Sum", {a, b}), {11, 21, 31, 12, 22, 32});
  check_close(run_op("Mean", {a, b, f32({}, {3})}),
              {14.0 / 3, 24.0 / 3, 34.0 / 3, 5, 25.0 / 3, 35.0 / 3});
  check_close(run_op("Max", {a, b, f32({}, {25})}), {25, 25, 30, 25, 25, 30});
  check_close(run_op("Min", {f32({2}, {1, NAN}), f32({2}, {NAN, 1})}), {NAN, NAN});
  CHECK(values_of<std::uint8_t>(
            run_op("Max", {vec<std::uint8_t>({1, 200}), vec<std::uint8_t>({100, 2})})) ==
        std::vector<std::uint8_t>{100, 200});
  CHECK(values_of<std::int64_t>(run_op("Min", {vec<std::int64_t>({-5, 7})})) ==
        std::vector<std::int64_t>{-5, 7});
  // Half-precision sums accumulate in double and round once.
  const Tensor h = Tensor::from_doubles(DType::f16, {1}, {2048});
  const Tensor one = Tensor::from_doubles(DType::f16, {1}, {1});
  CHECK(run_op("Sum", {h, one, one}).get(0) == 2050);
  CHECK_THROWS_AS(run_op("Sum", {vec<std::int32_t>({1})}), UnsupportedError);
}

TEST_CASE("Where selects with a bool condition") {
  const auto c = Tensor::from<bool>({2, 1}, {true, false});
  const auto x = vec<std::int64_t>({1, 2, 3});
  const auto y = Tensor::from<std::int64_t>({}, {-1});
  CHECK(values_of<std::int64_t>(run_op("Where", {c, x, y})) ==
        std::vector<std::int64_t>{1, 2, 3, -1, -1, -1});
  CHECK_THROWS_WITH_AS(run_op("Where", {x, x, x}),
                       "[Where 'n'] condition (input 0) must be bool, got i64", Error);
}

// ---- unary math --------------------------------------------------------------------------------

TEST_CASE("unary math matches libm in every float dtype") {
  struct Case {
    const char* op;
    double (*f)(double);
    std::vector<double> in;
  };
  const std::vector<Case> cases = {
      {"Exp", [](double v) { return std::exp(v); }, {-2, 0, 1.5}},
      {"Log", [](double v) { return std::log(v); }, {0.5, 1, 7}},
      {"Sqrt", [](double v) { return std::sqrt(v); }, {0, 2, 9}},
      {"Reciprocal", [](double v) { return 1 / v; }, {-4, 0.5, 3}},
      {"Floor", [](double v) { return std::floor(v); }, {-1.5, 0.2, 2.7}},
      {"Ceil", [](double v) { return std::ceil(v); }, {-1.5, 0.2, 2.7}},
      {"Sin", [](double v) { return std::sin(v); }, {-1, 0, 2}},
      {"Cos", [](double v) { return std::cos(v); }, {-1, 0, 2}},
      {"Tan", [](double v) { return std::tan(v); }, {-1, 0, 1.2}},
      {"Asin", [](double v) { return std::asin(v); }, {-1, 0, 0.5}},
      {"Acos", [](double v) { return std::acos(v); }, {-1, 0, 0.5}},
      {"Atan", [](double v) { return std::atan(v); }, {-9, 0, 0.5}},
      {"Sinh", [](double v) { return std::sinh(v); }, {-2, 0, 0.5}},
      {"Cosh", [](double v) { return std::cosh(v); }, {-2, 0, 0.5}},
      {"Asinh", [](double v) { return std::asinh(v); }, {-2, 0, 0.5}},
      {"Acosh", [](double v) { return std::acosh(v); }, {1, 2, 10}},
      {"Atanh", [](double v) { return std::atanh(v); }, {-0.5, 0, 0.9}},
      {"Erf", [](double v) { return std::erf(v); }, {-1, 0, 0.3}},
      {"Tanh", [](double v) { return std::tanh(v); }, {-3, 0, 0.5}},
  };
  for (const auto& c : cases)
    for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      CAPTURE(c.op);
      CAPTURE(dtype_name(t));
      const Tensor x = Tensor::from_doubles(t, {3}, c.in);
      std::vector<double> want;
      for (std::int64_t i = 0; i < 3; ++i) want.push_back(c.f(x.get(i)));  // input as stored
      const Tensor y = run_op(c.op, {x});
      CHECK(y.dtype() == t);
      // Rounded once to the dtype: within half an ulp of its precision.
      const double tol = t == DType::f64   ? 1e-15
                         : t == DType::f32 ? 6e-8
                         : t == DType::f16 ? 4.9e-4
                                           : 3.9e-3;
      check_close(y, want, tol);
    }
  CHECK_THROWS_AS(run_op("Exp", {vec<std::int32_t>({1})}), UnsupportedError);
}

TEST_CASE("Round is half to even; Abs, Neg and Sign cover integers") {
  check_close(run_op("Round", {f32({7}, {0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6})}),
              {0, 2, 2, -0.0, -2, 2, 3});
  using I = std::int8_t;
  CHECK(values_of<I>(run_op("Abs", {vec<I>({-128, -3, 4})})) == std::vector<I>{-128, 3, 4});
  CHECK(values_of<I>(run_op("Neg", {vec<I>({-128, -3, 4})})) == std::vector<I>{-128, 3, -4});
  CHECK(values_of<I>(run_op("Sign", {vec<I>({-128, 0, 4})})) == std::vector<I>{-1, 0, 1});
  CHECK(values_of<std::uint32_t>(run_op("Sign", {vec<std::uint32_t>({0, 9})})) ==
        std::vector<std::uint32_t>{0, 1});
  check_close(run_op("Sign", {f32({4}, {-2.5, 0, 3, NAN})}), {-1, 0, 1, NAN});
  check_close(run_op("Abs", {f64({2}, {-2.5, 0})}), {2.5, 0});
  CHECK_THROWS_AS(run_op("Neg", {vec<std::uint8_t>({1})}), UnsupportedError);
}

TEST_CASE("IsNaN and IsInf with detect flags") {
  const auto x = f32({4}, {1, NAN, INFINITY, -INFINITY});
  CHECK(values_of<bool>(run_op("IsNaN", {x})) == std::vector<bool>{false, true, false, false});
  CHECK(values_of<bool>(run_op("IsInf", {x})) == std::vector<bool>{false, false, true, true});
  CHECK(values_of<bool>(run_op("IsInf", {x}, {{"detect_negative", std::int64_t{0}}})) ==
        std::vector<bool>{false, false, true, false});
  CHECK(values_of<bool>(run_op("IsInf", {x}, {{"detect_positive", std::int64_t{0}}})) ==
        std::vector<bool>{false, false, false, true});
  const Tensor h = Tensor::from_doubles(DType::f16, {2}, {INFINITY, 65504});
  CHECK(values_of<bool>(run_op("IsInf", {h})) == std::vector<bool>{true, false});
}

// ---- activations -------------------------------------------------------------------------------

TEST_CASE("activations match numpy") {
  const std::vector<double> in = {-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 10.0};
  const Tensor x = f64({7}, in);
  using A = std::map<std::string, Attribute>;
  // Values from numpy (float64), see the formulas in ONNX's operator docs.
  check_close(run_op("Sigmoid", {x}),
              {0.047425873177566781, 0.2689414213699951, 0.43782349911420193, 0.5,
               0.62245933120185459, 0.88079707797788231, 0.99995460213129761},
              1e-14);
  check_close(run_op("Softplus", {x}),
              {0.048587351573742062, 0.31326168751822286, 0.57593941987884356, 0.69314718055994529,
               0.97407698418010669, 2.1269280110429727, 10.000045398899218},
              1e-14);
  check_close(run_op("Mish", {x}),
              {-0.14564746127562461, -0.30340146137410895, -0.129926963679141, 0,
               0.37524521130489508, 1.9439589595339946, 9.9999999587806698},
              1e-13);
  check_close(run_op("Gelu", {x}),
              {-0.0040496940948903104, -0.15865525393145707, -0.10032341857926907, 0,
               0.34573123063700656, 1.9544997361036416, 10},
              1e-13);
  check_close(run_op("Gelu", {x}, A{{"approximate", std::string("tanh")}}),
              {-0.0036373920817729943, -0.15880800939172329, -0.100324649298315, 0,
               0.34571400982514394, 1.954597694087775, 10},
              1e-13);
  check_close(run_op("Elu", {x}, A{{"alpha", 0.5}}),
              {-0.47510646581606802, -0.31606027941427883, -0.11059960846429756, 0, 0.5, 2, 10},
              1e-14);
  check_close(run_op("Selu", {x}),
              {-1.6705687287671118, -1.1113307378125625, -0.38889019747811893, 0,
               0.52535049367774023, 2.1014019747109609, 10.507009873554804},
              1e-7);
  check_close(run_op("Celu", {x}, A{{"alpha", 2.0}}),
              {-1.5537396797031404, -0.78693868057473315, -0.2350061948308092, 0, 0.5, 2, 10},
              1e-14);
  check_close(run_op("HardSwish", {x}),
              {0, -0.33333333333333337, -0.11458333333333333, 0, 0.29166666666666669,
               1.6666666666666665, 10},
              1e-14);
  check_close(run_op("Swish", {x}, A{{"alpha", 0.5}}),
              {-0.54727657141906905, -0.37754066879814541, -0.11719765665656094, 0,
               0.28108825044289903, 1.4621171572600098, 9.9330714907571522},
              1e-14);
  check_close(run_op("Relu", {x}), {0, 0, 0, 0, 0.5, 2, 10});
  check_close(run_op("LeakyRelu", {x}), {-0.03, -0.01, -0.0025, 0, 0.5, 2, 10});
  check_close(run_op("LeakyRelu", {x}, A{{"alpha", 0.5}}), {-1.5, -0.5, -0.125, 0, 0.5, 2, 10});
  check_close(run_op("Softsign", {x}), {-0.75, -0.5, -0.2, 0, 1.0 / 3, 2.0 / 3, 10.0 / 11});
  check_close(run_op("HardSigmoid", {x}), {0, 0.3, 0.45, 0.5, 0.6, 0.9, 1});
  check_close(run_op("HardSigmoid", {x}, A{{"alpha", 0.5}, {"beta", 0.25}}),
              {0, 0, 0.125, 0.25, 0.5, 1, 1});
  check_close(run_op("ThresholdedRelu", {x}), {0, 0, 0, 0, 0, 2, 10});
  check_close(run_op("ThresholdedRelu", {x}, A{{"alpha", 0.25}}), {0, 0, 0, 0, 0.5, 2, 10});
  check_close(run_op("Shrink", {x}), {-3, -1, 0, 0, 0, 2, 10});
  check_close(run_op("Shrink", {x}, A{{"bias", 1.0}, {"lambd", 0.5}}), {-2, 0, 0, 0, 0, 1, 9});
  CHECK(values_of<std::int32_t>(
            run_op("Shrink", {vec<std::int32_t>({-5, 0, 5})}, A{{"bias", 2.0}, {"lambd", 1.0}})) ==
        std::vector<std::int32_t>{-3, 0, 3});
  CHECK(values_of<std::int32_t>(run_op("Relu", {vec<std::int32_t>({-5, 0, 5})})) ==
        std::vector<std::int32_t>{0, 0, 5});
  CHECK_THROWS_WITH_AS(run_op("Gelu", {x}, A{{"approximate", std::string("erf")}}),
                       "[Gelu 'n'] attribute 'approximate' = 'erf' (expected 'none' or 'tanh')",
                       UnsupportedError);
  // Large magnitudes do not overflow.
  check_close(run_op("Sigmoid", {f32({2}, {-1000, 1000})}), {0, 1});
  check_close(run_op("Softplus", {f32({2}, {-1000, 1000})}), {0, 1000});
}

TEST_CASE("activations keep 16-bit dtypes and round once") {
  const Tensor x = Tensor::from_doubles(DType::f16, {3}, {-1, 0.5, 3});
  const Tensor y = run_op("Sigmoid", {x});
  CHECK(y.dtype() == DType::f16);
  for (std::int64_t i = 0; i < 3; ++i) {
    const double exact = 1 / (1 + std::exp(-x.get(i)));
    CHECK(y.get(i) == f16::to_float(f16::from_float(static_cast<float>(exact))));
  }
}

TEST_CASE("Clip with optional scalar bounds") {
  const auto x = f32({5}, {-3, -1, 0, 1, 3});
  const Tensor none;
  check_close(run_op("Clip", {x}), {-3, -1, 0, 1, 3});
  check_close(run_op("Clip", {x, f32({}, {-1}), f32({}, {2})}), {-1, -1, 0, 1, 2});
  check_close(run_op("Clip", {x, none, f32({}, {0})}), {-3, -1, 0, 0, 0});
  check_close(run_op("Clip", {x, f32({1}, {0})}), {0, 0, 0, 1, 3});
  check_close(run_op("Clip", {x, f32({}, {2}), f32({}, {1})}), {1, 1, 1, 1, 1});  // numpy.clip
  CHECK(values_of<std::int8_t>(
            run_op("Clip", {vec<std::int8_t>({-128, 0, 127}), vec<std::int8_t>({-5})})) ==
        std::vector<std::int8_t>{-5, 0, 127});
  CHECK_THROWS_WITH_AS(run_op("Clip", {x, f32({2}, {0, 1})}),
                       "[Clip 'n'] min (input 1) must be a scalar, got dims [2]", Error);
  CHECK_THROWS_WITH_AS(
      infer_op("Clip", {{DType::f32, Shape{5}}, {DType::f32, Shape{}}, {DType::f32, Shape{3}}}),
      "[Clip 'n'] max (input 2) must be a scalar, got shape [3]", ShapeError);
  CHECK(infer_op("Clip", {{DType::i32, Shape{Dim::symbol("N")}}}).shape ==
        (Shape{Dim::symbol("N")}));
}

TEST_CASE("PRelu broadcasts its slope to the input") {
  const auto x = f32({2, 3}, {-1, -2, 3, -4, 5, -6});
  check_close(run_op("PRelu", {x, f32({3}, {0.5, 1, 2})}), {-0.5, -2, 3, -2, 5, -12});
  check_close(run_op("PRelu", {x, f32({2, 1}, {0.1, 0.0})}), {-0.1, -0.2, 3, 0, 5, 0});
  CHECK(values_of<std::int32_t>(
            run_op("PRelu", {vec<std::int32_t>({-3, 4}), vec<std::int32_t>({2})})) ==
        std::vector<std::int32_t>{-6, 4});
  CHECK_THROWS_WITH_AS(run_op("PRelu", {f32({3}, {1, 2, 3}), f32({2, 3}, {1, 2, 3, 4, 5, 6})}),
                       "[PRelu 'n'] slope [2,3] cannot broadcast to input [3]", Error);
  CHECK_THROWS_WITH_AS(infer_op("PRelu", {{DType::f32, Shape{2, 1}}, {DType::f32, Shape{3}}}),
                       "[PRelu 'n'] slope [3] cannot broadcast to input [2,1]", ShapeError);
}

// ---- Cast --------------------------------------------------------------------------------------

TEST_CASE("dtype_from_onnx maps TensorProto codes") {
  CHECK(dtype_from_onnx(1) == DType::f32);
  CHECK(dtype_from_onnx(7) == DType::i64);
  CHECK(dtype_from_onnx(9) == DType::boolean);
  CHECK(dtype_from_onnx(10) == DType::f16);
  CHECK(dtype_from_onnx(16) == DType::bf16);
  CHECK(dtype_from_onnx(13) == DType::u64);
  CHECK_THROWS_AS(dtype_from_onnx(8), UnsupportedError);
  CHECK_THROWS_AS(dtype_from_onnx(99), UnsupportedError);
  CHECK(dtype_from_onnx(17) == DType::f8e4m3fn);
  CHECK(dtype_from_onnx(24) == DType::f8e8m0);
  CHECK(dtype_from_onnx(22) == DType::i4);
  CHECK(dtype_from_onnx(23) == DType::f4e2m1);
  try {
    dtype_from_onnx(27);
    FAIL("no throw");
  } catch (const UnsupportedError& e) {
    CHECK(std::string(e.what()).find("FLOAT6E2M3") != std::string::npos);
  }
}

TEST_CASE("Cast converts with ONNX semantics") {
  const auto x = f32({5}, {-2.7f, -0.5f, 0.0f, 1.9f, 300.5f});
  using A = std::map<std::string, Attribute>;
  CHECK(values_of<std::int32_t>(run_op("Cast", {x}, A{{"to", std::int64_t{6}}})) ==
        std::vector<std::int32_t>{-2, 0, 0, 1, 300});
  CHECK(values_of<bool>(run_op("Cast", {x}, A{{"to", std::int64_t{9}}})) ==
        std::vector<bool>{true, true, false, true, true});
  const Tensor h = run_op("Cast", {x}, A{{"to", std::int64_t{10}}});
  CHECK(h.dtype() == DType::f16);
  check_close(h, {-2.69921875, -0.5, 0, 1.900390625, 300.5});
  // f64 -> f16 rounds once: 1 + 2^-11 + 2^-30 is just above a half tie, so it rounds up; going
  // through float first would round to the tie and then to even (down).
  const double v = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -30);
  CHECK(run_op("Cast", {f64({1}, {v})}, A{{"to", std::int64_t{10}}}).get(0) ==
        1.0 + std::ldexp(1.0, -10));
  CHECK(run_op("Cast", {vec<std::int64_t>({70000})}, A{{"to", std::int64_t{16}}}).get(0) == 70144);
  CHECK(values_of<std::uint8_t>(
            run_op("CastLike", {vec<std::int32_t>({7}), vec<std::uint8_t>({0})})) ==
        std::vector<std::uint8_t>{7});
  CHECK(infer_op("Cast", {{DType::f32, Shape{2}}}, A{{"to", std::int64_t{7}}}) ==
        TensorType{DType::i64, Shape{2}});
  CHECK(infer_op("CastLike", {{DType::f32, Shape{2}}, {DType::bf16, Shape{}}}) ==
        TensorType{DType::bf16, Shape{2}});
  CHECK_THROWS_AS(run_op("Cast", {x}, A{{"to", std::int64_t{8}}}), UnsupportedError);
  try {
    infer_op("Cast", {{DType::f32, Shape{2}}}, A{{"to", std::int64_t{14}}});
    FAIL("no throw");
  } catch (const UnsupportedError& e) {
    CHECK(std::string(e.what()).rfind("[Cast 'n'] attribute 'to': ONNX data type 14 (COMPLEX64)",
                                      0) == 0);
  }
}
