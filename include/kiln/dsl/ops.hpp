// The IR ops the typed DSL emits, with the DSL function that emits each (the DSL column of
// `kiln ops`).
#pragma once

#include <string_view>

namespace kiln::dsl {

struct DslOp {
  std::string_view op;     ///< ONNX op name in the IR
  std::string_view layer;  ///< DSL function(s)
};

inline constexpr DslOp kDslOps[] = {
    {"Conv", "conv1d, conv2d, conv3d"},
    {"QuantizeLinear", "quantize<Q>"},
    {"DequantizeLinear", "dequantize"},
    {"ConvTranspose", "deconv2d"},
    {"MaxPool", "max_pool"},
    {"AveragePool", "avg_pool, adaptive_avg_pool"},
    {"GlobalAveragePool", "global_avg_pool, adaptive_avg_pool<1>"},
    {"GlobalMaxPool", "global_max_pool"},
    {"BatchNormalization", "batch_norm"},
    {"LayerNormalization", "layer_norm"},
    {"RMSNormalization", "rms_norm"},
    {"Scale", "scale<ScaleMode>"},
    {"LRN", "lrn"},
    {"Gemm", "fully_connected"},
    {"MatMul", "matmul"},
    {"If", "if_else"},
    {"Loop", "loop"},
    {"Scan", "scan"},
    {"NonMaxSuppression", "non_max_suppression"},
    {"RoiAlign", "roi_align<H, W>"},
    {"MaxRoiPool", "max_roi_pool<H, W>"},
    {"TopK", "top_k<K, Axis>"},
    {"GatherND", "gather_nd<BatchDims>"},
    {"ScatterElements", "scatter_elements<Axis>"},
    {"Softmax", "softmax"},
    {"LogSoftmax", "log_softmax"},
    {"Relu", "relu"},
    {"Sigmoid", "sigmoid"},
    {"Tanh", "tanh"},
    {"Softplus", "softplus"},
    {"Softsign", "softsign"},
    {"LeakyRelu", "leaky_relu"},
    {"Elu", "elu"},
    {"Selu", "selu"},
    {"HardSigmoid", "hard_sigmoid"},
    {"Clip", "clip, relu6"},
    {"Abs", "abs"},
    {"Neg", "neg"},
    {"Exp", "exp"},
    {"Log", "log"},
    {"Sqrt", "sqrt"},
    {"Reciprocal", "reciprocal"},
    {"Erf", "erf"},
    {"Gelu", "gelu, gelu_tanh"},
    {"Atan", "atan"},
    {"Identity", "identity"},
    {"Cast", "cast<DType>"},
    {"Add", "add, +"},
    {"Sub", "sub, -"},
    {"Mul", "mul, *"},
    {"Div", "div, /"},
    {"Pow", "pow"},
    {"Max", "maximum"},
    {"Min", "minimum"},
    {"Concat", "concat"},
    {"Reshape", "reshape"},
    {"Flatten", "flatten, fully_connected"},
    {"Transpose", "transpose"},
    {"Slice", "slice"},
    {"Gather", "embedding"},
    {"Pad", "pad"},
    {"ReduceSum", "reduce_sum"},
    {"ReduceMean", "reduce_mean"},
    {"ReduceMax", "reduce_max"},
    {"ReduceMin", "reduce_min"},
    {"ReduceProd", "reduce_prod"},
    {"ReduceL2", "reduce_l2"},
    {"LSTM", "lstm"},
    {"GRU", "gru"},
    {"RNN", "rnn"},
    {"Attention", "attention"},
    {"RotaryEmbedding", "rotary_embedding"},
};

}  // namespace kiln::dsl
