// WTS files: the three dialects, auto-detection, writers, bad files, fuzzing, hashing, content
// checks and the porting conversions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

using namespace kiln;
namespace fs = std::filesystem;

namespace {

std::string bytes_of(const void* p, std::size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

/// A fresh directory under the system temp dir, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("kiln_wts_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const FormatError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("NOT A FormatError: ") + e.what();
  }
  return "NO ERROR";
}

/// Reading `content` from a file fails with a FormatError containing every `parts` (under the
/// given dialect, and also under auto-detection when `also_auto`).
void expect_bad(const TempDir& dir, const std::string& name, const std::string& content,
                std::optional<WtsDialect> d, std::initializer_list<std::string_view> parts,
                bool also_auto = true) {
  const fs::path p = dir.write(name, content);
  auto check = [&](std::optional<WtsDialect> dd) {
    WtsReadOptions o;
    o.dialect = dd;
    const std::string msg = error_of([&] { read_wts(p, o); });
    INFO("file ", name, " dialect ", dd ? wts_dialect_name(*dd) : "auto", ": ", msg);
    CHECK(msg.find("NO ERROR") == std::string::npos);
    CHECK(msg.find("NOT A FormatError") == std::string::npos);
    CHECK(msg.find(p.string()) != std::string::npos);
    for (auto part : parts) CHECK(msg.find(part) != std::string::npos);
  };
  check(d);
  if (also_auto && d) check(std::nullopt);
}

WeightMap random_weights(std::mt19937& rng, bool all_types) {
  WeightMap w;
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  auto fill = [&](Tensor t) {
    for (std::int64_t i = 0; i < t.numel(); ++i)
      t.set(i, is_float(t.dtype()) ? u(rng) : std::round(u(rng) * 40));
    return t;
  };
  w.add("conv1.weight", fill(Tensor(DType::f32, {4, 1, 3, 3})));
  w.add("conv1.bias", fill(Tensor(DType::f32, {4})));
  w.add("fc.weight", fill(Tensor(DType::f32, {3, 7})));
  if (all_types) {
    w.add("half.w", fill(Tensor(DType::f16, {2, 5})));
    w.add("q.scale", fill(Tensor(DType::i8, {6})));
    w.add("idx", fill(Tensor(DType::i32, {2, 2})));
    w.add("scalar", fill(Tensor(DType::f32, {})));
  }
  return w;
}

void check_same_values(const WeightMap& a, const WeightMap& b) {
  REQUIRE(a.names() == b.names());
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    INFO(name);
    CHECK(t.numel() == u.numel());
    for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(t.get(i) == u.get(i));
  }
}

}  // namespace

TEST_CASE("dialect names") {
  for (auto d : kAllWtsDialects) CHECK(parse_wts_dialect(wts_dialect_name(d)) == d);
  CHECK_THROWS_WITH_AS(parse_wts_dialect("onnx"),
                       "unknown WTS dialect 'onnx' (expected trt-hex, trt-binary or tensorrtx)",
                       Error);
}

TEST_CASE("trt-hex: type column, unpadded words, every type") {
  const std::string text =
      "4\n"
      "conv1.bias 0 3 3f800000 0 bf800000\n"
      "half 1 2 3c00 c000\n"
      "q 2 3 ff 1 7f\n"
      "n 3 2 ffffffff 2A\n";
  for (auto d : {std::optional<WtsDialect>{}, std::optional<WtsDialect>{WtsDialect::trt_hex}}) {
    WtsReadOptions o;
    o.dialect = d;
    const WtsFile f = read_wts_string(text, "mnist.wts", o);
    CHECK(f.dialect == WtsDialect::trt_hex);
    REQUIRE(f.entries.size() == 4);
    CHECK(f.entries[0].name == "conv1.bias");
    CHECK(f.entries[0].line == 2);
    CHECK(f.entries[0].offset == 2);
    CHECK(f.entries[3].name == "n");
    CHECK(f.entries[3].line == 5);
    CHECK_FALSE(f.entries[1].has_shape);
    const auto& w = f.weights;
    CHECK(w.at("conv1.bias").dims() == std::vector<std::int64_t>{3});
    CHECK(w.at("conv1.bias").to_doubles() == std::vector<double>{1.0, 0.0, -1.0});
    CHECK(w.at("half").dtype() == DType::f16);
    CHECK(w.at("half").to_doubles() == std::vector<double>{1.0, -2.0});
    CHECK(w.at("q").dtype() == DType::i8);
    CHECK(w.at("q").to_doubles() == std::vector<double>{-1, 1, 127});
    CHECK(w.at("n").dtype() == DType::i32);
    CHECK(w.at("n").to_doubles() == std::vector<double>{-1, 42});
  }
}

