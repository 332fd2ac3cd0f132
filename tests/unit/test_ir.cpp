#include <doctest/doctest.h>

#include <array>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/shape_rules.hpp"
#include "kiln/ir/weights.hpp"
#include "kiln/ir/window.hpp"
#include "kiln/reference/executor.hpp"

using namespace kiln;

TEST_CASE("f16 round trip is exact for every finite half") {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const std::uint16_t h = static_cast<std::uint16_t>(b);
    if (((h >> 10) & 0x1f) == 0x1f) continue;  // inf / nan
    const float f = f16::to_float(h);
    CHECK(f16::from_float(f) == h);
  }
}

TEST_CASE("a tensor of no elements made from no values copies nothing") {
  // Found by fuzz_onnx (tests/fuzz/regressions/onnx/shape-start-greater-than-end.onnx): Shape
  // with start > end folds to an empty i64 tensor, and memcpy from an empty vector's null data()
  // is undefined behaviour (UBSan: "null pointer passed as argument 2").
  const Tensor t = Tensor::from<std::int64_t>({0}, {});
  CHECK(t.numel() == 0);
  CHECK(t.dims() == std::vector<std::int64_t>{0});
  CHECK(Tensor::from<float>({2, 0}, {}).numel() == 0);
}

TEST_CASE("shape rules compute conv and pool dims") {
  static_assert(rules::conv_out_dim(28, 5, 1, 1, 0, 0) == 24);
  static_assert(rules::conv_out_dim(224, 7, 2, 1, 3, 3) == 112);
  static_assert(rules::pool_out_dim(5, 2, 2, 1, 0, 0, true) == 3);
  static_assert(rules::conv_out_dim(kDynamic, 3, 1, 1, 1, 1) == kDynamic);
  CHECK_THROWS_WITH_AS(rules::conv_out_dim(3, 5, 1, 1, 0, 0),
                       "kernel extent 5 larger than padded input 3", ShapeError);
  CHECK_THROWS_WITH_AS(rules::equal_dims("input channels", 20, 50),
                       "expected 20 input channels, got 50", ShapeError);
}

namespace {
template <std::size_t R, std::size_t RO>
constexpr std::array<std::int64_t, RO> reshaped(std::array<std::int64_t, R> in,
                                                std::array<std::int64_t, RO> target,
                                                bool allowzero = false) {
  std::array<std::int64_t, RO> out{};
  rules::reshape_dims(in, target, allowzero, out);
  return out;
}
using A2 = std::array<std::int64_t, 2>;
using A3 = std::array<std::int64_t, 3>;
}  // namespace

TEST_CASE("shape rules: reshape, flatten and transpose, at compile time and at run time") {
  static_assert(reshaped(A3{2, 3, 4}, A2{0, -1}) == A2{2, 12});
  static_assert(reshaped(A3{2, 3, 4}, A3{4, 0, -1}) == A3{4, 3, 2});
  static_assert(reshaped(A3{kDynamic, 3, 4}, A2{0, -1}) ==
                A2{kDynamic, 12});  // the copied dim may be unknown
  static_assert(reshaped(A3{kDynamic, 3, 4}, A2{-1, 12}) == A2{kDynamic, 12});
  static_assert(reshaped(A2{0, 3}, A2{3, 0}, true) == A2{3, 0});  // allowzero keeps the 0
  static_assert(rules::flatten_axis(-1, 4) == 3 && rules::flatten_axis(4, 4) == 4);
  static_assert(rules::dims_product(A3{2, 3, 4}, 1, 3) == 12 &&
                rules::dims_product(A3{2, kDynamic, 4}, 0, 2) == kDynamic);
  CHECK_THROWS_WITH_AS(reshaped(A3{2, 3, 4}, A2{-1, -1}),
                       "reshape target has two -1 dims (0 and 1)", ShapeError);
  CHECK_THROWS_WITH_AS(reshaped(A3{2, 3, 4}, A2{5, 5}), "expected 24 element count, got 25",
                       ShapeError);
  CHECK_THROWS_WITH_AS(reshaped(A3{2, 3, 4}, A2{7, -1}),
                       "cannot infer the -1 dim: 24 elements do not divide into blocks of 7",
                       ShapeError);
  CHECK_THROWS_WITH_AS(reshaped(A2{2, 3}, A3{0, 0, 0}),
                       "reshape target dim 2 is 0 (copy the input dim) but the input has rank 2",
                       ShapeError);
  CHECK_THROWS_AS(reshaped(A2{0, 3}, A2{-1, 0}, true), ShapeError);
  CHECK_THROWS_WITH_AS(rules::flatten_axis(5, 4),
                       "axis 5 out of range for rank 4 (Flatten accepts -rank..rank)", ShapeError);
  CHECK_NOTHROW(rules::check_permutation(A3{2, 0, 1}, 3));
  CHECK_THROWS_WITH_AS(rules::check_permutation(A3{0, 1, 1}, 3),
                       "axis 1 appears twice in the permutation (position 2)", ShapeError);
  CHECK_THROWS_WITH_AS(rules::check_permutation(A2{0, 1}, 3),
                       "expected 3 permutation length (the input rank), got 2", ShapeError);
  CHECK_THROWS_AS(rules::check_permutation(A2{0, 2}, 2), ShapeError);
}

