// Reading WTS files: one streaming scanner, one record grammar per dialect, and auto-detection
// that tries every grammar on the whole file.
//
// Memory: values go straight from a 64 KiB buffer into their tensors, and a tensor is allocated
// only after checking that the rest of the file could hold its values (a hex word takes at least
// two bytes, a binary value its own size), so no declared count can make us allocate more than
// about twice the file size. Tokens are capped in length, so binary garbage cannot grow them.
#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <fstream>
#include <istream>
#include <sstream>
#include <unordered_map>

#include <fmt/format.h>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln {

namespace {

constexpr std::size_t kMaxNameBytes = 4096;
constexpr std::size_t kMaxNumberBytes = 32;
constexpr std::size_t kMaxShapeBytes = 512;
constexpr std::int64_t kMaxElements = std::int64_t{1} << 40;
// Every record takes at least a separator, a one-byte name, a separator and a one-byte number.
constexpr std::uint64_t kMinRecordBytes = 4;

/// A defect found while parsing under one dialect; `detail` lacks the file name so that
/// auto-detection can list the failures of several dialects.
class ParseFailure : public FormatError {
 public:
  ParseFailure(const std::string& full, std::string detail, std::uint64_t offset)
      : FormatError(full), detail(std::move(detail)), offset(offset) {}
  std::string detail;
  std::uint64_t offset;
};

bool is_space(int c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
bool is_printable(unsigned char c) { return c >= 0x21 && c <= 0x7e; }

/// A token as it may appear in a message: quoted, shortened, binary bytes named.
std::string show(std::string_view tok) {
  for (unsigned char c : tok)
    if (!is_printable(c)) return fmt::format("binary data (byte 0x{:02x})", c);
  if (tok.size() > 40) return fmt::format("'{}...'", tok.substr(0, 40));
  return fmt::format("'{}'", tok);
}

class Scanner {
 public:
  Scanner(std::istream& in, std::uint64_t size, std::string_view source, bool text)
      : in_(in), size_(size), source_(source), text_(text) {}

  int peek() {
    if (pos_ == len_ && !fill()) return -1;
    return static_cast<unsigned char>(buf_[pos_]);
  }
  int get() {
    const int c = peek();
    if (c >= 0) {
      ++pos_;
      ++offset_;
      if (c == '\n') ++line_;
    }
    return c;
  }
  bool at_end() { return peek() < 0; }
  void skip_ws() {
    while (is_space(peek())) get();
  }
  /// The next run of non-space bytes (call after skip_ws); longer than `max` is an error.
  const std::string& token(std::size_t max, std::string_view what) {
    mark();
    tok_.clear();
    for (int c = peek(); c >= 0 && !is_space(c); c = peek()) {
      if (tok_.size() == max)
        fail(fmt::format("a token longer than {} bytes where {} should be ({}...)", max, what,
                         show(tok_.substr(0, 16))));
      tok_.push_back(static_cast<char>(get()));
    }
    return tok_;
  }
  /// Copies n raw bytes (dst may be null: skip them). Newlines in them are not lines.
  std::size_t read_raw(std::byte* dst, std::uint64_t n) {
    std::uint64_t done = 0;
    while (done < n) {
      if (pos_ == len_ && !fill()) break;
      const std::size_t k =
          static_cast<std::size_t>(std::min<std::uint64_t>(n - done, len_ - pos_));
      if (dst) std::memcpy(dst + done, buf_.data() + pos_, k);
      pos_ += k;
      offset_ += k;
      done += k;
    }
    return static_cast<std::size_t>(done);
  }

  /// Remembers the current position as the place the next error points at.
  void mark() {
    mark_line_ = line_;
    mark_offset_ = offset_;
  }
  std::int64_t line() const { return line_; }
  std::uint64_t offset() const { return offset_; }
  std::int64_t mark_line() const { return mark_line_; }
  std::uint64_t mark_offset() const { return mark_offset_; }
  std::uint64_t size() const { return size_; }
  std::uint64_t remaining() const { return size_ > offset_ ? size_ - offset_ : 0; }
  bool text() const { return text_; }

  [[noreturn]] void fail(const std::string& msg) const {
    const std::string where = text_ ? fmt::format("line {}, byte {}", mark_line_, mark_offset_)
                                    : fmt::format("byte {}", mark_offset_);
    throw ParseFailure(fmt::format("{}: {}: {}", source_, where, msg),
                       fmt::format("{}: {}", where, msg), mark_offset_);
  }
  [[noreturn]] void fail_here(const std::string& msg) {
    mark();
    fail(msg);
  }

 private:
  bool fill() {
    if (!in_) return false;
    in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
    len_ = static_cast<std::size_t>(in_.gcount());
    pos_ = 0;
    return len_ > 0;
  }

  std::istream& in_;
  std::uint64_t size_;
  std::string_view source_;
  bool text_;
  std::array<char, 1 << 16> buf_{};
  std::size_t pos_ = 0, len_ = 0;
  std::uint64_t offset_ = 0;
  std::int64_t line_ = 1;
  std::int64_t mark_line_ = 1;
  std::uint64_t mark_offset_ = 0;
  std::string tok_;
};

std::int64_t parse_decimal(Scanner& s, const std::string& tok, std::string_view what,
                           std::int64_t max, std::string_view hint = {}) {
  bool ok = !tok.empty() && tok.size() <= 18;
  std::int64_t v = 0;
  for (char c : ok ? std::string_view(tok) : std::string_view()) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    v = v * 10 + (c - '0');
  }
  if (!ok) s.fail(fmt::format("expected {} (a decimal number), got {}{}", what, show(tok), hint));
  if (v > max) s.fail(fmt::format("{} {} is too large (at most {}){}", what, v, max, hint));
  return v;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool all_hex(std::string_view t) {
  if (t.empty()) return false;
  for (char c : t)
    if (hex_digit(c) < 0) return false;
  return true;
}

/// The dtype of a TensorRT type code (nvinfer1::DataType).
DType trt_dtype(Scanner& s, std::int64_t code, const std::string& name) {
  switch (code) {
    case 0: return DType::f32;
    case 1: return DType::f16;
    case 2: return DType::i8;
    case 3: return DType::i32;
    default:
      s.fail(fmt::format("unknown type {} for weight '{}' (0 float32, 1 float16, 2 int8, 3 int32)",
                         code, name));
  }
}

/// Reads a dialect's records into `out`.
class Parser {
 public:
  Parser(Scanner& s, WtsDialect d, bool keep, bool allow_empty, WtsFile& out)
      : s_(s), d_(d), keep_(keep), allow_empty_(allow_empty), out_(out) {
    out_.dialect = d;
  }

  void run() {
    s_.skip_ws();
    if (s_.at_end())
      s_.fail_here(s_.offset() == 0 ? "file is empty (expected the weight count on the first line)"
                                    : "file holds only whitespace (expected the weight count)");
    const std::string& tok = s_.token(kMaxNumberBytes, "the weight count");
    const std::int64_t count = parse_decimal(s_, tok, "the weight count", kMaxElements);
    if (static_cast<std::uint64_t>(count) > s_.remaining() / kMinRecordBytes)
      s_.fail(
          fmt::format("the count line says {} weights, but the remaining {} bytes of the file "
                      "could hold at most {}",
                      count, s_.remaining(), s_.remaining() / kMinRecordBytes));
    for (std::int64_t k = 0; k < count; ++k) {
      s_.skip_ws();
      if (s_.at_end())
        s_.fail_here(
            fmt::format("file ends after {} of {} weights (the count line says {}; "
                        "truncated, or the count disagrees with the records)",
                        k, count, count));
      record(k == count - 1);
    }
    s_.skip_ws();
    if (!s_.at_end()) {
      const std::string& extra = s_.token(kMaxNameBytes, "the end of the file");
      s_.fail(
          fmt::format("the count line says {} weights, but more data follows ({}): the count "
                      "disagrees with the records{}",
                      count, show(extra), overrun_hint(extra)));
    }
  }

 private:
  /// A record header that starts with a hex word probably means the previous weight has more
  /// values than it declares.
  std::string overrun_hint(const std::string& name) const {
    if (d_ == WtsDialect::trt_binary || prev_name_.empty() || !all_hex(name)) return {};
    return fmt::format(" (does weight '{}' have more than its {} values?)", prev_name_,
                       prev_count_);
  }

  void record(bool last) {
    const std::int64_t line = s_.line();
    const std::uint64_t offset = s_.offset();
    const std::string name = s_.token(kMaxNameBytes, "a weight name");
    for (unsigned char c : name)
      if (!is_printable(c)) s_.fail(fmt::format("expected a weight name, got {}", show(name)));
    auto [it, fresh] = seen_.emplace(name, std::make_pair(line, offset));
    if (!fresh)
      s_.fail(s_.text() ? fmt::format("weight '{}' appears twice (lines {} and {})", name,
                                      it->second.first, line)
                        : fmt::format("weight '{}' appears twice (bytes {} and {})", name,
                                      it->second.second, offset));
    WtsEntry e;
    e.name = name;
    e.line = s_.text() ? line : 0;
    e.offset = offset;
    Tensor t;
    switch (d_) {
      case WtsDialect::trt_hex: t = trt_hex(e); break;
      case WtsDialect::tensorrtx: t = tensorrtx(e); break;
      case WtsDialect::trt_binary: t = trt_binary(e, last); break;
    }
    prev_name_ = e.name;
    prev_count_ = e.count;
    if (keep_) out_.weights.add(e.name, std::move(t));
    out_.entries.push_back(std::move(e));
  }

  std::int64_t header_number(std::string_view what, std::int64_t max, const std::string& name) {
    s_.skip_ws();
    if (s_.at_end())
      s_.fail_here(fmt::format("file ends in the header of weight '{}' (expected {})", name, what));
    const std::string& tok = s_.token(kMaxNumberBytes, what);
    return parse_decimal(s_, tok, what, max, overrun_hint(name));
  }

  /// Checks that `n` values of at least `min_bytes` each fit in the rest of the file.
  void check_not_empty(const WtsEntry& e, std::int64_t n) {
    if (n == 0 && !allow_empty_)
      s_.fail(
          fmt::format("weight '{}' has 0 values (an empty weight; set "
                      "WtsReadOptions::allow_empty_weights to accept it)",
                      e.name));
  }

  void check_fits(const WtsEntry& e, std::int64_t n, std::uint64_t min_bytes,
                  std::string_view unit) {
    check_not_empty(e, n);
    const std::uint64_t room = s_.remaining() / min_bytes;
    if (static_cast<std::uint64_t>(n) > room)
      s_.fail(
          fmt::format("weight '{}' declares {} values, but the remaining {} bytes of the file "
                      "could hold at most {} {} (truncated, or a wrong count)",
                      e.name, n, s_.remaining(), room, unit));
  }

  // "name type size w0 w1 ..."
  Tensor trt_hex(WtsEntry& e) {
    const std::int64_t code = header_number("a type code", 1000, e.name);
    e.dtype = trt_dtype(s_, code, e.name);
    e.count = header_number("a value count", kMaxElements, e.name);
    e.dims = {e.count};
    check_fits(e, e.count, 2, "hex words");
    return hex_words(e, 8 * dtype_size(e.dtype), /*strict_width=*/false);
  }

  // "name count w0 w1 ..."
  Tensor tensorrtx(WtsEntry& e) {
    e.dtype = DType::f32;
    e.count = header_number("a value count", kMaxElements, e.name);
    e.dims = {e.count};
    check_fits(e, e.count, 4, "hex words");
    return hex_words(e, 32, /*strict_width=*/true);
  }

  Tensor hex_words(const WtsEntry& e, std::size_t bits, bool strict_width) {
    Tensor t;
    if (keep_) t = Tensor(e.dtype, e.dims);
    const std::uint64_t max = bits == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1;
    for (std::int64_t i = 0; i < e.count; ++i) {
      s_.skip_ws();
      if (s_.at_end())
        s_.fail_here(fmt::format("file ends in weight '{}' after {} of its {} values (truncated)",
                                 e.name, i, e.count));
      const std::string& tok = s_.token(kMaxNumberBytes, "a hex word");
      std::string_view digits = tok;
      const bool prefixed =
          digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X');
      if (prefixed) digits.remove_prefix(2);
      if (!all_hex(digits) || digits.size() > 16)
        s_.fail(fmt::format("{} is not a hex word (value {} of the {} of weight '{}')", show(tok),
                            i, e.count, e.name));
      if (strict_width && !prefixed && digits.size() != 8)
        s_.fail(
            fmt::format("hex word {} has {} digits; tensorrtx words have 8, or a 0x prefix "
                        "(value {} of weight '{}')",
                        show(tok), digits.size(), i, e.name));
      std::uint64_t v = 0;
      for (char c : digits) v = (v << 4) | static_cast<std::uint64_t>(hex_digit(c));
      if (v > max)
        s_.fail(fmt::format("hex word {} does not fit in {} bits (value {} of {} weight '{}')",
                            show(tok), bits, i, dtype_name(e.dtype), e.name));
      if (!keep_) continue;
      std::byte* p = t.raw() + static_cast<std::size_t>(i) * dtype_size(e.dtype);
      switch (bits) {
        case 32: {
          const auto w = static_cast<std::uint32_t>(v);
          std::memcpy(p, &w, 4);
          break;
        }
        case 16: {
          const auto w = static_cast<std::uint16_t>(v);
          std::memcpy(p, &w, 2);
          break;
        }
        default: {
          const auto w = static_cast<std::uint8_t>(v);
          std::memcpy(p, &w, 1);
          break;
        }
      }
    }
    return t;
  }

  // "name type (d0, d1, ...) " + raw bytes + "\n"
  Tensor trt_binary(WtsEntry& e, bool last) {
    const std::int64_t code = header_number("a type code", 1000, e.name);
    e.dtype = trt_dtype(s_, code, e.name);
    e.has_shape = true;
    // Shape: "(d0, d1, ...)", Python's tuple repr: "()" is a scalar, "(5,)" one dim.
    while (s_.peek() == ' ' || s_.peek() == '\t') s_.get();
    s_.mark();
    if (s_.peek() != '(') {
      const int c = s_.peek();
      s_.fail(c < 0 ? fmt::format("file ends before the shape of weight '{}'", e.name)
                    : fmt::format("expected the shape of weight '{}' as '(d0, d1, ...)', got {}",
                                  e.name,
                                  is_printable(static_cast<unsigned char>(c))
                                      ? fmt::format("'{}'", static_cast<char>(c))
                                      : fmt::format("byte 0x{:02x}", c)));
    }
    s_.get();
    std::string text;
    for (int c = s_.get(); c != ')'; c = s_.get()) {
      if (c < 0) s_.fail(fmt::format("file ends in the shape of weight '{}'", e.name));
      if (text.size() == kMaxShapeBytes)
        s_.fail(fmt::format("the shape of weight '{}' is longer than {} bytes", e.name,
                            kMaxShapeBytes));
      text.push_back(static_cast<char>(c));
    }
    e.dims = parse_shape(e, text);
    std::int64_t n = 1;
    for (auto d : e.dims) {
      if (d != 0 && n > kMaxElements / d)
        s_.fail(
            fmt::format("the shape of weight '{}' ({}) holds more than 2^40 values", e.name, text));
      n *= d;
    }
    e.count = n;
    check_not_empty(e, n);
    s_.mark();
    if (s_.get() != ' ')
      s_.fail(
          fmt::format("expected one space between the shape of weight '{}' and its bytes", e.name));
    const std::uint64_t bytes = static_cast<std::uint64_t>(n) * dtype_size(e.dtype);
    s_.mark();
    if (bytes > s_.remaining())
      s_.fail(
          fmt::format("weight '{}' ({} ({})) needs {} bytes, but only {} remain in the file "
                      "(truncated, or a wrong shape)",
                      e.name, dtype_name(e.dtype), text, bytes, s_.remaining()));
    Tensor t;
    if (keep_) t = Tensor(e.dtype, e.dims);
    const std::size_t got = s_.read_raw(keep_ ? t.raw() : nullptr, bytes);
    if (got != bytes)
      s_.fail(fmt::format("file ends in the bytes of weight '{}' after {} of {} (truncated)",
                          e.name, got, bytes));
    if constexpr (std::endian::native == std::endian::big) {
      if (keep_) byte_swap(t);
    }
    s_.mark();
    const int c = s_.get();
    if (c != '\n' && !(c < 0 && last))
      s_.fail(c < 0 ? fmt::format("file ends after weight '{}' where a newline should be", e.name)
                    : fmt::format("expected a newline after the {} bytes of weight '{}', got byte "
                                  "0x{:02x} (does its shape match its data?)",
                                  bytes, e.name, c));
    return t;
  }

  std::vector<std::int64_t> parse_shape(const WtsEntry& e, const std::string& text) {
    std::vector<std::int64_t> dims;
    std::size_t i = 0;
    auto skip = [&] {
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    };
    auto bad = [&] {
      s_.fail(fmt::format("the shape of weight '{}' is not a tuple of sizes: ({})", e.name,
                          show(text).substr(0, 60)));
    };
    skip();
    while (i < text.size()) {
      std::size_t start = i;
      std::int64_t v = 0;
      while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        if (i - start >= 12) bad();
        v = v * 10 + (text[i] - '0');
        ++i;
      }
      if (i == start) bad();
      dims.push_back(v);
      skip();
      if (i == text.size()) break;
      if (text[i] != ',') bad();
      ++i;
      skip();
    }
    if (dims.size() > 16) bad();
    return dims;
  }

  static void byte_swap(Tensor& t) {
    const std::size_t w = dtype_size(t.dtype());
    for (std::size_t i = 0; i < t.nbytes(); i += w) std::reverse(t.raw() + i, t.raw() + i + w);
  }

  Scanner& s_;
  WtsDialect d_;
  bool keep_;
  bool allow_empty_;
  WtsFile& out_;
  std::unordered_map<std::string, std::pair<std::int64_t, std::uint64_t>> seen_;
  std::string prev_name_;
  std::int64_t prev_count_ = 0;
};

std::uint64_t stream_size(std::istream& in, std::string_view source) {
  in.clear();
  in.seekg(0, std::ios::end);
  const auto end = in.tellg();
  in.seekg(0, std::ios::beg);
  if (end < 0 || !in)
    throw Error(
        fmt::format("{}: cannot seek in the stream (WTS reading needs a "
                    "seekable stream)",
                    source));
  return static_cast<std::uint64_t>(end);
}

WtsFile parse_one(std::istream& in, std::uint64_t size, std::string_view source, WtsDialect d,
                  bool keep, bool allow_empty) {
  in.clear();
  in.seekg(0, std::ios::beg);
  Scanner s(in, size, source, d != WtsDialect::trt_binary);
  WtsFile f;
  Parser(s, d, keep, allow_empty, f).run();
  return f;
}

}  // namespace