TEST_CASE("tensorrtx: 8-digit words, 0x words, a last line without newline") {
  const std::string text = "2\nfc.weight 3  3f800000 40000000 0xbf800000\nfc.bias 1 0x0";
  const WtsFile f = read_wts_string(text, "yolo.wts");
  CHECK(f.dialect == WtsDialect::tensorrtx);
  CHECK(f.weights.at("fc.weight").to_doubles() == std::vector<double>{1.0, 2.0, -1.0});
  CHECK(f.weights.at("fc.bias").to_doubles() == std::vector<double>{0.0});
  CHECK(f.entries[1].line == 3);
  // Unpadded words without 0x are not tensorrtx.
  const std::string bad = "1\nb 2 3f800000 0\n";
  WtsReadOptions o;
  o.dialect = WtsDialect::tensorrtx;
  CHECK(error_of([&] {
          read_wts_string(bad, "b.wts", o);
        }).find("b.wts: line 2, byte 15: hex word '0' has 1 digits; tensorrtx words have 8") == 0);
}

TEST_CASE("trt-binary: shapes as tuples, raw little-endian bytes holding newlines and spaces") {
  const float a[6] = {1.0f, -2.5f, std::bit_cast<float>(0x0a200a20u), 3.0f, 0.0f, 7.0f};
  const std::int32_t b[4] = {10, -1, 0x0a0a0a0a, 0x20};
  const std::uint16_t h = 0x3c00;
  std::string file = "3\n";
  file += "rnn.weight 0 (2, 3) " + bytes_of(a, sizeof a) + "\n";
  file += "ids 3 (4,) " + bytes_of(b, sizeof b) + "\n";
  file += "one 1 () " + bytes_of(&h, 2);  // last newline missing
  const WtsFile f = read_wts_string(file, "char-rnn.wts");
  CHECK(f.dialect == WtsDialect::trt_binary);
  REQUIRE(f.entries.size() == 3);
  CHECK(f.entries[0].has_shape);
  CHECK(f.entries[0].line == 0);
  CHECK(f.entries[1].offset == 2 + 20 + 24 + 1);
  const Tensor& w = f.weights.at("rnn.weight");
  CHECK(w.dims() == std::vector<std::int64_t>{2, 3});
  for (int i = 0; i < 6; ++i)
    CHECK(std::bit_cast<std::uint32_t>(w.data<float>()[i]) == std::bit_cast<std::uint32_t>(a[i]));
  CHECK(f.weights.at("ids").to_doubles() == std::vector<double>{10, -1, 0x0a0a0a0a, 0x20});
  CHECK(f.weights.at("one").dims().empty());
  CHECK(f.weights.at("one").get(0) == 1.0);
}

TEST_CASE("keep_values=false checks the whole file and keeps no values") {
  std::mt19937 rng(7);
  const WeightMap w = random_weights(rng, true);
  for (auto d : {WtsDialect::trt_hex, WtsDialect::trt_binary}) {
    WtsReadOptions o;
    o.keep_values = false;
    const WtsFile f = read_wts_string(write_wts_string(w, d), "x.wts", o);
    CHECK(f.dialect == d);
    CHECK(f.weights.empty());
    CHECK(f.entries.size() == w.size());
  }
}

TEST_CASE("writers: read(write(w)) gives back every value, in every dialect, for many maps") {
  std::mt19937 rng(1234);
  for (int round = 0; round < 20; ++round) {
    for (auto d : kAllWtsDialects) {
      const WeightMap w = random_weights(rng, d != WtsDialect::tensorrtx || round % 2);
      const std::string text = write_wts_string(w, d);
      const WtsFile f = read_wts_string(text, "round.wts");  // auto-detects
      INFO(wts_dialect_name(d), " round ", round);
      CHECK(f.dialect == d);
      check_same_values(w, f.weights);
      if (d == WtsDialect::trt_binary) {
        CHECK(weights_hash(f.weights) == weights_hash(w));  // shapes and dtypes survive
      }
      if (d == WtsDialect::tensorrtx) {
        for (const auto& [n, t] : f.weights) CHECK(t.dtype() == DType::f32);
      }
      // Writing what was read gives the same bytes.
      CHECK(write_wts_string(f.weights, d) ==
            (d == WtsDialect::trt_hex || d == WtsDialect::trt_binary || round % 2 == 0
                 ? text
                 : write_wts_string(f.weights, d)));
    }
  }
  WeightMap bad;
  bad.add("steps", Tensor(DType::i64, {1}));
  CHECK_THROWS_WITH_AS(
      write_wts_string(bad, WtsDialect::trt_hex),
      "trt-hex holds float32, float16, int8 and int32 weights; 'steps' is i64 (cast it first)",
      UnsupportedError);
  WeightMap spaced;
  spaced.add("a b", Tensor(DType::f32, {1}));
  CHECK_THROWS_AS(write_wts_string(spaced, WtsDialect::tensorrtx), Error);
}

TEST_CASE("writers: files on disk") {
  TempDir dir;
  std::mt19937 rng(3);
  const WeightMap w = random_weights(rng, true);
  write_wts(w, dir.path / "w.wts", WtsDialect::trt_binary);
  const WeightMap r = load_wts(dir.path / "w.wts");
  CHECK(weights_hash(r) == weights_hash(w));
  CHECK_THROWS_WITH_AS(load_wts(dir.path / "missing.wts"), doctest::Contains("no such file"),
                       Error);
  CHECK_THROWS_WITH_AS(load_wts(dir.path), doctest::Contains("not a regular file"), Error);
}

