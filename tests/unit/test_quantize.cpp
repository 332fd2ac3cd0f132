// Quantization ops on the CPU reference (issue 13): laws over random inputs (a round trip is
// within half a step, a QLinear op is its float op between dequantize and quantize, an integer
// op is its float op on the shifted values), rounding half to even, saturation, per-axis and
// blocked scales, and the shape rules' refusals.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "expect_error.hpp"
#include "kiln/reference/executor.hpp"
#include "op_test_util.hpp"

using namespace kiln;
using kiln::test::expect_error;
using kiln::test::node;
using kiln::test::run;
using i64 = std::int64_t;

namespace {

Tensor random_floats(std::vector<i64> dims, std::mt19937_64& rng, double lo, double hi) {
  Tensor t(DType::f32, std::move(dims));
  std::uniform_real_distribution<double> u(lo, hi);
  for (i64 i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

Tensor random_ints(DType dt, std::vector<i64> dims, std::mt19937_64& rng, int lo, int hi) {
  Tensor t(dt, std::move(dims));
  std::uniform_int_distribution<int> u(lo, hi);
  for (i64 i = 0; i < t.numel(); ++i) t.set(i, u(rng));
  return t;
}

Tensor scalar(DType dt, double v) {
  Tensor t(dt, {});
  t.set(0, v);
  return t;
}

/// A graph of one node over inputs of the given types; infer() runs its shape rule.
void infer_one(const std::string& op, const std::vector<TensorType>& in,
               std::map<std::string, Attribute> attrs = {}) {
  Graph g;
  Node n = node(op, in.size(), std::move(attrs));
  for (std::size_t i = 0; i < in.size(); ++i) g.inputs.push_back({n.inputs[i], in[i]});
  g.outputs = {n.outputs[0]};
  g.nodes.push_back(n);
  g.infer();
}

}  // namespace

TEST_CASE("QuantizeLinear then DequantizeLinear is within half a step of the saturated input") {
  std::mt19937_64 rng(1);
  for (DType qt : {DType::i8, DType::u8, DType::i16, DType::u16}) {
    for (int trial = 0; trial < 5; ++trial) {
      const double s = std::uniform_real_distribution<double>(0.01, 0.5)(rng);
      const int zp = qt == DType::u8 ? 100 : qt == DType::u16 ? 30000 : (qt == DType::i8 ? -7 : 12);
      const double lo = qt == DType::i8 ? -128 : qt == DType::i16 ? -32768 : 0;
      const double hi = qt == DType::i8    ? 127
                        : qt == DType::u8  ? 255
                        : qt == DType::i16 ? 32767
                                           : 65535;
      const Tensor x = random_floats({3, 50}, rng, -200 * s, 200 * s);
      const Tensor scale = scalar(DType::f32, s), zero = scalar(qt, zp);
      const Tensor q = run(node("QuantizeLinear", 3), {x, scale, zero})[0];
      REQUIRE(q.dtype() == qt);
      const Tensor d = run(node("DequantizeLinear", 3), {q, scale, zero})[0];
      const float sf = static_cast<float>(s);
      for (i64 i = 0; i < x.numel(); ++i) {
        const double want = std::clamp(x.get(i), (lo - zp) * sf, (hi - zp) * sf);
        CHECK(std::abs(d.get(i) - want) <= sf / 2 * (1 + 1e-5));
        CHECK(q.get(i) >= lo);
        CHECK(q.get(i) <= hi);
      }
    }
  }
}

TEST_CASE("QuantizeLinear rounds half to even and saturates; the default output is uint8") {
  const Tensor x =
      Tensor::from<float>({8}, {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 1000.f, -1000.f, 3.49f});
  const Tensor q8 =
      run(node("QuantizeLinear", 3), {x, scalar(DType::f32, 1), scalar(DType::i8, 0)})[0];
  CHECK(q8.dtype() == DType::i8);
  const std::vector<double> want{0, 2, 2, -0, -2, 127, -128, 3};
  for (i64 i = 0; i < 8; ++i) CHECK(q8.get(i) == want[static_cast<std::size_t>(i)]);
  const Tensor u = run(node("QuantizeLinear", 2), {x, scalar(DType::f32, 1)})[0];
  CHECK(u.dtype() == DType::u8);
  CHECK(u.get(5) == 255);
  CHECK(u.get(6) == 0);
  CHECK(u.get(2) == 2);
}

TEST_CASE("per-axis and blocked scales: each slice or block is quantized with its own scale") {
  std::mt19937_64 rng(2);
  const Tensor x = random_floats({2, 3, 4}, rng, -3, 3);
  const Tensor scales = Tensor::from<float>({3}, {0.01f, 0.1f, 0.05f});
  const Tensor zps = Tensor::from<std::int8_t>({3}, {0, 5, -5});
  const Tensor q = run(node("QuantizeLinear", 3, {{"axis", i64{1}}}), {x, scales, zps})[0];
  for (i64 i = 0; i < x.numel(); ++i) {
    const i64 c = (i / 4) % 3;
    const double v = std::nearbyint(static_cast<float>(x.get(i) / scales.get(c))) + zps.get(c);
    CHECK(q.get(i) == std::clamp(v, -128.0, 127.0));
  }
  // Blocks of 2 along axis 2: scale [2,3,2].
  const Tensor bs = random_floats({2, 3, 2}, rng, 0.01, 0.1);
  const Tensor qb =
      run(node("QuantizeLinear", 2, {{"axis", i64{2}}, {"block_size", i64{2}}}), {x, bs})[0];
  for (i64 i = 0; i < x.numel(); ++i) {
    const i64 k = i % 4, c = (i / 4) % 3, n = i / 12;
    const double s = bs.get(n * 6 + c * 2 + k / 2);
    CHECK(qb.get(i) ==
          std::clamp(static_cast<double>(std::nearbyint(static_cast<float>(x.get(i) / s))), 0.0,
                     255.0));
  }
}

TEST_CASE("QLinearMatMul and QLinearConv are their float ops between dequantize and quantize") {
  std::mt19937_64 rng(3);
  for (DType qt : {DType::i8, DType::u8}) {
    const int lo = qt == DType::i8 ? -128 : 0, hi = qt == DType::i8 ? 127 : 255;
    const Tensor a = random_ints(qt, {2, 3, 5}, rng, lo, hi),
                 b = random_ints(qt, {5, 4}, rng, lo, hi);
    const Tensor as = scalar(DType::f32, 0.02), bs = scalar(DType::f32, 0.03),
                 ys = scalar(DType::f32, 0.5);
    const Tensor az = scalar(qt, lo + 3), bz = scalar(qt, lo + 9), yz = scalar(qt, lo + 60);
    const Tensor y = run(node("QLinearMatMul", 8), {a, as, az, b, bs, bz, ys, yz})[0];
    const Tensor ad = run(node("DequantizeLinear", 3), {a, as, az})[0];
    const Tensor bd = run(node("DequantizeLinear", 3), {b, bs, bz})[0];
    const Tensor f = run(node("MatMul", 2), {ad, bd})[0];
    const Tensor want = run(node("QuantizeLinear", 3), {f, ys, yz})[0];
    REQUIRE(y.dims() == want.dims());
    for (i64 i = 0; i < y.numel(); ++i)
      CHECK(std::abs(y.get(i) - want.get(i)) <= 1);  // f32 vs exact rounding

    const Tensor x = random_ints(qt, {1, 2, 5, 5}, rng, lo, hi);
    const Tensor w = random_ints(DType::i8, {3, 2, 3, 3}, rng, -128, 127);
    const Tensor ws = Tensor::from<float>({3}, {0.01f, 0.02f, 0.03f}),
                 wz = Tensor::from<std::int8_t>({3}, {0, 0, 0});
    const Tensor bias = Tensor::from<std::int32_t>({3}, {100, -50, 7});
    const std::map<std::string, Attribute> pads{{"pads", std::vector<i64>{1, 1, 1, 1}}};
    const Tensor yc = run(node("QLinearConv", 9, pads), {x, as, az, w, ws, wz, ys, yz, bias})[0];
    CHECK(yc.dims() == std::vector<i64>{1, 3, 5, 5});
    const Tensor xd = run(node("DequantizeLinear", 3), {x, as, az})[0];
    const Tensor wd = run(node("DequantizeLinear", 3, {{"axis", i64{0}}}), {w, ws, wz})[0];
    Tensor bf(DType::f32, {3});
    for (i64 m = 0; m < 3; ++m) bf.set(m, bias.get(m) * 0.02f * ws.get(m));
    const Tensor fc = run(node("Conv", 3, pads), {xd, wd, bf})[0];
    const Tensor wantc = run(node("QuantizeLinear", 3), {fc, ys, yz})[0];
    for (i64 i = 0; i < yc.numel(); ++i) CHECK(std::abs(yc.get(i) - wantc.get(i)) <= 1);
  }
}

TEST_CASE("MatMulInteger and ConvInteger accumulate exactly in int32 after the zero points") {
  std::mt19937_64 rng(4);
  const Tensor a = random_ints(DType::u8, {4, 6}, rng, 0, 255),
               b = random_ints(DType::i8, {6, 3}, rng, -128, 127);
  const Tensor az = Tensor::from<std::uint8_t>({4}, {1, 2, 3, 4});  // one per row of A
  const Tensor bz = Tensor::from<std::int8_t>({3}, {-1, 0, 1});     // one per column of B
  const Tensor y = run(node("MatMulInteger", 4), {a, b, az, bz})[0];
  CHECK(y.dtype() == DType::i32);
  for (i64 m = 0; m < 4; ++m)
    for (i64 n = 0; n < 3; ++n) {
      i64 acc = 0;
      for (i64 k = 0; k < 6; ++k)
        acc += (static_cast<i64>(a.get(m * 6 + k)) - az.get(m)) *
               (static_cast<i64>(b.get(k * 3 + n)) - bz.get(n));
      CHECK(y.get(m * 3 + n) == static_cast<double>(acc));
    }
  const Tensor x = random_ints(DType::u8, {1, 3, 4, 4}, rng, 0, 255),
               w = random_ints(DType::u8, {2, 3, 2, 2}, rng, 0, 255);
  const Tensor c =
      run(node("ConvInteger", 4), {x, w, scalar(DType::u8, 128), scalar(DType::u8, 100)})[0];
  CHECK(c.dims() == std::vector<i64>{1, 2, 3, 3});
  i64 acc = 0;  // output (0, 1, 2, 1)
  for (i64 ci = 0; ci < 3; ++ci)
    for (i64 kh = 0; kh < 2; ++kh)
      for (i64 kw = 0; kw < 2; ++kw)
        acc += (static_cast<i64>(x.get(ci * 16 + (2 + kh) * 4 + 1 + kw)) - 128) *
               (static_cast<i64>(w.get(12 + ci * 4 + kh * 2 + kw)) - 100);
  CHECK(c.get(9 + 2 * 3 + 1) == static_cast<double>(acc));
}

TEST_CASE("DynamicQuantizeLinear: the range holds zero, the scale spans it in 255 steps") {
  const Tensor x = Tensor::from<float>({4}, {1.f, 2.f, 3.f, 5.1f});
  const auto out = run(node("DynamicQuantizeLinear", 1, {}, 3), {x});
  CHECK(out[1].get(0) == doctest::Approx(5.1 / 255));
  CHECK(out[2].get(0) == 0);
  CHECK(out[0].get(3) == 255);
  const auto zeros = run(node("DynamicQuantizeLinear", 1, {}, 3), {Tensor(DType::f32, {3})});
  CHECK(zeros[1].get(0) == 0);
  CHECK(zeros[0].get(0) == 0);
}

TEST_CASE("the shape rules name what is wrong") {
  const TensorType x{DType::f32, Shape::of({2, 3, 4})};
  expect_error<ShapeError>(
      [&] {
        infer_one("QuantizeLinear", {x, {DType::f32, Shape::of({4})}});
      },
      {"y_scale has 4 elements", "x's dim 3"});
  expect_error<ShapeError>(
      [&] {
        infer_one("QuantizeLinear", {x, {DType::f32, Shape::of({3})}}, {{"axis", i64{3}}});
      },
      {"'axis' 3 is out of range"});
  expect_error<ShapeError>(
      [&] {
        infer_one("QuantizeLinear", {x, {DType::f32, Shape::of({2, 3, 3})}},
                  {{"axis", i64{2}}, {"block_size", i64{2}}});
      },
      {"must be 2 in dim 2"});
  expect_error<UnsupportedError>(
      [&] {
        infer_one("QuantizeLinear", {x, {DType::f32, Shape{}}}, {{"output_dtype", i64{6}}});
      },
      {"quantizing to i32"});
  expect_error<ShapeError>(
      [&] {
        infer_one("DequantizeLinear",
                  {{DType::i8, Shape::of({4})}, {DType::f32, Shape{}}, {DType::u8, Shape{}}});
      },
      {"x_zero_point has dtype u8, x i8"});
  expect_error<ShapeError>(
      [&] {
        infer_one("MatMulInteger",
                  {{DType::f32, Shape::of({2, 3})}, {DType::i8, Shape::of({3, 2})}});
      },
      {"A has dtype f32; expected int8 or uint8"});
  expect_error<ShapeError>(
      [&] {
        infer_one("MatMulInteger", {{DType::u8, Shape::of({2, 3})},
                                    {DType::u8, Shape::of({3, 2})},
                                    {DType::u8, Shape::of({3})}});
      },
      {"a_zero_point [3] must be a scalar or hold one value per row of A (2)"});
}

// ---- float8 -------------------------------------------------------------------------------------

TEST_CASE("float8: each type's landmarks decode to their values") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    DType t;
    std::uint8_t code;
    double value;
  };
  const Case cases[] = {{DType::f8e4m3fn, 0x7E, 448},       {DType::f8e4m3fn, 0x7F, nan},
                        {DType::f8e4m3fn, 0x01, 0x1p-9},    {DType::f8e4m3fn, 0x08, 0x1p-6},
                        {DType::f8e4m3fn, 0x38, 1},         {DType::f8e4m3fn, 0xB8, -1},
                        {DType::f8e4m3fnuz, 0x7F, 240},     {DType::f8e4m3fnuz, 0x80, nan},
                        {DType::f8e4m3fnuz, 0x01, 0x1p-10}, {DType::f8e4m3fnuz, 0x40, 1},
                        {DType::f8e5m2, 0x7B, 57344},       {DType::f8e5m2, 0x7C, HUGE_VAL},
                        {DType::f8e5m2, 0xFC, -HUGE_VAL},   {DType::f8e5m2, 0x7E, nan},
                        {DType::f8e5m2, 0x01, 0x1p-16},     {DType::f8e5m2, 0x3C, 1},
                        {DType::f8e5m2fnuz, 0x7F, 57344},   {DType::f8e5m2fnuz, 0x80, nan},
                        {DType::f8e5m2fnuz, 0x01, 0x1p-17}, {DType::f8e5m2fnuz, 0x40, 1},
                        {DType::f8e8m0, 0x7F, 1},           {DType::f8e8m0, 0x00, 0x1p-127},
                        {DType::f8e8m0, 0xFE, 0x1p127},     {DType::f8e8m0, 0xFF, nan}};
  for (const Case& c : cases) {
    CAPTURE(dtype_name(c.t));
    CAPTURE(int{c.code});
    const double v = float8_to_double(c.t, c.code);
    if (std::isnan(c.value))
      CHECK(std::isnan(v));
    else
      CHECK(v == c.value);
  }
}

