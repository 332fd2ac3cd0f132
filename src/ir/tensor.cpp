#include "kiln/ir/tensor.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/memory.hpp"

namespace kiln {

namespace {
std::int64_t checked_numel(const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (auto d : dims) {
    if (d < 0) throw ShapeError("tensor dims must be non-negative, got " + dims_to_string(dims));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
      throw ShapeError("tensor of dims " + dims_to_string(dims) + " is too large");
    n *= d;
  }
  return n;
}
}  // namespace

namespace {
/// A tensor's bytes and their reservation against the host memory limit.
struct Storage {
  HostReservation reservation;
  std::unique_ptr<std::byte[]> bytes;
};
}  // namespace

Tensor::Tensor(DType dtype, std::vector<std::int64_t> dims)
    : dtype_(dtype), dims_(std::move(dims)) {
  const std::string what = "tensor " + type_string();
  const std::uint64_t bytes = tensor_bytes(what, dtype_, dims_);  // checks the count's overflow
  numel_ = checked_numel(dims_);
  auto storage = std::make_shared<Storage>();
  storage->reservation = HostReservation(bytes, what);
  try {
    storage->bytes.reset(new std::byte[bytes == 0 ? 1 : bytes]());
  } catch (const std::bad_alloc&) {
    throw MemoryLimitError(
        fmt::format("{} needs {}, which the system could not allocate", what, format_bytes(bytes)));
  }
  data_ = storage->bytes.get();
  owner_ = std::move(storage);
  defined_ = true;
}

Tensor Tensor::view(DType dtype, std::vector<std::int64_t> dims, std::shared_ptr<void> owner,
                    std::byte* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.numel_ = checked_numel(t.dims_);
  t.owner_ = std::move(owner);
  t.data_ = data;
  t.defined_ = true;
  return t;
}

Tensor Tensor::from_doubles(DType dtype, std::vector<std::int64_t> dims,
                            const std::vector<double>& values) {
  Tensor t(dtype, std::move(dims));
  t.check_count(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) t.set(static_cast<std::int64_t>(i), values[i]);
  return t;
}

void Tensor::check_type(DType t) const {
  if (kind_ != Kind::tensor) require_tensor("data");
  if (t != dtype_)
    throw Error(
        fmt::format("tensor of dtype {} accessed as {}", dtype_name(dtype_), dtype_name(t)));
}

void Tensor::check_count(std::size_t n) const {
  if (static_cast<std::int64_t>(n) != numel_)
    throw ShapeError(fmt::format("{} values given for a tensor of dims {} ({} elements)", n,
                                 dims_to_string(dims_), numel_));
}

namespace {
template <class To, class From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return to_compute(v) != 0;
  } else if constexpr (is_half_v<To>) {
    return To(static_cast<float>(to_compute(v)));
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<compute_t<From>>) {
    // Float to integer truncates toward zero; NaN and out-of-range values are undefined in
    // C++, so they are saturated here (what the GPU's conversions do).
    const double d = static_cast<double>(to_compute(v));
    if (std::isnan(d)) return To(0);
    if (d <= static_cast<double>(std::numeric_limits<To>::lowest()))
      return std::numeric_limits<To>::lowest();
    if (d >= static_cast<double>(std::numeric_limits<To>::max()))
      return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else {
    return static_cast<To>(to_compute(v));
  }
}
}  // namespace

double Tensor::get(std::int64_t i) const {
  if (is_storage_only(dtype_))
    return narrow_to_double(dtype_, reinterpret_cast<const std::uint8_t*>(data_)[i]);
  return visit_dtype(dtype_, [&](auto tag) -> double {
    using T = decltype(tag);
    return static_cast<double>(to_compute(reinterpret_cast<const T*>(data_)[i]));
  });
}

void Tensor::set(std::int64_t i, double v) {
  // As cast() converts: integers saturate and NaN becomes 0 (a value out of an integer type's
  // range, from a file, is otherwise undefined behaviour); float8 saturates.
  if (is_storage_only(dtype_)) {
    reinterpret_cast<std::uint8_t*>(data_)[i] = narrow_from_double(dtype_, v);
    return;
  }
  visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    reinterpret_cast<T*>(data_)[i] = convert<T>(v);
  });
}