TEST_CASE("auto-detection: several dialects or none ask for the dialect flag") {
  const std::string msg = error_of([] { read_wts_string("0\n", "zero.wts"); });
  CHECK(msg ==
        "zero.wts: reads whole as 3 WTS dialects (trt-hex, trt-binary, tensorrtx); pass the "
        "dialect (--dialect trt-hex|trt-binary|tensorrtx) to choose one");
  WtsReadOptions o;
  o.dialect = WtsDialect::tensorrtx;
  CHECK(read_wts_string("0\n", "zero.wts", o).entries.empty());
  // A trt-hex file with a bad word: the furthest dialect leads, the others follow.
  const std::string m2 = error_of([] { read_wts_string("1\nw 0 2 3f800000 xyz\n", "m.wts"); });
  CHECK(
      m2.find("m.wts: not a valid WTS file in any dialect (pass --dialect to read it as one); it "
              "reads furthest as trt-hex: line 2, byte 17: 'xyz' is not a hex word (value 1 of the "
              "2 of weight 'w')") == 0);
  CHECK(m2.find("\n  as tensorrtx: ") != std::string::npos);
  CHECK(m2.find("\n  as trt-binary: ") != std::string::npos);
}

TEST_CASE("bad files: each refused with a clear FormatError naming the line or byte") {
  TempDir dir;
  const auto hex = WtsDialect::trt_hex;
  const auto trx = WtsDialect::tensorrtx;
  const auto bin = WtsDialect::trt_binary;

  SUBCASE("empty") {
    expect_bad(dir, "empty.wts", "", hex,
               {"line 1, byte 0: file is empty (expected the weight count"});
    expect_bad(dir, "blank.wts", " \n\n", bin, {"byte 3: file holds only whitespace"});
  }
  SUBCASE("truncated") {
    expect_bad(dir, "trunc.wts", "2\na 0 4 3f800000 0 0", hex,
               {"line 2, byte 20: file ends in weight 'a' after 3 of its 4 values (truncated)"},
               false);
    expect_bad(
        dir, "trunc2.wts", "2\na 0 2 1 2\nb 0 5 1", hex,
        {"line 3, byte 16: weight 'b' declares 5 values, but the remaining 2 bytes of the file "
         "could hold at most 1 hex words"});
    expect_bad(dir, "trunc_x.wts", "1\nw 3 3f800000 00000000", trx,
               {"file ends in weight 'w' after 2 of its 3 values"}, false);
    const float v[3] = {1, 2, 3};
    expect_bad(dir, "trunc.bin.wts", "1\nw 0 (3,) " + bytes_of(v, 10), bin,
               {"byte 11: weight 'w' (f32 (3,)) needs 12 bytes, but only 10 remain in the file"});
    expect_bad(dir, "trunc_hdr.wts", "1\nw 0 (3", bin, {"file ends in the shape of weight 'w'"},
               false);
  }
  SUBCASE("count disagrees with the records") {
    expect_bad(dir, "fewer.wts", "3\na 0 1 0\nb 0 1 0\n", hex,
               {"line 4, byte 18: file ends after 2 of 3 weights (the count line says 3"});
    expect_bad(dir, "more.wts", "1\na 0 1 0\nb 0 1 0\n", hex,
               {"line 3, byte 10: the count line says 1 weights, but more data follows ('b'): the "
                "count disagrees with the records"});
    expect_bad(dir, "more_x.wts", "1\na 1 00000000\nb 1 00000000", trx,
               {"line 3", "more data follows"});
    // A record with more words than its size: the hint names the previous weight.
    expect_bad(dir, "overrun.wts", "2\na 0 1 3f800000 40000000\nb 0 1 0\n", hex,
               {"line 3, byte 26: expected a type code (a decimal number), got 'b' (does weight "
                "'a' have more than its 1 values?)"},
               false);
    expect_bad(dir, "overrun2.wts", "2\na 0 1 3f800000 3f800000 40000000\nb 0 1 0\n", hex,
               {"does weight 'a' have more than its 1 values?"}, false);
    // Binary: a shape that disagrees with the data.
    const float v[4] = {1, 2, 3, 4};
    expect_bad(dir, "shape.bin.wts",
               "2\nw 0 (3,) " + bytes_of(v, 16) + "\nb 0 (1,) " + bytes_of(v, 4) + "\n", bin,
               {"byte 23: expected a newline after the 12 bytes of weight 'w', got byte 0x00"});
  }
  SUBCASE("non-hex token") {
    expect_bad(
        dir, "nonhex.wts", "1\nconv1.weight 0 3 3f800000 zz12 0\n", hex,
        {"line 2, byte 28: 'zz12' is not a hex word (value 1 of the 3 of weight 'conv1.weight')"},
        false);
    expect_bad(dir, "nonhex_x.wts", "1\nw 2 3f800000 3f80000g\n", trx,
               {"line 2, byte 15: '3f80000g' is not a hex word"}, false);
    expect_bad(dir, "wide.wts", "1\nh 1 1 13c00\n", hex,
               {"hex word '13c00' does not fit in 16 bits (value 0 of f16 weight 'h')"}, false);
  }
  SUBCASE("count larger than the file could hold") {
    expect_bad(
        dir, "bigcount.wts", "99999999\na 0 1 0\n", hex,
        {"line 1, byte 0: the count line says 99999999 weights, but the remaining 9 bytes of "
         "the file could hold at most 2"});
    expect_bad(dir, "bigsize.wts", "1\na 0 1000000000000 0\n", hex,
               {"weight 'a' declares 1000000000000 values, but the remaining 3 bytes"});
    expect_bad(dir, "bigsize_x.wts", "1\na 999999999999 00000000\n", trx,
               {"weight 'a' declares 999999999999 values"});
    expect_bad(
        dir, "bigshape.wts", "1\nw 0 (1000000, 1000000) \x01\x02\x03\x04\n", bin,
        {"weight 'w' (f32 (1000000, 1000000)) needs 4000000000000 bytes, but only 5 remain"});
    expect_bad(dir, "hugeshape.wts", "1\nw 0 (100000000, 100000000) \x01\n", bin,
               {"holds more than 2^40 values"});
    expect_bad(dir, "hugenum.wts", "1\na 0 99999999999999999999999 0\n", hex,
               {"expected a value count (a decimal number), got '99999999999999999999999'"}, false);
  }
  SUBCASE("duplicate names") {
    expect_bad(dir, "dup.wts", "3\nconv1.weight 0 1 0\nconv1.bias 0 1 0\nconv1.weight 0 1 0\n", hex,
               {"line 4, byte 38: weight 'conv1.weight' appears twice (lines 2 and 4)"});
    expect_bad(dir, "dup.bin.wts", "2\nw 2 (1,) \x01\nw 2 (1,) \x02\n", bin,
               {"byte 13: weight 'w' appears twice (bytes 2 and 13)"});
  }
  SUBCASE("binary garbage") {
    std::string png = "\x89PNG\r\n\x1a\n";
    png += std::string("\x00\x00\x00\rIHDR\x00\x00\x01\x00", 12);
    expect_bad(dir, "garbage.wts", png, hex,
               {"line 1, byte 0: expected the weight count (a decimal number), got binary data "
                "(byte 0x89)"});
    std::mt19937 rng(99);
    std::string noise(100000, '\0');
    for (auto& c : noise) c = static_cast<char>(rng() | 0x80);  // no whitespace: one giant token
    expect_bad(dir, "noise.wts", noise, bin,
               {"a token longer than 32 bytes where the weight count should be"});
    expect_bad(dir, "badname.wts", "1\n\x01\x02 0 1 0\n", hex,
               {"expected a weight name, got binary data (byte 0x01)"});
  }
  SUBCASE("empty weights") {
    // Refused by default; as tensorrtx "2\na 0 1 0" would otherwise read as two empty weights.
    expect_bad(dir, "short.wts", "2\na 0 1 0\n", std::nullopt,
               {"reads furthest as trt-hex: line 3, byte 10: file ends after 1 of 2 weights"},
               false);
    expect_bad(dir, "empty_w.wts", "1\nw 0 0\n", hex,
               {"line 2, byte 6: weight 'w' has 0 values (an empty weight; set "
                "WtsReadOptions::allow_empty_weights to accept it)"},
               false);
    expect_bad(dir, "empty_b.wts", "1\nw 0 (0, 3) \n", bin, {"byte 6: weight 'w' has 0 values"},
               false);
    WtsReadOptions o;
    o.dialect = hex;
    o.allow_empty_weights = true;
    const WtsFile f = read_wts_string("1\nw 0 0\n", "e.wts", o);
    CHECK(f.weights.at("w").numel() == 0);
    o.dialect = bin;
    CHECK(read_wts_string("1\nw 0 (0, 3) \n", "e.wts", o).weights.at("w").dims() ==
          std::vector<std::int64_t>{0, 3});
  }
  SUBCASE("unknown type code") {
    expect_bad(
        dir, "type.wts", "1\nw 7 1 0\n", hex,
        {"line 2, byte 4: unknown type 7 for weight 'w' (0 float32, 1 float16, 2 int8, 3 int32)"},
        false);
  }
}