TEST_CASE("float8: every code converts back to itself; ties round to even") {
  for (DType t : kFloat8DTypes) {
    CAPTURE(dtype_name(t));
    for (int c = 0; c < 256; ++c) {
      const double v = float8_to_double(t, static_cast<std::uint8_t>(c));
      if (std::isnan(v)) continue;
      CAPTURE(c);
      // (f8e8m0's code 0, 2^-127, is a subnormal float: only round_mode "down" keeps it.)
      CHECK(float8_from_double(t, v, false, E8m0Rounding::down) == c);
    }
  }
  // 1 + 1/16 lies halfway between 1 and 1.125 (e4m3: 3 mantissa bits): the even one, 1, wins;
  // 1 + 3/16 halfway between 1.125 and 1.25 goes to 1.25.
  CHECK(float8_to_double(DType::f8e4m3fn, float8_from_double(DType::f8e4m3fn, 1.0625)) == 1);
  CHECK(float8_to_double(DType::f8e4m3fn, float8_from_double(DType::f8e4m3fn, 1.1875)) == 1.25);
  // Halfway between the two smallest subnormals (2^-9 and 2^-8) goes to the even one.
  CHECK(float8_to_double(DType::f8e4m3fn, float8_from_double(DType::f8e4m3fn, 0x3p-10)) == 0x1p-8);
  CHECK(float8_from_double(DType::f8e4m3fn, 0x1p-11) == 0);  // below half the smallest: zero
}

