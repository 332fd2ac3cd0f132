// Reduce family: Reduce*, ArgMax, ArgMin, TopK, CumSum, Einsum — hand-computed cases, laws over
// random shapes, and the errors of bad attributes and shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using i64 = std::int64_t;

namespace {

using test::node;
using test::run;

Tensor run1(const Node& n, const std::vector<Tensor>& ins) { return run(n, ins)[0]; }

Tensor axes_tensor(std::vector<i64> a) {
  const i64 n = static_cast<i64>(a.size());
  return Tensor::from<i64>({n}, a);
}

Tensor random_tensor(std::mt19937& rng, std::vector<i64> dims, double lo = -2, double hi = 2) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<std::size_t>(product(dims)));
  for (auto& x : v) x = u(rng);
  return Tensor::from_doubles(DType::f32, dims, v);
}

std::vector<i64> random_dims(std::mt19937& rng, int max_rank = 4) {
  std::uniform_int_distribution<int> r(1, max_rank), d(1, 4);
  std::vector<i64> dims(r(rng));
  for (auto& x : dims) x = d(rng);
  return dims;
}

void check_close(const Tensor& got, const Tensor& want, double tol = 1e-5) {
  REQUIRE(got.dims() == want.dims());
  const auto g = got.to_doubles(), w = want.to_doubles();
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(w[i])) {
      CHECK(std::isnan(g[i]));
      continue;
    }
    if (std::isinf(w[i])) {
      CHECK(g[i] == w[i]);
      continue;
    }
    CHECK(g[i] == doctest::Approx(w[i]).epsilon(tol).scale(1.0));
  }
}

Tensor map(const Tensor& t, double (*f)(double)) {
  auto v = t.to_doubles();
  for (auto& x : v) x = f(x);
  return Tensor::from_doubles(t.dtype(), t.dims(), v);
}

}  // namespace

// ---- Reduce* ------------------------------------------------------------------------------

TEST_CASE("ReduceSum by hand, with and without keepdims") {
  const Tensor x = Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor s1 = run1(node("ReduceSum", 2), {x, axes_tensor({1})});
  CHECK(s1.dims() == std::vector<i64>{2, 1});
  CHECK(s1.to_doubles() == std::vector<double>{6, 15});
  const Tensor s0 = run1(node("ReduceSum", 2, {{"keepdims", i64{0}}}), {x, axes_tensor({-2})});
  CHECK(s0.dims() == std::vector<i64>{3});
  CHECK(s0.to_doubles() == std::vector<double>{5, 7, 9});
  const Tensor all = run1(node("ReduceSum", 1, {{"keepdims", i64{0}}}), {x});
  CHECK(all.dims().empty());
  CHECK(all.to_doubles() == std::vector<double>{21});
  const Tensor all_kept = run1(node("ReduceSum", 2), {x, axes_tensor({})});
  CHECK(all_kept.dims() == std::vector<i64>{1, 1});
}

TEST_CASE("Reduce* by hand: mean, max, min, prod, l1, l2, log_sum, log_sum_exp, sum_square") {
  const Tensor x = Tensor::from<float>({2, 2}, {1, -2, 3, 4});
  auto red = [&](const char* op) {
    return run1(node(op, 2, {{"keepdims", i64{0}}}), {x, axes_tensor({1})});
  };
  check_close(red("ReduceMean"), Tensor::from<float>({2}, {-0.5f, 3.5f}));
  check_close(red("ReduceMax"), Tensor::from<float>({2}, {1, 4}));
  check_close(red("ReduceMin"), Tensor::from<float>({2}, {-2, 3}));
  check_close(red("ReduceProd"), Tensor::from<float>({2}, {-2, 12}));
  check_close(red("ReduceL1"), Tensor::from<float>({2}, {3, 7}));
  check_close(red("ReduceL2"), Tensor::from<float>({2}, {std::sqrt(5.0f), 5}));
  check_close(red("ReduceSumSquare"), Tensor::from<float>({2}, {5, 25}));
  check_close(red("ReduceLogSumExp"),
              Tensor::from<float>({2}, {std::log(std::exp(1.0f) + std::exp(-2.0f)),
                                        std::log(std::exp(3.0f) + std::exp(4.0f))}));
  const Tensor pos = Tensor::from<float>({2, 2}, {1, 2, 3, 4});
  check_close(run1(node("ReduceLogSum", 2, {{"keepdims", i64{0}}}), {pos, axes_tensor({0})}),
              Tensor::from<float>({2}, {std::log(4.0f), std::log(6.0f)}));
}

