// The IR graph: nodes (op kind, attributes, named inputs and outputs) over named values (dtype
// and shape) and weights (named host tensors). Op kinds are ONNX op names with the semantics of
// the latest opset; importers translate older forms. Node order is topological.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "kiln/ir/shape.hpp"
#include "kiln/ir/tensor.hpp"

namespace kiln {

/// What a value holds: a tensor (nearly every value), a sequence of tensors of one dtype (ONNX's
/// seq(tensor)), or an optional that holds a tensor, a sequence or nothing (ONNX's optional).
/// Only the ops that take them (Identity, If, Loop, the Sequence* and Optional* ops,
/// SplitToSequence, ConcatFromSequence, SequenceMap: OpSchema::takes_any_value) accept the
/// others; the CPU reference runs them; plans hold tensors only.
enum class ValueKind : std::uint8_t { tensor, sequence, optional_tensor, optional_sequence };

/// The type of a value: element type and shape; for a sequence or an optional, those of the
/// tensors it holds.
struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  ValueKind kind = ValueKind::tensor;
  /// False for a sequence or optional whose tensors' rank is not known (a sequence's tensors may
  /// differ in rank; `shape` is then empty). A tensor's rank is always known.
  bool rank_known = true;

  bool is_tensor() const { return kind == ValueKind::tensor; }
  bool is_sequence() const {
    return kind == ValueKind::sequence || kind == ValueKind::optional_sequence;
  }
  bool is_optional() const {
    return kind == ValueKind::optional_tensor || kind == ValueKind::optional_sequence;
  }
  /// The same type with another kind (the dtype and shape of the tensors held are kept).
  TensorType as(ValueKind k) const {
    TensorType t = *this;
    t.kind = k;
    return t;
  }
  /// "f32[N,3,224,224]", "seq(f32[5])", "opt(seq(f32[*]))" (* : any rank).
  std::string to_string() const;
  friend bool operator==(const TensorType&, const TensorType&) = default;
};

/// The type of a run-time value: a tensor's dtype and dims; a sequence's dtype and its tensors'
/// dims (dynamic where they differ; an unknown rank where their ranks differ or it is empty); an
/// empty optional's dtype, as an optional tensor of unknown rank.
TensorType type_of_value(const Tensor& v);

struct ValueInfo {
  std::string name;
  TensorType type;
};

class Graph;

/// A control-flow op's body (If's branches, Loop's and Scan's body). Its graph's inputs are the
/// op's formal body inputs (none for If; Loop's iteration number, condition and carried values;
/// Scan's states and slices) followed by `captures` values of the enclosing graph that the body
/// reads, under their outer names. Those captured values are also the node's last `captures`
/// inputs, so the node shows all the data it reads: the enclosing graph's order, liveness and
/// renaming passes need not look inside bodies. The body is shared and never changed in place
/// (shape rules infer a copy).
struct Subgraph {
  std::shared_ptr<const Graph> graph;
  std::size_t captures = 0;
  friend bool operator==(const Subgraph& a, const Subgraph& b) {
    return a.graph == b.graph && a.captures == b.captures;
  }
};

using Attribute = std::variant<std::int64_t, double, std::string, std::vector<std::int64_t>,
                               std::vector<double>, std::vector<std::string>, Tensor, Subgraph>;

struct Node {
  std::string op;    ///< ONNX op name: "Conv", "Relu", ...
  std::string name;  ///< unique within the graph; printed in every error about this node
  std::vector<std::string> inputs;   ///< value names; "" for an omitted optional input
  std::vector<std::string> outputs;  ///< value names; "" for an unused optional output
  std::map<std::string, Attribute> attrs;

