// Inputs and outputs of `kiln run` and `kiln bench` (on a model or on a plan): --input files
// (.pb TensorProto or .npy) or random tensors, the printed and saved outputs, and the comparison
// with expected outputs.
#pragma once

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cli_args.hpp"
#include "kiln/import/npy.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/plan/profile.hpp"
#include "kiln/reference/executor.hpp"

namespace kiln::tools {

/// Declares --input NAME=FILE (repeatable), --seed N and --shapes LIST, which run_inputs reads.
void add_input_options(Command& c);
/// Declares --output-dir DIR and --output-format pb|npy, which report_outputs reads.
void add_output_options(Command& c);
/// Declares --expected NAME=FILE (repeatable), --expected-dir DIR and --tolerance T (whose default
/// `tolerance_default` describes), which expected_outputs and the commands read.
void add_expected_options(Command& c, const std::string& tolerance_default);

/// A random tensor of type t (uniform in [-1, 1]; small integers for integer types; dynamic dims
/// taken as 1).
Tensor random_tensor(const TensorType& t, std::mt19937_64& rng);

/// The values named by --input NAME=FILE alone (for building with their dims), each read as the
/// type `inputs` gives it: a tensor (.pb or .npy) where it gives none, a sequence or optional
/// (.pb) where it says so.
reference::TensorMap input_files(const Args& args, const std::vector<ValueInfo>& inputs = {});

/// The tensors named by --input NAME=FILE (.pb or .npy); then, for inputs not named, input_N.pb
/// of --expected-dir DIR where it exists (ONNX test folders); then a random tensor (uniform in
/// [-1, 1], small integers for integer inputs, dynamic dims taken as 1, seeded by --seed). A file
/// of another dtype than the input's is converted to the input's dtype. With `random` false,
/// only the inputs given by files.
/// --shapes (add_input_options), checked against `inputs`: names, ranks, fixed dims; empty when
/// not given.
plan::ShapeMap shapes_option(const Args& args, const std::vector<ValueInfo>& inputs);
reference::TensorMap run_inputs(const Args& args, const std::vector<ValueInfo>& inputs,
                                bool random = true);

/// Prints each output's type, checksum (sum of values) and first values (a sequence: a line for
/// each of its tensors); with --output-dir, writes each as NAME.pb (TensorProto, SequenceProto
/// or OptionalProto), or NAME.npy when --output-format is npy (a sequence's tensors NAME_I.npy).
void report_outputs(const Args& args, const std::vector<std::string>& names,
                    const reference::TensorMap& outputs);

/// Writes each output as DIR/NAME.npy (float32 when `as_f32`); names made file-safe.
void write_outputs_npy(const std::string& dir, const std::vector<std::string>& names,
                       const reference::TensorMap& outputs, bool as_f32);

/// The expected outputs: --expected NAME=FILE (.pb or .npy) and --expected-dir DIR (output_N.pb
/// for the N-th output, as ONNX test folders hold them), read as the outputs' `types` say (a
/// sequence's file is a SequenceProto; tensors where `types` is short). Empty when neither is
/// given.
reference::TensorMap expected_outputs(const Args& args, const std::vector<std::string>& names,
                                      const std::vector<TensorType>& types = {});

/// max|got - expected| / max|expected| (the absolute error when every expected value is 0); a
/// sequence's: the largest of its tensors'. Throws Error when the element counts differ.
double relative_error(const Tensor& got, const Tensor& expected, const std::string& name);

/// Prints one line per expected output ("expected NAME: error E (tolerance T) ok|OVER") and
/// returns false when any is over `tolerance`.
bool check_expected(const reference::TensorMap& expected, const reference::TensorMap& outputs,
                    double tolerance);

/// Throws when `out` (the file `flag` names) is, by any path to it, one of `inputs` (each a path
/// and what it is, e.g. "the model"): kiln never overwrites a file it reads.
void refuse_to_overwrite(const std::string& out, const std::string& flag,
                         const std::vector<std::pair<std::string, std::string>>& inputs);

/// Writes `text` to `path`; throws naming `who` (the command or flag) when it cannot.
void write_text_file(const std::string& path, const std::string& text, const std::string& who);

}  // namespace kiln::tools
