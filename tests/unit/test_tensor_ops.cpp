// Tensor op family (layout, indexing, shape, resampling): shape rules and reference kernels.
// Hand-computed values (many from the ONNX operator docs), laws over random shapes (split then
// concat is the identity, shape rules agree with the kernels' output dims, ...), every dtype for
// the data-movement ops, and the errors that bad inputs give.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/reference/executor.hpp"

using namespace kiln;
using reference::run_node;
using i64 = std::int64_t;
using Attrs = std::map<std::string, Attribute>;

namespace {

/// A node with inputs x0..x{n-1}; an undefined Tensor in `ins` becomes an omitted input.
Node make_node(const std::string& op, const std::vector<Tensor>& ins, Attrs attrs = {},
               std::size_t outputs = 1) {
  Node n;
  n.op = op;
  n.name = "n";
  for (std::size_t i = 0; i < ins.size(); ++i)
    n.inputs.push_back(ins[i].defined() ? "x" + std::to_string(i) : "");
  for (std::size_t i = 0; i < outputs; ++i) n.outputs.push_back("y" + std::to_string(i));
  n.attrs = std::move(attrs);
  return n;
}

std::vector<Tensor> run_all(const std::string& op, const std::vector<Tensor>& ins, Attrs attrs = {},
                            std::size_t outputs = 1) {
  std::vector<const Tensor*> p;
  for (const auto& t : ins) p.push_back(t.defined() ? &t : nullptr);
  return run_node(make_node(op, ins, std::move(attrs), outputs), p);
}

Tensor run(const std::string& op, const std::vector<Tensor>& ins, Attrs attrs = {}) {
  return run_all(op, ins, std::move(attrs)).at(0);
}

/// Output types of a one-node graph. Inputs listed in `constant` become weights (constants for
/// the shape rule); the others are graph inputs of the given types.
std::vector<TensorType> infer(const std::string& op, const std::vector<Tensor>& ins,
                              const std::vector<bool>& constant, Attrs attrs = {},
                              std::size_t outputs = 1,
                              const std::map<std::size_t, TensorType>& types = {}) {
  Graph g;
  for (std::size_t i = 0; i < ins.size(); ++i) {
    if (!ins[i].defined()) continue;
    const std::string name = "x" + std::to_string(i);
    if (i < constant.size() && constant[i])
      g.weights[name] = ins[i];
    else if (types.count(i))
      g.inputs.push_back({name, types.at(i)});
    else
      g.inputs.push_back({name, {ins[i].dtype(), ins[i].shape()}});
  }
  g.add_node(make_node(op, ins, std::move(attrs), outputs));
  for (std::size_t i = 0; i < outputs; ++i) g.outputs.push_back("y" + std::to_string(i));
  g.infer();
  std::vector<TensorType> out;
  for (std::size_t i = 0; i < outputs; ++i) out.push_back(g.type_of("y" + std::to_string(i)));
  return out;
}

Tensor ints(std::vector<i64> v) { return Tensor::from<i64>({static_cast<i64>(v.size())}, v); }
Tensor floats(std::vector<i64> dims, std::vector<float> v) {
  return Tensor::from<float>(std::move(dims), v);
}
Tensor iota(DType t, std::vector<i64> dims, double start = 0) {
  std::vector<double> v(static_cast<std::size_t>(product(dims)));
  std::iota(v.begin(), v.end(), start);
  return Tensor::from_doubles(t, std::move(dims), v);
}
std::vector<double> vals(const Tensor& t) { return t.to_doubles(); }

std::mt19937& rng() {
  static std::mt19937 g(1234);
  return g;
}
i64 rand_int(i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng()); }
std::vector<i64> rand_dims(std::size_t rank, i64 lo = 1, i64 hi = 4) {
  std::vector<i64> d;
  for (std::size_t i = 0; i < rank; ++i) d.push_back(rand_int(lo, hi));
  return d;
}

}  // namespace

// ---- constants and identity ----------------------------------------------------------------

TEST_CASE("Constant takes each value attribute; strings are unsupported") {
  CHECK(vals(run("Constant", {}, {{"value", floats({2}, {1.5f, 2.5f})}})) ==
        std::vector<double>{1.5, 2.5});
  Tensor f = run("Constant", {}, {{"value_float", 0.25}});
  CHECK(f.dtype() == DType::f32);
  CHECK(f.rank() == 0);
  CHECK(f.get(0) == 0.25);
  CHECK(run("Constant", {}, {{"value_floats", std::vector<double>{1, 2}}}).dims() ==
        std::vector<i64>{2});
  Tensor i = run("Constant", {}, {{"value_int", i64{7}}});
  CHECK(i.dtype() == DType::i64);
  CHECK(i.get(0) == 7);
  CHECK(vals(run("Constant", {}, {{"value_ints", std::vector<i64>{3, 4}}})) ==
        std::vector<double>{3, 4});
  CHECK_THROWS_AS(run("Constant", {}, {{"value_string", std::string("a")}}), UnsupportedError);
  CHECK_THROWS_AS(infer("Constant", {}, {}, {{"value_strings", std::vector<std::string>{"a"}}}),
                  UnsupportedError);
  auto t = infer("Constant", {}, {}, {{"value_ints", std::vector<i64>{3, 4, 5}}});
  CHECK(t[0].to_string() == "i64[3]");
}

TEST_CASE("ConstantOfShape fills with the value attribute, f32 zero by default") {
  Tensor z = run("ConstantOfShape", {ints({2, 3})});
  CHECK(z.type_string() == "f32[2,3]");
  CHECK(vals(z) == std::vector<double>(6, 0.0));
  Tensor v = run("ConstantOfShape", {ints({2})}, {{"value", Tensor::from<std::int32_t>({1}, {9})}});
  CHECK(v.type_string() == "i32[2]");
  CHECK(vals(v) == std::vector<double>{9, 9});
  CHECK(run("ConstantOfShape", {ints({0})}).numel() == 0);
  CHECK(infer("ConstantOfShape", {ints({4, 5})}, {true})[0].to_string() == "f32[4,5]");
  CHECK(infer("ConstantOfShape", {ints({4, 5})}, {false})[0].to_string() == "f32[?,?]");
  CHECK_THROWS_AS(infer("ConstantOfShape", {ints({4, 5})}, {false}, {}, 1,
                        {{0, TensorType{DType::i64, Shape{Dim::dynamic()}}}}),
                  UnsupportedError);
}

