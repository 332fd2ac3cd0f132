#include "kiln/runtime/device.hpp"

#include "check.hpp"

namespace kiln::runtime {

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return fmt::format("cudaGetDeviceCount failed: {}", cudaGetErrorString(e));
  }
  return n == 0 ? "no CUDA device is present" : "";
}

std::vector<DeviceInfo> devices() {
  std::vector<DeviceInfo> v;
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    KILN_CHECK(cudaGetDeviceProperties(&p, i));
    v.push_back({i, p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem});
  }
  return v;
}

std::string library_versions() {
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  const std::size_t dnn = cudnnGetVersion();
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas_major);
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  cublasGetProperty(PATCH_LEVEL, &cublas_patch);
  return fmt::format("cudart {}.{}, cuBLAS {}.{}.{}, cuDNN {}.{}.{}", rt / 1000, (rt % 1000) / 10,
                     cublas_major, cublas_minor, cublas_patch, dnn / 10000, (dnn % 10000) / 100,
                     dnn % 100);
}

}  // namespace kiln::runtime
