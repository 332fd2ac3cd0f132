// Internal: conversions between onnx.proto messages and kiln's IR types.
#pragma once

#include <string>

#include "kiln/ir/tensor.hpp"
#include "onnx.pb.h"
#include "onnx_values.pb.h"

namespace kiln::onnx::detail {

/// dtype_from_onnx() with `what` (the tensor or input) in the message.
DType to_dtype(int code, const std::string& what);
/// Converts a TensorProto; external data is resolved relative to base_dir.
Tensor to_tensor(const ::onnx::TensorProto& p, const std::string& base_dir);
void to_proto(const Tensor& t, ::onnx::TensorProto& p);

}  // namespace kiln::onnx::detail
