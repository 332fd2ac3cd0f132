// cuDNN's graph (backend) API in small pieces: a descriptor owned by a C++ object, tensors,
// the engine configurations cuDNN's heuristics list for an operation graph, and an execution
// plan of one of them. The graph convolution (conv_graph.cpp) and scaled dot-product attention
// (sdpa.cpp) are made of them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "check.hpp"

namespace kiln::runtime::detail {

/// One backend descriptor, destroyed with its owner.
struct Desc {
  cudnnBackendDescriptor_t d = nullptr;
  explicit Desc(cudnnBackendDescriptorType_t t) { KILN_CHECK(cudnnBackendCreateDescriptor(t, &d)); }
  ~Desc() {
    if (d) cudnnBackendDestroyDescriptor(d);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  template <class T>
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t n,
           const T* v) {
    KILN_CHECK(cudnnBackendSetAttribute(d, name, type, n, v));
  }
  void finalize() { KILN_CHECK(cudnnBackendFinalize(d)); }
};

using DescPtr = std::unique_ptr<Desc>;

/// A tensor of the graph: `uid` names it in the variant pack; a virtual one lives inside the
/// fused kernel only; one passed by value is a host scalar (its variant-pack pointer is a host
/// pointer).
DescPtr backend_tensor(std::int64_t uid, cudnnDataType_t type,
                       const std::vector<std::int64_t>& dims,
                       const std::vector<std::int64_t>& strides, bool is_virtual,
                       bool by_value = false);

/// The engine configurations cuDNN's heuristic `mode` lists for `graph`, best first, at most
/// `most`; empty when the heuristic has none (or refuses the graph).
std::vector<DescPtr> engine_configs(const Desc& graph, cudnnBackendHeurMode_t mode,
                                    std::int64_t most);

/// The execution plan of `config`, or null when cuDNN cannot make one (the engine does not take
/// the graph after all); `workspace` receives its workspace bytes.
DescPtr execution_plan(cudnnHandle_t handle, const Desc& config, std::int64_t* workspace);

/// The variant pack of a plan's tensors (`uids` at `pointers`) and workspace, made again only
/// when a pointer changes (making one costs more than a small kernel).
class VariantPack {
 public:
  const Desc& get(const std::vector<std::int64_t>& uids, const std::vector<void*>& pointers,
                  void* workspace);
  void reset() { pack_.reset(); }

 private:
  DescPtr pack_;
  std::vector<void*> pointers_;
  void* workspace_ = nullptr;
};

}  // namespace kiln::runtime::detail