TEST_CASE("fuzz: random bytes, truncations and mutations only ever throw kiln::Error") {
  std::mt19937 rng(2024);
  std::vector<std::string> valid;
  for (auto d : kAllWtsDialects)
    valid.push_back(write_wts_string(random_weights(rng, d != WtsDialect::tensorrtx), d));
  const std::string alphabet = "0123456789abcdefxX ()\n,\t.-zq\x00\xff";
  std::int64_t reads = 0, accepted = 0;
  auto attempt = [&](const std::string& s) {
    for (int k = -1; k < 3; ++k) {
      WtsReadOptions o;
      if (k >= 0) o.dialect = kAllWtsDialects[k];
      ++reads;
      try {
        read_wts_string(s, "fuzz.wts", o);
        ++accepted;
      } catch (const Error&) {
      } catch (const std::exception& e) {
        FAIL("non-kiln exception: ", e.what(), " for input of ", s.size(), " bytes");
      }
    }
  };
  for (int i = 0; i < 1500; ++i) {
    std::string s(rng() % 200, '\0');
    const bool text = i % 2;
    for (auto& c : s) c = text ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    if (i % 3 == 0) s = std::to_string(rng() % 4) + "\n" + s;
    attempt(s);
  }
  for (const auto& v : valid) {
    for (std::size_t n = 0; n < v.size(); n += 1 + v.size() / 400) attempt(v.substr(0, n));
    for (int i = 0; i < 300; ++i) {
      std::string m = v;
      for (int k = 0; k < 1 + i % 3; ++k) m[rng() % m.size()] = static_cast<char>(rng());
      attempt(m);
    }
  }
  CHECK(reads > 10000);
  MESSAGE(reads, " reads, ", accepted, " accepted");
}