TEST_CASE("Identity and Dropout pass data through; Dropout's mask is all true") {
  Tensor x = iota(DType::f16, {2, 2});
  CHECK(vals(run("Identity", {x})) == vals(x));
  auto outs = run_all("Dropout", {x, Tensor::scalar<float>(0.5f)}, {}, 2);
  CHECK(vals(outs[0]) == vals(x));
  CHECK(outs[1].type_string() == "bool[2,2]");
  CHECK(vals(outs[1]) == std::vector<double>(4, 1.0));
  CHECK_THROWS_AS(
      run_all("Dropout", {x, Tensor::scalar<float>(0.5f), Tensor::scalar<bool>(true)}, {}, 2),
      UnsupportedError);
  auto t = infer("Dropout", {x}, {false}, {}, 2);
  CHECK(t[1].to_string() == "bool[2,2]");
}

// ---- reshape family --------------------------------------------------------------------------

TEST_CASE("Reshape: 0 copies, -1 infers, allowzero keeps zeros") {
  Tensor x = iota(DType::f32, {2, 3, 4});
  Tensor y = run("Reshape", {x, ints({4, 0, -1})});
  CHECK(y.dims() == std::vector<i64>{4, 3, 2});
  CHECK(vals(y) == vals(x));
  CHECK(run("Reshape", {x, ints({-1})}).dims() == std::vector<i64>{24});
  Tensor e(DType::f32, {0, 3});
  CHECK(run("Reshape", {e, ints({3, 0})}, {{"allowzero", i64{1}}}).dims() ==
        std::vector<i64>{3, 0});
  CHECK_THROWS_WITH_AS(run("Reshape", {x, ints({-1, -1})}),
                       "[Reshape 'n'] reshape target has two -1 dims (0 and 1)", ShapeError);
  CHECK_THROWS_AS(run("Reshape", {x, ints({5, 5})}), ShapeError);
  CHECK_THROWS_AS(run("Reshape", {x, ints({7, -1})}), ShapeError);
}

TEST_CASE(
    "Reshape's shape rule: static with a constant shape, symbols copied or divided, rank "
    "otherwise") {
  Tensor x = iota(DType::f32, {2, 3, 4});
  CHECK(infer("Reshape", {x, ints({4, 0, -1})}, {false, true})[0].to_string() == "f32[4,3,2]");
  const TensorType sym{DType::f32, Shape{Dim::symbol("N"), Dim(3), Dim(4)}};
  CHECK(infer("Reshape", {x, ints({0, -1})}, {false, true}, {}, 1, {{0, sym}})[0].to_string() ==
        "f32[N,12]");
  // An inferred -1 over a symbol: the symbol's product over the fixed dims (N*12/12, N*12/6).
  CHECK(infer("Reshape", {x, ints({-1, 12})}, {false, true}, {}, 1, {{0, sym}})[0].to_string() ==
        "f32[N,12]");
  CHECK(infer("Reshape", {x, ints({-1, 6})}, {false, true}, {}, 1, {{0, sym}})[0].to_string() ==
        "f32[2*N,6]");
  CHECK(infer("Reshape", {x, ints({-1, 8})}, {false, true}, {}, 1, {{0, sym}})[0].to_string() ==
        "f32[?,8]");  // 12*N/8 is no whole multiple of N
  CHECK(infer("Reshape", {x, ints({4, 6})}, {false, false})[0].to_string() == "f32[?,?]");
  CHECK_THROWS_AS(infer("Reshape", {x, ints({4, 6})}, {false, false}, {}, 1,
                        {{1, TensorType{DType::i64, Shape{Dim::dynamic()}}}}),
                  UnsupportedError);
  CHECK_THROWS_WITH_AS(infer("Reshape", {x, ints({5, 5})}, {false, true}),
                       "[Reshape 'n'] expected 24 element count, got 25", ShapeError);
}

TEST_CASE("Flatten, Squeeze, Unsqueeze") {
  Tensor x = iota(DType::i32, {2, 3, 4});
  CHECK(run("Flatten", {x}).dims() == std::vector<i64>{2, 12});
  CHECK(run("Flatten", {x}, {{"axis", i64{0}}}).dims() == std::vector<i64>{1, 24});
  CHECK(run("Flatten", {x}, {{"axis", i64{-1}}}).dims() == std::vector<i64>{6, 4});
  CHECK(run("Flatten", {x}, {{"axis", i64{3}}}).dims() == std::vector<i64>{24, 1});
  CHECK_THROWS_AS(run("Flatten", {x}, {{"axis", i64{4}}}), Error);
  CHECK(infer("Flatten", {x}, {false})[0].to_string() == "i32[2,12]");

  Tensor s = iota(DType::u8, {1, 3, 1, 2});
  CHECK(run("Squeeze", {s}).dims() == std::vector<i64>{3, 2});
  CHECK(run("Squeeze", {s, ints({-2})}).dims() == std::vector<i64>{1, 3, 2});
  CHECK_THROWS_WITH_AS(run("Squeeze", {s, ints({1})}),
                       "[Squeeze 'n'] cannot squeeze axis 1 of size 3 (input [1,3,1,2])", Error);
  CHECK(infer("Squeeze", {s, ints({0, 2})}, {false, true})[0].to_string() == "u8[3,2]");
  CHECK(infer("Squeeze", {s}, {false})[0].to_string() == "u8[3,2]");
  CHECK_THROWS_AS(infer("Squeeze", {s, ints({1})}, {false, true}), ShapeError);
  CHECK_THROWS_AS(infer("Squeeze", {s}, {false}, {}, 1,
                        {{0, TensorType{DType::u8, Shape{Dim(1), Dim::dynamic()}}}}),
                  UnsupportedError);

  Tensor u = iota(DType::f32, {3, 4});
  CHECK(run("Unsqueeze", {u, ints({0, 3})}).dims() == std::vector<i64>{1, 3, 4, 1});
  CHECK(run("Unsqueeze", {u, ints({-1, 1})}).dims() == std::vector<i64>{3, 1, 4, 1});
  CHECK(run("Unsqueeze", {u, ints({2, 0})}).dims() == std::vector<i64>{1, 3, 1, 4});
  CHECK_THROWS_AS(run("Unsqueeze", {u, ints({1, 1})}), ShapeError);
  CHECK(infer("Unsqueeze", {u, ints({0, 3})}, {false, true})[0].to_string() == "f32[1,3,4,1]");
  CHECK(infer("Unsqueeze", {u, ints({0, 3})}, {false, false})[0].to_string() == "f32[?,?,?,?]");
}