TEST_CASE("law: reducing several axes at once equals reducing them one at a time") {
  std::mt19937 rng(7);
  for (const char* op : {"ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"}) {
    for (int trial = 0; trial < 40; ++trial) {
      const auto dims = random_dims(rng);
      const Tensor x = random_tensor(rng, dims, 0.5, 1.5);
      std::vector<i64> axes;
      for (i64 a = 0; a < static_cast<i64>(dims.size()); ++a)
        if (rng() % 2) axes.push_back(a);
      if (axes.empty()) axes.push_back(0);
      const Tensor once = run1(node(op, 2), {x, axes_tensor(axes)});
      Tensor step = x;
      for (i64 a : axes) step = run1(node(op, 2), {step, axes_tensor({a})});
      CAPTURE(op);
      CAPTURE(dims_to_string(dims));
      check_close(once, step);
    }
  }
}

TEST_CASE("law: single-axis ReduceSum equals a hand loop, over random shapes") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const auto dims = random_dims(rng);
    const i64 axis = static_cast<i64>(rng() % dims.size());
    const Tensor x = random_tensor(rng, dims);
    const Tensor got = run1(node("ReduceSum", 2, {{"keepdims", i64{0}}}), {x, axes_tensor({axis})});
    i64 outer = 1, inner = 1;
    for (i64 d = 0; d < axis; ++d) outer *= dims[d];
    for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
    const auto v = x.to_doubles();
    std::vector<double> want;
    for (i64 o = 0; o < outer; ++o)
      for (i64 i = 0; i < inner; ++i) {
        double s = 0;
        for (i64 k = 0; k < dims[axis]; ++k) s += v[(o * dims[axis] + k) * inner + i];
        want.push_back(s);
      }
    auto out_dims = dims;
    out_dims.erase(out_dims.begin() + axis);
    check_close(got, Tensor::from_doubles(DType::f32, out_dims, want));
  }
}

TEST_CASE("law: the derived reductions are ReduceSum of a transformed input") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 30; ++trial) {
    const auto dims = random_dims(rng);
    const Tensor x = random_tensor(rng, dims, 0.1, 2.0);
    std::vector<i64> axes{static_cast<i64>(rng() % dims.size())};
    auto red = [&](const char* op, const Tensor& t) {
      return run1(node(op, 2), {t, axes_tensor(axes)});
    };
    const Tensor sum = red("ReduceSum", x);
    const i64 count = dims[axes[0]];
    auto scaled = sum.to_doubles();
    for (auto& v : scaled) v /= static_cast<double>(count);
    check_close(red("ReduceMean", x), Tensor::from_doubles(DType::f32, sum.dims(), scaled));
    check_close(red("ReduceL1", x), red("ReduceSum", map(x, [](double v) { return std::abs(v); })));
    check_close(red("ReduceSumSquare", x),
                red("ReduceSum", map(x, [](double v) { return v * v; })));
    check_close(red("ReduceL2", x),
                map(red("ReduceSumSquare", x), [](double v) { return std::sqrt(v); }));
    check_close(red("ReduceLogSum", x), map(sum, [](double v) { return std::log(v); }));
    check_close(red("ReduceLogSumExp", x),
                map(red("ReduceSum", map(x, [](double v) { return std::exp(v); })),
                    [](double v) { return std::log(v); }));
  }
}

TEST_CASE("ReduceLogSumExp is stable for large inputs") {
  const Tensor x = Tensor::from<float>({2}, {1000, 1000});
  check_close(run1(node("ReduceLogSumExp", 1, {{"keepdims", i64{0}}}), {x}),
              Tensor::from<float>({}, {1000 + std::log(2.0f)}));
}

