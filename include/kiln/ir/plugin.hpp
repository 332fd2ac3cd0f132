// Plugins: ops kiln lacks, written by its users as one C++ type and registered by one macro.
//
// A plugin type P says what it is and what it computes:
//
//   struct MyOp {
//     static constexpr const char* domain = "com.example";  // the ONNX domain of its nodes
//     static constexpr const char* op = "MyOp";             // the ONNX op type
//     static constexpr int version = 1;                     // the domain's opset version
//     static constexpr int min_inputs = 1, max_inputs = 1, outputs = 1;
//     struct Attrs {                                        // typed attributes
//       std::int64_t size = 0;
//       template <class V> void visit(V& v) { v("size", size); }
//     };
//     static std::vector<kiln::TensorType> shape(const Attrs&, const
//     std::vector<kiln::TensorType>&); static bool supports(kiln::DType t);                 // the
//     input and output dtypes it takes static void reference(const Attrs&, const std::vector<const
//     kiln::Tensor*>& in,
//                           std::vector<kiln::Tensor>& out);  // the CPU reference (the oracle)
//     static std::size_t workspace(const Attrs&, const std::vector<kiln::TensorType>& in);
//     static void enqueue(const Attrs&, const kiln::plugin::DeviceIo& io);  // on io.stream
//   };
//   KILN_PLUGIN(MyOp);
//
// Attributes are what `Attrs::visit` lists (std::int64_t, double, std::string, std::vector of
// std::int64_t or double); they live in the node's attributes, so a plan file keeps them. The
// IR's op name of a plugin node is "domain::op@version" (qualified_name()); ONNX nodes of the
// domain map to the plugin registered for their (domain, op, version), the version being the
// model's opset_import of that domain. `shape` runs in the IR's shape inference (symbolic dims
// included); `reference` in the CPU reference executor; `enqueue` in the GPU runtime, once per
// run on the step's stream with row-major device tensors (it must not synchronize or allocate,
// so that a CUDA graph can capture it). kiln build/run --plugin LIB.so loads plugins from a
// shared library (load_library()); a plan that names a plugin no library registered is refused
// naming the plugin and the library it was built with.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/tensor.hpp"

namespace kiln::plugin {

/// One tensor of a plugin step on the GPU: row-major device memory.
struct DeviceTensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::vector<std::int64_t> dims;
  std::int64_t numel() const;
};

/// What enqueue() receives: the inputs (absent optional ones have null data), the outputs, the
/// workspace (workspace() bytes) and the CUDA stream (a cudaStream_t).
struct DeviceIo {
  std::vector<DeviceTensor> inputs, outputs;
  void* workspace = nullptr;
  void* stream = nullptr;
};

/// The node attribute that records the shared library a plugin node's plugin came from.
inline constexpr const char* kLibraryAttr = "kiln.plugin_library";

/// A registered plugin, its type erased.
struct Entry {
  std::string domain, op;
  int version = 1;
  int min_inputs = 1, max_inputs = 1, outputs = 1;
  std::function<std::vector<TensorType>(const Node&, const std::vector<TensorType>&)> shape;
  std::function<bool(DType)> supports;
  std::function<void(const Node&, const std::vector<const Tensor*>&, std::vector<Tensor>&)>
      reference;
  std::function<std::size_t(const Node&, const std::vector<TensorType>&)> workspace;
  std::function<void(const Node&, const DeviceIo&)> enqueue;
  std::string library;       ///< the shared library that registered it ("" when built in)
  std::string name() const;  ///< the IR's op name, qualified_name(domain, op, version)
};

/// "domain::op@version": the op name of a plugin node in the IR and in plans.
std::string qualified_name(const std::string& domain, const std::string& op, int version);
/// Whether `op` has the form of a plugin's op name.
bool is_plugin_op(const std::string& op);

