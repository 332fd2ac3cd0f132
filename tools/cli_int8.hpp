// `kiln build --int8`: calibration from a directory of batches (or a calibration cache) and the
// graph made explicit with Q/DQ pairs (kiln/build/calibration.hpp).
#pragma once

#include "cli_args.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/int8.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/plan/plan.hpp"

namespace kiln::tools {

/// What `kiln build --int8|--fp8` calibrated: `result.graph` is the quantized network.
struct Int8Build {
  Int8Result result;
  DType format = DType::i8;
};

/// Declares --int8, --calib-data DIR, --calibrator NAME, --percentile P, --calib-cache FILE,
/// --layer-precision NAME:PREC (repeatable) and --int8-tolerance X.
void add_int8_options(Command& c);
/// Whether `args` has any of those options (int8_graph then checks that --int8 is one of them).
bool wants_int8(const Args& args);
/// The INT8 graph of `g` for `kiln build --int8`: scales from --calib-cache when that file exists,
/// else calibrated on --calib-data (and written to --calib-cache when given), the layers pinned
/// by --layer-precision or over --int8-tolerance left in float; prints a table of ranges and one
/// of each layer's precision and INT8 error (kiln::int8_from_calibration, kiln/int8.hpp).
/// Calibration batches as kiln/import/calib_data.hpp reads them: DIR/*.npy|*.pb for a model with
/// one input, DIR/<input>/*.npy|*.pb (the same count per input, matched in sorted order) otherwise.
/// `gpu_target`: the plan is for a GPU target, where a convolution of fewer than 4 input channels
/// stays in float unless pinned (Int8Options::float_below_channels).
/// With a GPU the calibration runs in an FP32 engine unless `--calib-on cpu`.
Int8Build int8_graph(const Args& args, const Graph& g, bool gpu_target);

/// `kiln build --int8|--fp8` for a GPU target, given `eight` (the plan of q's graph, built with
/// `o`): with a GPU, times each layer the calibration left free (quantized, not pinned) in the
/// 8-bit plan and in a plan where they all run in float (build::layer_times), builds the plan that
/// keeps each in its faster precision, and returns the fastest of the three whole plans (CUDA
/// graph, the plan's batch), its tactics recorded and `report` its build report; prints a table.
/// Without a GPU, or with --no-precision-timing, `eight` as it is.
plan::Plan choose_precisions(const Args& args, const Int8Build& q, const Graph& float_graph,
                             const build::BuildOptions& o, plan::Plan eight,
                             build::BuildReport& report);

}  // namespace kiln::tools
