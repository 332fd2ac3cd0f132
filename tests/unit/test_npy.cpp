// NumPy .npy files (src/import/npy.cpp): round trips of every dtype over random shapes, bytes as
// np.save writes them, versions 1.0/2.0, and clear errors for Fortran order, big-endian data,
// truncated files and bad headers.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>

#include "kiln/import/npy.hpp"
#include "kiln/ir/error.hpp"

using namespace kiln;

namespace {

/// An .npy file as np.save writes it: magic, version, little-endian header length, the header
/// padded with spaces and '\n' to a multiple of 64 bytes, then `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

template <class T>
std::string raw(std::initializer_list<T> v) {
  std::string s(v.size() * sizeof(T), '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

bool throws_with(const std::string& bytes, const std::string& needle) {
  try {
    parse_npy(bytes, "x.npy");
  } catch (const Error& e) {
    const std::string m = e.what();
    if (m.find(needle) == std::string::npos || m.find("x.npy") == std::string::npos) {
      MESSAGE("message was: " << m);
      return false;
    }
    return true;
  }
  return false;
}

}  // namespace

TEST_CASE("npy: reads what np.save writes (f4 [2,3], v1.0)") {
  const auto bytes = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                               raw<float>({0, 1, 2, 3, 4, 5}));
  CHECK(bytes.size() == 152);  // np.save(np.arange(6, dtype='f4').reshape(2, 3)) is 152 bytes
  const Tensor t = parse_npy(bytes, "a.npy");
  CHECK(t.dtype() == DType::f32);
  CHECK(t.dims() == std::vector<std::int64_t>{2, 3});
  for (int i = 0; i < 6; ++i) CHECK(t.get(i) == i);
}

TEST_CASE("npy: writes byte for byte what np.save writes") {
  const Tensor t = Tensor::from<float>({2, 3}, {0, 1, 2, 3, 4, 5});
  CHECK(serialize_npy(t) == npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                      raw<float>({0, 1, 2, 3, 4, 5})));
  const Tensor v = Tensor::from<std::int64_t>({3}, {7, -8, 9});
  CHECK(serialize_npy(v) == npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }",
                                      raw<std::int64_t>({7, -8, 9})));
  const Tensor s = Tensor::scalar<double>(2.5);
  CHECK(serialize_npy(s) ==
        npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", raw<double>({2.5})));
}

TEST_CASE("npy: version 2.0 header, b1, u1, i1, f2") {
  const Tensor d = parse_npy(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                       raw<double>({1.5, -2.0}), 2),
                             "v2.npy");
  CHECK(d.dtype() == DType::f64);
  CHECK(d.get(0) == 1.5);
  CHECK(d.get(1) == -2.0);
  const Tensor b = parse_npy(npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                       std::string("\x01\x00\x01", 3)),
                             "b.npy");
  CHECK(b.dtype() == DType::boolean);
  CHECK(b.get(0) == 1);
  CHECK(b.get(1) == 0);
  const Tensor u =
      parse_npy(npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (1, 2), }",
                          std::string("\xff\x01", 2)),
                "u.npy");
  CHECK(u.dtype() == DType::u8);
  CHECK(u.get(0) == 255);
  const Tensor i = parse_npy(npy_bytes("{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }",
                                       std::string("\xff\x01", 2)),
                             "i.npy");
  CHECK(i.get(0) == -1);
  const Tensor h = parse_npy(npy_bytes("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }",
                                       std::string("\x00\x3c", 2)),
                             "h.npy");  // 1.0 in binary16
  CHECK(h.dtype() == DType::f16);
  CHECK(h.get(0) == 1.0);
  // Key order and spacing as other writers produce them.
  const Tensor k = parse_npy(npy_bytes("{\"shape\":(2,),\"fortran_order\":False,\"descr\":\"<i4\"}",
                                       raw<std::int32_t>({4, 5})),
                             "k.npy");
  CHECK(k.get(1) == 5);
}