/// Registers a plugin; Error when one of the same name is registered already.
void add(Entry e);
/// The plugin of IR op name `op`, or nullptr.
const Entry* find(const std::string& op);
/// The plugin for an ONNX node of `domain` and `op` at opset `version`, or nullptr.
const Entry* find(const std::string& domain, const std::string& op, int version);
/// Every registered plugin, by name.
std::vector<const Entry*> all();
/// Loads a shared library of plugins (its KILN_PLUGIN registrations run as it loads); Error
/// naming the file and the loader's reason when it cannot be loaded, registers no plugin or
/// registers one that is registered already. Loading a library again does nothing. The program
/// must export kiln's symbols to it (link with -rdynamic, as the kiln tool is).
void load_library(const std::string& path);
/// The error for a node whose plugin is not registered: names it, its version and the library
/// the node was made with (the node's kLibraryAttr), and how to load it.
[[noreturn]] void missing(const Node& node);

// ---- typed attributes ---------------------------------------------------------------------------

/// Reads a plugin's Attrs from a node (Attrs::visit calls it once per attribute); an attribute
/// the node lacks keeps the member's default.
class AttrReader {
 public:
  explicit AttrReader(const Node& n) : n_(n) {}
  template <class T>
  void operator()(const char* name, T& v) const {
    if (!n_.has_attr(name)) return;
    if constexpr (std::is_same_v<T, std::int64_t>)
      v = n_.attr_int(name);
    else if constexpr (std::is_same_v<T, double>)
      v = n_.attr_float(name, v);
    else if constexpr (std::is_same_v<T, std::string>)
      v = n_.attr_string(name, v);
    else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>)
      v = n_.attr_ints(name);
    else if constexpr (std::is_same_v<T, std::vector<double>>)
      v = n_.attr_floats(name);
    else
      static_assert(sizeof(T) == 0, "plugin attributes: int64, double, string, vectors of those");
  }

 private:
  const Node& n_;
};

/// Writes a plugin's Attrs into a node's attributes (the DSL and tests make nodes this way).
class AttrWriter {
 public:
  explicit AttrWriter(Node& n) : n_(n) {}
  template <class T>
  void operator()(const char* name, const T& v) const {
    n_.attrs[name] = v;
  }

 private:
  Node& n_;
};

template <class P>
typename P::Attrs attrs_of(const Node& n) {
  typename P::Attrs a;
  AttrReader r(n);
  a.visit(r);
  return a;
}

/// The type-erased entry of plugin type P.
template <class P>
Entry entry_of() {
  Entry e;
  e.domain = P::domain;
  e.op = P::op;
  e.version = P::version;
  e.min_inputs = P::min_inputs;
  e.max_inputs = P::max_inputs;
  e.outputs = P::outputs;
  e.shape = [](const Node& n, const std::vector<TensorType>& in) {
    return P::shape(attrs_of<P>(n), in);
  };
  e.supports = [](DType t) { return P::supports(t); };
  e.reference = [](const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out) {
    P::reference(attrs_of<P>(n), in, out);
  };
  e.workspace = [](const Node& n, const std::vector<TensorType>& in) {
    return P::workspace(attrs_of<P>(n), in);
  };
  e.enqueue = [](const Node& n, const DeviceIo& io) { P::enqueue(attrs_of<P>(n), io); };
  return e;
}

/// A node of plugin P named `name` (its attributes written from `attrs`).
template <class P>
Node node_of(const typename P::Attrs& attrs, std::string name, std::vector<std::string> inputs,
             std::vector<std::string> outputs) {
  Node n;
  n.op = qualified_name(P::domain, P::op, P::version);
  n.name = std::move(name);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  AttrWriter w(n);
  typename P::Attrs a = attrs;
  a.visit(w);
  return n;
}

namespace detail {
/// Registers P when a translation unit (or a loaded library) initializes; the library being
/// loaded is recorded by load_library().
bool register_type(Entry e);
}  // namespace detail

}  // namespace kiln::plugin

/// Registers plugin type `Type` (at namespace scope, once per type).
#define KILN_PLUGIN(Type)                                               \
  [[maybe_unused]] static const bool kiln_plugin_registered_##Type##_ = \
      ::kiln::plugin::detail::register_type(::kiln::plugin::entry_of<Type>())
