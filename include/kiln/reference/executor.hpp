// The CPU reference executor: runs any IR graph, in every IR dtype, simply and exactly (float
// sums accumulate in double). It is the oracle for every GPU and pass test, and the fallback
// where no GPU exists.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln::reference {

/// What a kernel sees of one node: its inputs (nullptr where an optional input is omitted) and
/// the outputs it must set.
class KernelContext {
 public:
  KernelContext(const Node& node, std::vector<const Tensor*> inputs)
      : node(node), inputs_(std::move(inputs)), outputs_(node.outputs.size()) {}

  const Node& node;
  std::size_t num_inputs() const { return inputs_.size(); }
  bool has(std::size_t i) const { return i < inputs_.size() && inputs_[i] != nullptr; }
  /// Input i; throws naming the node when absent.
  const Tensor& in(std::size_t i) const;
  /// Sets output i (ignored when the node does not use that output).
  void set(std::size_t i, Tensor t) {
    if (i < outputs_.size()) outputs_[i] = std::move(t);
  }
  bool wants(std::size_t i) const { return node.has_output(i); }
  std::vector<Tensor>& outputs() { return outputs_; }
  /// Throws kiln::Error prefixed with the node.
  [[noreturn]] void fail(const std::string& message) const;
  /// Throws UnsupportedError prefixed with the node.
  [[noreturn]] void unsupported(const std::string& message) const;

 private:
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor> outputs_;
};

using Kernel = std::function<void(KernelContext&)>;

class KernelRegistry {
 public:
  static KernelRegistry& instance();
  void add(const std::string& op, Kernel k);
  /// The kernel of `op`: a built-in op's, or a registered plugin's reference (kiln/ir/plugin.hpp).
  const Kernel* find(const std::string& op) const;
  std::vector<std::string> names() const;

 private:
  KernelRegistry();
  std::map<std::string, Kernel> kernels_;
  mutable std::mutex plugins_mu_;
  mutable std::map<std::string, Kernel> plugins_;  ///< made on first use
};

using TensorMap = std::map<std::string, Tensor>;

class Executor {
 public:
  /// Checks that every op of `graph` has a reference kernel (UnsupportedError otherwise).
  explicit Executor(const Graph& graph);
  /// Runs the graph; `inputs` must hold every graph input with its declared dtype and matching
  /// fixed dims (symbolic dims must agree across inputs). Returns the graph outputs by name.
  TensorMap run(const TensorMap& inputs) const;
  /// Runs and also returns every intermediate value (for debugging and pass tests).
  TensorMap run_all(const TensorMap& inputs) const;
  /// Runs a control-flow op's body (kiln::Subgraph): its inputs are taken as given, since the
  /// body's declared input types are only what its op's shape rule last inferred.
  TensorMap run_body(const TensorMap& inputs) const;

 private:
  TensorMap execute(const TensorMap& inputs, bool keep_all, bool check_inputs = true) const;
  const Graph& graph_;
};

/// Runs a single node on the given inputs (tests, constant folding).
std::vector<Tensor> run_node(const Node& node, const std::vector<const Tensor*>& inputs);

/// The reference as the IR's ConstantEvaluator: pass it to Graph::infer() or an importer so
/// that shape subgraphs are computed while shapes are inferred.
const ConstantEvaluator& constant_evaluator();

}  // namespace kiln::reference