TEST_CASE("npy: round trip of every dtype over random shapes") {
  std::mt19937_64 rng(3);
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::i64, DType::i32, DType::i16,
                   DType::i8, DType::u8, DType::u16, DType::u32, DType::u64, DType::boolean}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<std::int64_t> dims(rng() % 5);
      for (auto& d : dims) d = static_cast<std::int64_t>(rng() % 5);  // zero-size dims included
      Tensor t(dt, dims);
      for (std::int64_t i = 0; i < t.numel(); ++i)
        t.set(i, dt == DType::boolean ? static_cast<double>(rng() % 2)
                                      : static_cast<double>(rng() % 100));
      const std::string bytes = serialize_npy(t);
      CHECK(bytes.find('\n') % 64 == 63);  // the header ends a 64-byte block
      const Tensor back = parse_npy(bytes, "r.npy");
      REQUIRE(back.dtype() == dt);
      REQUIRE(back.dims() == dims);
      for (std::int64_t i = 0; i < t.numel(); ++i) CHECK(back.get(i) == t.get(i));
    }
  }
}

TEST_CASE("npy: bf16 is written as f4") {
  Tensor t(DType::bf16, {2});
  t.set(0, 1.5);
  t.set(1, -3.0);
  const Tensor back = parse_npy(serialize_npy(t), "bf.npy");
  CHECK(back.dtype() == DType::f32);
  CHECK(back.get(1) == -3.0);
}

TEST_CASE("npy: files on disk") {
  const auto path = (std::filesystem::temp_directory_path() / "kiln_test_npy.npy").string();
  const Tensor t = Tensor::from<float>({2, 2}, {1, 2, 3, 4});
  kiln::write_npy(t, path);
  const Tensor back = kiln::read_npy(path);
  CHECK(back.dims() == t.dims());
  CHECK(back.get(3) == 4);
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(kiln::read_npy(path), doctest::Contains("cannot open"), FormatError);
}

TEST_CASE("npy: clear errors naming the file") {
  const std::string good = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                     raw<float>({0, 1, 2, 3, 4, 5}));
  // Truncated: in the data, in the header, before the header length.
  CHECK(throws_with(good.substr(0, good.size() - 4), "truncated"));
  CHECK(throws_with(good.substr(0, 60), "truncated"));
  CHECK(throws_with(good.substr(0, 9), "truncated"));
  CHECK(throws_with(good + "xx", "bytes after"));
  // Every prefix fails cleanly (never crashes).
  for (std::size_t n = 0; n < good.size(); ++n)
    CHECK_THROWS_AS(parse_npy(good.substr(0, n), "p.npy"), Error);
  CHECK(throws_with("PK\x03\x04 not numpy at all", "not an .npy file"));
  CHECK(throws_with(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                              raw<float>({0, 1, 2, 3, 4, 5})),
                    "Fortran order"));
  CHECK(throws_with(npy_bytes("{'descr': '>i4', 'fortran_order': False, 'shape': (3,), }",
                              raw<std::int32_t>({1, 2, 3})),
                    "big-endian"));
  CHECK(throws_with(
      npy_bytes("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", raw<float>({1, 2})),
      "not supported"));
  // Bad headers.
  CHECK(throws_with(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }", ""),
                    "bad header"));
  CHECK(throws_with(npy_bytes("{'descr': '<f4', 'fortran_order': False}", ""), "no 'shape'"));
  CHECK(throws_with(npy_bytes("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (), }", ""),
                    "True or False"));
  CHECK(throws_with(
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", raw<float>({1})),
      "unexpected key"));
  CHECK(throws_with(npy_bytes("['descr']", ""), "bad header"));
  std::string v9 = good;
  v9[6] = 9;
  CHECK(throws_with(v9, "version 9.0"));
  // A header length beyond the file.
  std::string long_header = good.substr(0, 10);
  long_header[8] = '\xff';
  long_header[9] = '\x7f';
  CHECK(throws_with(long_header, "truncated"));
}
