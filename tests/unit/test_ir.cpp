#include <doctest/doctest.h>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/shape_rules.hpp"
#include "kiln/ir/weights.hpp"
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