TEST_CASE("weights_hash: stable, and sensitive to names, dtypes, dims and every bit") {
  WeightMap w;
  w.add("a", Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  w.add("b", Tensor::from<std::int32_t>({2}, {7, -8}));
  const std::uint64_t h = weights_hash(w);
  CHECK(weights_hash_string(h) == "fnv1a64:36cc2cb2505cbe1b");
  // Insertion order does not matter.
  WeightMap w2;
  w2.add("b", Tensor::from<std::int32_t>({2}, {7, -8}));
  w2.add("a", Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}));
  CHECK(weights_hash(w2) == h);
  auto with = [&](const std::string& name, Tensor t) {
    WeightMap m;
    m.add(name, std::move(t));
    m.add("b", w.at("b"));
    return weights_hash(m);
  };
  CHECK(with("a", Tensor::from<float>({3, 2}, {1, 2, 3, 4, 5, 6})) != h);   // dims
  CHECK(with("a2", Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6})) != h);  // name
  CHECK(with("a", Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6}).cast(DType::i32)) != h);
  // Flip every bit of the data, one at a time.
  const Tensor a = w.at("a");
  for (std::size_t bit = 0; bit < a.nbytes() * 8; ++bit) {
    Tensor c = a.clone();
    c.raw()[bit / 8] ^= std::byte(1u << (bit % 8));
    CHECK(with("a", c) != h);
  }
  CHECK_NOTHROW(check_weights_hash(w2, h, "plan 'lenet.plan'"));
  CHECK_THROWS_WITH_AS(check_weights_hash(w2, h ^ 1, "plan 'lenet.plan'"),
                       doctest::Contains("plan 'lenet.plan' was built from weights fnv1a64:"),
                       WeightError);
}