std::string_view wts_dialect_name(WtsDialect d) {
  switch (d) {
    case WtsDialect::trt_hex: return "trt-hex";
    case WtsDialect::trt_binary: return "trt-binary";
    case WtsDialect::tensorrtx: return "tensorrtx";
  }
  return "?";
}

WtsDialect parse_wts_dialect(std::string_view name) {
  for (auto d : kAllWtsDialects)
    if (wts_dialect_name(d) == name) return d;
  throw Error(
      fmt::format("unknown WTS dialect '{}' (expected trt-hex, trt-binary or tensorrtx)", name));
}

WtsFile read_wts(std::istream& in, std::string_view source, const WtsReadOptions& opts) {
  const std::uint64_t size = stream_size(in, source);
  if (opts.dialect)
    return parse_one(in, size, source, *opts.dialect, opts.keep_values, opts.allow_empty_weights);

  struct Failure {
    WtsDialect d;
    std::string detail;
    std::uint64_t offset;
  };
  std::vector<Failure> failures;
  std::vector<WtsDialect> ok;
  WtsFile result;
  for (auto d : kAllWtsDialects) {
    try {
      // Only the first dialect that succeeds keeps values; later ones only check.
      WtsFile f =
          parse_one(in, size, source, d, opts.keep_values && ok.empty(), opts.allow_empty_weights);
      if (ok.empty()) result = std::move(f);
      ok.push_back(d);
    } catch (const ParseFailure& e) {
      failures.push_back({d, e.detail, e.offset});
    }
  }
  if (ok.size() == 1) return result;
  if (ok.size() > 1) {
    std::vector<std::string_view> names;
    for (auto d : ok) names.push_back(wts_dialect_name(d));
    throw FormatError(
        fmt::format("{}: reads whole as {} WTS dialects ({}); pass the dialect "
                    "(--dialect {}) to choose one",
                    source, ok.size(), fmt::join(names, ", "), fmt::join(names, "|")));
  }
  // None parses: lead with the dialect that got furthest, which is most likely the intended one.
  std::stable_sort(failures.begin(), failures.end(),
                   [](const Failure& a, const Failure& b) { return a.offset > b.offset; });
  bool same = true;
  for (const auto& f : failures) same &= f.detail == failures[0].detail;
  if (same) throw FormatError(fmt::format("{}: {}", source, failures[0].detail));
  std::string others;
  for (std::size_t i = 1; i < failures.size(); ++i)
    others += fmt::format("\n  as {}: {}", wts_dialect_name(failures[i].d), failures[i].detail);
  throw FormatError(
      fmt::format("{}: not a valid WTS file in any dialect (pass --dialect to read it as "
                  "one); it reads furthest as {}: {}{}",
                  source, wts_dialect_name(failures[0].d), failures[0].detail, others));
}

WtsFile read_wts(const std::filesystem::path& file, const WtsReadOptions& opts) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(status))
    throw Error(fmt::format("{}: no such file", file.string()));
  if (!std::filesystem::is_regular_file(status))
    throw Error(fmt::format("{}: not a regular file", file.string()));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(fmt::format("{}: cannot open for reading", file.string()));
  return read_wts(in, file.string(), opts);
}

WtsFile read_wts_string(std::string_view content, std::string_view source,
                        const WtsReadOptions& opts) {
  std::istringstream in{std::string(content), std::ios::binary};
  return read_wts(in, source, opts);
}

WeightMap load_wts(const std::filesystem::path& file, std::optional<WtsDialect> dialect) {
  WtsReadOptions opts;
  opts.dialect = dialect;
  return read_wts(file, opts).weights;
}

}  // namespace kiln