TEST_CASE("empty-set reductions give the ONNX reference's identities") {
  const Tensor x(DType::f32, {2, 0, 4});
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<std::pair<const char*, double>> cases = {
      {"ReduceSum", 0},       {"ReduceProd", 1},      {"ReduceMax", -inf},
      {"ReduceMin", inf},     {"ReduceL1", 0},        {"ReduceL2", 0},
      {"ReduceSumSquare", 0}, {"ReduceLogSum", -inf}, {"ReduceLogSumExp", -inf}};
  for (const auto& [op, want] : cases) {
    CAPTURE(op);
    const Tensor y = run1(node(op, 2), {x, axes_tensor({1})});
    CHECK(y.dims() == std::vector<i64>{2, 1, 4});
    for (double v : y.to_doubles()) CHECK(v == want);
  }
  const Tensor mean = run1(node("ReduceMean", 2), {x, axes_tensor({1})});
  for (double v : mean.to_doubles()) CHECK(std::isnan(v));
  // Reducing a non-empty axis of an empty tensor gives an empty tensor.
  const Tensor y = run1(node("ReduceSum", 2), {x, axes_tensor({2})});
  CHECK(y.dims() == std::vector<i64>{2, 0, 1});
  const Tensor imax = run1(node("ReduceMax", 2), {Tensor(DType::i32, {0, 3}), axes_tensor({0})});
  for (double v : imax.to_doubles()) CHECK(v == std::numeric_limits<std::int32_t>::min());
}

TEST_CASE("noop_with_empty_axes keeps the input (each element its own set)") {
  const Tensor x = Tensor::from<float>({2, 2}, {1, -2, 3, -4});
  const Node sum = node("ReduceSum", 1, {{"noop_with_empty_axes", i64{1}}});
  check_close(run1(sum, {x}), x);
  const Node sum2 = node("ReduceSum", 2, {{"noop_with_empty_axes", i64{1}}});
  check_close(run1(sum2, {x, axes_tensor({})}), x);
  check_close(run1(node("ReduceL1", 1, {{"noop_with_empty_axes", i64{1}}}), {x}),
              Tensor::from<float>({2, 2}, {1, 2, 3, 4}));
}

TEST_CASE("Reduce* in integer, bool and 16-bit float dtypes") {
  const Tensor xi = Tensor::from<std::int32_t>({2, 3}, {1, 2, 4, -7, 5, 9});
  const Tensor s = run1(node("ReduceSum", 2, {{"keepdims", i64{0}}}), {xi, axes_tensor({1})});
  CHECK(s.dtype() == DType::i32);
  CHECK(s.to_doubles() == std::vector<double>{7, 7});
  const Tensor m = run1(node("ReduceMean", 2, {{"keepdims", i64{0}}}), {xi, axes_tensor({1})});
  CHECK(m.to_doubles() == std::vector<double>{2, 2});  // 7/3 truncates
  const Tensor p =
      run1(node("ReduceProd", 1, {{"keepdims", i64{0}}}), {Tensor::from<i64>({3}, {3, -4, 5})});
  CHECK(p.to_doubles() == std::vector<double>{-60});
  const Tensor b = Tensor::from<bool>({2, 2}, {true, false, false, false});
  CHECK(run1(node("ReduceMax", 2), {b, axes_tensor({1})}).to_doubles() ==
        std::vector<double>{1, 0});
  CHECK(run1(node("ReduceMin", 2), {b, axes_tensor({1})}).to_doubles() ==
        std::vector<double>{0, 0});
  const Tensor h = Tensor::from_doubles(DType::f16, {4}, {0.5, 0.25, 1, 2});
  const Tensor hs = run1(node("ReduceSum", 1, {{"keepdims", i64{0}}}), {h});
  CHECK(hs.dtype() == DType::f16);
  CHECK(hs.to_doubles() == std::vector<double>{3.75});
  const Tensor bf = Tensor::from_doubles(DType::bf16, {3}, {1, 2, 4});
  CHECK(run1(node("ReduceMax", 1), {bf}).to_doubles() == std::vector<double>{4});
}

