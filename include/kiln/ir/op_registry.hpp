// Op schemas: for each op kind, its input and output counts and its shape rule, applied by
// Graph::infer(). The reference executor registers its kernels apart (src/reference), so the IR
// never depends on what executes it.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln {

/// What a shape rule sees of one node.
class InferContext {
 public:
  InferContext(const Node& node, std::vector<const TensorType*> in,
               std::vector<const Tensor*> constants, const ConstantEvaluator* evaluator = nullptr)
      : node(node), in_(std::move(in)), const_(std::move(constants)), evaluator_(evaluator) {}

  const Node& node;
  std::size_t num_inputs() const { return in_.size(); }
  bool has_input(std::size_t i) const { return i < in_.size() && in_[i] != nullptr; }
  /// Type of input i; throws naming the node if it is absent.
  const TensorType& input(std::size_t i) const;
  /// The value of input i when it is a known constant (a weight or a folded value), else nullptr.
  const Tensor* constant(std::size_t i) const { return i < const_.size() ? const_[i] : nullptr; }
  /// The evaluator Graph::infer() was given (nullptr when none): a control-flow op's rule infers
  /// its bodies with it, so that their shape subgraphs fold as the enclosing graph's do.
  const ConstantEvaluator* evaluator() const { return evaluator_; }
  /// Throws ShapeError prefixed with the node.
  [[noreturn]] void fail(const std::string& message) const;

 private:
  std::vector<const TensorType*> in_;
  std::vector<const Tensor*> const_;
  const ConstantEvaluator* evaluator_ = nullptr;
};

using InferFn = std::function<std::vector<TensorType>(const InferContext&)>;

struct OpSchema {
  std::string name;    ///< ONNX op name
  std::string family;  ///< for `kiln ops`: "convolution", "elementwise", ...
  int min_inputs = 1;
  int max_inputs = 1;  ///< -1: variadic
  int min_outputs = 1;
  int max_outputs = 1;
  InferFn infer;
  /// The rule takes sequences and optionals (kiln::ValueKind) and says what it makes of them.
  /// Graph::infer() gives any other op tensors only: a GraphError names the input otherwise.
  bool takes_any_value = false;
};

class OpRegistry {
 public:
  static OpRegistry& instance();
  void add(OpSchema s);
  /// The schema of `op`: a built-in op's, or a registered plugin's (kiln/ir/plugin.hpp).
  const OpSchema* find(std::string_view op) const;
  /// Sorted op names.
  std::vector<std::string> names() const;

 private:
  OpRegistry();
  std::vector<OpSchema> schemas_;
  mutable std::mutex plugins_mu_;
  mutable std::map<std::string, OpSchema, std::less<>> plugins_;  ///< made on first use
};

}  // namespace kiln