TEST_CASE("Transpose: hand example and the inverse-permutation law") {
  Tensor x = iota(DType::f32, {2, 3});
  Tensor y = run("Transpose", {x});
  CHECK(y.dims() == std::vector<i64>{3, 2});
  CHECK(vals(y) == std::vector<double>{0, 3, 1, 4, 2, 5});
  for (int trial = 0; trial < 50; ++trial) {
    const std::size_t r = static_cast<std::size_t>(rand_int(1, 5));
    Tensor t = iota(DType::f64, rand_dims(r));
    std::vector<i64> perm(r), inv(r);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng());
    for (std::size_t i = 0; i < r; ++i) inv[perm[i]] = static_cast<i64>(i);
    Tensor p = run("Transpose", {t}, {{"perm", perm}});
    for (std::size_t i = 0; i < r; ++i) CHECK(p.dim(i) == t.dim(perm[i]));
    CHECK(infer("Transpose", {t}, {false}, {{"perm", perm}})[0].shape == p.shape());
    Tensor back = run("Transpose", {p}, {{"perm", inv}});
    CHECK(back.dims() == t.dims());
    CHECK(vals(back) == vals(t));
  }
  CHECK_THROWS_AS(run("Transpose", {x}, {{"perm", std::vector<i64>{0, 0}}}), Error);
  CHECK_THROWS_AS(infer("Transpose", {x}, {false}, {{"perm", std::vector<i64>{0}}}), ShapeError);
}

// ---- slice, pad, concat, split -------------------------------------------------------------

TEST_CASE("Slice: negative steps, clamping, default axes") {
  Tensor x = iota(DType::f32, {10});
  CHECK(vals(run("Slice", {x, ints({8}), ints({1}), ints({0}), ints({-3})})) ==
        std::vector<double>{8, 5, 2});
  CHECK(vals(run("Slice", {x, ints({-1}), ints({-100}), ints({0}), ints({-4})})) ==
        std::vector<double>{9, 5, 1});
  CHECK(run("Slice", {x, ints({-100}), ints({100})}).numel() == 10);
  CHECK(run("Slice", {x, ints({20}), ints({30})}).numel() == 0);
  CHECK(vals(run("Slice", {x, ints({2}), ints({-6})})) == std::vector<double>{2, 3});
  Tensor m = iota(DType::i64, {3, 4});
  Tensor y = run("Slice", {m, ints({1, 0}), ints({3, 4}), ints({-2, 1}), ints({1, 2})});
  CHECK(y.dims() == std::vector<i64>{2, 2});
  CHECK(vals(y) == std::vector<double>{4, 6, 8, 10});
  CHECK_THROWS_AS(run("Slice", {x, ints({0}), ints({5}), ints({0}), ints({0})}), ShapeError);
  // Shape rule: static with constant inputs, dynamic on the sliced axes otherwise.
  CHECK(infer("Slice", {m, ints({1, 0}), ints({3, 4}), ints({-2, 1}), ints({1, 2})},
              {false, true, true, true, true})[0]
            .to_string() == "i64[2,2]");
  CHECK(infer("Slice", {m, ints({1}), ints({3}), ints({1})}, {false, false, false, true})[0]
            .to_string() == "i64[3,?]");
  CHECK(infer("Slice", {m, ints({1}), ints({3})}, {false, false, false})[0].to_string() ==
        "i64[?,4]");
}

TEST_CASE("Slice law: agrees with a direct loop over random bounds") {
  for (int trial = 0; trial < 300; ++trial) {
    const i64 n = rand_int(0, 8);
    Tensor x = iota(DType::f32, {n});
    const i64 s = rand_int(-12, 12), e = rand_int(-12, 12);
    i64 step = rand_int(-3, 3);
    if (step == 0) step = 1;
    std::vector<double> want;
    // The ONNX spec's clamping: starts into [0, n] (step > 0) or [0, n-1] (step < 0), ends
    // into [0, n] or [-1, n-1]. (numpy differs for a negative start below -n with step < 0.)
    auto norm = [&](i64 v, bool is_start) {
      if (v < 0) v += n;
      if (step > 0) return std::clamp<i64>(v, 0, n);
      return is_start ? std::clamp<i64>(v, 0, n - 1) : std::clamp<i64>(v, -1, n - 1);
    };
    const i64 a = n > 0 ? norm(s, true) : 0, b = n > 0 ? norm(e, false) : 0;
    if (n > 0)
      for (i64 i = a; step > 0 ? i < b : i > b; i += step) want.push_back(static_cast<double>(i));
    Tensor y = run("Slice", {x, ints({s}), ints({e}), ints({0}), ints({step})});
    CHECK_MESSAGE(vals(y) == want, "n=", n, " start=", s, " end=", e, " step=", step);
    CHECK(infer("Slice", {x, ints({s}), ints({e}), ints({0}), ints({step})},
                {false, true, true, true, true})[0]
              .shape == y.shape());
  }
}

