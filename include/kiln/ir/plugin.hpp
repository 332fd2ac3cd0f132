// Plugins: ops kiln lacks, written by its users as one C++ type and registered by one macro.
//
// A plugin type P says what it is and what it computes (examples/plugins/fc_plugin.cpp):
//
//   struct MyOp {
//     static constexpr const char* domain = "com.example";  // its ONNX nodes' domain
//     static constexpr const char* op = "MyOp";             // their op type
//     static constexpr int version = 1;                     // the domain's opset version
//     static constexpr int min_inputs = 1, max_inputs = 1, outputs = 1;
//     struct Attrs {                                        // typed attributes
//       std::int64_t size = 0;
//       template <class V> void visit(V& v) { v("size", size); }
//     };
//     static constexpr std::array<std::size_t, 1> input_ranks = {2};
//     static constexpr std::array<std::int64_t, 2> rule(const Attrs&,
//                                                       std::array<std::int64_t, 2> x);
//     static bool supports(kiln::DType t);  // the input and output dtypes it takes
//     static void reference(const Attrs&, const std::vector<const kiln::Tensor*>& in,
//                           std::vector<kiln::Tensor>& out);  // the CPU reference
//     static std::size_t workspace(const Attrs&, const std::vector<kiln::TensorType>& in);
//     static void enqueue(const Attrs&, const kiln::plugin::DeviceIo& io);  // on io.stream
//   };
//   KILN_PLUGIN(MyOp);
//
// Attributes are what `Attrs::visit` lists (std::int64_t, double, std::string, std::vector of
// std::int64_t or double); they live in the node's attributes, so a plan file keeps them.
//
// The shape, one of two ways. `rule` (one output, of the first input's dtype): a constexpr
// function of the attributes and each input's dims (kDynamic, -1, where not known), input i of
// rank input_ranks[i], written with kiln::rules (kiln/ir/shape_rules.hpp) or throwing
// kiln::ShapeError. The IR's inference runs it (an output dim it leaves unknown is a dynamic
// dim), and the DSL's custom<P, attrs>(...) (kiln/dsl/plugin.hpp) runs it when the program
// compiles, where dims are fixed: a violation is a compile error. Or, for the IR only,
//   static std::vector<kiln::TensorType> shape(const Attrs&, const std::vector<kiln::TensorType>&);
// which sees symbolic dims and may make several outputs of any dtype.
//
// The IR's op name of a plugin node is "domain::op@version" (qualified_name()); ONNX nodes of the
// domain map to the plugin registered for their (domain, op, version), the version being the
// model's opset_import of that domain. `reference` runs in the CPU reference executor; `enqueue`
// in the GPU runtime, once per run on the step's stream with row-major device tensors (it must
// not synchronize or allocate, so that a CUDA graph can capture it). kiln build/run --plugin
// LIB.so loads plugins from a shared library (load_library()); a plan that names a plugin no
// library registered is refused naming the plugin and the library it was built with.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
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

namespace detail {

/// The IR shape of a plugin P that declares `rule`, for `in` holding N inputs: each input's dims
/// (kDynamic where not fixed) to P::rule, one output of the first input's dtype. An output dim
/// the rule leaves unknown keeps an input's symbol where the rule passes it through (found by a
/// second run with each symbol as a distinct number of its own), and is dynamic otherwise.
template <class P, std::size_t... I>
Shape shape_by_rule(const typename P::Attrs& a, const std::vector<TensorType>& in,
                    std::index_sequence<I...>) {
  std::vector<std::string> symbols;  // symbol k runs as kSymbolBase + k in the second run
  constexpr std::int64_t kSymbolBase = std::int64_t{1} << 40;
  auto dims_of = [&]<std::size_t K>(std::integral_constant<std::size_t, K>, bool as_symbols) {
    constexpr std::size_t rank = P::input_ranks[K];
    std::array<std::int64_t, rank> d{};
    if (in[K].shape.rank() != rank)
      throw ShapeError("input " + std::to_string(K) + " has rank " +
                       std::to_string(in[K].shape.rank()) + ", the plugin takes rank " +
                       std::to_string(rank));
    for (std::size_t k = 0; k < rank; ++k) {
      const Dim& dim = in[K].shape[k];
      d[k] = dim.is_fixed() ? dim.value() : kDynamic;
      if (as_symbols && dim.is_symbolic()) {
        auto it = std::find(symbols.begin(), symbols.end(), dim.symbol_name());
        if (it == symbols.end()) it = symbols.insert(symbols.end(), dim.symbol_name());
        d[k] = kSymbolBase + (it - symbols.begin());
      }
    }
    return d;
  };
  const auto out = P::rule(a, dims_of(std::integral_constant<std::size_t, I>{}, false)...);
  std::array<std::int64_t, out.size()> named{};
  named.fill(kDynamic);
  try {
    named = P::rule(a, dims_of(std::integral_constant<std::size_t, I>{}, true)...);
  } catch (const Error&) {  // the symbols as numbers broke a rule: no names to keep
  }
  std::vector<Dim> dims;
  for (std::size_t k = 0; k < out.size(); ++k) {
    const std::int64_t s = named[k] - kSymbolBase;
    if (out[k] >= 0)
      dims.push_back(Dim(out[k]));
    else if (s >= 0 && s < static_cast<std::int64_t>(symbols.size()))
      dims.push_back(Dim::symbol(symbols[static_cast<std::size_t>(s)]));
    else
      dims.push_back(Dim::dynamic());
  }
  return Shape(std::move(dims));
}

template <class P, std::size_t N = static_cast<std::size_t>(P::min_inputs)>
std::vector<TensorType> shape_by_rule(const typename P::Attrs& a,
                                      const std::vector<TensorType>& in) {
  static_assert(P::outputs == 1, "a plugin with several outputs declares shape(), not rule()");
  if constexpr (N < static_cast<std::size_t>(P::max_inputs)) {
    if (in.size() > N) return shape_by_rule<P, N + 1>(a, in);
  }
  return {TensorType{in.at(0).dtype, shape_by_rule<P>(a, in, std::make_index_sequence<N>{})}};
}

}  // namespace detail

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
    if constexpr (requires { P::shape(attrs_of<P>(n), in); })
      return P::shape(attrs_of<P>(n), in);
    else
      return detail::shape_by_rule<P>(attrs_of<P>(n), in);
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