TEST_CASE("content checks: NaN and Inf named with the first index, dtypes per layer") {
  WeightMap w;
  w.add("ok", Tensor::from<float>({2}, {1, 2}));
  Tensor bad = Tensor::from<float>({2, 3}, {0, 1, 2, 3, NAN, NAN});
  w.add("conv.weight", bad);
  CHECK_THROWS_WITH_AS(
      check_weights_finite(w),
      "weight 'conv.weight' f32[2,3] has NaN at index 4 [1,1] (2 NaN, 0 Inf in all)", WeightError);
  Tensor h(DType::f16, {3});
  h.set(2, -INFINITY);
  w.add("half", h);
  const std::string msg = [&] {
    try {
      check_weights_finite(w);
    } catch (const WeightError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  CHECK(msg.find("2 weights hold NaN or Inf:") == 0);
  CHECK(msg.find("weight 'half' f16[3] has -Inf at index 2 [2] (0 NaN, 1 Inf in all)") !=
        std::string::npos);
  WeightMap fine;
  fine.add("x", Tensor::from<float>({1}, {0}));
  fine.add("i", Tensor::from<std::int32_t>({1}, {5}));
  CHECK_NOTHROW(check_weights_finite(fine));
  WeightMap q;
  q.add("conv1.weight", Tensor(DType::i8, {4}));
  CHECK_THROWS_WITH_AS(
      check_weight_dtype(q, "conv1.weight", "[conv2d 'conv1']", {DType::f32, DType::f16}),
      "[conv2d 'conv1'] weight 'conv1.weight' has dtype i8, expected f32 or f16", WeightError);
  CHECK_NOTHROW(check_weight_dtype(q, "conv1.weight", "[conv2d 'conv1']", {DType::i8}));
}

// ---------------------------------------------------------------------------------------------
// Porting conversions

namespace {
Tensor random_tensor(std::mt19937& rng, std::vector<std::int64_t> dims) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor t(DType::f32, std::move(dims));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}
float at(const Tensor& t, std::initializer_list<std::int64_t> idx) {
  std::int64_t flat = 0;
  std::size_t d = 0;
  for (auto i : idx) flat = flat * t.dim(d++) + i;
  return t.data<float>()[flat];
}
double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

/// One LSTM step in the IR's convention: gates = W x + R h + Wb + Rb, order i,o,f,c.
std::pair<std::vector<double>, std::vector<double>> ir_step(const port::LstmWeights& w,
                                                            const std::vector<double>& x,
                                                            const std::vector<double>& h,
                                                            const std::vector<double>& c) {
  const std::int64_t H = static_cast<std::int64_t>(h.size()),
                     I = static_cast<std::int64_t>(x.size());
  std::vector<double> g(4 * H);
  for (std::int64_t r = 0; r < 4 * H; ++r) {
    double s = w.b.data<float>()[r] + w.b.data<float>()[4 * H + r];
    for (std::int64_t k = 0; k < I; ++k) s += at(w.w, {r, k}) * x[k];
    for (std::int64_t k = 0; k < H; ++k) s += at(w.r, {r, k}) * h[k];
    g[r] = s;
  }
  std::vector<double> h2(H), c2(H);
  for (std::int64_t j = 0; j < H; ++j) {
    const double i = sigmoid(g[j]), o = sigmoid(g[H + j]), f = sigmoid(g[2 * H + j]),
                 cc = std::tanh(g[3 * H + j]);
    c2[j] = f * c[j] + i * cc;
    h2[j] = o * std::tanh(c2[j]);
  }
  return {h2, c2};
}
}  // namespace

TEST_CASE("permute, hwio_to_kcrs, dense_to_ir: out[idx] == in[perm(idx)] over many shapes") {
  std::mt19937 rng(5);
  for (int round = 0; round < 30; ++round) {
    const std::int64_t H = 1 + rng() % 4, W = 1 + rng() % 4, I = 1 + rng() % 3, O = 1 + rng() % 5;
    const Tensor k = random_tensor(rng, {H, W, I, O});
    const Tensor kcrs = port::hwio_to_kcrs(k);
    REQUIRE(kcrs.dims() == std::vector<std::int64_t>{O, I, H, W});
    for (std::int64_t o = 0; o < O; ++o)
      for (std::int64_t i = 0; i < I; ++i)
        for (std::int64_t r = 0; r < H; ++r)
          for (std::int64_t s = 0; s < W; ++s) CHECK(at(kcrs, {o, i, r, s}) == at(k, {r, s, i, o}));
    const Tensor d = random_tensor(rng, {H, O});
    const Tensor dt = port::dense_to_ir(d);
    for (std::int64_t a = 0; a < H; ++a)
      for (std::int64_t b = 0; b < O; ++b) CHECK(at(dt, {b, a}) == at(d, {a, b}));
    // A permutation and its inverse give back the tensor.
    const std::int64_t p[] = {2, 0, 3, 1}, inv[] = {1, 3, 0, 2};
    const Tensor back = port::permute(port::permute(k, p), inv);
    CHECK(back.to_doubles() == k.to_doubles());
  }
  const std::int64_t bad[] = {0, 0};
  CHECK_THROWS_AS(port::permute(Tensor(DType::f32, {2, 2}), bad), ShapeError);
  CHECK_THROWS_AS(port::hwio_to_kcrs(Tensor(DType::f32, {2, 2})), WeightError);
}

TEST_CASE("reorder_gates: explicit orders and inverse laws") {
  const Tensor t = Tensor::from<float>({4}, {0, 1, 2, 3});  // i f g o (PyTorch)
  CHECK(port::reorder_gates(t, 0, "ifgo", "iofc").to_doubles() == std::vector<double>{0, 3, 1, 2});
  const Tensor tf = Tensor::from<float>({4}, {0, 1, 2, 3});  // i c f o (TF)
  CHECK(port::reorder_gates(tf, 0, "icfo", "iofc").to_doubles() == std::vector<double>{0, 3, 2, 1});
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    const std::int64_t H = 1 + rng() % 4, C = 1 + rng() % 3;
    const Tensor w = random_tensor(rng, {C, 4 * H, 2});
    const Tensor r =
        port::reorder_gates(port::reorder_gates(w, 1, "ifgo", "iofc"), 1, "iofc", "ifgo");
    CHECK(r.to_doubles() == w.to_doubles());
    CHECK(port::reorder_gates(w, -2, "icfo", "icfo").to_doubles() == w.to_doubles());
  }
  CHECK_THROWS_AS(port::reorder_gates(t, 0, "ifgo", "iofx"), Error);
  CHECK_THROWS_AS(port::reorder_gates(Tensor(DType::f32, {6}), 0, "ifgo", "iofc"), ShapeError);
}

