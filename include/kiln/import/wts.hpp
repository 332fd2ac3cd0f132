// WTS weight files: the TensorRT samples' hex format (with a type column), its binary variant
// (the char-RNN sample), and the tensorrtx format (name, count, hex words). Reading streams the
// file and never allocates more than the file could hold; every defect is a FormatError naming
// the file, the line (text dialects) and the byte offset. Also: writers, a stable hash of a
// WeightMap (recorded by plans), content checks, and conversions that port PyTorch and
// TensorFlow layouts to the IR's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/tensor.hpp"
#include "kiln/ir/weights.hpp"

namespace kiln {

// ---------------------------------------------------------------------------------------------
// Reading and writing

/// The three WTS dialects.
///  trt_hex:    "COUNT\n" then per weight "name type size w0 w1 ..." with `size` hex words holding
///              bit patterns (type 0 float32, 1 float16, 2 int8, 3 int32); words may be unpadded.
///  trt_binary: "COUNT\n" then per weight "name type (d0, d1, ...) " + product(dims) x sizeof(type)
///              little-endian bytes + "\n" (the last newline may be missing).
///  tensorrtx:  "COUNT\n" then per weight "name count w0 w1 ..." with float32 words of exactly 8
///              hex digits, or 0x-prefixed and unpadded; the last newline may be missing.
enum class WtsDialect { trt_hex, trt_binary, tensorrtx };

inline constexpr WtsDialect kAllWtsDialects[] = {WtsDialect::trt_hex, WtsDialect::trt_binary,
                                                 WtsDialect::tensorrtx};

/// "trt-hex", "trt-binary", "tensorrtx" (the CLI's --dialect values).
std::string_view wts_dialect_name(WtsDialect d);
/// Inverse of wts_dialect_name; throws kiln::Error listing the accepted names.
WtsDialect parse_wts_dialect(std::string_view name);

/// One record of a WTS file, in file order.
struct WtsEntry {
  std::string name;
  DType dtype = DType::f32;
  std::int64_t count = 0;          ///< element count
  std::vector<std::int64_t> dims;  ///< the file's shape (trt-binary), else {count}
  bool has_shape = false;          ///< true where the dialect carries a shape (trt-binary)
  std::int64_t line = 0;           ///< line of the record's name (1-based; 0 for trt-binary)
  std::uint64_t offset = 0;        ///< byte offset of the record's name
};

struct WtsReadOptions {
  /// The dialect; when absent the file is read under each dialect's grammar and the one that
  /// parses it whole is taken (none or several: a FormatError asking for the dialect).
  std::optional<WtsDialect> dialect;
  /// false: check the whole file and list its entries, but keep no values (`weights` is empty).
  bool keep_values = true;
  /// Weights with 0 values are refused unless this is set (an empty weight is almost always a
  /// mistake, and refusing them keeps auto-detection from taking a wrong dialect).
  bool allow_empty_weights = false;
};

struct WtsFile {
  WtsDialect dialect = WtsDialect::trt_hex;
  std::vector<WtsEntry> entries;  ///< file order
  WeightMap weights;              ///< dims: the file's shape, or 1-D {count}
};

/// Reads a WTS file. Throws FormatError ("FILE: line L, byte B: what is wrong") on any defect:
/// empty, truncated, a count that disagrees with the records or exceeds what the file could hold,
/// a non-hex word, an unknown type, a duplicate name, binary garbage. Memory stays within about
/// twice the file size (unpadded hex words), whatever the file declares.
WtsFile read_wts(const std::filesystem::path& file, const WtsReadOptions& opts = {});
/// Same, from a seekable stream (auto-detection reads it more than once); `source` names it in
/// messages.
WtsFile read_wts(std::istream& in, std::string_view source, const WtsReadOptions& opts = {});
/// Same, from bytes in memory.
WtsFile read_wts_string(std::string_view content, std::string_view source = "<memory>",
                        const WtsReadOptions& opts = {});
/// Shorthand: the weights of a file.
WeightMap load_wts(const std::filesystem::path& file,
                   std::optional<WtsDialect> dialect = std::nullopt);

/// Writes `w` (name order) in a dialect.
///  trt_hex:    f32, f16, i8, i32 as themselves (unpadded lowercase hex words); bf16 and f64 as
///              f32; other dtypes throw UnsupportedError (cast them first).
///  trt_binary: the same dtype rules, with each weight's shape.
///  tensorrtx:  every weight as float32 words of 8 digits (as tensorrtx's gen_wts.py does).
void write_wts(const WeightMap& w, std::ostream& out, WtsDialect dialect);
void write_wts(const WeightMap& w, const std::filesystem::path& file, WtsDialect dialect);
std::string write_wts_string(const WeightMap& w, WtsDialect dialect);

// ---------------------------------------------------------------------------------------------
// Identity and content checks

/// 64-bit FNV-1a over the weight count and, in name order, each name, dtype name, rank, dims and
/// raw bytes (integers little-endian). Stable across runs, machines and dialects of the same
/// values; any change of name, dtype, shape or any bit of a value changes it.
std::uint64_t weights_hash(const WeightMap& w);
/// "fnv1a64:0123456789abcdef"
std::string weights_hash_string(std::uint64_t hash);
/// Throws WeightError if weights_hash(w) != expected, naming both hashes and `what` (the plan).
void check_weights_hash(const WeightMap& w, std::uint64_t expected, std::string_view what);

/// NaN or Inf in any float weight: one WeightError listing every such weight with the first bad
/// index (flat and per dim) and how many values are bad. Works in release builds.
void check_weights_finite(const WeightMap& w);
/// Throws WeightError if `name` is present with a dtype not in `allowed`:
/// "[conv2d 'conv1'] weight 'conv1.weight' has dtype i8, expected f32 or f16".
void check_weight_dtype(const WeightMap& w, const std::string& name, std::string_view layer,
                        std::initializer_list<DType> allowed);

// ---------------------------------------------------------------------------------------------
// Porting conversions (namespace kiln::port). Values are copied; inputs are never changed.

namespace port {

/// out.dims[i] = t.dims[perm[i]] (a general transpose, any dtype).
Tensor permute(const Tensor& t, std::span<const std::int64_t> perm);
/// TF convolution kernel [H,W,I,O] -> the IR's [K=O, C=I, R=H, S=W].
Tensor hwio_to_kcrs(const Tensor& kernel);
/// TF dense kernel [in, out] -> the IR's fully-connected weight [out, in].
Tensor dense_to_ir(const Tensor& kernel);

/// Reorders the equal gate blocks along `axis`. Gates are letters: i input, o output, f forget,
/// c cell (g is c, PyTorch's name); e.g. reorder_gates(w, 0, "ifgo", "iofc").
Tensor reorder_gates(const Tensor& t, std::int64_t axis, std::string_view from,
                     std::string_view to);

/// Gate orders: the IR's (ONNX LSTM), PyTorch's, TensorFlow's (tf.nn.rnn_cell.LSTMCell).
inline constexpr std::string_view kIrLstmGates = "iofc";
inline constexpr std::string_view kTorchLstmGates = "ifgo";
inline constexpr std::string_view kTfLstmGates = "icfo";

/// One LSTM layer's weights in the IR's layout (ONNX LSTM without the num_directions axis):
/// w [4H, in], r [4H, H], b [8H] = input bias then recurrent bias; gates i,o,f,c.
struct LstmWeights {
  Tensor w, r, b;
};

/// PyTorch nn.LSTM layer: weight_ih [4H,in], weight_hh [4H,H], bias_ih [4H], bias_hh [4H]
/// (undefined bias tensors mean zero), gates i,f,g,o. Floats come out f32.
LstmWeights lstm_from_torch(const Tensor& w_ih, const Tensor& w_hh, const Tensor& b_ih = {},
                            const Tensor& b_hh = {});
/// TensorFlow LSTM cell: kernel [in+H, 4H] (rows: input then hidden), bias [4H], gates i,c,f,o;
/// `forget_bias` (TF's run-time constant, 1.0 by default in BasicLSTMCell) is added to the
/// forget gate's bias. The bias becomes the input bias; the recurrent bias is zero.
LstmWeights lstm_from_tf(const Tensor& kernel, const Tensor& bias, std::int64_t input_size,
                         double forget_bias = 1.0);

/// The same TF cell as PyTorch nn.LSTM tensors (gates i,f,g,o), for code that binds PyTorch
/// names: writes {prefix}weight_ih_l{layer}, weight_hh_l{layer}, bias_ih_l{layer} (TF bias plus
/// forget_bias) and bias_hh_l{layer} (zeros) into `w`; with erase_source the TF entries are
/// removed. Throws WeightError if the TF entries are missing or misshapen.
void tf_lstm_to_torch(WeightMap& w, const std::string& kernel_name, const std::string& bias_name,
                      std::int64_t input_size, const std::string& prefix, int layer,
                      double forget_bias = 1.0, bool erase_source = true);

/// BatchNorm as a per-channel affine: scale = gamma / sqrt(var + eps), shift = beta - mean*scale.
struct ScaleShift {
  Tensor scale, shift;  ///< f32, shape of gamma
};
ScaleShift fold_batchnorm(const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                          const Tensor& var, double eps);
/// From PyTorch names: {prefix}.weight, .bias, .running_mean, .running_var.
ScaleShift fold_batchnorm(const WeightMap& w, const std::string& prefix, double eps);

}  // namespace port
}  // namespace kiln