TEST_CASE("float8: out of range saturates or becomes NaN/infinity; fnuz has no negative zero") {
  const double inf = HUGE_VAL;
  CHECK(float8_from_double(DType::f8e4m3fn, 1e6, true) == 0x7E);
  CHECK(float8_from_double(DType::f8e4m3fn, -1e6, true) == 0xFE);
  CHECK(float8_from_double(DType::f8e4m3fn, inf, true) == 0x7E);
  CHECK(std::isnan(
      float8_to_double(DType::f8e4m3fn, float8_from_double(DType::f8e4m3fn, 1e6, false))));
  CHECK(float8_from_double(DType::f8e4m3fn, 464, false) == 0x7E);  // rounds down to 448
  CHECK(float8_from_double(DType::f8e5m2, 1e6, false) == 0x7C);    // infinity
  CHECK(float8_from_double(DType::f8e5m2, -inf, false) == 0xFC);
  CHECK(float8_from_double(DType::f8e5m2, 1e6, true) == 0x7B);
  CHECK(float8_from_double(DType::f8e4m3fnuz, -0.0) == 0x00);
  CHECK(float8_from_double(DType::f8e4m3fn, -0.0) == 0x80);
  CHECK(float8_from_double(DType::f8e5m2fnuz, 1e9, false) == 0x80);  // its only NaN
  // f8e8m0 keeps a float's exponent, rounded as round_mode says (the sign is dropped).
  CHECK(float8_from_double(DType::f8e8m0, 3.0, true, E8m0Rounding::up) == 0x81);
  CHECK(float8_from_double(DType::f8e8m0, 3.0, true, E8m0Rounding::down) == 0x80);
  CHECK(float8_from_double(DType::f8e8m0, 3.0, true, E8m0Rounding::nearest) == 0x81);
  CHECK(float8_from_double(DType::f8e8m0, 2.5, true, E8m0Rounding::nearest) == 0x80);
  CHECK(float8_from_double(DType::f8e8m0, 0x1.8p127, true, E8m0Rounding::up) == 0xFE);
  CHECK(float8_from_double(DType::f8e8m0, 0x1.8p127, false, E8m0Rounding::up) == 0xFF);
}

