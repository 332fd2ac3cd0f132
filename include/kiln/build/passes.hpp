// The builder's passes over the IR. Each is a small unit: it rewrites the graph in place, leaves
// it verified with types inferred, and returns how many rewrites it made. Each keeps the graph's
// outputs unchanged (the tests prove it on the CPU reference over random inputs). Fusions apply
// only where the target runs the result. Passes are GPU-free and never run the reference:
// constant folding uses the ConstantEvaluator its caller passes in.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"
#include "kiln/plan/target.hpp"

namespace kiln::build {

struct PassContext {
  const plan::Target* target = nullptr;          ///< nullptr: the CPU reference target
  const ConstantEvaluator* evaluator = nullptr;  ///< needed by fold_constants only
  const plan::Target& tgt() const;
};

/// Structure checks (Graph::verify) and that every value has a type. Changes nothing.
int verify_graph(Graph& g, const PassContext& ctx);
/// Replaces every node whose inputs are all constant (or whose outputs shape inference already
/// computed: Shape of a static input) by weights holding its outputs; random ops stay.
/// Throws GraphError when ctx.evaluator is null.
int fold_constants(Graph& g, const PassContext& ctx);
/// Replaces each If whose condition is a constant by the nodes of the branch it takes (its names
/// made unique, its captured values read from the If's inputs, its outputs given the If's names).
int inline_if(Graph& g, const PassContext& ctx);
/// Removes nodes none of whose outputs reaches a graph output, and weights nobody reads.
int eliminate_dead(Graph& g, const PassContext& ctx);
/// Removes Identity, inference Dropout, Cast to the same dtype, and Reshape/Flatten/Squeeze/
/// Unsqueeze/Expand that change nothing, renaming values so graph outputs keep their names.
int elide_identity(Graph& g, const PassContext& ctx);
/// Folds BatchNormalization, and Mul/Add by per-channel constants, that follow a Conv or Gemm
/// (its output read by nothing else) into that layer's weights and bias.
int fold_batchnorm(Graph& g, const PassContext& ctx);
/// The decomposed LayerNorm (mean, centred or E[x^2] - E[x]^2 variance, eps, sqrt, divide, then
/// optional scale and bias over the normalized dims) as one LayerNormalization node, whose Mean and
/// InvStdDev outputs replace the pattern's when something else reads them (transformer.cpp).
int fuse_layer_norm(Graph& g, const PassContext& ctx);
/// The attention core, MatMul(Q, K^T) (scaled) (+ mask) -> Softmax -> MatMul(., V), over 3-D
/// (PyTorch's one head per batch entry) or 4-D [B, H, S, D] values, as one Attention node (the
/// scale of Q or of the scores absorbed, K^T's Transpose composed away where it can be).
int fuse_attention(Graph& g, const PassContext& ctx);
/// GELU from its Erf form, 0.5 x (1 + erf(x / sqrt 2)), and its tanh form, as one Gelu node.
int fuse_gelu(Graph& g, const PassContext& ctx);
/// Add(a, b) of two activations of the same type, read by a LayerNormalization or
/// RMSNormalization as its X, joined with it into one kiln.Fused step (fusion::kResidualNorm).
/// When the sum is read elsewhere too (a pre-norm transformer's residual stream) or is a graph
/// output, the fused step outputs it as well (as its last output); every other reader must come
/// after the norm.
int fuse_residual_norm(Graph& g, const PassContext& ctx);
/// Explicit quantization (src/passes/qdq.cpp): a per-tensor DequantizeLinear moves forward
/// through Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Identity, MaxPool and Concat (inputs
/// of one scale), a per-tensor QuantizeLinear backward through the same ops (but Concat), and
/// QuantizeLinear(DequantizeLinear(x)) of one scale, zero point and type becomes x. Exact. Runs
/// when the target lists fusion::kQdqPropagation.
int propagate_qdq(Graph& g, const PassContext& ctx);
/// The fused INT8 steps (explicit quantization, after propagate_qdq): a Conv, Gemm or MatMul
/// reading a per-tensor DequantizeLinear of a computed 8-bit value, with a weight that is exactly
/// INT8 per output channel or per tensor (a folded DequantizeLinear of an int8 weight), becomes
/// one fused step of ConvInteger/MatMulInteger (int32 accumulation), the scale x_scale * w_scale
/// per output channel, the bias, a residual Add of a DequantizeLinear, Relu and the output's
/// QuantizeLinear where each is there (plan::fusion::kInt8). The reference runs it with INT8
/// semantics; it differs from the Q/DQ graph's float arithmetic by at most one quantization
/// step where a value lies on a rounding boundary.
int fuse_int8(Graph& g, const PassContext& ctx);
/// Conv (+ pointwise epilogue) followed by an Add/Sum of a tensor of the same type: one step.
int fuse_conv_residual(Graph& g, const PassContext& ctx);
/// MatMul followed by the Add of a constant bias row (PyTorch's nn.Linear on 3-D inputs): one
/// step, whose bias the GPU adds in cuBLASLt's epilogue.
int fuse_gemm_bias(Graph& g, const PassContext& ctx);
/// Conv/ConvTranspose/Gemm/MatMul (bias included, residual possibly fused) + activation.
int fuse_conv_activation(Graph& g, const PassContext& ctx);
/// Chains of elementwise ops, each intermediate read once and of the chain's shape: one step.
int fuse_pointwise(Graph& g, const PassContext& ctx);
/// Convolutions (with the same activation, if any) reading the same input with the same
/// attributes and kernel size: one convolution over concatenated weights, split afterwards
/// (plan::fusion::kHorizontalConv); matrix products of one input by constant 2-D weights with
/// the same bias/activation tail (Q, K and V projections): one product over the weights
/// concatenated along their columns, then a Split of its last axis
/// (plan::fusion::kHorizontalMatMul).
int fuse_horizontal(Graph& g, const PassContext& ctx);
/// Marks Reshape/Flatten/Squeeze/Unsqueeze of computed values as views (no step, no copy).
int mark_views(Graph& g, const PassContext& ctx);
/// Marks a Concat whose inputs its producers can write straight into its output (no copy).
int elide_concat(Graph& g, const PassContext& ctx);
/// Marks a Split whose outputs can be slices of its input (no copy): static shapes, no output a
/// graph output, not in NHWC, and each output contiguous or read only by steps that read strided
/// inputs (Target::reads_strided). Runs after the layout is chosen.
int elide_split(Graph& g, const PassContext& ctx);
/// Sets each step's layout (plan::kLayoutAttr, on nodes with a 4-D output) and inserts the
/// plan::kToLayoutOp conversions that layout needs; returns how many it inserted.
/// The physical layout of a 4-D value is its producer's kLayoutAttr (graph inputs and weights:
/// NCHW; values of another rank are row-major). Two assignments are compared, each step in its
/// target's preferred layout or each in NCHW where it allows it; the one with fewer conversions
/// plus steps outside their preferred layout wins (a tie: fewer conversions, then NCHW).
/// Conversions, one per (value, layout) and shared by all readers that need it:
///  - a step whose op (or a fused step's non-elementwise part) is in Target::layouts reads every
///    computed 4-D input in its own layout (weights are never converted);
///  - elementwise steps (and fused chains of them) read any mix and take the layout of their
///    first computed 4-D input;
///  - every other node reads 4-D values in NCHW, except where both layouts are the same bytes
///    (C == 1 or H*W == 1);
///  - a 4-D graph output in NHWC is converted to NCHW and keeps its name (its producer writes
///    "<name>.nhwc").
/// A Concat in NHWC loses plan::kConcatInPlaceAttr (its slices would not be row-major).
int choose_layout(Graph& g, const PassContext& ctx);

struct Pass {
  std::string name;
  std::function<int(Graph&, const PassContext&)> run;
  bool fusion = false;  ///< runs after "layers before fusion" are counted
};

/// The builder's pipeline, in order.
const std::vector<Pass>& pipeline();

/// Compute layers: nodes other than Constant, ConstantOfShape, Identity, Dropout, views and
/// in-place concats.
int count_layers(const Graph& g);

/// Graphviz DOT of a graph: one box per step (fused steps show what they absorbed), dashed for
/// views and in-place concats, edges labelled with types.
std::string to_dot(const Graph& g, const std::string& title);

}  // namespace kiln::build