TEST_CASE("Pad: constant, reflect, edge, wrap, axes, negative pads") {
  Tensor x = floats({3}, {1, 2, 3});
  CHECK(vals(run("Pad", {x, ints({2, 2})}, {{"mode", std::string("reflect")}})) ==
        std::vector<double>{3, 2, 1, 2, 3, 2, 1});
  CHECK(vals(run("Pad", {x, ints({2, 2})}, {{"mode", std::string("edge")}})) ==
        std::vector<double>{1, 1, 1, 2, 3, 3, 3});
  CHECK(vals(run("Pad", {x, ints({2, 2})}, {{"mode", std::string("wrap")}})) ==
        std::vector<double>{2, 3, 1, 2, 3, 1, 2});
  CHECK(vals(run("Pad", {x, ints({1, 2}), Tensor::scalar<float>(9)})) ==
        std::vector<double>{9, 1, 2, 3, 9, 9});
  CHECK(vals(run("Pad", {x, ints({-1, 1})})) == std::vector<double>{2, 3, 0});
  Tensor m = iota(DType::i32, {2, 2});
  Tensor y = run("Pad", {m, ints({1, 1}), Tensor(), ints({-1})});
  CHECK(y.dims() == std::vector<i64>{2, 4});
  CHECK(vals(y) == std::vector<double>{0, 0, 1, 0, 0, 2, 3, 0});
  CHECK(infer("Pad", {m, ints({1, 1}), Tensor(), ints({-1})}, {false, true, false, true})[0]
            .to_string() == "i32[2,4]");
  CHECK(infer("Pad", {m, ints({1, 1, 0, 0})}, {false, false})[0].to_string() == "i32[?,?]");
  CHECK_THROWS_AS(run("Pad", {x, ints({1})}), Error);
  CHECK_THROWS_AS(run("Pad", {x, ints({1, 1})}, {{"mode", std::string("mirror")}}),
                  UnsupportedError);
  CHECK_THROWS_AS(run("Pad", {x, ints({1, 1}), Tensor::scalar<double>(1)}), Error);
}

TEST_CASE("Pad law: padding then slicing the pad off is the identity, every mode") {
  for (const char* mode : {"constant", "reflect", "edge", "wrap"})
    for (int trial = 0; trial < 20; ++trial) {
      const std::size_t r = static_cast<std::size_t>(rand_int(1, 3));
      Tensor x = iota(DType::bf16, rand_dims(r, 2, 4));
      std::vector<i64> pads(2 * r), starts, ends;
      for (auto& p : pads) p = rand_int(0, 3);
      for (std::size_t a = 0; a < r; ++a) {
        starts.push_back(pads[a]);
        ends.push_back(pads[a] + x.dim(a));
      }
      Tensor y = run("Pad", {x, ints(pads)}, {{"mode", std::string(mode)}});
      CHECK(infer("Pad", {x, ints(pads)}, {false, true}, {{"mode", std::string(mode)}})[0].shape ==
            y.shape());
      Tensor back = run("Slice", {y, ints(starts), ints(ends)});
      CHECK(vals(back) == vals(x));
    }
}

TEST_CASE("Concat and Split: hand cases and the split-then-concat law, any axis") {
  Tensor a = iota(DType::f32, {2, 2}), b = iota(DType::f32, {2, 1}, 10);
  CHECK(vals(run("Concat", {a, b}, {{"axis", i64{-1}}})) ==
        std::vector<double>{0, 1, 10, 2, 3, 11});
  CHECK_THROWS_WITH_AS(infer("Concat", {a, b}, {false, false}, {{"axis", i64{0}}}),
                       "[Concat 'n'] input 1 has shape [2,1], input 0 has [2,2]: dim 1 differs",
                       ShapeError);
  auto parts = run_all("Split", {iota(DType::i64, {7})}, {{"num_outputs", i64{3}}}, 3);
  CHECK(vals(parts[0]) == std::vector<double>{0, 1, 2});
  CHECK(vals(parts[2]) == std::vector<double>{6});
  auto t = infer("Split", {iota(DType::i64, {7})}, {false}, {{"num_outputs", i64{3}}}, 3);
  CHECK(t[2].to_string() == "i64[1]");
  auto zero = run_all("Split", {iota(DType::f32, {3}), ints({0, 3})}, {}, 2);
  CHECK(zero[0].numel() == 0);
  CHECK_THROWS_AS(run_all("Split", {iota(DType::f32, {5})}, {}, 2), ShapeError);
  CHECK_THROWS_AS(run_all("Split", {iota(DType::f32, {5}), ints({2, 2})}, {}, 2), ShapeError);
  // Entries whose sum would overflow int64 (SplitToSequence's twin check, test_sequence.cpp).
  CHECK_THROWS_WITH_AS(
      run_all("Split", {iota(DType::f32, {5}), ints({std::numeric_limits<i64>::max(), 2})}, {}, 2),
      doctest::Contains("sum to more than an int64 holds"), ShapeError);

  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t r = static_cast<std::size_t>(rand_int(1, 4));
    auto dims = rand_dims(r, 1, 5);
    const i64 axis = rand_int(-static_cast<i64>(r), static_cast<i64>(r) - 1);
    const i64 ax = axis < 0 ? axis + static_cast<i64>(r) : axis;
    std::vector<i64> split;
    i64 left = dims[ax];
    while (left > 0) {
      split.push_back(rand_int(0, left));
      left -= split.back();
    }
    if (split.empty()) split.push_back(0);
    Tensor x = iota(DType::f32, dims);
    auto ps = run_all("Split", {x, ints(split)}, {{"axis", axis}}, split.size());
    auto ts = infer("Split", {x, ints(split)}, {false, true}, {{"axis", axis}}, split.size());
    for (std::size_t i = 0; i < ps.size(); ++i) CHECK(ts[i].shape == ps[i].shape());
    Tensor y = run("Concat", ps, {{"axis", axis}});
    CHECK(y.dims() == x.dims());
    CHECK(vals(y) == vals(x));
  }
}

