#include "kiln/import/npy.hpp"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"

namespace kiln {
namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes

[[noreturn]] void bad(const std::string& source, const std::string& what) {
  throw FormatError(fmt::format("npy file '{}': {}", source, what));
}

/// The header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
struct Header {
  std::string descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<std::int64_t>> shape;
};

/// A parser of the Python literal subset np.save writes: a dict of str keys whose values are a
/// str, True/False, or a tuple of non-negative ints.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  Header parse() {
    Header h;
    expect('{');
    bool seen_descr = false;
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = string_literal();
      expect(':');
      skip_space();
      if (key == "descr") {
        h.descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
      } else if (key == "shape") {
        h.shape = tuple();
      } else {
        fail(fmt::format("unexpected key '{}' in the header", key));
      }
      skip_space();
      if (peek() == ',') {
        ++at_;
        continue;
      }
      skip_space();
      if (peek() != '}') fail("expected ',' or '}' in the header");
    }
    ++at_;
    if (!seen_descr) fail("the header has no 'descr'");
    if (!h.fortran_order) fail("the header has no 'fortran_order'");
    if (!h.shape) fail("the header has no 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    bad(source_, fmt::format("bad header ({}): {}", what, std::string(s_)));
  }
  char peek() const { return at_ < s_.size() ? s_[at_] : '\0'; }
  void skip_space() {
    while (at_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[at_]))) ++at_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(fmt::format("expected '{}'", c));
    ++at_;
  }
  std::string string_literal() {
    skip_space();
    const char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    const auto end = s_.find(q, at_ + 1);
    if (end == std::string_view::npos) fail("unterminated string");
    std::string v(s_.substr(at_ + 1, end - at_ - 1));
    at_ = end + 1;
    return v;
  }
  bool boolean() {
    if (s_.substr(at_, 4) == "True") {
      at_ += 4;
      return true;
    }
    if (s_.substr(at_, 5) == "False") {
      at_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<std::int64_t> tuple() {
    expect('(');
    std::vector<std::int64_t> dims;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a dimension");
      std::int64_t d = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (d > (std::int64_t{1} << 50)) fail("dimension too large");
        d = d * 10 + (s_[at_++] - '0');
      }
      if (peek() == 'L') ++at_;  // Python 2 longs
      dims.push_back(d);
      skip_space();
      if (peek() == ',')
        ++at_;
      else if (peek() != ')')
        fail("expected ',' or ')' in the shape");
    }
    ++at_;
    return dims;
  }

  std::string_view s_;
  const std::string& source_;
  std::size_t at_ = 0;
};

/// The kiln dtype of a descr such as "<f4" or "|b1".
DType dtype_of_descr(const std::string& descr, const std::string& source) {
  if (descr.size() < 3) bad(source, fmt::format("unsupported dtype descr '{}'", descr));
  const char order = descr[0];
  const std::string code = descr.substr(1);
  static const std::pair<const char*, DType> kCodes[] = {
      {"f8", DType::f64}, {"f4", DType::f32}, {"f2", DType::f16}, {"i8", DType::i64},
      {"i4", DType::i32}, {"i2", DType::i16}, {"i1", DType::i8},  {"u8", DType::u64},
      {"u4", DType::u32}, {"u2", DType::u16}, {"u1", DType::u8},  {"b1", DType::boolean}};
  std::optional<DType> dtype;
  for (const auto& [c, d] : kCodes)
    if (code == c) dtype = d;
  if (!dtype)
    throw UnsupportedError(
        fmt::format("npy file '{}': dtype '{}' is not supported (f8 f4 f2 i8 i4 i2 i1 "
                    "u8 u4 u2 u1 b1 are)",
                    source, descr));
  if (order == '>' && dtype_size(*dtype) > 1)
    bad(source, fmt::format("big-endian data ('{}') is not supported; save it little-endian "
                            "(array.astype('<{}'))",
                            descr, code));
  if (order != '<' && order != '|' && order != '=' && order != '>')
    bad(source, fmt::format("unknown byte order in dtype descr '{}'", descr));
  return *dtype;
}

std::string descr_of(DType t) {
  switch (t) {
    case DType::f64: return "<f8";
    case DType::f32:
    case DType::bf16: return "<f4";
    case DType::f16: return "<f2";
    case DType::i64: return "<i8";
    case DType::i32: return "<i4";
    case DType::i16: return "<i2";
    case DType::i8: return "|i1";
    case DType::u64: return "<u8";
    case DType::u32: return "<u4";
    case DType::u16: return "<u2";
    case DType::u8: return "|u1";
    case DType::boolean: return "|b1";
    default: break;  // float8 and the sub-byte types
  }
  throw UnsupportedError(fmt::format(
      "npy has no {} dtype (numpy has no float8 or sub-byte types); cast it first", dtype_name(t)));
}

