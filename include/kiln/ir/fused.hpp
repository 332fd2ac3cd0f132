// The fused op: one IR node ("kiln.Fused") that stands for a small graph of ordinary nodes (its
// parts), made by the builder's fusion passes (conv + bias + activation, conv + residual add,
// pointwise chains, horizontal convolutions). Its shape rule and its reference kernel compose
// those of the parts, so every fusion stays checkable on the CPU reference.
//
// Encoding (all in the node's attributes, so that dumps and plan files need nothing new):
//   "pattern"      string   "Conv+Add+Relu"
//   "parts"        int      number of parts
//   "p<i>.op"      string   the part's op; "p<i>.name" its original node name
//   "p<i>.in"      strings  "$k" = input k of the fused node, "" = omitted, else the name of an
//                           earlier part's output
//   "p<i>.out"     strings  the part's output names (local to the fused node)
//   "p<i>.a.<key>" any      the part's attribute <key>
//   "results"      strings  for each output of the fused node, the part output it is
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln {

inline constexpr const char* kFusedOp = "kiln.Fused";
/// The conversion step the builder's layout pass inserts where a step reads a 4-D value in the
/// other layout: one input, one output of the same logical [N,C,H,W] type, attribute
/// kToLayoutAttr = "NCHW" or "NHWC" (the physical layout it writes). The reference copies (it
/// computes logical values); a back end transposes. The plan names it plan::kToLayoutOp.
inline constexpr const char* kToLayoutOp = "kiln.ToLayout";
inline constexpr const char* kToLayoutAttr = "to";

struct FusedBody {
  std::vector<Node> parts;           ///< in execution order; inputs as described above
  std::vector<std::string> results;  ///< part output name of each fused output
};

inline bool is_fused(const Node& n) { return n.op == kFusedOp; }
/// "$k": how a part names input k of the fused node.
inline std::string fused_input_ref(std::size_t k) { return "$" + std::to_string(k); }
/// k for a part's reference "$k" to input k of the fused node; nullopt for the name of an
/// earlier part's output (or "", an omitted input). fused_body() has checked the references.
inline std::optional<std::size_t> fused_input_index(const std::string& ref) {
  if (ref.size() < 2 || ref[0] != '$') return std::nullopt;
  return static_cast<std::size_t>(std::stoul(ref.substr(1)));
}
/// The value a part's input reference stands for, given the fused node's inputs: input k for
/// "$k", the reference itself otherwise.
inline std::string fused_input_name(const std::vector<std::string>& fused_inputs,
                                    const std::string& ref) {
  const auto k = fused_input_index(ref);
  return k ? fused_inputs.at(*k) : ref;
}

/// Builds the fused node. The pattern is the parts' ops joined by '+'.
Node make_fused_node(std::string name, std::vector<std::string> inputs,
                     std::vector<std::string> outputs, const FusedBody& body);
/// Decodes a fused node; throws GraphError naming the node when the encoding is malformed.
FusedBody fused_body(const Node& fused);
/// The original names of the nodes a fused node absorbed, in order.
std::vector<std::string> fused_absorbed(const Node& fused);

/// The parts of `n` as a FusedBody: a fused node's own body, or a body of one part for an
/// ordinary node (so that fusing a fused node with more parts is one code path).
FusedBody as_body(const Node& n);

}  // namespace kiln