TEST_CASE("Reduce* shape rules: constant axes, dynamic axes, errors") {
  auto graph = [](i64 keepdims, bool const_axes, std::vector<i64> axes, Dim n_axes = Dim(2)) {
    Graph g;
    g.inputs.push_back({"x", TensorType{DType::f32, Shape{Dim::symbol("N"), 3, 4, 5}}});
    if (const_axes)
      g.weights["axes"] = axes_tensor(axes);
    else
      g.inputs.push_back({"axes", TensorType{DType::i64, Shape{n_axes}}});
    Node n = node("ReduceMean", 0, {{"keepdims", keepdims}});
    n.name = "mean1";
    n.inputs = {"x", "axes"};
    n.outputs = {"y"};
    g.add_node(n);
    g.outputs = {"y"};
    return g;
  };
  Graph a = graph(1, true, {1, -1});
  a.infer();
  CHECK(a.type_of("y").to_string() == "f32[N,1,4,1]");
  Graph b = graph(0, true, {1, -1});
  b.infer();
  CHECK(b.type_of("y").to_string() == "f32[N,4]");
  Graph c = graph(1, false, {});
  c.infer();
  CHECK(c.type_of("y").shape.rank() == 4);
  Graph d = graph(0, false, {});  // two axes, known at run time: rank 2
  d.infer();
  CHECK(d.type_of("y").to_string() == "f32[?,?]");
  Graph d2 = graph(0, false, {}, Dim::symbol("K"));
  CHECK_THROWS_WITH_AS(d2.infer(),
                       doctest::Contains("[ReduceMean 'mean1'] axes must be a constant"),
                       UnsupportedError);
  Graph dup = graph(0, true, {1, -3});
  CHECK_THROWS_WITH_AS(dup.infer(), "[ReduceMean 'mean1'] axes 1,-3 repeat axis 1", ShapeError);
  Graph e = graph(1, true, {4});
  CHECK_THROWS_WITH_AS(e.infer(), "[ReduceMean 'mean1'] axis 4 out of range for rank 4",
                       ShapeError);
  CHECK_THROWS_WITH_AS(run1(node("ReduceSum", 2), {Tensor(DType::f32, {2}), axes_tensor({3})}),
                       "[ReduceSum 'n'] axis 3 out of range for rank 1", Error);
}

// ---- ArgMax, ArgMin -------------------------------------------------------------------------

TEST_CASE("ArgMax and ArgMin by hand, with ties and select_last_index") {
  const Tensor x = Tensor::from<float>({2, 3}, {1, 5, 5, 2, 0, 0});
  auto arg = [&](const char* op, i64 axis, i64 keep, i64 last) {
    return run1(node(op, 1, {{"axis", axis}, {"keepdims", keep}, {"select_last_index", last}}),
                {x});
  };
  const Tensor a = arg("ArgMax", 1, 1, 0);
  CHECK(a.dtype() == DType::i64);
  CHECK(a.dims() == std::vector<i64>{2, 1});
  CHECK(a.to_doubles() == std::vector<double>{1, 0});
  CHECK(arg("ArgMax", 1, 0, 1).to_doubles() == std::vector<double>{2, 0});
  CHECK(arg("ArgMin", -1, 0, 0).to_doubles() == std::vector<double>{0, 1});
  CHECK(arg("ArgMin", 1, 0, 1).to_doubles() == std::vector<double>{0, 2});
  CHECK(arg("ArgMax", 0, 0, 0).to_doubles() == std::vector<double>{1, 0, 0});
  CHECK_THROWS_WITH_AS(arg("ArgMax", 2, 1, 0), "[ArgMax 'n'] axis 2 out of range for rank 2",
                       Error);
}

TEST_CASE("law: the value at ArgMax is ReduceMax, over random shapes and dtypes") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    const auto dims = random_dims(rng);
    const i64 axis = static_cast<i64>(rng() % dims.size());
    Tensor x = random_tensor(rng, dims, -3, 3);
    if (trial % 2) x = x.cast(DType::i32);  // integers: many ties
    for (bool is_max : {true, false}) {
      const Tensor idx = run1(node(is_max ? "ArgMax" : "ArgMin", 1, {{"axis", axis}}), {x});
      const Tensor val =
          run1(node(is_max ? "ReduceMax" : "ReduceMin", 2), {x, axes_tensor({axis})});
      i64 inner = 1;
      for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
      const auto xi = idx.to_int64s();
      const auto xv = x.to_doubles();
      const auto vv = val.to_doubles();
      for (std::size_t k = 0; k < xi.size(); ++k) {
        const i64 o = static_cast<i64>(k) / inner, i = static_cast<i64>(k) % inner;
        CHECK(xv[(o * dims[axis] + xi[k]) * inner + i] == vv[k]);
      }
    }
  }
}

// ---- TopK ----------------------------------------------------------------------------------