// ---- gather / scatter -------------------------------------------------------------------------

TEST_CASE("Gather: axis, negative indices, 2-D indices, bad index") {
  Tensor x = floats({3, 2}, {1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f});
  Tensor idx = Tensor::from<i64>({2, 2}, {0, 1, 1, -1});
  Tensor y = run("Gather", {x, idx});
  CHECK(y.dims() == std::vector<i64>{2, 2, 2});
  CHECK(vals(y) == vals(floats({8}, {1.0f, 1.2f, 2.3f, 3.4f, 2.3f, 3.4f, 4.5f, 5.7f})));
  Tensor z = run("Gather", {x, Tensor::from<std::int32_t>({1}, {1})}, {{"axis", i64{1}}});
  CHECK(z.dims() == std::vector<i64>{3, 1});
  CHECK(vals(z) == vals(floats({3}, {1.2f, 3.4f, 5.7f})));
  CHECK(run("Gather", {x, Tensor::scalar<i64>(2)}).dims() == std::vector<i64>{2});
  CHECK_THROWS_WITH_AS(run("Gather", {x, ints({3})}), "[Gather 'n'] index 3 out of range [-3, 3)",
                       Error);
  CHECK(infer("Gather", {x, idx}, {false, false}, {{"axis", i64{1}}})[0].to_string() ==
        "f32[3,2,2]");
  CHECK_THROWS_AS(infer("Gather", {x, floats({1}, {0})}, {false, false}), ShapeError);
}

TEST_CASE("GatherElements and GatherND (ONNX doc examples)") {
  Tensor d = iota(DType::i32, {3, 3}, 1);
  Tensor ge = run("GatherElements", {d, Tensor::from<i64>({2, 3}, {1, 2, 0, 2, 0, -3})});
  CHECK(vals(ge) == std::vector<double>{4, 8, 3, 7, 2, 3});
  Tensor ge1 =
      run("GatherElements",
          {Tensor::from<i64>({2, 2}, {1, 2, 3, 4}), Tensor::from<i64>({2, 2}, {0, 0, 1, 0})},
          {{"axis", i64{1}}});
  CHECK(vals(ge1) == std::vector<double>{1, 1, 4, 3});

  Tensor data = iota(DType::i32, {2, 2, 2});
  Tensor nd = run("GatherND", {data, Tensor::from<i64>({2, 1, 2}, {0, 1, 1, 0})});
  CHECK(nd.dims() == std::vector<i64>{2, 1, 2});
  CHECK(vals(nd) == std::vector<double>{2, 3, 4, 5});
  Tensor nb = run("GatherND", {data, Tensor::from<i64>({2, 1}, {1, 0})}, {{"batch_dims", i64{1}}});
  CHECK(vals(nb) == std::vector<double>{2, 3, 4, 5});
  CHECK(infer("GatherND", {data, Tensor::from<i64>({2, 1}, {1, 0})}, {false, false},
              {{"batch_dims", i64{1}}})[0]
            .to_string() == "i32[2,2]");
  CHECK(
      vals(run("GatherND", {iota(DType::f32, {2, 2}), Tensor::from<i64>({2, 2}, {0, 0, 1, 1})})) ==
      std::vector<double>{0, 3});
  CHECK_THROWS_AS(run("GatherND", {data, Tensor::from<i64>({1, 2}, {2, 0})}), Error);
}

TEST_CASE("ScatterElements and ScatterND with every reduction") {
  Tensor data = floats({1, 5}, {1, 2, 3, 4, 5});
  Tensor idx = Tensor::from<i64>({1, 2}, {1, -2});
  Tensor upd = floats({1, 2}, {1.1f, 2.1f});
  auto se = [&](const char* red) {
    return vals(run("ScatterElements", {data, idx, upd},
                    {{"axis", i64{1}}, {"reduction", std::string(red)}}));
  };
  CHECK(se("none") == vals(floats({5}, {1, 1.1f, 3, 2.1f, 5})));
  CHECK(se("add") == vals(floats({5}, {1, 2 + 1.1f, 3, 4 + 2.1f, 5})));
  CHECK(se("max") == vals(floats({5}, {1, 2, 3, 4, 5})));
  CHECK(se("min") == vals(floats({5}, {1, 1.1f, 3, 2.1f, 5})));
  // Duplicate indices accumulate.
  CHECK(vals(run("ScatterElements", {data, Tensor::from<i64>({1, 2}, {1, 1}), upd},
                 {{"axis", i64{1}}, {"reduction", std::string("mul")}})) ==
        vals(floats({5}, {1, 2 * 1.1f * 2.1f, 3, 4, 5})));
  CHECK_THROWS_AS(run("ScatterElements", {data, idx, upd}, {{"reduction", std::string("mean")}}),
                  UnsupportedError);

  Tensor d2 = iota(DType::i64, {4, 2});
  Tensor i2 = Tensor::from<i64>({2, 1}, {3, 1});
  Tensor u2 = Tensor::from<i64>({2, 2}, {10, 20, 30, 40});
  CHECK(vals(run("ScatterND", {d2, i2, u2})) == std::vector<double>{0, 1, 30, 40, 4, 5, 10, 20});
  CHECK(vals(run("ScatterND", {d2, i2, u2}, {{"reduction", std::string("add")}})) ==
        std::vector<double>{0, 1, 32, 43, 4, 5, 16, 27});
  CHECK(vals(run("ScatterND", {d2, Tensor::from<i64>({2, 2}, {0, 1, 0, 1}), ints({5, 7})},
                 {{"reduction", std::string("mul")}})) ==
        std::vector<double>{0, 35, 2, 3, 4, 5, 6, 7});
  CHECK(vals(run("ScatterND", {d2, i2, u2}, {{"reduction", std::string("min")}})) == vals(d2));
  CHECK_THROWS_AS(run("ScatterND", {d2, i2, ints({1, 2})}), Error);
  CHECK_THROWS_AS(infer("ScatterND", {d2, i2, ints({1, 2})}, {false, false, false}), ShapeError);
}