std::uint32_t read_le(std::string_view b, std::size_t at, int bytes) {
  std::uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

}  // namespace

Tensor parse_npy(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 10 || bytes.substr(0, 6) != std::string_view(kMagic, 6))
    bad(source,
        bytes.size() < 10 && bytes.substr(0, std::min<std::size_t>(6, bytes.size())) ==
                                 std::string_view(kMagic, std::min<std::size_t>(6, bytes.size()))
            ? "truncated before the end of the header"
            : "not an .npy file (no \\x93NUMPY magic)");
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3)
    bad(source,
        fmt::format("format version {}.{} is not supported (1.0, 2.0, 3.0 are)", major, minor));
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + len_bytes) bad(source, "truncated before the end of the header");
  const std::size_t header_len = read_le(bytes, 8, static_cast<int>(len_bytes));
  const std::size_t data_at = 8 + len_bytes + header_len;
  if (bytes.size() < data_at)
    bad(source, fmt::format("truncated: the header says {} bytes, the file has {}", header_len,
                            bytes.size() - 8 - len_bytes));
  const Header h = HeaderParser(bytes.substr(8 + len_bytes, header_len), source).parse();
  const DType dtype = dtype_of_descr(h.descr, source);
  if (*h.fortran_order)
    bad(source, "Fortran order is not supported; save a C-ordered array (np.ascontiguousarray)");
  std::int64_t numel = 1;
  for (auto d : *h.shape) {
    if (d != 0 && numel > (std::int64_t{1} << 50) / d) bad(source, "shape too large");
    numel *= d;
  }
  const std::size_t want = static_cast<std::size_t>(numel) * dtype_size(dtype);
  const std::size_t have = bytes.size() - data_at;
  if (have < want)
    bad(source, fmt::format("truncated: {} {} elements need {} data bytes, the file has {}", numel,
                            dtype_name(dtype), want, have));
  if (have > want)
    bad(source, fmt::format("{} bytes after the {} data bytes of {} {} elements", have - want, want,
                            numel, dtype_name(dtype)));
  Tensor t(dtype, *h.shape);
  if (dtype == DType::boolean) {
    for (std::int64_t i = 0; i < numel; ++i)
      t.set(i, bytes[data_at + static_cast<std::size_t>(i)] != 0);
  } else if (want) {
    std::memcpy(t.raw(), bytes.data() + data_at, want);  // little-endian host
  }
  return t;
}

Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(fmt::format("npy file '{}': cannot open it", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  return parse_npy(ss.str(), path);
}

std::string serialize_npy(const Tensor& t0) {
  const Tensor t = t0.dtype() == DType::bf16 ? t0.cast(DType::f32) : t0;
  std::string shape = "(";
  for (std::size_t i = 0; i < t.rank(); ++i) shape += fmt::format("{}, ", t.dim(i));
  if (t.rank() > 1)
    shape.resize(shape.size() - 2);  // (2, 3); a 1-d shape keeps "(n,"
  else if (t.rank() == 1)
    shape.pop_back();
  shape += ")";
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                   descr_of(t.dtype()), shape);
  // Magic, version, length, header and '\n' padded with spaces to a multiple of 64 bytes.
  const bool v2 = header.size() + 11 > 65535;
  const std::size_t prefix = v2 ? 12 : 10;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  std::string out(kMagic, 6);
  out += static_cast<char>(v2 ? 2 : 1);
  out += '\0';
  const std::size_t n = header.size();
  for (std::size_t i = 0; i < (v2 ? 4u : 2u); ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  if (t.dtype() == DType::boolean) {
    for (std::int64_t i = 0; i < t.numel(); ++i) out += static_cast<char>(t.get(i) != 0 ? 1 : 0);
  } else if (t.nbytes() != 0) {
    out.append(reinterpret_cast<const char*>(t.raw()), t.nbytes());
  }
  return out;
}

void write_npy(const Tensor& t, const std::string& path) {
  const std::string bytes = serialize_npy(t);
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw Error(fmt::format("cannot write npy file '{}'", path));
}

Tensor load_tensor_file(const std::string& path) {
  if (std::filesystem::path(path).extension() == ".npy") return read_npy(path);
  return onnx::load_tensor(path);
}

}  // namespace kiln