  bool has_attr(const std::string& key) const { return attrs.count(key) != 0; }
  std::int64_t attr_int(const std::string& key, std::int64_t fallback) const;
  std::int64_t attr_int(const std::string& key) const;  ///< required
  double attr_float(const std::string& key, double fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::int64_t> attr_ints(const std::string& key,
                                      std::vector<std::int64_t> fallback = {}) const;
  std::vector<double> attr_floats(const std::string& key, std::vector<double> fallback = {}) const;
  std::vector<std::string> attr_strings(const std::string& key,
                                        std::vector<std::string> fallback = {}) const;
  const Tensor& attr_tensor(const std::string& key) const;
  /// A required graph attribute (a control-flow op's body).
  const Subgraph& attr_graph(const std::string& key) const;

  /// Number of inputs given (trailing omitted ones do not count).
  std::size_t input_count() const;
  bool has_input(std::size_t i) const { return i < inputs.size() && !inputs[i].empty(); }
  bool has_output(std::size_t i) const { return i < outputs.size() && !outputs[i].empty(); }
  /// "[Conv 'conv2'] " — the prefix of every message about this node.
  std::string where() const;
};

/// Computes the outputs of a node whose inputs are all known (data propagation during shape
/// inference: the Shape -> Gather -> Concat -> Reshape subgraphs of exported models). The IR only
/// declares it; the reference executor implements it, and whoever builds a graph passes one in.
class ConstantEvaluator {
 public:
  virtual ~ConstantEvaluator() = default;
  virtual std::vector<Tensor> evaluate(const Node& node,
                                       const std::vector<const Tensor*>& inputs) const = 0;
};

/// The evaluator of the CPU reference when it is linked (it registers itself; nullptr otherwise):
/// control-flow bodies fold with it when the caller of Graph::infer() gives none, so that a body's
/// types do not depend on whether its enclosing graph is folded (the builder's passes infer
/// without one), and the GPU runtime runs its host steps with it (src/runtime/steps_host.cpp).
const ConstantEvaluator* default_evaluator();
void set_default_evaluator(const ConstantEvaluator* evaluator);

class Graph {
 public:
  std::string name = "graph";
  std::vector<ValueInfo> inputs;  ///< run-time inputs (weights are not listed here)
  std::vector<std::string> outputs;
  std::map<std::string, Tensor> weights;  ///< constant values: weights, folded constants
  std::vector<Node> nodes;                ///< topological order

  /// Adds a node; returns a reference to it. Names its outputs "<name>" or "<name>:i" if empty.
  Node& add_node(Node n);
  /// A fresh name starting with `base`, unused by any value or node.
  std::string unique_name(const std::string& base) const;

  /// Verifies the graph, then infers the type of every value from the inputs and weights (the op
  /// registry's shape rules). With an evaluator, the values of nodes whose inputs are all known
  /// (weights, or values found so) are computed too, so that rules see them as constants; a node
  /// is evaluated when its known inputs hold at most kFoldLimit elements together.
  /// Throws ShapeError or GraphError naming the node.
  void infer(const ConstantEvaluator* evaluator = nullptr);
  static constexpr std::int64_t kFoldLimit = 1 << 16;
  /// The value of `name` when it is a weight or was computed by infer(), else nullptr.
  const Tensor* known_value(const std::string& name) const;
  /// Structure checks: known op, input and output counts, every input defined before use,
  /// single definition of every value, outputs produced.
  void verify() const;

  /// The inferred type of a value (after infer()); throws GraphError for an unknown name.
  const TensorType& type_of(const std::string& value) const;
  bool has_type(const std::string& value) const { return types_.count(value) != 0; }
  const std::map<std::string, TensorType>& types() const { return types_; }

  /// Index of the node producing `value`, or nullopt for inputs and weights.
  std::optional<std::size_t> producer(const std::string& value) const;

  /// A stable text dump for golden tests and `kiln inspect`.
  std::string dump() const;

 private:
  void evaluate_if_known(const Node& n, const std::vector<const TensorType*>& in,
                         std::vector<const Tensor*> consts, const ConstantEvaluator& eval);
  void fold_fixed_dims(const Node& gather, const std::map<std::string, const Node*>& shapes);
  std::map<std::string, TensorType> types_;
  std::map<std::string, Tensor> known_;  // values computed by infer() with an evaluator
};

/// Renders an attribute for dumps and messages.
std::string attribute_to_string(const Attribute& a);

}  // namespace kiln