// ---- shape, size, expand, tile, range ------------------------------------------------------

TEST_CASE("Shape with start/end, Size") {
  Tensor x(DType::f32, {2, 3, 4, 5});
  CHECK(vals(run("Shape", {x})) == std::vector<double>{2, 3, 4, 5});
  CHECK(vals(run("Shape", {x}, {{"start", i64{-3}}, {"end", i64{-1}}})) ==
        std::vector<double>{3, 4});
  CHECK(run("Shape", {x}, {{"start", i64{3}}, {"end", i64{1}}}).numel() == 0);
  CHECK(vals(run("Shape", {x}, {{"start", i64{-10}}, {"end", i64{10}}})) ==
        std::vector<double>{2, 3, 4, 5});
  CHECK(infer("Shape", {x}, {false}, {{"start", i64{1}}})[0].to_string() == "i64[3]");
  Tensor s = run("Size", {x});
  CHECK(s.type_string() == "i64[]");
  CHECK(s.get(0) == 120);
  const TensorType dyn{DType::f32, Shape{Dim::dynamic(), Dim(3)}};
  CHECK(infer("Shape", {x}, {false}, {}, 1, {{0, dyn}})[0].to_string() == "i64[2]");
  CHECK(infer("Size", {x}, {false}, {}, 1, {{0, dyn}})[0].to_string() == "i64[]");
}

TEST_CASE("Expand broadcasts both ways; Tile repeats") {
  Tensor x = floats({3, 1}, {1, 2, 3});
  Tensor y = run("Expand", {x, ints({2, 1, 6})});
  CHECK(y.dims() == std::vector<i64>{2, 3, 6});
  CHECK(y.get(7) == 2);
  CHECK(run("Expand", {x, ints({1, 1})}).dims() == std::vector<i64>{3, 1});
  CHECK(infer("Expand", {x, ints({2, 1, 6})}, {false, true})[0].to_string() == "f32[2,3,6]");
  CHECK(infer("Expand", {x, ints({2, 1, 6})}, {false, false})[0].to_string() == "f32[?,?,?]");
  CHECK_THROWS_AS(run("Expand", {x, ints({4, 4})}), ShapeError);

  Tensor t = Tensor::from<std::int16_t>({2, 2}, {1, 2, 3, 4});
  Tensor z = run("Tile", {t, ints({1, 2})});
  CHECK(vals(z) == std::vector<double>{1, 2, 1, 2, 3, 4, 3, 4});
  CHECK(infer("Tile", {t, ints({3, 2})}, {false, true})[0].to_string() == "i16[6,4]");
  // Repeats whose product overflows are a shape error, not signed overflow (fuzz_onnx:
  // tests/fuzz/regressions/onnx/tile-repeats-overflow.onnx).
  CHECK_THROWS_AS(infer("Tile", {t, ints({8313491484895901039, 1})}, {false, true}), ShapeError);
  // Law: Tile along one axis equals Concat of copies.
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t r = static_cast<std::size_t>(rand_int(1, 3));
    Tensor a = iota(DType::f32, rand_dims(r));
    const i64 ax = rand_int(0, static_cast<i64>(r) - 1), k = rand_int(1, 3);
    std::vector<i64> reps(r, 1);
    reps[ax] = k;
    std::vector<Tensor> copies(static_cast<std::size_t>(k), a);
    CHECK(vals(run("Tile", {a, ints(reps)})) == vals(run("Concat", copies, {{"axis", ax}})));
  }
}

TEST_CASE("Range: int and float, negative delta, empty") {
  Tensor r = run("Range", {Tensor::scalar<std::int32_t>(10), Tensor::scalar<std::int32_t>(6),
                           Tensor::scalar<std::int32_t>(-3)});
  CHECK(vals(r) == std::vector<double>{10, 7});
  Tensor f = run(
      "Range", {Tensor::scalar<float>(1), Tensor::scalar<float>(2), Tensor::scalar<float>(0.25f)});
  CHECK(vals(f) == std::vector<double>{1, 1.25, 1.5, 1.75});
  CHECK(run("Range", {Tensor::scalar<i64>(5), Tensor::scalar<i64>(1), Tensor::scalar<i64>(1)})
            .numel() == 0);
  CHECK(infer("Range",
              {Tensor::scalar<float>(1), Tensor::scalar<float>(2), Tensor::scalar<float>(0.25f)},
              {true, true, true})[0]
            .to_string() == "f32[4]");
  CHECK(infer("Range",
              {Tensor::scalar<float>(1), Tensor::scalar<float>(2), Tensor::scalar<float>(0.25f)},
              {false, true, true})[0]
            .to_string() == "f32[?]");
  CHECK_THROWS_AS(
      run("Range", {Tensor::scalar<i64>(5), Tensor::scalar<i64>(1), Tensor::scalar<i64>(0)}),
      ShapeError);
}

// ---- depth/space, trilu, onehot, eyelike, nonzero, compress, reversesequence
// ---------------------

TEST_CASE("DepthToSpace (DCR, CRD) and SpaceToDepth") {
  // ONNX doc, CRD example: x = arange(16).reshape(1, 8, 1, 2) with blocksize 2.
  Tensor x = iota(DType::f32, {1, 8, 1, 2});
  Tensor crd = run("DepthToSpace", {x}, {{"blocksize", i64{2}}, {"mode", std::string("CRD")}});
  CHECK(crd.dims() == std::vector<i64>{1, 2, 2, 4});
  CHECK(vals(crd) == std::vector<double>{0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15});
  Tensor dcr = run("DepthToSpace", {x}, {{"blocksize", i64{2}}});
  CHECK(vals(dcr) == std::vector<double>{0, 4, 1, 5, 8, 12, 9, 13, 2, 6, 3, 7, 10, 14, 11, 15});
  CHECK(infer("DepthToSpace", {x}, {false}, {{"blocksize", i64{2}}})[0].to_string() ==
        "f32[1,2,2,4]");
  CHECK_THROWS_AS(infer("DepthToSpace", {x}, {false}, {{"blocksize", i64{3}}}), ShapeError);
  // Law: SpaceToDepth inverts DepthToSpace (DCR).
  for (int trial = 0; trial < 20; ++trial) {
    const i64 b = rand_int(1, 3);
    Tensor t =
        iota(DType::i8, {rand_int(1, 2), b * b * rand_int(1, 2), rand_int(1, 3), rand_int(1, 3)});
    Tensor s = run("DepthToSpace", {t}, {{"blocksize", b}});
    Tensor back = run("SpaceToDepth", {s}, {{"blocksize", b}});
    CHECK(back.dims() == t.dims());
    CHECK(vals(back) == vals(t));
  }
}

