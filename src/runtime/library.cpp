#include "kiln/runtime/library.hpp"

#include <cublasLt.h>

#include "check.hpp"

namespace kiln::runtime {

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes != 0) KILN_CHECK(cudaMalloc(&ptr_, bytes));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);  // never throws from a destructor
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes) {
  if (bytes > bytes_)
    throw Error(fmt::format("upload of {} bytes into a buffer of {}", bytes, bytes_));
  if (bytes != 0) KILN_CHECK(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
}

void DeviceBuffer::download(void* host, std::size_t bytes) const {
  if (bytes > bytes_)
    throw Error(fmt::format("download of {} bytes from a buffer of {}", bytes, bytes_));
  if (bytes != 0) KILN_CHECK(cudaMemcpy(host, ptr_, bytes, cudaMemcpyDeviceToHost));
}

void DeviceBuffer::fill_bytes(int byte) {
  if (bytes_ != 0) KILN_CHECK(cudaMemset(ptr_, byte, bytes_));
}

Library::Library() {
  KILN_CHECK(cudnnCreate(&cudnn_));
  try {
    KILN_CHECK(cublasLtCreate(&cublaslt_));
  } catch (...) {
    cudnnDestroy(cudnn_);
    throw;
  }
}

Library::~Library() {
  if (cublaslt_ != nullptr) cublasLtDestroy(cublaslt_);
  if (cudnn_ != nullptr) cudnnDestroy(cudnn_);
}

void Library::set_stream(Stream stream) const { KILN_CHECK(cudnnSetStream(cudnn_, stream)); }

}  // namespace kiln::runtime