TEST_CASE("shape rules: a padding total splits by floor division, negative totals too") {
  static_assert(rules::split_pad_begin(5, true) == 2 && rules::split_pad_begin(5, false) == 3);
  // ConvTranspose with an output_shape past its natural size: -3 is -2 + -1 (SAME_UPPER), -1 + -2
  // otherwise; truncating division would give -1 + -2 and -2 + -1.
  static_assert(rules::split_pad_begin(-3, true) == -2 && rules::split_pad_begin(-3, false) == -1);
  static_assert(rules::split_pad_begin(-1, true) == -1 && rules::split_pad_begin(-1, false) == 0);
  for (std::int64_t total = -9; total <= 9; ++total) {
    const std::int64_t floor_half = total >= 0 ? total / 2 : (total - 1) / 2;
    CHECK(rules::split_pad_begin(total, true) == floor_half);  // SAME_UPPER: begin = total // 2
    CHECK(total - rules::split_pad_begin(total, false) ==
          floor_half);  // otherwise: end = total // 2
  }
  // The window of such a ConvTranspose, as the IR, the reference and the GPU steps all read it:
  // input 2, kernel 3, stride 2 (natural output 5), output_shape 8: total padding -3.
  Node n{"ConvTranspose", "up", {"x", "w"}, {"y"}, {}};
  n.attrs["strides"] = std::vector<std::int64_t>{2};
  n.attrs["output_shape"] = std::vector<std::int64_t>{8};
  auto w = ops::resolve_window(n, {2}, {3}, ops::WindowKind::deconv);
  CHECK(w.out == std::vector<std::int64_t>{8});
  CHECK(w.pad_begin == std::vector<std::int64_t>{-1});
  CHECK(w.pad_end == std::vector<std::int64_t>{-2});
  n.attrs["auto_pad"] = std::string("SAME_UPPER");
  w = ops::resolve_window(n, {2}, {3}, ops::WindowKind::deconv);
  CHECK(w.pad_begin == std::vector<std::int64_t>{-2});
  CHECK(w.pad_end == std::vector<std::int64_t>{-1});
}

TEST_CASE("the executor returns graph outputs; run_all also keeps values nobody reads") {
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape{3}}});
  g.add_node(Node{"Relu", "unused", {"x"}, {"a"}, {}});
  g.add_node(Node{"Neg", "neg", {"x"}, {"y"}, {}});
  g.outputs = {"y"};
  g.infer();
  const reference::Executor exec(g);
  const reference::TensorMap in = {{"x", Tensor::from<float>({3}, {-1.f, 0.f, 2.f})}};
  const auto out = exec.run(in);
  CHECK(out.size() == 1);
  CHECK(out.at("y").to_doubles() == std::vector<double>{1, 0, -2});
  const auto all = exec.run_all(in);
  CHECK(all.at("a").to_doubles() == std::vector<double>{0, 0, 2});
}