TEST_CASE("Trilu, OneHot, EyeLike") {
  Tensor x = iota(DType::f32, {3, 4}, 1);
  CHECK(vals(run("Trilu", {x})) == std::vector<double>{1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12});
  CHECK(vals(run("Trilu", {x, Tensor::scalar<i64>(-1)}, {{"upper", i64{0}}})) ==
        std::vector<double>{0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0});
  CHECK(vals(run("Trilu", {x, Tensor::scalar<i64>(1)}, {{"upper", i64{1}}})) ==
        std::vector<double>{0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12});

  Tensor idx = Tensor::from<i64>({3}, {0, -1, 5});
  Tensor oh = run("OneHot", {idx, Tensor::scalar<float>(3), floats({2}, {2, 7})});
  CHECK(oh.dims() == std::vector<i64>{3, 3});
  CHECK(vals(oh) == std::vector<double>{7, 2, 2, 2, 2, 7, 2, 2, 2});
  Tensor oh0 = run("OneHot", {idx, Tensor::scalar<i64>(3), Tensor::from<std::int32_t>({2}, {0, 1})},
                   {{"axis", i64{0}}});
  CHECK(vals(oh0) == std::vector<double>{1, 0, 0, 0, 0, 0, 0, 1, 0});
  CHECK(infer("OneHot", {idx, Tensor::scalar<i64>(3), floats({2}, {0, 1})}, {false, true, false},
              {{"axis", i64{0}}})[0]
            .to_string() == "f32[3,3]");
  CHECK(
      infer("OneHot", {idx, Tensor::scalar<i64>(3), floats({2}, {0, 1})}, {false, false, false})[0]
          .to_string() == "f32[3,?]");

  Tensor e = run("EyeLike", {Tensor(DType::i32, {2, 3})}, {{"k", i64{1}}});
  CHECK(vals(e) == std::vector<double>{0, 1, 0, 0, 0, 1});
  Tensor ed = run("EyeLike", {Tensor(DType::i32, {2, 2})}, {{"dtype", i64{1}}});
  CHECK(ed.type_string() == "f32[2,2]");
  CHECK(vals(ed) == std::vector<double>{1, 0, 0, 1});
  CHECK_THROWS_AS(run("EyeLike", {Tensor(DType::i32, {2, 2})}, {{"dtype", i64{8}}}),
                  UnsupportedError);
}

TEST_CASE("NonZero, Compress, ReverseSequence") {
  Tensor x = Tensor::from<bool>({2, 2}, {true, false, true, true});
  Tensor nz = run("NonZero", {x});
  CHECK(nz.dims() == std::vector<i64>{2, 3});
  CHECK(vals(nz) == std::vector<double>{0, 1, 1, 0, 0, 1});
  CHECK(infer("NonZero", {x}, {false})[0].to_string() == "i64[2,?]");
  CHECK(vals(run("NonZero", {floats({3}, {-0.0f, 2, 0})})) == std::vector<double>{1});

  Tensor d = iota(DType::f32, {3, 2}, 1);
  Tensor c = Tensor::from<bool>({3}, {false, true, true});
  CHECK(vals(run("Compress", {d, c}, {{"axis", i64{0}}})) == std::vector<double>{3, 4, 5, 6});
  CHECK(vals(run("Compress", {d, Tensor::from<bool>({2}, {false, true})}, {{"axis", i64{-1}}})) ==
        std::vector<double>{2, 4, 6});
  CHECK(vals(run("Compress", {d, c})) == std::vector<double>{2, 3});
  CHECK(infer("Compress", {d, c}, {false, true}, {{"axis", i64{0}}})[0].to_string() == "f32[2,2]");
  CHECK(infer("Compress", {d, c}, {false, false})[0].to_string() == "f32[?]");

  // ONNX doc: time_axis 0, batch_axis 1.
  Tensor s = Tensor::from<float>({4, 4}, {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15});
  Tensor rs = run("ReverseSequence", {s, ints({4, 3, 2, 1})},
                  {{"time_axis", i64{0}}, {"batch_axis", i64{1}}});
  CHECK(vals(rs) == std::vector<double>{3, 6, 9, 12, 2, 5, 8, 13, 1, 4, 10, 14, 0, 7, 11, 15});
  CHECK_THROWS_AS(run("ReverseSequence", {s, ints({5, 1, 1, 1})}), Error);
}

// ---- resize ------------------------------------------------------------------------------------

