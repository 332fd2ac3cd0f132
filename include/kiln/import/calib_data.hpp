// Calibration data for INT8 builds: a directory of batches, each batch a tensor file (.npy or
// .pb TensorProto, kiln/import/npy.hpp) per input of the network.
//
//   DIR/*.npy|*.pb             a network of one input: one file per batch
//   DIR/<input>/*.npy|*.pb     several inputs: a folder per input, the same number of files in
//                              each; batch i is the i-th file of every folder in sorted order
//
// Files are taken in sorted order; other files are ignored. A batch tensor must have its input's
// rank and fixed dims (a dynamic dim, usually the batch, may have any size), float values for a
// float input and integer values for an integer input (cast to the input's dtype), and no NaN or
// Inf.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "kiln/ir/graph.hpp"

namespace kiln {

class CalibrationData {
 public:
  /// Lists the batch files in `dir` for the inputs of `g` (nothing is read yet). Throws Error when
  /// `dir` (or an input's folder) is not a directory or holds no .npy or .pb file, or when the
  /// inputs' folders hold different numbers of files. Every message begins with `what` (the
  /// option or argument that named `dir`, e.g. "--calib-data").
  CalibrationData(const std::string& dir, const Graph& g, std::string what = "calibration data");

  std::size_t size() const { return batches_.size(); }
  /// Batch i (< size()): input name -> file.
  const std::map<std::string, std::string>& files(std::size_t i) const { return batches_.at(i); }
  /// Batch i read and checked against the inputs: input name -> tensor in the input's dtype.
  /// Throws Error naming the file for a wrong rank or fixed dim, a float file for an integer
  /// input (or the reverse), and the first NaN or Inf (with its element index); FormatError or
  /// UnsupportedError naming the file for one it cannot read.
  std::map<std::string, Tensor> batch(std::size_t i) const;

 private:
  std::vector<ValueInfo> inputs_;
  std::string what_;
  std::vector<std::map<std::string, std::string>> batches_;
};

}  // namespace kiln