std::vector<double> Tensor::to_doubles() const {
  std::vector<double> v(static_cast<std::size_t>(numel_));
  for (std::int64_t i = 0; i < numel_; ++i) v[i] = get(i);
  return v;
}

std::vector<std::int64_t> Tensor::to_int64s() const {
  std::vector<std::int64_t> v(static_cast<std::size_t>(numel_));
  if (is_storage_only(dtype_)) {
    for (std::int64_t i = 0; i < numel_; ++i) v[i] = static_cast<std::int64_t>(get(i));
    return v;
  }
  visit_dtype(dtype_, [&](auto tag) {
    using T = decltype(tag);
    const T* p = reinterpret_cast<const T*>(data_);
    for (std::int64_t i = 0; i < numel_; ++i) {
      if constexpr (is_half_v<T>)
        v[i] = static_cast<std::int64_t>(static_cast<float>(p[i]));
      else if constexpr (std::is_floating_point_v<T>)
        v[i] = static_cast<std::int64_t>(p[i]);
      else
        v[i] = static_cast<std::int64_t>(p[i]);
    }
  });
  return v;
}

Tensor Tensor::reshaped(std::vector<std::int64_t> dims) const {
  require_tensor("reshaped");
  if (checked_numel(dims) != numel_)
    throw ShapeError(fmt::format("cannot reshape {} to {}: element counts differ", type_string(),
                                 dims_to_string(dims)));
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

Tensor Tensor::clone() const {
  if (is_sequence()) {
    std::vector<Tensor> copies;
    for (const Tensor& e : *elements_) copies.push_back(e.clone());
    return sequence(dtype_, std::move(copies));
  }
  if (is_none()) return *this;
  Tensor t(dtype_, dims_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

Tensor Tensor::cast(DType to) const {
  require_tensor("cast");
  Tensor out(to, dims_);
  if (is_storage_only(dtype_) ||
      is_storage_only(to)) {  // through double: exact from every float8 value
    for (std::int64_t i = 0; i < numel_; ++i) out.set(i, get(i));
    return out;
  }
  visit_dtype(dtype_, [&](auto from_tag) {
    using From = decltype(from_tag);
    visit_dtype(to, [&](auto to_tag) {
      using To = decltype(to_tag);
      const From* src = reinterpret_cast<const From*>(data_);
      To* dst = reinterpret_cast<To*>(out.data_);
      for (std::int64_t i = 0; i < numel_; ++i) dst[i] = convert<To>(src[i]);
    });
  });
  return out;
}

std::string Tensor::type_string() const {
  if (is_sequence()) return fmt::format("seq({}) of {}", dtype_name(dtype_), elements_->size());
  if (is_none()) return fmt::format("none({})", dtype_name(dtype_));
  return std::string(dtype_name(dtype_)) + dims_to_string(dims_);
}

Tensor Tensor::sequence(DType dtype, std::vector<Tensor> elements) {
  for (std::size_t i = 0; i < elements.size(); ++i)
    if (!elements[i].is_tensor() || elements[i].dtype() != dtype)
      throw Error(fmt::format("a sequence of {} tensors cannot hold element {}, {}",
                              dtype_name(dtype), i, elements[i].type_string()));
  Tensor t;
  t.kind_ = Kind::sequence;
  t.dtype_ = dtype;
  t.elements_ = std::make_shared<const std::vector<Tensor>>(std::move(elements));
  t.defined_ = true;
  return t;
}

Tensor Tensor::none(DType dtype) {
  Tensor t;
  t.kind_ = Kind::none;
  t.dtype_ = dtype;
  t.defined_ = true;
  return t;
}

const std::vector<Tensor>& Tensor::elements() const {
  if (!is_sequence()) throw Error(fmt::format("{} is not a sequence", type_string()));
  return *elements_;
}

void Tensor::require_tensor(const char* what) const {
  if (!is_tensor())
    throw Error(fmt::format("{} of {}: only a tensor has dims and data", what, type_string()));
}

}  // namespace kiln