TEST_CASE("Resize: nearest and linear by hand, cubic reproduces a line") {
  Tensor x = floats({1, 1, 1, 2}, {1, 2});
  Tensor sc = floats({4}, {1, 1, 1, 2});
  CHECK(vals(run("Resize", {x, Tensor(), sc})) == std::vector<double>{1, 1, 2, 2});
  CHECK(vals(run("Resize", {x, Tensor(), sc}, {{"mode", std::string("linear")}})) ==
        std::vector<double>{1, 1.25, 1.75, 2});
  Tensor ac = run("Resize", {x, Tensor(), sc},
                  {{"mode", std::string("linear")},
                   {"coordinate_transformation_mode", std::string("align_corners")}});
  CHECK(ac.get(1) == doctest::Approx(4.0 / 3));
  CHECK(ac.get(2) == doctest::Approx(5.0 / 3));
  CHECK(vals(run("Resize", {x, Tensor(), sc},
                 {{"coordinate_transformation_mode", std::string("asymmetric")},
                  {"nearest_mode", std::string("ceil")}})) == std::vector<double>{1, 2, 2, 2});
  // Sizes instead of scales; axes.
  Tensor sz = run("Resize", {x, Tensor(), Tensor(), ints({3})},
                  {{"axes", std::vector<i64>{3}}, {"mode", std::string("linear")}});
  CHECK(sz.dims() == std::vector<i64>{1, 1, 1, 3});
  // Cubic interpolation of a line away from the borders is exact (align_corners keeps the ends).
  Tensor line = iota(DType::f64, {8});
  Tensor cu = run("Resize", {line, Tensor(), Tensor(), ints({15})},
                  {{"mode", std::string("cubic")},
                   {"coordinate_transformation_mode", std::string("align_corners")}});
  for (i64 i = 2; i < 13; ++i) CHECK(cu.get(i) == doctest::Approx(i * 0.5));
  // Integer outputs round half to even and saturate.
  Tensor u8 = Tensor::from<std::uint8_t>({2}, {0, 255});
  Tensor ru = run("Resize", {u8, Tensor(), floats({1}, {2})}, {{"mode", std::string("cubic")}});
  for (double v : vals(ru)) CHECK((v >= 0 && v <= 255));
  CHECK_THROWS_AS(run("Resize", {x, Tensor(), sc}, {{"antialias", i64{1}}}), UnsupportedError);
  CHECK_THROWS_AS(run("Resize", {x, Tensor(), sc}, {{"mode", std::string("area")}}),
                  UnsupportedError);
  CHECK_THROWS_AS(run("Resize", {x}), Error);
}

TEST_CASE("Resize laws: scale 1 is the identity; the shape rule agrees with the kernel") {
  for (const char* mode : {"nearest", "linear", "cubic"})
    for (const char* ctm : {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel",
                            "half_pixel_symmetric"}) {
      Tensor x = iota(DType::f32, {2, 3, 4});
      Tensor y =
          run("Resize", {x, Tensor(), floats({3}, {1, 1, 1})},
              {{"mode", std::string(mode)}, {"coordinate_transformation_mode", std::string(ctm)}});
      CHECK(vals(y) == vals(x));
    }
  for (int trial = 0; trial < 40; ++trial) {
    Tensor x = iota(DType::f32, rand_dims(3, 1, 5));
    std::vector<float> s;
    for (int i = 0; i < 3; ++i) s.push_back(static_cast<float>(rand_int(1, 8)) / 4.0f);
    const bool use_sizes = trial % 2 == 1;
    std::vector<i64> sizes = rand_dims(3, 1, 7);
    std::vector<Tensor> ins = use_sizes ? std::vector<Tensor>{x, Tensor(), Tensor(), ints(sizes)}
                                        : std::vector<Tensor>{x, Tensor(), floats({3}, s)};
    Attrs attrs{{"mode", std::string(trial % 3 == 0 ? "cubic" : "linear")}};
    if (use_sizes && trial % 4 == 1) attrs["keep_aspect_ratio_policy"] = std::string("not_larger");
    if (trial % 5 == 0) attrs["antialias"] = i64{1};
    Tensor y = run("Resize", ins, attrs);
    std::vector<bool> consts{false, false, true, true};
    CHECK(infer("Resize", ins, consts, attrs)[0].shape == y.shape());
    auto dyn = infer("Resize", ins, {false, false, false, false}, attrs)[0];
    CHECK(dyn.shape.rank() == 3);
  }
}

TEST_CASE("Upsample (legacy): nearest repeats, linear is asymmetric") {
  Tensor x = floats({1, 2}, {1, 2});
  Tensor y = run("Upsample", {x, floats({2}, {2, 3})});
  CHECK(y.dims() == std::vector<i64>{2, 6});
  CHECK(vals(y) == std::vector<double>{1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2});
  Tensor l = run("Upsample", {x, floats({2}, {1, 2})}, {{"mode", std::string("linear")}});
  CHECK(vals(l) == std::vector<double>{1, 1.5, 2, 2});
  CHECK(infer("Upsample", {x, floats({2}, {2, 3})}, {false, true})[0].to_string() == "f32[2,6]");
}

// ---- every dtype ---------------------------------------------------------------------------

TEST_CASE("Data-movement ops keep values in every dtype") {
  for (DType t : kAllDTypes) {
    CAPTURE(dtype_name(t));
    Tensor x = iota(t, {2, 3});
    if (t == DType::boolean)
      x = Tensor::from<bool>({2, 3}, {true, false, true, true, false, false});
    const auto v = vals(x);
    CHECK(vals(run("Transpose", {run("Transpose", {x})})) == v);
    CHECK(vals(run("Concat", {x}, {{"axis", i64{1}}})) == v);
    CHECK(vals(run("Gather", {x, ints({1})})) == std::vector<double>(v.begin() + 3, v.end()));
    CHECK(vals(run("Slice", {x, ints({0}), ints({1})})) ==
          std::vector<double>(v.begin(), v.begin() + 3));
    CHECK(vals(run("Reshape", {x, ints({-1})})) == v);
    CHECK(vals(run("Pad", {x, ints({0, 0, 0, 0})})) == v);
    CHECK(vals(run("Tile", {x, ints({1, 1})})) == v);
    CHECK(vals(run("Expand", {x, ints({1, 1})})) == v);
    CHECK(vals(run("Trilu", {x}, {{"upper", i64{0}}}))[2] == 0.0);
    CHECK(vals(run("ScatterElements", {x, Tensor::from<i64>({2, 3}, {0, 0, 0, 1, 1, 1}), x})) == v);
    if (t != DType::boolean) {
      Tensor r = run("Resize", {x, Tensor(), floats({2}, {1, 1})});
      CHECK(vals(r) == v);
    }
  }
}