TEST_CASE("LSTM: PyTorch, TensorFlow and IR layouts compute the same step") {
  std::mt19937 rng(42);
  for (int round = 0; round < 10; ++round) {
    const std::int64_t I = 1 + rng() % 5, H = 1 + rng() % 4;
    const double forget_bias = round % 2 ? 1.0 : 0.25;
    // PyTorch weights (gates i,f,g,o).
    const Tensor w_ih = random_tensor(rng, {4 * H, I}), w_hh = random_tensor(rng, {4 * H, H});
    const Tensor b_ih = random_tensor(rng, {4 * H}), b_hh = random_tensor(rng, {4 * H});
    // The same cell in TF's layout: kernel [I+H, 4H] (gates i,c,f,o), one bias minus forget_bias.
    Tensor kernel(DType::f32, {I + H, 4 * H}), bias(DType::f32, {4 * H});
    const int torch_of_tf[4] = {0, 2, 1, 3};  // TF gate k is PyTorch gate torch_of_tf[k]
    for (int k = 0; k < 4; ++k)
      for (std::int64_t j = 0; j < H; ++j) {
        const std::int64_t tr = torch_of_tf[k] * H + j, col = k * H + j;
        for (std::int64_t x = 0; x < I; ++x)
          kernel.data<float>()[x * 4 * H + col] = at(w_ih, {tr, x});
        for (std::int64_t x = 0; x < H; ++x)
          kernel.data<float>()[(I + x) * 4 * H + col] = at(w_hh, {tr, x});
        bias.data<float>()[col] =
            b_ih.data<float>()[tr] + b_hh.data<float>()[tr] - (k == 2 ? forget_bias : 0.0);
      }
    const auto from_torch = port::lstm_from_torch(w_ih, w_hh, b_ih, b_hh);
    const auto from_tf = port::lstm_from_tf(kernel, bias, I, forget_bias);
    CHECK(from_tf.w.to_doubles() == from_torch.w.to_doubles());
    CHECK(from_tf.r.to_doubles() == from_torch.r.to_doubles());
    CHECK(from_tf.w.dims() == std::vector<std::int64_t>{4 * H, I});
    CHECK(from_tf.b.dims() == std::vector<std::int64_t>{8 * H});
    for (std::int64_t j = 4 * H; j < 8 * H; ++j) CHECK(from_tf.b.data<float>()[j] == 0.0f);

    std::vector<double> x(I), h(H), c(H);
    for (auto* v : {&x, &h, &c})
      for (auto& e : *v) e = std::uniform_real_distribution<double>(-1, 1)(rng);
    // Direct formulas: PyTorch (i,f,g,o) and TF (i,j,f,o with forget_bias).
    std::vector<double> ht(H), ct(H), hf(H), cf(H);
    for (std::int64_t j = 0; j < H; ++j) {
      double g[4], z[4];
      for (int k = 0; k < 4; ++k) {
        const std::int64_t row = k * H + j;
        g[k] = b_ih.data<float>()[row] + b_hh.data<float>()[row];
        for (std::int64_t q = 0; q < I; ++q) g[k] += at(w_ih, {row, q}) * x[q];
        for (std::int64_t q = 0; q < H; ++q) g[k] += at(w_hh, {row, q}) * h[q];
        z[k] = bias.data<float>()[row];
        for (std::int64_t q = 0; q < I; ++q) z[k] += at(kernel, {q, row}) * x[q];
        for (std::int64_t q = 0; q < H; ++q) z[k] += at(kernel, {I + q, row}) * h[q];
      }
      ct[j] = sigmoid(g[1]) * c[j] + sigmoid(g[0]) * std::tanh(g[2]);
      ht[j] = sigmoid(g[3]) * std::tanh(ct[j]);
      cf[j] = c[j] * sigmoid(z[2] + forget_bias) + sigmoid(z[0]) * std::tanh(z[1]);
      hf[j] = std::tanh(cf[j]) * sigmoid(z[3]);
    }
    for (const auto* w : {&from_torch, &from_tf}) {
      auto [h2, c2] = ir_step(*w, x, h, c);
      for (std::int64_t j = 0; j < H; ++j) {
        CHECK(h2[j] == doctest::Approx(ht[j]).epsilon(1e-5));
        CHECK(c2[j] == doctest::Approx(ct[j]).epsilon(1e-5));
        CHECK(h2[j] == doctest::Approx(hf[j]).epsilon(1e-5));
      }
    }
    // The WeightMap form gives PyTorch tensors equal to the originals (bias: the sum).
    WeightMap m;
    m.add("cell/kernel", kernel);
    m.add("cell/bias", bias);
    m.add("fc.weight", Tensor(DType::f32, {2}));
    port::tf_lstm_to_torch(m, "cell/kernel", "cell/bias", I, "rnn.", 1, forget_bias);
    CHECK(m.names() == std::vector<std::string>{"fc.weight", "rnn.bias_hh_l1", "rnn.bias_ih_l1",
                                                "rnn.weight_hh_l1", "rnn.weight_ih_l1"});
    CHECK(m.at("rnn.weight_ih_l1").to_doubles() == w_ih.to_doubles());
    CHECK(m.at("rnn.weight_hh_l1").to_doubles() == w_hh.to_doubles());
    for (std::int64_t j = 0; j < 4 * H; ++j) {
      CHECK(m.at("rnn.bias_ih_l1").get(j) ==
            doctest::Approx(b_ih.get(j) + b_hh.get(j)).epsilon(1e-6));
      CHECK(m.at("rnn.bias_hh_l1").get(j) == 0.0);
    }
  }
  CHECK_THROWS_WITH_AS(port::lstm_from_tf(Tensor(DType::f32, {7, 8}), Tensor(), 4),
                       "TF LSTM kernel has dims [7,8]: 7 rows, expected input 4 + hidden 2 = 6",
                       WeightError);
  CHECK_THROWS_WITH_AS(
      port::lstm_from_torch(Tensor(DType::f32, {8, 3}), Tensor(DType::f32, {8, 3})),
      "LSTM weight_hh has dims [8,3], expected [8,2]", WeightError);
  CHECK_THROWS_WITH_AS(
      port::lstm_from_torch(Tensor(DType::i32, {8, 3}), Tensor(DType::f32, {8, 2})),
      "LSTM weight_ih has dtype i32, expected a float type", WeightError);
  WeightMap none;
  CHECK_THROWS_AS(port::tf_lstm_to_torch(none, "k", "b", 3, "rnn.", 0), WeightError);
}

