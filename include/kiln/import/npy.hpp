// NumPy .npy files (format versions 1.0, 2.0 and 3.0): read and write kiln Tensors (the input,
// output and calibration files of the tools and examples).
//
// Read: little-endian (or byte-order-free) f8 f4 f2 i8 i4 i2 i1 u8 u4 u2 u1 b1 in C order.
// Fortran order, big-endian data, other dtypes, a bad header or a truncated file throw
// FormatError (UnsupportedError for a dtype kiln does not hold) naming the file.
// Write: a version 1.0 header (2.0 when the header needs it), C order, little-endian; bf16 is
// written as f4 (NumPy has no bfloat16).
#pragma once

#include <string>
#include <string_view>

#include "kiln/ir/tensor.hpp"

namespace kiln {

/// Parses the bytes of an .npy file; `source` names it in errors.
Tensor parse_npy(std::string_view bytes, const std::string& source);
/// Reads an .npy file.
Tensor read_npy(const std::string& path);

/// The bytes of an .npy file holding `t`.
std::string serialize_npy(const Tensor& t);
/// Writes `t` to `path` as .npy.
void write_npy(const Tensor& t, const std::string& path);

/// A tensor file: .npy (NumPy, by the extension) or anything else as a serialized ONNX
/// TensorProto (.pb, kiln/import/onnx.hpp).
Tensor load_tensor_file(const std::string& path);

}  // namespace kiln
