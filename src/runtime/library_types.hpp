// The data types of a precision in cuDNN, cuBLASLt and our kernels (one mapping for every layer).
#pragma once

#include <cublasLt.h>
#include <cudnn.h>

#include "kernel_types.cuh"
#include "kiln/runtime/library.hpp"

namespace kiln::runtime::detail {

inline cudnnDataType_t cudnn_type(Precision p) {
  switch (p) {
    case Precision::f32: return CUDNN_DATA_FLOAT;
    case Precision::f16: return CUDNN_DATA_HALF;
    case Precision::bf16: return CUDNN_DATA_BFLOAT16;
  }
  return CUDNN_DATA_FLOAT;
}

inline cudaDataType_t blas_type(Precision p) {
  switch (p) {
    case Precision::f32: return CUDA_R_32F;
    case Precision::f16: return CUDA_R_16F;
    case Precision::bf16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

inline kernels::Elem elem_of(Precision p) {
  switch (p) {
    case Precision::f32: return kernels::Elem::f32;
    case Precision::f16: return kernels::Elem::f16;
    case Precision::bf16: return kernels::Elem::bf16;
  }
  return kernels::Elem::f32;
}

}  // namespace kiln::runtime::detail