TEST_CASE("float8 through Cast, QuantizeLinear and DequantizeLinear, and the ops that move bytes") {
  const Tensor x = Tensor::from<float>({6}, {0.3f, -2.f, 500.f, -1e9f, 1.0625f, 0.f});
  Tensor cast = run(node("Cast", 1, {{"to", i64{17}}}), {x})[0];
  REQUIRE(cast.dtype() == DType::f8e4m3fn);
  const std::vector<double> sat{0.3125, -2, 448, -448, 1, 0};
  CHECK(cast.to_doubles() == sat);
  Tensor nosat = run(node("Cast", 1, {{"to", i64{17}}, {"saturate", i64{0}}}), {x})[0];
  CHECK(std::isnan(nosat.get(2)));
  CHECK(std::isnan(nosat.get(3)));
  CHECK(nosat.get(0) == 0.3125);
  // Back to float: exact; to f16 likewise.
  CHECK(run(node("Cast", 1, {{"to", i64{1}}}), {cast})[0].to_doubles() == sat);
  CHECK(run(node("Cast", 1, {{"to", i64{10}}}), {cast})[0].to_doubles() == sat);
  // QuantizeLinear divides by the scale in its precision, then casts with `saturate`.
  Tensor zp8(DType::f8e5m2, {});
  zp8.set(0, 0);
  const Tensor q = run(node("QuantizeLinear", 3), {x, scalar(DType::f32, 2), zp8})[0];
  REQUIRE(q.dtype() == DType::f8e5m2);
  CHECK(q.get(1) == -1);
  CHECK(q.get(2) == 256);
  CHECK(q.get(3) == -57344);  // saturated
  const Tensor d = run(node("DequantizeLinear", 3), {q, scalar(DType::f32, 2), zp8})[0];
  CHECK(d.dtype() == DType::f32);
  CHECK(d.get(2) == 512);
  // Transpose and Reshape move float8 bytes untouched; arithmetic on them is refused by name.
  const Tensor m = cast.reshaped({2, 3});
  CHECK(run(node("Transpose", 1), {run(node("Transpose", 1), {m})[0]})[0].to_doubles() == sat);
  expect_error<Error>([&] { run(node("Abs", 1), {m}); }, {"f8e4m3fn"});
}

