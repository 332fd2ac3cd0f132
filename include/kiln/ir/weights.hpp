// WeightMap: named host tensors, as read from a WTS file, a state_dict or an ONNX model.
// WeightBinder: how a network takes its weights out of a map. Every weight the network needs is
// requested with its expected shape; finish() then reports every problem in one WeightError
// (missing names with their layer and expected shape and near-miss suggestions, wrong element
// counts or dtypes), and warns about entries nobody asked for (an error in strict mode).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "kiln/ir/tensor.hpp"

namespace kiln {

class WeightMap {
 public:
  /// Adds a weight; throws WeightError if the name is already present.
  void add(const std::string& name, Tensor t);
  /// Replaces or adds.
  void set(const std::string& name, Tensor t) { map_[name] = std::move(t); }
  bool contains(const std::string& name) const { return map_.count(name) != 0; }
  /// Throws WeightError naming the weight if absent.
  const Tensor& at(const std::string& name) const;
  std::size_t size() const { return map_.size(); }
  bool empty() const { return map_.empty(); }
  auto begin() const { return map_.begin(); }
  auto end() const { return map_.end(); }
  std::vector<std::string> names() const;
  /// NaN or Inf anywhere: throws WeightError naming the weight and the first bad index.
  void check_finite() const;
  const std::map<std::string, Tensor>& tensors() const { return map_; }

 private:
  std::map<std::string, Tensor> map_;
};

struct BindOptions {
  std::string prefix;                         ///< prepended to every requested name
  std::map<std::string, std::string> rename;  ///< requested name -> name in the map
  bool strict = false;                        ///< unused entries are an error
  /// Entries never reported as unused (PyTorch's BatchNorm counter, by default).
  std::vector<std::string> ignore_suffixes = {"num_batches_tracked"};

  /// The name looked up in the map for a requested name: the rename map's entry, else the
  /// prefix and the name.
  std::string resolve(const std::string& name) const {
    auto it = rename.find(name);
    return it != rename.end() ? it->second : prefix + name;
  }
  bool operator==(const BindOptions&) const = default;
};

class WeightBinder {
 public:
  explicit WeightBinder(const WeightMap& map, BindOptions opts = {});

  /// Takes `name` for `layer`, expecting `dims` (and, if given, `dtype`; otherwise any float
  /// type, converted to f32). A missing or mismatched weight is recorded, and a zero tensor of
  /// the expected shape is returned so that building can go on and report everything at once.
  Tensor take(const std::string& layer, const std::string& name,
              const std::vector<std::int64_t>& dims);
  Tensor take(const std::string& layer, const std::string& name,
              const std::vector<std::int64_t>& dims, DType dtype);
  /// Is an (optional) weight present?
  bool has(const std::string& name) const;
  /// Binds for one more view of the same map, whose names its caller resolves (the DSL's
  /// Weights views with their own prefixes): strict when the view is, and the view's ignored
  /// suffixes too. The binder's own prefix and rename map stay as they are.
  void add_view(const BindOptions& view);

  /// Throws WeightError listing every problem; returns the warnings (unused entries).
  std::vector<std::string> finish();
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  const WeightMap& map_;
  BindOptions opts_;
  std::map<std::string, bool> used_;
  std::vector<std::string> problems_;
};

/// A stable 64-bit hash (FNV-1a) of named weights: names, dtypes, dims and bytes. Plans record
/// it for the weights they were built from; WTS files and weight maps are checked against it.
std::uint64_t hash_weights(const std::map<std::string, Tensor>& weights);

/// Levenshtein distance, for near-miss suggestions.
std::size_t edit_distance(const std::string& a, const std::string& b);
/// Up to three names of `candidates` closest to `name`.
std::vector<std::string> near_misses(const std::string& name,
                                     const std::vector<std::string>& candidates);

}  // namespace kiln