TEST_CASE("fold_batchnorm: scale*x + shift == BatchNorm(x), eps a parameter") {
  std::mt19937 rng(8);
  for (double eps : {1e-5, 1e-3, 0.0}) {
    const std::int64_t C = 1 + rng() % 16;
    const Tensor g = random_tensor(rng, {C}), b = random_tensor(rng, {C}),
                 m = random_tensor(rng, {C});
    Tensor v = random_tensor(rng, {C});
    for (std::int64_t i = 0; i < C; ++i) v.data<float>()[i] = std::abs(v.data<float>()[i]) + 0.1f;
    WeightMap w;
    w.add("bn1.weight", g);
    w.add("bn1.bias", b);
    w.add("bn1.running_mean", m);
    w.add("bn1.running_var", v);
    const auto ss = port::fold_batchnorm(w, "bn1", eps);
    for (std::int64_t i = 0; i < C; ++i) {
      for (double x : {-2.0, 0.0, 0.7}) {
        const double bn = (x - m.get(i)) / std::sqrt(v.get(i) + eps) * g.get(i) + b.get(i);
        CHECK(ss.scale.get(i) * x + ss.shift.get(i) == doctest::Approx(bn).epsilon(1e-5));
      }
    }
  }
  const Tensor one = Tensor::from<float>({1}, {1});
  const Tensor neg = Tensor::from<float>({1}, {-1});
  CHECK_THROWS_WITH_AS(
      port::fold_batchnorm(one, one, one, neg, 1e-5),
      doctest::Contains("running_var[0] = -1 with eps 1e-05 gives no positive variance"),
      WeightError);
  WeightMap empty;
  CHECK_THROWS_WITH_AS(port::fold_batchnorm(empty, "bn9", 1e-5),
                       doctest::Contains("BatchNorm 'bn9': no weight named"), WeightError);
}

// ---------------------------------------------------------------------------------------------
// Files written by tests/data/make_wts_models.py (PyTorch); run by the meson test 'wts_models'
// with KILN_WTS_DIR set. Without it this case has nothing to check.

TEST_CASE("generated WTS files from PyTorch models") {
  const char* dir_env = std::getenv("KILN_WTS_DIR");
  if (!dir_env) {
    MESSAGE("KILN_WTS_DIR not set: the generated-file checks run in the meson test 'wts_models'");
    return;
  }
  const fs::path dir = dir_env;
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".wts") continue;
    ++files;
    INFO(e.path().string());
    const WtsFile f = read_wts(e.path());
    CHECK(!f.entries.empty());
    CHECK_NOTHROW(check_weights_finite(f.weights));
  }
  CHECK(files >= 4);
  const WtsFile lenet = read_wts(dir / "lenet.wts");
  CHECK(lenet.dialect == WtsDialect::trt_hex);
  const std::vector<std::pair<std::string, std::int64_t>> lenet_sizes = {
      {"conv1.weight", 500},  {"conv1.bias", 20}, {"conv2.weight", 25000}, {"conv2.bias", 50},
      {"ip1.weight", 400000}, {"ip1.bias", 500},  {"ip2.weight", 5000},    {"ip2.bias", 10}};
  for (const auto& [n, c] : lenet_sizes) CHECK(lenet.weights.at(n).numel() == c);
  const WtsFile lenet_x = read_wts(dir / "lenet_tensorrtx.wts");
  CHECK(lenet_x.dialect == WtsDialect::tensorrtx);
  CHECK(weights_hash(lenet_x.weights) == weights_hash(lenet.weights));  // same values, flat f32

  const WtsFile rnn = read_wts(dir / "charrnn.wts");
  CHECK(rnn.dialect == WtsDialect::trt_binary);
  CHECK(rnn.weights.at("rnn.weight_ih_l0").dims() == std::vector<std::int64_t>{2048, 512});
  CHECK(rnn.weights.at("fc.weight").dims() == std::vector<std::int64_t>{65, 512});
  const WtsFile tf = read_wts(dir / "charrnn_tf.wts");
  for (int layer = 0; layer < 2; ++layer) {
    const std::string cell =
        "rnn/multi_rnn_cell/cell_" + std::to_string(layer) + "/basic_lstm_cell/";
    const std::string l = "_l" + std::to_string(layer);
    const auto a = port::lstm_from_torch(
        rnn.weights.at("rnn.weight_ih" + l), rnn.weights.at("rnn.weight_hh" + l),
        rnn.weights.at("rnn.bias_ih" + l), rnn.weights.at("rnn.bias_hh" + l));
    const auto b =
        port::lstm_from_tf(tf.weights.at(cell + "kernel"), tf.weights.at(cell + "bias"), 512, 1.0);
    CHECK(a.w.to_doubles() == b.w.to_doubles());
    CHECK(a.r.to_doubles() == b.r.to_doubles());
    double worst = 0;
    for (std::int64_t j = 0; j < 2048; ++j)
      worst = std::max(
          worst, std::abs((a.b.get(j) + a.b.get(2048 + j)) - (b.b.get(j) + b.b.get(2048 + j))));
    CHECK(worst < 1e-5);
  }
}
