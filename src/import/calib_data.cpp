// Calibration batches: the files of a directory matched to a network's inputs, read and checked.
#include "kiln/import/calib_data.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "kiln/import/npy.hpp"
#include "kiln/ir/error.hpp"

namespace kiln {
namespace fs = std::filesystem;

namespace {

/// The .npy and .pb files of `dir` in sorted order; `what` begins the errors.
std::vector<std::string> tensor_files(const fs::path& dir, const std::string& what) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(fmt::format("{}: '{}' is not a directory", what, dir.string()));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const auto ext = e.path().extension();
    if (e.is_regular_file() && (ext == ".npy" || ext == ".pb")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw Error(fmt::format("{}: '{}' holds no .npy or .pb files", what, dir.string()));
  return files;
}

}  // namespace

CalibrationData::CalibrationData(const std::string& dir, const Graph& g, std::string what)
    : inputs_(g.inputs), what_(std::move(what)) {
  if (inputs_.empty()) throw Error(fmt::format("{}: the network has no inputs", what_));
  if (inputs_.size() == 1) {
    for (auto& f : tensor_files(dir, what_)) batches_.push_back({{inputs_[0].name, f}});
    return;
  }
  std::size_t count = 0;
  for (const auto& vi : inputs_) {
    const auto files =
        tensor_files(fs::path(dir) / vi.name, fmt::format("{} (input '{}')", what_, vi.name));
    if (batches_.empty()) {
      count = files.size();
      batches_.resize(count);
    } else if (files.size() != count) {
      throw Error(
          fmt::format("{}: '{}/{}' holds {} files, '{}/{}' {}; every input needs one per batch",
                      what_, dir, inputs_[0].name, count, dir, vi.name, files.size()));
    }
    for (std::size_t i = 0; i < count; ++i) batches_[i][vi.name] = files[i];
  }
}

std::map<std::string, Tensor> CalibrationData::batch(std::size_t i) const {
  if (i >= batches_.size())
    throw Error(fmt::format("{}: batch {} of {}", what_, i, batches_.size()));
  std::map<std::string, Tensor> m;
  for (const auto& vi : inputs_) {
    const std::string& file = batches_[i].at(vi.name);
    Tensor t = load_tensor_file(file);
    const Shape& want = vi.type.shape;
    bool fits = t.rank() == want.rank();
    for (std::size_t d = 0; fits && d < want.rank(); ++d)
      fits = !want[d].is_fixed() || want[d].value() == t.dim(static_cast<std::int64_t>(d));
    if (!fits)
      throw Error(fmt::format("{}: '{}' holds {}{}; input '{}' is {}", what_, file,
                              dtype_name(t.dtype()), dims_to_string(t.dims()), vi.name,
                              vi.type.to_string()));
    if (is_float(vi.type.dtype) != is_float(t.dtype()))
      throw Error(fmt::format("{}: '{}' holds {} values; input '{}' takes {}", what_, file,
                              dtype_name(t.dtype()), vi.name, dtype_name(vi.type.dtype)));
    for (std::int64_t k = 0; k < t.numel(); ++k)
      if (!std::isfinite(t.get(k)))
        throw Error(fmt::format("{}: '{}' holds {} at element {}", what_, file, t.get(k), k));
    m[vi.name] = t.dtype() == vi.type.dtype ? std::move(t) : t.cast(vi.type.dtype);
  }
  return m;
}

}  // namespace kiln