TEST_CASE("TopK by hand: largest, smallest, ties keep the lower index first") {
  const Tensor x = Tensor::from<float>({2, 4}, {3, 1, 3, 2, 0, 7, 7, 7});
  const Tensor k2 = Tensor::from<i64>({1}, {2});
  auto outs = run(node("TopK", 2, {}, 2), {x, k2});
  CHECK(outs[0].dims() == std::vector<i64>{2, 2});
  CHECK(outs[0].to_doubles() == std::vector<double>{3, 3, 7, 7});
  CHECK(outs[1].to_doubles() == std::vector<double>{0, 2, 1, 2});
  outs = run(node("TopK", 2, {{"largest", i64{0}}}, 2), {x, k2});
  CHECK(outs[0].to_doubles() == std::vector<double>{1, 2, 0, 7});
  CHECK(outs[1].to_doubles() == std::vector<double>{1, 3, 0, 1});
  outs = run(node("TopK", 2, {{"axis", i64{0}}}, 2), {x, Tensor::from<i64>({1}, {1})});
  CHECK(outs[0].to_doubles() == std::vector<double>{3, 7, 7, 7});
  CHECK(outs[1].to_doubles() == std::vector<double>{0, 1, 1, 1});
  CHECK_THROWS_WITH_AS(run(node("TopK", 2, {}, 2), {x, Tensor::from<i64>({1}, {5})}),
                       "[TopK 'n'] K = 5 must be in [0, 4] (axis 1 of [2,4])", Error);
}

TEST_CASE("law: TopK values are sorted, gathered by the indices, and the k extreme values") {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 40; ++trial) {
    const i64 n = 1 + static_cast<i64>(rng() % 12);
    const i64 k = static_cast<i64>(rng() % (n + 1));
    const Tensor x = random_tensor(rng, {n}, -3, 3).cast(trial % 2 ? DType::i64 : DType::f32);
    const bool largest = trial % 3 != 0;
    auto outs =
        run(node("TopK", 2, {{"largest", i64{largest}}}, 2), {x, Tensor::from<i64>({1}, {k})});
    const auto v = outs[0].to_doubles();
    const auto idx = outs[1].to_int64s();
    const auto xv = x.to_doubles();
    auto sorted = xv;
    std::stable_sort(sorted.begin(), sorted.end(),
                     [&](double a, double b) { return largest ? a > b : a < b; });
    REQUIRE(v.size() == static_cast<std::size_t>(k));
    for (i64 j = 0; j < k; ++j) {
      CHECK(v[j] == sorted[j]);
      CHECK(xv[idx[j]] == v[j]);
      if (j > 0 && v[j] == v[j - 1]) CHECK(idx[j] > idx[j - 1]);
    }
  }
}

TEST_CASE("TopK shape rule uses a constant K") {
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape{Dim::symbol("N"), 10}}});
  g.weights["k"] = Tensor::from<i64>({1}, {3});
  Node n = node("TopK", 0, {}, 0);
  n.name = "top";
  n.inputs = {"x", "k"};
  n.outputs = {"v", "i"};
  g.add_node(n);
  g.outputs = {"v", "i"};
  g.infer();
  CHECK(g.type_of("v").to_string() == "f32[N,3]");
  CHECK(g.type_of("i").to_string() == "i64[N,3]");
  g.weights["k"] = Tensor::from<i64>({1}, {11});
  CHECK_THROWS_WITH_AS(g.infer(), "[TopK 'top'] K = 11 is larger than the axis (10)", ShapeError);
}

// ---- CumSum --------------------------------------------------------------------------------

