// Every CUDA, cuBLAS and cuDNN call is checked: a failure throws kiln::Error with the file,
// the line, the call and the library's own message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <string>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"

namespace kiln::runtime::detail {

[[noreturn]] inline void throw_call(const char* lib, const char* call, const char* file, int line,
                                    const std::string& message) {
  throw Error(fmt::format("{} call failed at {}:{}: {}: {}", lib, file, line, call, message));
}

inline void check(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess)
    throw_call("CUDA", call, file, line,
               fmt::format("{} ({})", cudaGetErrorString(e), cudaGetErrorName(e)));
}
inline void check(cudnnStatus_t e, const char* call, const char* file, int line) {
  if (e != CUDNN_STATUS_SUCCESS) throw_call("cuDNN", call, file, line, cudnnGetErrorString(e));
}
inline void check(cublasStatus_t e, const char* call, const char* file, int line) {
  if (e != CUBLAS_STATUS_SUCCESS)
    throw_call("cuBLAS", call, file, line,
               fmt::format("{} ({})", cublasGetStatusString(e), cublasGetStatusName(e)));
}

}  // namespace kiln::runtime::detail

#define KILN_CHECK(call) ::kiln::runtime::detail::check((call), #call, __FILE__, __LINE__)