TEST_CASE(
    "sub-byte types: the integers wrap in Cast and saturate in QuantizeLinear; float4 rounds "
    "to even; ONNX files pack them") {
  // Cast's rule: toward zero, then the low bits; QuantizeLinear's (saturate): the range.
  CHECK(narrow_to_double(DType::i4, narrow_from_double(DType::i4, -9, false)) == 7);
  CHECK(narrow_to_double(DType::i4, narrow_from_double(DType::i4, 8.7, false)) == -8);
  CHECK(narrow_to_double(DType::i4, narrow_from_double(DType::i4, -9, true)) == -8);
  CHECK(narrow_to_double(DType::u4, narrow_from_double(DType::u4, 17, false)) == 1);
  CHECK(narrow_to_double(DType::u4, narrow_from_double(DType::u4, 17, true)) == 15);
  CHECK(narrow_to_double(DType::i2, narrow_from_double(DType::i2, 2, false)) == -2);
  CHECK(narrow_to_double(DType::u2, narrow_from_double(DType::u2, -1, true)) == 0);
  // f4e2m1: 0, 0.5, 1, 1.5, 2, 3, 4, 6; 2.5 ties to 2 (even code 4), 5 to 4, past 6 saturates.
  CHECK(narrow_to_double(DType::f4e2m1, narrow_from_double(DType::f4e2m1, 2.5)) == 2);
  CHECK(narrow_to_double(DType::f4e2m1, narrow_from_double(DType::f4e2m1, 5)) == 4);
  CHECK(narrow_to_double(DType::f4e2m1, narrow_from_double(DType::f4e2m1, -100)) == -6);
  CHECK(narrow_to_double(DType::f4e2m1, narrow_from_double(DType::f4e2m1, 0.3)) == 0.5);
  for (DType t : kSubByteDTypes) {
    CAPTURE(dtype_name(t));
    std::vector<std::uint8_t> e;  // every value once, in kiln's one-byte form
    for (int c = 0; c < (1 << onnx_bits(t)); ++c) {
      const double v = t == DType::f4e2m1 ? narrow_to_double(t, static_cast<std::uint8_t>(c))
                       : (t == DType::i4 || t == DType::i2) ? c - (1 << (onnx_bits(t) - 1))
                                                            : c;
      e.push_back(narrow_from_double(t, v, true));
      CHECK(narrow_to_double(t, e.back()) == v);
    }
    e.push_back(e[1]);  // an odd count: the last byte half (or a quarter) used
    const auto packed = pack_subbyte(t, e.data(), e.size());
    CHECK(packed.size() == (e.size() * static_cast<std::size_t>(onnx_bits(t)) + 7) / 8);
    std::vector<std::uint8_t> back(e.size());
    unpack_subbyte(t, packed.data(), e.size(), back.data());
    CHECK(back == e);
  }
  // QuantizeLinear to int4 with a zero point; DequantizeLinear back.
  Tensor zp(DType::i4, {});
  zp.set(0, 1);
  const Tensor x = Tensor::from<float>({4}, {0.f, 2.5f, 30.f, -30.f});
  const Tensor q = run(node("QuantizeLinear", 3), {x, scalar(DType::f32, 1), zp})[0];
  REQUIRE(q.dtype() == DType::i4);
  CHECK(q.to_doubles() == std::vector<double>{1, 3, 7, -8});
  const Tensor d = run(node("DequantizeLinear", 3), {q, scalar(DType::f32, 1), zp})[0];
  CHECK(d.to_doubles() == std::vector<double>{0, 2, 6, -9});
}
