#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "proto_util.hpp"

namespace kiln::onnx {

namespace detail {

DType to_dtype(int code, const std::string& what) {
  if (code == ::onnx::TensorProto::UNDEFINED || !::onnx::TensorProto_DataType_IsValid(code))
    throw FormatError(fmt::format("{}: element type {} is not an ONNX data type", what, code));
  try {
    return dtype_from_onnx(code);
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(fmt::format("{}: {}", what, e.what()));
  }
}

namespace {

/// A non-negative decimal byte count of an external-data entry.
std::int64_t parse_size(const std::string& text, const char* key, const std::string& tensor) {
  std::int64_t v = 0;
  bool ok = !text.empty() && text.size() <= 18;  // 18 digits cannot overflow 64 bits
  for (char c : ok ? text : std::string()) {
    if (c < '0' || c > '9')
      ok = false;
    else
      v = v * 10 + (c - '0');
  }
  if (!ok)
    throw FormatError(
        fmt::format("tensor '{}': external data {} '{}' is not a byte count", tensor, key, text));
  return v;
}

std::string read_external(const ::onnx::TensorProto& p, const std::string& base_dir,
                          std::size_t nbytes) {
  std::string location;
  std::int64_t offset = 0, length = -1;
  for (const auto& e : p.external_data()) {
    if (e.key() == "location")
      location = e.value();
    else if (e.key() == "offset")
      offset = parse_size(e.value(), "offset", p.name());
    else if (e.key() == "length")
      length = parse_size(e.value(), "length", p.name());
  }
  const std::string what = fmt::format("tensor '{}'", p.name());
  if (location.empty()) throw FormatError(what + ": external data without a location");
  const std::filesystem::path loc(location);
  if (loc.is_absolute() || location.find("..") != std::string::npos)
    throw FormatError(
        fmt::format("{}: external data location '{}' must be a relative path inside "
                    "the model's folder",
                    what, location));
  const auto path = std::filesystem::path(base_dir.empty() ? "." : base_dir) / loc;
  // The file must lie inside the model's folder once every symbolic link is followed, and be a
  // regular file (a folder would read as zeros).
  std::error_code ec;
  const auto real = std::filesystem::canonical(path, ec);
  if (ec)
    throw FormatError(fmt::format("{}: external data file '{}' not found", what, path.string()));
  const auto real_base = std::filesystem::canonical(base_dir.empty() ? "." : base_dir, ec);
  const auto rel = real.lexically_relative(real_base);
  if (ec || rel.empty() || *rel.begin() == "..")
    throw FormatError(
        fmt::format("{}: external data location '{}' leads to '{}', outside the "
                    "model's folder '{}'",
                    what, location, real.string(), real_base.string()));
  if (!std::filesystem::is_regular_file(real, ec))
    throw FormatError(
        fmt::format("{}: external data location '{}' is not a regular file", what, location));
  std::ifstream f(real, std::ios::binary);
  if (!f)
    throw FormatError(
        fmt::format("{}: external data file '{}' cannot be read", what, path.string()));
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::int64_t>(f.tellg());
  if (length < 0) length = static_cast<std::int64_t>(nbytes);
  if (offset < 0 || offset + length > size)
    throw FormatError(fmt::format("{}: external data file '{}' has {} bytes, needs {} at offset {}",
                                  what, path.string(), size, length, offset));
  if (static_cast<std::size_t>(length) != nbytes)
    throw FormatError(fmt::format("{}: external data length {} but the tensor needs {} bytes", what,
                                  length, nbytes));
  std::string buf(static_cast<std::size_t>(length), '\0');
  f.seekg(offset);
  f.read(buf.data(), length);
  return buf;
}

/// A tensor for `what`, whose memory errors name it.
Tensor allocate(const std::string& what, DType dt, const std::vector<std::int64_t>& dims) {
  try {
    return Tensor(dt, dims);
  } catch (const MemoryLimitError& e) {
    throw MemoryLimitError(fmt::format("{}: {}", what, e.what()));
  }
}

}  // namespace

Tensor to_tensor(const ::onnx::TensorProto& p, const std::string& base_dir) {
  const std::string what = fmt::format("tensor '{}'", p.name());
  if (p.has_segment()) throw UnsupportedError(what + ": segmented tensors are not supported");
  const DType dt = to_dtype(p.data_type(), what);
  std::vector<std::int64_t> dims(p.dims().begin(), p.dims().end());
  for (auto d : dims)
    if (d < 0) throw FormatError(fmt::format("{}: negative dim in {}", what, dims_to_string(dims)));
  // A tensor whose bytes the file cannot hold is refused before anything is allocated.
  std::int64_t numel = 1;
  for (auto d : dims) {
    if (d != 0 && numel > std::numeric_limits<std::int64_t>::max() / 16 / d)
      throw FormatError(fmt::format("{}: dims {} are too large", what, dims_to_string(dims)));
    numel *= d;
  }
  // Sub-byte types are packed in the file (2 or 4 to a byte), one byte each in memory.
  const bool packed = is_subbyte(dt);
  const std::size_t nbytes =
      packed ? (static_cast<std::size_t>(numel) * static_cast<std::size_t>(onnx_bits(dt)) + 7) / 8
             : static_cast<std::size_t>(numel) * dtype_size(dt);
  std::string external;
  const std::string* raw = nullptr;
  if (p.data_location() == ::onnx::TensorProto::EXTERNAL) {
    external = read_external(p, base_dir, nbytes);
    raw = &external;
  } else if (p.has_raw_data()) {
    raw = &p.raw_data();
  }
  if (raw) {
    if (raw->size() != nbytes)
      throw FormatError(fmt::format("{}: raw data has {} bytes, dims {} of {} need {}", what,
                                    raw->size(), dims_to_string(dims), dtype_name(dt), nbytes));
    Tensor t = allocate(what, dt, dims);
    if (packed)
      unpack_subbyte(dt, reinterpret_cast<const std::uint8_t*>(raw->data()),
                     static_cast<std::size_t>(numel), reinterpret_cast<std::uint8_t*>(t.raw()));
    else if (nbytes)
      std::memcpy(t.raw(), raw->data(), nbytes);
    return t;
  }
  // The typed field must hold every value before the tensor is allocated: a few bytes of dims
  // with no values must not make kiln allocate gigabytes first.
  const int held = [&] {
    switch (dt) {
      case DType::f32: return p.float_data_size();
      case DType::f64: return p.double_data_size();
      case DType::i64: return p.int64_data_size();
      case DType::u32:
      case DType::u64: return p.uint64_data_size();
      default:
        return p
            .int32_data_size();  // f16, bf16, float8 (bit patterns), i8, u8, i16, u16, i32, bool
    }
  }();
  if (packed) {  // int32_data holds the packed bytes, one per entry
    if (static_cast<std::size_t>(held) != nbytes)
      throw FormatError(fmt::format("tensor '{}' holds {} packed bytes, its dims {} of {} need {}",
                                    p.name(), held, dims_to_string(dims), dtype_name(dt), nbytes));
    std::vector<std::uint8_t> bytes(nbytes);
    for (std::size_t i = 0; i < nbytes; ++i)
      bytes[i] = static_cast<std::uint8_t>(p.int32_data(static_cast<int>(i)));
    Tensor t = allocate(what, dt, dims);
    unpack_subbyte(dt, bytes.data(), static_cast<std::size_t>(numel),
                   reinterpret_cast<std::uint8_t*>(t.raw()));
    return t;
  }
  if (static_cast<std::int64_t>(held) != numel)
    throw FormatError(fmt::format("tensor '{}' holds {} values, its dims {} need {}", p.name(),
                                  held, dims_to_string(dims), numel));
  Tensor t = allocate(what, dt, dims);
  auto fill = [&](const auto& field, auto convert) {  // `held` checked the field's count
    for (std::int64_t i = 0; i < numel; ++i) convert(i, field.Get(static_cast<int>(i)));
  };
  switch (dt) {
    case DType::f32: fill(p.float_data(), [&](auto i, float v) { t.data<float>()[i] = v; }); break;
    case DType::f64:
      fill(p.double_data(), [&](auto i, double v) { t.data<double>()[i] = v; });
      break;
    case DType::i64:
      fill(p.int64_data(), [&](auto i, std::int64_t v) { t.data<std::int64_t>()[i] = v; });
      break;
    case DType::u32:
    case DType::u64:
      fill(p.uint64_data(), [&](auto i, std::uint64_t v) {
        if (dt == DType::u32)
          t.data<std::uint32_t>()[i] = static_cast<std::uint32_t>(v);
        else
          t.data<std::uint64_t>()[i] = v;
      });
      break;
    case DType::f16:
    case DType::bf16:
      // 16-bit floats are stored as their bit patterns in int32_data.
      fill(p.int32_data(), [&](auto i, std::int32_t v) {
        const auto bits = static_cast<std::uint16_t>(v);
        std::memcpy(t.raw() + 2 * i, &bits, 2);
      });
      break;
    case DType::f8e4m3fn:
    case DType::f8e4m3fnuz:
    case DType::f8e5m2:
    case DType::f8e5m2fnuz:
    case DType::f8e8m0:  // and float8 as their byte patterns
      fill(p.int32_data(), [&](auto i, std::int32_t v) {
        t.raw()[i] = static_cast<std::byte>(static_cast<std::uint8_t>(v));
      });
      break;
    default:  // i8, u8, i16, u16, i32, bool
      fill(p.int32_data(), [&](auto i, std::int32_t v) { t.set(i, static_cast<double>(v)); });
      break;
  }
  return t;
}

void to_proto(const Tensor& t, ::onnx::TensorProto& p) {
  p.set_data_type(dtype_to_onnx(t.dtype()));
  for (auto d : t.dims()) p.add_dims(d);
  if (is_subbyte(t.dtype())) {
    const auto b = pack_subbyte(t.dtype(), reinterpret_cast<const std::uint8_t*>(t.raw()),
                                static_cast<std::size_t>(t.numel()));
    p.set_raw_data(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
    return;
  }
  p.set_raw_data(std::string(reinterpret_cast<const char*>(t.raw()), t.nbytes()));
}

}  // namespace detail

namespace {
std::string read_file(const std::string& path, const char* kind) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(fmt::format("cannot open {} '{}'", kind, path));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return bytes;
}

/// A serialized message of type `Proto` (TensorProto, SequenceProto, OptionalProto), named `kind`
/// in the error where it does not parse.
template <class Proto>
Proto parse_proto(const std::string& bytes, const std::string& source, const char* kind) {
  Proto p;
  if (!p.ParseFromString(bytes))
    throw FormatError(
        fmt::format("'{}' is not a serialized ONNX {} (truncated or corrupt)", source, kind));
  return p;
}

::onnx::TensorProto parse_tensor(const std::string& bytes, const std::string& source) {
  return parse_proto<::onnx::TensorProto>(bytes, source, "TensorProto");
}

/// A tensor of a value file: its errors prefixed with the file (`source`), a bad one a
/// FormatError.
Tensor file_tensor(const ::onnx::TensorProto& p, const std::string& base_dir,
                   const std::string& source) {
  try {
    return detail::to_tensor(p, base_dir);
  } catch (const UnsupportedError& e) {
    throw UnsupportedError(fmt::format("'{}': {}", source, e.what()));
  } catch (const Error& e) {
    throw FormatError(fmt::format("'{}': {}", source, e.what()));
  }
}
}  // namespace

Tensor load_tensor_bytes(const std::string& bytes, const std::string& base_dir,
                         const std::string& source) {
  return file_tensor(parse_tensor(bytes, source), base_dir, source);
}

Tensor load_tensor(const std::string& path) {
  return load_tensor_bytes(read_file(path, "tensor file"),
                           std::filesystem::path(path).parent_path().string(), path);
}

namespace {
Tensor sequence_value(const ::onnx::SequenceProto& p, const TensorType& type,
                      const std::string& base_dir, const std::string& source) {
  if (p.elem_type() != ::onnx::TENSOR_ELEMENT &&
      !(p.elem_type() == ::onnx::UNDEFINED_ELEMENT && p.tensor_values_size() == 0))
    throw UnsupportedError(
        fmt::format("'{}': a sequence of element type {}: kiln reads "
                    "sequences of tensors",
                    source, static_cast<int>(p.elem_type())));
  std::vector<Tensor> e;
  for (const auto& t : p.tensor_values()) {
    e.push_back(file_tensor(t, base_dir, source));
    if (e.back().dtype() != type.dtype)
      throw Error(fmt::format("'{}': tensor {} of the sequence is {}: expected {}", source,
                              e.size() - 1, e.back().type_string(), type.to_string()));
  }
  return Tensor::sequence(type.dtype, std::move(e));
}
}  // namespace

Tensor load_value(const std::string& path, const TensorType& type) {
  return load_value_bytes(read_file(path, "value file"), type,
                          std::filesystem::path(path).parent_path().string(), path);
}

Tensor load_value_bytes(const std::string& bytes, const TensorType& type, const std::string& base,
                        const std::string& path) {
  if (type.is_tensor()) return load_tensor_bytes(bytes, base, path);
  if (type.kind == ValueKind::sequence)
    return sequence_value(parse_proto<::onnx::SequenceProto>(bytes, path, "SequenceProto"), type,
                          base, path);
  const auto p = parse_proto<::onnx::OptionalProto>(bytes, path, "OptionalProto");
  switch (p.elem_type()) {
    case ::onnx::UNDEFINED_ELEMENT: return Tensor::none(type.dtype);
    case ::onnx::TENSOR_ELEMENT:
      if (type.kind != ValueKind::optional_tensor || !p.has_tensor_value()) break;
      return file_tensor(p.tensor_value(), base, path);
    case ::onnx::SEQUENCE_ELEMENT:
      if (type.kind != ValueKind::optional_sequence || !p.has_sequence_value()) break;
      return sequence_value(p.sequence_value(), type, base, path);
    default: break;
  }
  throw Error(fmt::format("'{}' holds an optional of element type {}: expected {}", path,
                          static_cast<int>(p.elem_type()), type.to_string()));
}

std::string load_tensor_name(const std::string& path) {
  return parse_tensor(read_file(path, "tensor file"), path).name();
}

void save_value(const Tensor& v, const std::string& path, const std::string& name) {
  if (v.is_tensor()) return save_tensor(v, path, name);
  std::string bytes;
  if (v.is_sequence()) {
    ::onnx::SequenceProto p;
    p.set_name(name);
    p.set_elem_type(::onnx::TENSOR_ELEMENT);
    for (const Tensor& e : v.elements()) detail::to_proto(e, *p.add_tensor_values());
    bytes = p.SerializeAsString();
  } else {
    ::onnx::OptionalProto p;
    p.set_name(name);
    p.set_elem_type(::onnx::UNDEFINED_ELEMENT);
    bytes = p.SerializeAsString();
  }
  std::ofstream f(path, std::ios::binary);
  if (!f || !f.write(bytes.data(), static_cast<std::streamsize>(bytes.size())))
    throw Error(fmt::format("cannot write value file '{}'", path));
}

void save_tensor(const Tensor& t, const std::string& path, const std::string& name) {
  ::onnx::TensorProto p;
  detail::to_proto(t, p);
  p.set_name(name);
  std::ofstream f(path, std::ios::binary);
  if (!f || !p.SerializeToOstream(&f))
    throw Error(fmt::format("cannot write tensor file '{}'", path));
}

}  // namespace kiln::onnx
