// ONNX import: model files and TensorProto files, read with libprotobuf and the ONNX schema.
// The importer turns every node of a supported op into IR in the latest opset's form (older
// opsets' attributes become constant inputs), folds Constant nodes into weights, and infers
// shapes. Unsupported ops, dtypes and attributes fail with UnsupportedError naming the node.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::onnx {

struct ImportOptions {
  /// Infer shapes and verify the graph after import (on by default).
  bool infer = true;
  /// Computes shape subgraphs while inferring (see Graph::infer); the reference executor's
  /// kiln::reference::constant_evaluator() is the usual one.
  const ConstantEvaluator* evaluator = nullptr;
};

/// Reads an ONNX model file. Throws FormatError (unreadable, truncated or not an ONNX model),
/// UnsupportedError (op, dtype, attribute) or ShapeError/GraphError (an invalid model).
Graph load_model(const std::string& path, const ImportOptions& opts = {});
/// The same from bytes in memory; `base_dir` resolves external data files.
Graph load_model_bytes(const std::string& bytes, const std::string& base_dir,
                       const ImportOptions& opts = {});

/// Reads a serialized TensorProto (.pb). Throws FormatError or UnsupportedError.
Tensor load_tensor(const std::string& path);
/// The same from bytes in memory; `base_dir` resolves external data, `source` names them in errors.
Tensor load_tensor_bytes(const std::string& bytes, const std::string& base_dir,
                         const std::string& source = "<memory>");
/// Reads a serialized value of type `type`: a TensorProto for a tensor, a SequenceProto of
/// tensors for a sequence, an OptionalProto for an optional (the ONNX test data's inputs and
/// outputs). Throws FormatError, UnsupportedError, or Error where the file holds another kind.
Tensor load_value(const std::string& path, const TensorType& type);
/// The same from bytes in memory; `base_dir` resolves external data, `source` names them in errors.
Tensor load_value_bytes(const std::string& bytes, const TensorType& type,
                        const std::string& base_dir, const std::string& source = "<memory>");
/// The types a model declares for its graph outputs, in order (nullopt where it declares none):
/// the kinds its expected-output files are.
std::vector<std::optional<TensorType>> declared_output_types(const std::string& path);
/// The name stored in a serialized TensorProto file (may be empty).
std::string load_tensor_name(const std::string& path);
/// Writes a tensor as a serialized TensorProto.
void save_tensor(const Tensor& t, const std::string& path, const std::string& name = "");
/// Writes any value: a tensor as a TensorProto, a sequence as a SequenceProto, an empty
/// optional as an OptionalProto (load_value reads them back).
void save_value(const Tensor& v, const std::string& path, const std::string& name = "");

/// The ONNX op names the importer maps, with the opset range it reads for each.
struct OpSupport {
  std::string op;
  int min_opset;
  int max_opset;
};
std::vector<OpSupport> supported_ops();

}  // namespace kiln::onnx
