// Device memory and the library handles that the runtime's layers share. cuDNN and cuBLASLt
// types are forward-declared, so that including this header needs no CUDA headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

struct CUstream_st;
struct cudnnContext;
struct cublasLtContext;

namespace kiln::runtime {

using Stream = CUstream_st*;  ///< a cudaStream_t

/// Device precision of a layer: FP32 (TF32 only when asked for), or FP16 or BF16 with tensor
/// cores (f32 accumulation either way).
enum class Precision : int { f32 = 0, f16 = 1, bf16 = 2 };
/// Memory layout of 4-D activations.
enum class Layout : int { nchw = 0, nhwc = 1 };

inline std::size_t element_size(Precision p) { return p == Precision::f32 ? 4 : 2; }
/// "f32", "f16" or "bf16": the element type a precision stores (tactic keys, value names).
inline const char* element_name(Precision p) {
  return p == Precision::f32 ? "f32" : p == Precision::f16 ? "f16" : "bf16";
}
/// "FP32", "FP16" or "BF16".
inline const char* precision_name(Precision p) {
  return p == Precision::f32 ? "FP32" : p == Precision::f16 ? "FP16" : "BF16";
}

/// Owns one cudaMalloc allocation (freed on destruction; moves only).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  /// Synchronous copies from and to the host (`bytes` at most bytes()).
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;
  /// Every byte set to `byte` (0xff poisons floats with NaN).
  void fill_bytes(int byte);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// The cuDNN and cuBLASLt handles of the current device. One per thread or per context: the
/// handles are not thread-safe.
class Library {
 public:
  Library();
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  cudnnContext* cudnn() const { return cudnn_; }
  cublasLtContext* cublaslt() const { return cublaslt_; }
  /// Binds the cuDNN handle to `stream` before a call.
  void set_stream(Stream stream) const;

 private:
  cudnnContext* cudnn_ = nullptr;
  cublasLtContext* cublaslt_ = nullptr;
};

}  // namespace kiln::runtime
