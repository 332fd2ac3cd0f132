// Host tensors: a dtype, concrete dims and bytes. Copies share storage (tensors are values that
// are written once, when made); clone() makes an independent copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/ir/dtype.hpp"
#include "kiln/ir/shape.hpp"

namespace kiln {

class Tensor {
 public:
  Tensor() = default;
  /// A zero-filled tensor.
  Tensor(DType dtype, std::vector<std::int64_t> dims);
  /// A view of memory owned by `owner` (an arena, a mapped file); no copy is made.
  static Tensor view(DType dtype, std::vector<std::int64_t> dims, std::shared_ptr<void> owner,
                     std::byte* data);

  template <class T>
  static Tensor from(std::vector<std::int64_t> dims, const std::vector<T>& values) {
    Tensor t(dtype_v<T>, std::move(dims));
    t.check_count(values.size());
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < values.size(); ++i) t.data<bool>()[i] = values[i];
    } else if (!values.empty()) {  // an empty vector's data() may be null: memcpy's UB
      std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
    }
    return t;
  }
  /// A tensor of `dtype` holding `values` converted (for tests and constants).
  static Tensor from_doubles(DType dtype, std::vector<std::int64_t> dims,
                             const std::vector<double>& values);
  /// A 0-d tensor.
  template <class T>
  static Tensor scalar(T v) {
    return from<T>({}, std::vector<T>{v});
  }

  /// A sequence value (ONNX's seq(tensor)): `elements`, tensors of dtype `dtype` each (an Error
  /// naming the first that is not). It has no dims and no data of its own.
  static Tensor sequence(DType dtype, std::vector<Tensor> elements);
  /// An optional that holds nothing (ONNX's empty optional) of tensors of `dtype`. (An optional
  /// that holds a value is that value.)
  static Tensor none(DType dtype);
  bool is_tensor() const { return kind_ == Kind::tensor; }
  bool is_sequence() const { return kind_ == Kind::sequence; }
  bool is_none() const { return kind_ == Kind::none; }
  /// A sequence's tensors; an Error for any other value.
  const std::vector<Tensor>& elements() const;

  bool empty_storage() const { return data_ == nullptr && numel() != 0; }
  bool defined() const { return defined_; }
  DType dtype() const { return dtype_; }
  const std::vector<std::int64_t>& dims() const { return dims_; }
  std::size_t rank() const { return dims_.size(); }
  std::int64_t dim(std::size_t i) const { return dims_[i]; }
  std::int64_t numel() const { return numel_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }
  Shape shape() const { return Shape::of(dims_); }

  std::byte* raw() { return data_; }
  const std::byte* raw() const { return data_; }
  template <class T>
  T* data() {
    check_type(dtype_v<T>);
    return reinterpret_cast<T*>(data_);
  }
  template <class T>
  const T* data() const {
    check_type(dtype_v<T>);
    return reinterpret_cast<const T*>(data_);
  }
  template <class T>
  std::span<const T> values() const {
    return {data<T>(), static_cast<std::size_t>(numel_)};
  }

  /// Element i converted to double (any dtype).
  double get(std::int64_t i) const;
  /// Sets element i from a double, converting to the tensor's dtype.
  void set(std::int64_t i, double v);
  /// All elements as doubles / as int64 (integer-valued data: shapes, indices, axes).
  std::vector<double> to_doubles() const;
  std::vector<std::int64_t> to_int64s() const;

  /// Same data, other dims (element counts must agree).
  Tensor reshaped(std::vector<std::int64_t> dims) const;
  /// An independent copy.
  Tensor clone() const;
  /// Elementwise conversion to another dtype (ONNX Cast semantics for float to int: truncation).
  Tensor cast(DType to) const;

  /// "f32[2,3]"; "seq(f32) of 3", "none(f32)".
  std::string type_string() const;

 private:
  void check_type(DType t) const;
  void require_tensor(const char* what) const;
  void check_count(std::size_t n) const;

  enum class Kind : std::uint8_t { tensor, sequence, none };
  Kind kind_ = Kind::tensor;
  std::shared_ptr<const std::vector<Tensor>> elements_;  // a sequence's
  DType dtype_ = DType::f32;
  std::vector<std::int64_t> dims_;
  std::int64_t numel_ = 0;
  std::shared_ptr<void> owner_;
  std::byte* data_ = nullptr;
  bool defined_ = false;
};

}  // namespace kiln
