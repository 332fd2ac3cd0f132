// Writing WTS files in the three dialects.
#include <bit>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>

#include <fmt/format.h>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln {

namespace {

/// The TensorRT type code of a weight as written, and the tensor to write (converted if needed).
std::pair<int, Tensor> trt_typed(const std::string& name, const Tensor& t, WtsDialect d) {
  switch (t.dtype()) {
    case DType::f32: return {0, t};
    case DType::f16: return {1, t};
    case DType::i8: return {2, t};
    case DType::i32: return {3, t};
    case DType::bf16:
    case DType::f64: return {0, t.cast(DType::f32)};
    default:
      throw UnsupportedError(fmt::format(
          "{} holds float32, float16, int8 and int32 weights; '{}' is {} (cast it first)",
          wts_dialect_name(d), name, dtype_name(t.dtype())));
  }
}

std::uint64_t word_at(const Tensor& t, std::int64_t i) {
  const std::byte* p = t.raw() + static_cast<std::size_t>(i) * dtype_size(t.dtype());
  switch (dtype_size(t.dtype())) {
    case 4: {
      std::uint32_t w;
      std::memcpy(&w, p, 4);
      return w;
    }
    case 2: {
      std::uint16_t w;
      std::memcpy(&w, p, 2);
      return w;
    }
    default: {
      std::uint8_t w;
      std::memcpy(&w, p, 1);
      return w;
    }
  }
}

void write_words(std::ostream& out, const Tensor& t, bool padded) {
  std::string line;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    line += ' ';
    if (padded)
      fmt::format_to(std::back_inserter(line), "{:08x}", word_at(t, i));
    else
      fmt::format_to(std::back_inserter(line), "{:x}", word_at(t, i));
    if (line.size() > (1 << 16)) {
      out << line;
      line.clear();
    }
  }
  out << line << '\n';
}

std::string python_tuple(const std::vector<std::int64_t>& dims) {
  if (dims.size() == 1) return fmt::format("({},)", dims[0]);
  return fmt::format("({})", fmt::join(dims, ", "));
}

}  // namespace

void write_wts(const WeightMap& w, std::ostream& out, WtsDialect dialect) {
  out << w.size() << '\n';
  for (const auto& [name, tensor] : w) {
    if (name.empty() || name.size() > 4096)
      throw Error(fmt::format("cannot write a weight named '{}' to WTS (1 to 4096 bytes)", name));
    for (unsigned char c : name)
      if (c < 0x21 || c > 0x7e)
        throw Error(
            fmt::format("cannot write weight '{}' to WTS: names are printable ASCII "
                        "without spaces",
                        name));
    switch (dialect) {
      case WtsDialect::trt_hex: {
        auto [code, t] = trt_typed(name, tensor, dialect);
        out << name << ' ' << code << ' ' << t.numel();
        write_words(out, t, /*padded=*/false);
        break;
      }
      case WtsDialect::tensorrtx: {
        const Tensor t = tensor.dtype() == DType::f32 ? tensor : tensor.cast(DType::f32);
        out << name << ' ' << t.numel();
        write_words(out, t, /*padded=*/true);
        break;
      }
      case WtsDialect::trt_binary: {
        auto [code, t] = trt_typed(name, tensor, dialect);
        out << name << ' ' << code << ' ' << python_tuple(t.dims()) << ' ';
        if constexpr (std::endian::native == std::endian::little) {
          out.write(reinterpret_cast<const char*>(t.raw()),
                    static_cast<std::streamsize>(t.nbytes()));
        } else {
          const std::size_t sz = dtype_size(t.dtype());
          for (std::size_t i = 0; i < t.nbytes(); i += sz)
            for (std::size_t b = sz; b-- > 0;) out.put(static_cast<char>(t.raw()[i + b]));
        }
        out << '\n';
        break;
      }
    }
  }
  if (!out) throw Error("writing the WTS file failed");
}

void write_wts(const WeightMap& w, const std::filesystem::path& file, WtsDialect dialect) {
  std::ofstream out(file, std::ios::binary);
  if (!out) throw Error(fmt::format("{}: cannot open for writing", file.string()));
  write_wts(w, out, dialect);
  out.close();
  if (!out) throw Error(fmt::format("{}: writing failed", file.string()));
}

std::string write_wts_string(const WeightMap& w, WtsDialect dialect) {
  std::ostringstream out(std::ios::binary);
  write_wts(w, out, dialect);
  return std::move(out).str();
}

}  // namespace kiln