TEST_CASE("CumSum by hand: exclusive, reverse, axis, integers") {
  const Tensor x = Tensor::from<float>({5}, {1, 2, 3, 4, 5});
  const Tensor ax = Tensor::from<std::int32_t>({}, {0});
  auto cs = [&](i64 excl, i64 rev) {
    return run1(node("CumSum", 2, {{"exclusive", excl}, {"reverse", rev}}), {x, ax}).to_doubles();
  };
  CHECK(cs(0, 0) == std::vector<double>{1, 3, 6, 10, 15});
  CHECK(cs(1, 0) == std::vector<double>{0, 1, 3, 6, 10});
  CHECK(cs(0, 1) == std::vector<double>{15, 14, 12, 9, 5});
  CHECK(cs(1, 1) == std::vector<double>{14, 12, 9, 5, 0});
  const Tensor m = Tensor::from<std::int32_t>({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(run1(node("CumSum", 2), {m, Tensor::from<i64>({1}, {1})}).to_doubles() ==
        std::vector<double>{1, 3, 6, 4, 9, 15});
  CHECK(run1(node("CumSum", 2), {m, Tensor::from<i64>({}, {-2})}).to_doubles() ==
        std::vector<double>{1, 2, 3, 5, 7, 9});
  CHECK_THROWS_WITH_AS(run1(node("CumSum", 2), {m, Tensor::from<i64>({}, {2})}),
                       "[CumSum 'n'] axis 2 out of range for rank 2", Error);
}

TEST_CASE("law: the last inclusive CumSum entry is ReduceSum; exclusive = inclusive - x") {
  std::mt19937 rng(13);
  for (int trial = 0; trial < 40; ++trial) {
    const auto dims = random_dims(rng);
    const i64 axis = static_cast<i64>(rng() % dims.size());
    const Tensor x = random_tensor(rng, dims);
    const Tensor a = Tensor::from<i64>({}, {axis});
    const Tensor inc = run1(node("CumSum", 2, {{"reverse", i64{1}}}), {x, a});
    const Tensor exc =
        run1(node("CumSum", 2, {{"reverse", i64{1}}, {"exclusive", i64{1}}}), {x, a});
    const Tensor sum = run1(node("ReduceSum", 2), {x, axes_tensor({axis})});
    i64 inner = 1;
    for (std::size_t d = axis + 1; d < dims.size(); ++d) inner *= dims[d];
    const auto iv = inc.to_doubles(), ev = exc.to_doubles(), xv = x.to_doubles(),
               sv = sum.to_doubles();
    for (std::size_t k = 0; k < sv.size(); ++k) {  // reverse: the first entry holds the total
      const i64 o = static_cast<i64>(k) / inner, i = static_cast<i64>(k) % inner;
      CHECK(iv[(o * dims[axis]) * inner + i] == doctest::Approx(sv[k]).epsilon(1e-5));
    }
    for (std::size_t k = 0; k < iv.size(); ++k)
      CHECK(ev[k] == doctest::Approx(iv[k] - xv[k]).epsilon(1e-4).scale(1));
  }
}

// ---- Einsum --------------------------------------------------------------------------------

TEST_CASE("Einsum: matmul, transpose, trace, diagonal, inner and outer products") {
  std::mt19937 rng(17);
  const Tensor a = random_tensor(rng, {3, 4});
  const Tensor b = random_tensor(rng, {4, 5});
  const auto av = a.to_doubles(), bv = b.to_doubles();
  std::vector<double> mm(15, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 5; ++j)
      for (int k = 0; k < 4; ++k) mm[i * 5 + j] += av[i * 4 + k] * bv[k * 5 + j];
  const Tensor want = Tensor::from_doubles(DType::f32, {3, 5}, mm);
  check_close(run1(node("Einsum", 2, {{"equation", std::string("ij,jk->ik")}}), {a, b}), want);
  check_close(run1(node("Einsum", 2, {{"equation", std::string("ij, jk")}}), {a, b}),
              want);  // implicit
  std::vector<double> tr(12);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) tr[j * 3 + i] = av[i * 4 + j];
  check_close(run1(node("Einsum", 1, {{"equation", std::string("ij->ji")}}), {a}),
              Tensor::from_doubles(DType::f32, {4, 3}, tr));
  check_close(run1(node("Einsum", 1, {{"equation", std::string("ba")}}), {a}),  // implicit: sorted
              Tensor::from_doubles(DType::f32, {4, 3}, tr));
  const Tensor sq = Tensor::from<float>({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(run1(node("Einsum", 1, {{"equation", std::string("ii")}}), {sq}).to_doubles() ==
        std::vector<double>{15});
  CHECK(run1(node("Einsum", 1, {{"equation", std::string("ii->i")}}), {sq}).to_doubles() ==
        std::vector<double>{1, 5, 9});
  CHECK(run1(node("Einsum", 1, {{"equation", std::string("ij->")}}), {sq}).to_doubles() ==
        std::vector<double>{45});
  const Tensor u = Tensor::from<double>({3}, {1, 2, 3}), v = Tensor::from<double>({3}, {4, 5, 6});
  CHECK(run1(node("Einsum", 2, {{"equation", std::string("i,i")}}), {u, v}).to_doubles() ==
        std::vector<double>{32});
  const Tensor outer = run1(node("Einsum", 2, {{"equation", std::string("i,j->ij")}}), {u, v});
  CHECK(outer.dims() == std::vector<i64>{3, 3});
  CHECK(outer.to_doubles()[5] == 12);
}

TEST_CASE("law: batched Einsum with a broadcast ellipsis equals per-batch matmuls") {
  std::mt19937 rng(19);
  for (int trial = 0; trial < 20; ++trial) {
    const i64 B = 1 + rng() % 3, M = 1 + rng() % 4, K = 1 + rng() % 4, N = 1 + rng() % 4;
    const Tensor a = random_tensor(rng, {B, M, K});
    const Tensor b = random_tensor(rng, {1, K, N});  // broadcast over the batch
    const Tensor y =
        run1(node("Einsum", 2, {{"equation", std::string("...mk,...kn->...mn")}}), {a, b});
    REQUIRE(y.dims() == std::vector<i64>{B, M, N});
    const auto av = a.to_doubles(), bv = b.to_doubles(), yv = y.to_doubles();
    for (i64 z = 0; z < B; ++z)
      for (i64 i = 0; i < M; ++i)
        for (i64 j = 0; j < N; ++j) {
          double s = 0;
          for (i64 k = 0; k < K; ++k) s += av[(z * M + i) * K + k] * bv[k * N + j];
          CHECK(yv[(z * M + i) * N + j] == doctest::Approx(s).epsilon(1e-5));
        }
    // Batch diagonal: "...ii->...i".
    const Tensor sq = random_tensor(rng, {B, M, M});
    const Tensor dg = run1(node("Einsum", 1, {{"equation", std::string("...ii ->...i")}}), {sq});
    REQUIRE(dg.dims() == std::vector<i64>{B, M});
    for (i64 z = 0; z < B; ++z)
      for (i64 i = 0; i < M; ++i)
        CHECK(dg.to_doubles()[z * M + i] == sq.to_doubles()[(z * M + i) * M + i]);
  }
}

TEST_CASE("Einsum shape rule and errors") {
  Graph g;
  g.inputs.push_back({"a", TensorType{DType::f32, Shape{Dim::symbol("B"), 2, 3}}});
  g.inputs.push_back({"b", TensorType{DType::f32, Shape{3, 4}}});
  Node n = node("Einsum", 0, {{"equation", std::string("bij,jk->bik")}});
  n.name = "e";
  n.inputs = {"a", "b"};
  n.outputs = {"y"};
  g.add_node(n);
  g.outputs = {"y"};
  g.infer();
  CHECK(g.type_of("y").to_string() == "f32[B,2,4]");
  g.nodes[0].attrs["equation"] = std::string("bij,kj->bik");
  CHECK_THROWS_WITH_AS(g.infer(), "[Einsum 'e'] expected 3 size of an einsum subscript, got 4",
                       ShapeError);
  g.nodes[0].attrs["equation"] = std::string("ij,jk->ik");
  CHECK_THROWS_WITH_AS(g.infer(), doctest::Contains("operand 0 has rank 3 but 2 subscripts"),
                       ShapeError);
  g.nodes[0].attrs["equation"] = std::string("bij->bik");
  CHECK_THROWS_WITH_AS(
      g.infer(), doctest::Contains("has 1 operand terms but the node has 2 inputs"), ShapeError);
  const Tensor sq(DType::f32, {2, 2});
  CHECK_THROWS_AS(run1(node("Einsum", 1, {{"equation", std::string("ii->z")}}), {sq}), Error);
  CHECK_THROWS_AS(run1(node("Einsum", 1, {{"equation", std::string("i1")}}), {sq}), Error);
}

TEST_CASE(
    "axes known only at run time: the output rank from their count, a scalar counting as one") {
  // fuzz_onnx found a scalar axes input read as if it were 1-D (tests/fuzz/regressions/onnx/
  // reduce-scalar-axes-input.onnx).
  for (const Shape& axes : {Shape{}, Shape::of({1}), Shape::of({2})}) {
    Graph g;
    g.inputs.push_back({"data", {DType::f32, Shape::of({3, 4, 5})}});
    g.inputs.push_back({"axes", {DType::i64, axes}});
    Node n;
    n.op = "ReduceLogSum";
    n.name = "r";
    n.inputs = {"data", "axes"};
    n.outputs = {"y"};
    n.attrs["keepdims"] = std::int64_t{0};
    g.nodes.push_back(n);
    g.outputs = {"y"};
    g.infer();
    const std::size_t count = axes.rank() == 0 ? 1 : static_cast<std::size_t>(axes[0].value());
    CHECK(g.type_of("y").shape.rank() == 3 - count);
  }
}
