#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/control.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/ir/plugin.hpp"
#include "proto_util.hpp"

namespace kiln::onnx {

namespace {

/// The newest opset of the default domain that kiln reads.
constexpr int kMaxOpset = 27;

/// Every op of ONNX's default domain with its first and last opset.
const OpSupport kOnnxOps[] = {
#include "opset_table.inc"
};

const OpSupport* onnx_op(std::string_view op) {
  for (const auto& o : kOnnxOps)
    if (o.op == op) return &o;
  return nullptr;
}

/// Declared dims: a value >= 0, a dim_param, or nothing (unknown).
Shape declared_shape(const ::onnx::TensorShapeProto& shape, const std::string& what) {
  Shape s;
  int axis = 0;
  for (const auto& d : shape.dim()) {
    if (d.has_dim_value()) {
      if (d.dim_value() < 0)
        throw FormatError(fmt::format("{}: dim {} is {}: expected a size >= 0 or a dim_param", what,
                                      axis, d.dim_value()));
      s.push_back(Dim(d.dim_value()));
    } else if (d.has_dim_param() && !d.dim_param().empty()) {
      s.push_back(Dim::symbol(d.dim_param()));
    } else {
      s.push_back(Dim::dynamic());
    }
    ++axis;
  }
  return s;
}

/// How a declared type's element type is read: required (a graph input's), checked where given
/// (a graph output's: 0 is no ONNX type), or read where given and not 0 (a body input's, which
/// its op's rule sets anyway).
enum class DTypeRule { required, if_given, if_nonzero };

/// A declared type: a tensor, a sequence of tensors, or an optional of either
/// (kiln::ValueKind). A shape left out is an unknown rank (rank_known false, which only sequences
/// and optionals may have).
TensorType declared_type(const ::onnx::TypeProto& type, const std::string& what, DTypeRule rule) {
  const ::onnx::TypeProto* t = &type;
  ValueKind kind = ValueKind::tensor;
  if (t->has_optional_type()) {
    if (!t->optional_type().has_elem_type())
      throw FormatError(what + ": an optional type without its element type");
    t = &t->optional_type().elem_type();
    kind = ValueKind::optional_tensor;
  }
  if (t->has_sequence_type()) {
    if (!t->sequence_type().has_elem_type())
      throw FormatError(what + ": a sequence type without its element type");
    t = &t->sequence_type().elem_type();
    kind = kind == ValueKind::optional_tensor ? ValueKind::optional_sequence : ValueKind::sequence;
  }
  if (!t->has_tensor_type())
    throw UnsupportedError(what +
                           ": kiln's values are tensors, sequences of tensors and optionals of "
                           "either (not maps, sparse tensors, or sequences or optionals of "
                           "those)");
  const auto& tt = t->tensor_type();
  TensorType out;
  out.kind = kind;
  if (rule == DTypeRule::required || (tt.has_elem_type() && rule == DTypeRule::if_given) ||
      (tt.has_elem_type() && tt.elem_type() != 0))
    out.dtype = detail::to_dtype(tt.elem_type(), what);
  if (tt.has_shape())
    out.shape = declared_shape(tt.shape(), what);
  else
    out.rank_known = false;
  return out;
}

class Importer {
 public:
  Importer(std::string base_dir, const ConstantEvaluator* evaluator)
      : base_dir_(std::move(base_dir)),
        evaluator_(evaluator),
        node_names_(std::make_shared<std::set<std::string>>()) {}

  Graph run(const ::onnx::ModelProto& m, const ImportOptions& opts) {
    if (m.ir_version() < 1)
      throw FormatError(fmt::format("model ir_version is {}: expected 1 or more", m.ir_version()));
    opset_ = -1;
    for (const auto& o : m.opset_import()) {
      if (o.version() < 1 || o.version() > 100000)
        throw FormatError(
            fmt::format("model opset_import of domain '{}' has version {}: expected "
                        "1 or more",
                        o.domain(), o.version()));
      if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = static_cast<int>(o.version());
      domain_versions_[o.domain()] = static_cast<int>(o.version());
    }
    if (opset_ < 0) opset_ = 1;  // no import of the default domain: its first opset
    if (opset_ > kMaxOpset)
      throw UnsupportedError(
          fmt::format("model uses opset {} of the default domain; kiln reads "
                      "opsets 1 to {}",
                      opset_, kMaxOpset));
    const auto& gp = m.graph();
    g_.name = gp.name().empty() ? "model" : gp.name();
    for (const auto& init : gp.initializer()) {
      if (init.name().empty()) throw FormatError("an initializer has no name");
      if (g_.weights.count(init.name()))
        throw FormatError(fmt::format("initializer '{}' appears twice", init.name()));
      g_.weights[init.name()] = detail::to_tensor(init, base_dir_);
    }
    if (gp.sparse_initializer_size() > 0)
      throw UnsupportedError("sparse initializers are not supported");
    for (const auto& in : gp.input()) {
      if (g_.weights.count(in.name())) continue;  // an initializer listed as an input
      g_.inputs.push_back(value_info(in));
    }
    if (gp.output_size() == 0)
      throw FormatError(
          fmt::format("graph '{}' has no outputs: a model must name at least one", g_.name));
    for (const auto& out : gp.output()) {
      if (out.name().empty())
        throw FormatError(fmt::format("graph '{}' has an output with no name", g_.name));
      check_output_type(out);
      graph_outputs_.insert(out.name());
    }
    for (const auto& n : gp.node()) add_node(n);
    for (const auto& out : gp.output()) g_.outputs.push_back(out.name());
    if (opts.infer) g_.infer(opts.evaluator);
    return std::move(g_);
  }

 private:
  /// A graph output's declared type, where the model gives one, must be a valid one (kiln infers
  /// the type itself; a declared one that is garbage means a corrupt model).
  static void check_output_type(const ::onnx::ValueInfoProto& v) {
    if (!v.has_type()) return;
    (void)declared_type(v.type(), fmt::format("graph output '{}'", v.name()), DTypeRule::if_given);
  }

  ValueInfo value_info(const ::onnx::ValueInfoProto& v) {
    const std::string what = fmt::format("graph input '{}'", v.name());
    if (!v.has_type()) throw UnsupportedError(what + ": the model gives no type");
    ValueInfo vi;
    vi.name = v.name();
    vi.type = declared_type(v.type(), what, DTypeRule::required);
    if (vi.type.is_tensor() && !vi.type.rank_known)
      throw UnsupportedError(what + ": inputs need a known rank (the model gives no shape)");
    return vi;
  }

  Attribute attribute(const ::onnx::AttributeProto& a, const Node& n) {
    using AP = ::onnx::AttributeProto;
    switch (a.type()) {
      case AP::FLOAT: return static_cast<double>(a.f());
      case AP::INT: return static_cast<std::int64_t>(a.i());
      case AP::STRING: return a.s();
      case AP::TENSOR: return detail::to_tensor(a.t(), base_dir_);
      case AP::FLOATS: return std::vector<double>(a.floats().begin(), a.floats().end());
      case AP::INTS: return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
      case AP::STRINGS: return std::vector<std::string>(a.strings().begin(), a.strings().end());
      default:
        if (a.type() == AP::UNDEFINED) {  // very old models omit the type: infer it from the fields
          if (a.has_f()) return static_cast<double>(a.f());
          if (a.has_i()) return static_cast<std::int64_t>(a.i());
          if (a.has_s()) return a.s();
          if (a.has_t()) return detail::to_tensor(a.t(), base_dir_);
          if (a.ints_size()) return std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
          if (a.floats_size()) return std::vector<double>(a.floats().begin(), a.floats().end());
        }
        throw UnsupportedError(
            fmt::format("{}attribute '{}' of type {} (lists of graphs, sparse tensors and "
                        "type protos) is not supported",
                        n.where(), a.name(), AP::AttributeType_Name(a.type())));
    }
  }

  std::string unique_node_name(const std::string& wanted, const std::string& op) {
    std::string base = wanted.empty() ? op : wanted;
    std::string name = base;
    for (int i = 1; node_names_->count(name); ++i) name = fmt::format("{}_{}", base, i);
    node_names_->insert(name);
    return name;
  }

  std::string add_const(const Node& n, const std::string& what, Tensor t) {
    std::string name = g_.unique_name(n.name + "/" + what);
    g_.weights[name] = std::move(t);
    return name;
  }

  void set_input(Node& n, std::size_t i, std::string value) {
    if (n.inputs.size() <= i) n.inputs.resize(i + 1);
    n.inputs[i] = std::move(value);
  }

  /// Moves an int-list attribute of an old opset to input `i` as an i64 tensor.
  void ints_attr_to_input(Node& n, const std::string& attr, std::size_t i) {
    if (!n.has_attr(attr)) return;
    auto v = n.attr_ints(attr);
    n.attrs.erase(attr);
    set_input(
        n, i,
        add_const(n, attr, Tensor::from<std::int64_t>({static_cast<std::int64_t>(v.size())}, v)));
  }
  void float_attr_to_input(Node& n, const std::string& attr, std::size_t i) {
    if (!n.has_attr(attr)) return;
    const double v = n.attr_float(attr, 0.0);
    n.attrs.erase(attr);
    set_input(n, i, add_const(n, attr, Tensor::scalar<float>(static_cast<float>(v))));
  }

  static bool is_op(const Node& n, std::initializer_list<const char*> ops) {
    for (const char* o : ops)
      if (n.op == o) return true;
    return false;
  }

  /// Names the node, its op, domain and opset, and where the supported ops are listed (`kiln
  /// ops`), not the list itself; an op that differs only in case is named as a suggestion.
  [[noreturn]] void unsupported_op(const ::onnx::NodeProto& p, const std::string& name) {
    auto lower = [](std::string s) {
      for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return s;
    };
    std::string hint;
    for (const auto& o : supported_ops())
      if (lower(o.op) == lower(p.op_type())) hint = fmt::format(" (did you mean '{}'?)", o.op);
    throw UnsupportedError(fmt::format(
        "[{} '{}'] op '{}' (domain '{}', opset {}) is not supported{}; "
        "`kiln ops` lists the supported ops",
        p.op_type(), name, p.op_type(), p.domain().empty() ? "ai.onnx" : p.domain(), opset_, hint));
  }

  /// The node's inputs, outputs and attributes from its proto.
  /// A body's graph (GRAPH attributes: the branches of If, the body of Loop and Scan) come in by a
  /// nested importer and capture the outer values they read (kiln::Subgraph): the union of what
  /// the node's bodies read becomes the last inputs of the node and of each body.
  void read_io_and_attributes(const ::onnx::NodeProto& p, Node& n) {
    n.inputs.assign(p.input().begin(), p.input().end());
    n.outputs.assign(p.output().begin(), p.output().end());
    std::vector<std::pair<std::string, Body>> bodies;
    for (const auto& a : p.attribute()) {
      if (!a.ref_attr_name().empty())
        throw UnsupportedError(fmt::format("{}attribute references are not supported", n.where()));
      if (a.type() == ::onnx::AttributeProto::GRAPH) {
        bodies.emplace_back(a.name(), import_body(a.g(), n, a.name()));
        continue;
      }
      if (a.type() == ::onnx::AttributeProto::TYPE_PROTO && p.op_type() == "Optional" &&
          a.name() == "type") {
        optional_type_attrs(a.tp(), n);
        continue;
      }
      n.attrs[a.name()] = attribute(a, n);
    }
    std::vector<std::string> captured;
    for (const auto& [_, b] : bodies)
      for (const auto& c : b.captured)
        if (std::find(captured.begin(), captured.end(), c) == captured.end()) captured.push_back(c);
    for (auto& [name, b] : bodies) {
      for (const auto& c : captured) b.graph->inputs.push_back({c, TensorType{}});
      n.attrs[name] = Subgraph{std::move(b.graph), captured.size()};
    }
    n.inputs.insert(n.inputs.end(), captured.begin(), captured.end());
  }

  /// Optional's `type` (a TypeProto) as the IR's attributes: dtype (an ONNX dtype code),
  /// sequence (1 for an optional sequence) and shape (where declared; -1 an unknown dim).
  static void optional_type_attrs(const ::onnx::TypeProto& tp, Node& n) {
    const TensorType t = declared_type(tp, n.where() + "attribute 'type'", DTypeRule::required);
    if (t.is_optional())
      throw UnsupportedError(n.where() +
                             "attribute 'type' is an optional: an optional cannot "
                             "hold an optional");
    n.attrs["dtype"] = static_cast<std::int64_t>(dtype_to_onnx(t.dtype));
    n.attrs["sequence"] = static_cast<std::int64_t>(t.is_sequence() ? 1 : 0);
    if (t.rank_known) n.attrs["shape"] = t.shape.values();
  }

  struct Body {
    std::shared_ptr<Graph> graph;
    std::vector<std::string> captured;  ///< outer values it reads, in first-use order
  };

  /// Opset 8's Scan (sequence_lens, then states and scan inputs with a leading batch dim, scanned
  /// along dim 1) as opset 9's: an outer Scan over the batch dim of every input whose body is an
  /// opset 9 Scan over the sequence with the original body. Its per-batch sequence lengths are
  /// not supported.
  Node scan8_as_scan9(Node n) {
    const std::size_t captured = control::captured_inputs(n);
    const std::size_t formal = n.inputs.size() - captured;
    if (formal < 2) throw GraphError(n.where() + "opset 8's Scan takes sequence_lens and inputs");
    if (!n.inputs[0].empty())
      throw UnsupportedError(n.where() +
                             "opset 8's Scan with sequence_lens (per-batch lengths) is "
                             "not supported");
    const std::size_t m = static_cast<std::size_t>(n.attr_int("num_scan_inputs"));
    if (m < 1 || m > formal - 1)
      throw GraphError(
          fmt::format("{}num_scan_inputs is {}: expected 1 to {}", n.where(), m, formal - 1));
    const Subgraph original = n.attr_graph("body");
    auto outer = std::make_shared<Graph>();
    outer->name = n.name + "/per_batch";
    Node inner{"Scan", unique_node_name(n.name + "/sequence", "Scan"), {}, {}, {}};
    for (std::size_t i = 1; i < formal; ++i) {
      const std::string name = fmt::format("{}/in{}", n.name, i - 1);
      outer->inputs.push_back({name, TensorType{}});
      inner.inputs.push_back(name);
    }
    for (std::size_t j = formal; j < n.inputs.size(); ++j) {
      outer->inputs.push_back({n.inputs[j], TensorType{}});
      inner.inputs.push_back(n.inputs[j]);
    }
    inner.attrs["num_scan_inputs"] = static_cast<std::int64_t>(m);
    if (n.has_attr("directions")) inner.attrs["scan_input_directions"] = n.attr_ints("directions");
    inner.attrs["body"] = original;
    const std::size_t outs = original.graph->outputs.size();
    for (std::size_t k = 0; k < outs; ++k)
      inner.outputs.push_back(fmt::format("{}/out{}", n.name, k));
    outer->outputs = inner.outputs;
    outer->nodes.push_back(std::move(inner));
    Node scan{"Scan",
              n.name,
              std::vector<std::string>(n.inputs.begin() + 1, n.inputs.end()),
              n.outputs,
              {}};
    scan.attrs["num_scan_inputs"] = static_cast<std::int64_t>(formal - 1);
    scan.attrs["body"] = Subgraph{std::move(outer), captured};
    return scan;
  }

  /// An outer name as the enclosing graphs know it (through their removed Identity nodes).
  std::string resolve(const std::string& v) const {
    if (auto a = alias_.find(v); a != alias_.end()) return a->second;
    return parent_ ? parent_->resolve(v) : v;
  }

  Body import_body(const ::onnx::GraphProto& gp, const Node& n, const std::string& attr) {
    if (depth_ + 1 > kMaxDepth)
      throw UnsupportedError(fmt::format("{}attribute '{}': bodies nested more than {} deep",
                                         n.where(), attr, kMaxDepth));
    Importer sub(base_dir_, evaluator_);
    sub.opset_ = opset_;
    sub.domain_versions_ = domain_versions_;
    sub.node_names_ = node_names_;
    sub.parent_ = this;
    sub.depth_ = depth_ + 1;
    Graph& g = sub.g_;
    g.name = gp.name().empty() ? n.name + "/" + attr : gp.name();
    const std::string what = fmt::format("{}body '{}'", n.where(), attr);
    for (const auto& init : gp.initializer()) {
      if (init.name().empty()) throw FormatError(what + ": an initializer has no name");
      g.weights[init.name()] = detail::to_tensor(init, base_dir_);
    }
    if (gp.sparse_initializer_size() > 0)
      throw UnsupportedError(what + ": sparse initializers are not supported");
    for (const auto& in : gp.input()) {
      if (g.weights.count(in.name())) continue;
      g.inputs.push_back(body_input(in, what));
    }
    for (const auto& out : gp.output()) {
      if (out.name().empty()) throw FormatError(what + ": an output has no name");
      sub.graph_outputs_.insert(out.name());
    }
    for (const auto& node : gp.node()) sub.add_node(node);
    for (const auto& out : gp.output()) g.outputs.push_back(sub.resolve(out.name()));
    Body b;
    std::set<std::string> defined, seen;
    for (const auto& i : g.inputs) defined.insert(i.name);
    for (const auto& [k, _] : g.weights) defined.insert(k);
    auto use = [&](const std::string& v) {
      if (!v.empty() && !defined.count(v) && seen.insert(v).second) b.captured.push_back(v);
    };
    for (const auto& node : g.nodes) {
      for (const auto& in : node.inputs) use(in);
      for (const auto& o : node.outputs) defined.insert(o);
    }
    for (const auto& o : g.outputs) use(o);
    b.graph = std::make_shared<Graph>(std::move(g));
    return b;
  }

  /// A body's formal input: its declared type where given (the op's shape rule sets it anyway).
  static ValueInfo body_input(const ::onnx::ValueInfoProto& v, const std::string& what) {
    ValueInfo vi;
    vi.name = v.name();
    if (!v.has_type()) return vi;
    vi.type = declared_type(v.type(), fmt::format("{}: input '{}'", what, v.name()),
                            DTypeRule::if_nonzero);
    if (vi.type.is_tensor()) vi.type.rank_known = true;  // its op's rule sets the shape anyway
    return vi;
  }

  /// A node of a custom domain: the plugin registered for its (domain, op, the model's version of
  /// the domain), named by the IR's plugin op name, its library recorded for missing-plugin
  /// errors later (kiln/ir/plugin.hpp).
  void add_plugin_node(const ::onnx::NodeProto& p, Node n) {
    const auto v = domain_versions_.find(p.domain());
    if (v == domain_versions_.end())
      throw FormatError(fmt::format("[{} '{}'] domain '{}' is not in the model's opset_import",
                                    p.op_type(), n.name, p.domain()));
    const plugin::Entry* e = plugin::find(p.domain(), p.op_type(), v->second);
    if (!e) {
      std::vector<std::string> versions;
      for (const plugin::Entry* o : plugin::all())
        if (o->domain == p.domain() && o->op == p.op_type())
          versions.push_back(std::to_string(o->version));
      throw UnsupportedError(fmt::format(
          "[{} '{}'] op '{}' of domain '{}' (version {}) is no registered plugin{}; load the "
          "library that has it with --plugin LIB.so",
          p.op_type(), n.name, p.op_type(), p.domain(), v->second,
          versions.empty() ? std::string()
                           : fmt::format(" (versions registered: {})", fmt::join(versions, ", "))));
    }
    n.op = e->name();
    read_io_and_attributes(p, n);
    if (!e->library.empty()) n.attrs[plugin::kLibraryAttr] = e->library;
    upgrade_and_add(std::move(n));
  }

  void add_node(const ::onnx::NodeProto& p) {
    Node n;
    n.op = p.op_type() == "Scatter" ? "ScatterElements" : p.op_type();  // Scatter: deprecated name
    n.name = unique_node_name(p.name(), p.op_type());
    if (!p.domain().empty() && p.domain() != "ai.onnx") return add_plugin_node(p, std::move(n));
    const OpSupport* known = onnx_op(p.op_type());
    if (!known || !OpRegistry::instance().find(n.op)) unsupported_op(p, n.name);
    if (opset_ < known->min_opset || opset_ > known->max_opset)
      throw UnsupportedError(fmt::format(
          "[{} '{}'] op '{}' exists in opsets {} to {}, the model "
          "uses opset {}",
          p.op_type(), n.name, p.op_type(), known->min_opset, known->max_opset, opset_));
    read_io_and_attributes(p, n);
    upgrade_and_add(std::move(n));
  }

  /// Identity, and Dropout at inference, are removed: their consumers read the input instead.
  /// A node whose output is a graph output stays, so that the output keeps its name.
  bool removable(const Node& n) const {
    if (n.outputs.empty() || graph_outputs_.count(n.outputs[0]) || n.input_count() == 0 ||
        n.inputs[0].empty())
      return false;
    if (n.op == "Identity") return true;
    return n.op == "Dropout" && n.input_count() <= 2 && !n.has_output(1);
  }

  /// Translates an old opset's form of a node into the latest one, then adds it.
  void upgrade_and_add(Node n) {
    const int v = opset_;
    for (auto& in : n.inputs) in = resolve(in);
    if (removable(n)) {
      alias_[n.outputs[0]] = n.inputs[0];
      return;
    }
    if (n.op == "Constant") {  // folded into a weight right away
      need_outputs(n, 1);
      if (g_.weights.count(n.outputs[0]))
        throw GraphError(
            fmt::format("{}output '{}' is already defined (by an initializer or "
                        "another Constant)",
                        n.where(), n.outputs[0]));
      g_.weights[n.outputs[0]] = constant_value(n);
      return;
    }
    if (n.op == "Slice" && v < 10) {
      ints_attr_to_input(n, "starts", 1);
      ints_attr_to_input(n, "ends", 2);
      ints_attr_to_input(n, "axes", 3);
    } else if (n.op == "Clip" && v < 11) {
      if (n.has_attr("min")) float_attr_to_input(n, "min", 1);
      if (n.has_attr("max")) float_attr_to_input(n, "max", 2);
    } else if (n.op == "Pad" && v < 11) {
      std::string mode = n.attr_string("mode", "constant");
      ints_attr_to_input(n, "pads", 1);
      float_attr_to_input(n, "value", 2);
      n.attrs.erase("paddings");
      n.attrs["mode"] = mode;
    } else if ((n.op == "ReduceSum" && v < 13) ||
               (n.op.rfind("Reduce", 0) == 0 && n.op != "ReduceSum" && v < 18)) {
      ints_attr_to_input(n, "axes", 1);
    } else if (is_op(n, {"Squeeze", "Unsqueeze"}) && v < 13) {
      ints_attr_to_input(n, "axes", 1);
    } else if (n.op == "Split" && v < 13) {
      ints_attr_to_input(n, "split", 1);
    } else if (n.op == "TopK" && v < 10) {
      const std::int64_t k = n.attr_int("k");
      n.attrs.erase("k");
      set_input(n, 1, add_const(n, "k", Tensor::from<std::int64_t>({1}, {k})));
    } else if (n.op == "Reshape" && v < 5) {
      ints_attr_to_input(n, "shape", 1);
    } else if (n.op == "Scan" && v < 9) {
      n = scan8_as_scan9(std::move(n));
    } else if (n.op == "Dropout" && v < 12) {
      n.attrs.erase("ratio");
      n.attrs.erase("is_test");
      if (n.outputs.size() > 1) n.outputs.resize(1);  // legacy mask output is never consumed here
    } else if (n.op == "Attention" && v < 25) {
      // Opset 24 adds the input nonpad_kv_seqlen, opset 25 the sliding window's attributes.
      if (v < 24 && n.has_input(6))
        throw GraphError(
            fmt::format("{}input 6 (nonpad_kv_seqlen) exists from opset 24; the model uses "
                        "opset {}",
                        n.where(), v));
      for (const char* a : {"left_window_size", "right_window_size"})
        if (n.has_attr(a))
          throw GraphError(fmt::format(
              "{}attribute '{}' exists from opset 25; the model uses opset {}", n.where(), a, v));
    } else if (n.op == "Upsample") {
      upgrade_upsample(n);
    } else if (n.op == "Resize" && v < 11) {
      // Resize-10: (X, scales); asymmetric coordinates, floor for nearest.
      const std::string scales = n.inputs.size() > 1 ? n.inputs[1] : "";
      n.inputs = {n.inputs[0], "", scales};
      n.attrs["coordinate_transformation_mode"] = std::string("asymmetric");
      if (n.attr_string("mode", "nearest") == "nearest")
        n.attrs["nearest_mode"] = std::string("floor");
    } else if (n.op == "RoiAlign" && v < 16) {
      // RoiAlign-10 has no coordinate_transformation_mode: it behaves as output_half_pixel (no
      // half-pixel shift), opset 16's default is half_pixel.
      if (n.has_attr("coordinate_transformation_mode"))
        throw GraphError(fmt::format(
            "{}attribute 'coordinate_transformation_mode' exists from opset 16; the model uses "
            "opset {}",
            n.where(), v));
      n.attrs["coordinate_transformation_mode"] = std::string("output_half_pixel");
    } else if (n.op == "Cast" && v < 6) {
      if (const auto* s = std::get_if<std::string>(&n.attrs["to"]))
        n.attrs["to"] = onnx_code_of(*s, n);
    } else if (n.op == "Concat" && v < 4 && !n.has_attr("axis")) {
      n.attrs["axis"] = std::int64_t{1};
    } else if (n.op == "BatchNormalization" && v < 14) {
      // Before opset 14 the extra outputs belong to a training form kiln does not read.
      n.attrs.erase("spatial");
      n.attrs.erase("is_test");
      n.attrs.erase("momentum");
      for (std::size_t i = 1; i < n.outputs.size(); ++i)
        if (!n.outputs[i].empty())
          throw UnsupportedError(n.where() +
                                 "the training outputs of BatchNormalization before "
                                 "opset 14 are not supported");
      n.outputs.resize(1);
    } else if (n.op == "PRelu" && v < 7 && n.inputs.size() > 1) {
      // PRelu-6: a 1-D slope is per channel (axis 1).
      const auto rank_x = static_cast<std::int64_t>(rank_of(n.inputs[0]));
      const auto rank_s = static_cast<std::int64_t>(rank_of(n.inputs[1]));
      if (rank_s == 1 && rank_x > 2) n.inputs[1] = append_unit_dims(n, n.inputs[1], 1, rank_x - 2);
    } else if (is_op(n, {"Softmax", "LogSoftmax", "Hardmax"}) && v < 13) {
      add_legacy_softmax(std::move(n));
      return;
    } else if (is_op(n, {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Less",
                         "Greater", "Gemm"}) &&
               v < 7) {
      if (n.attr_int("broadcast", 0) != 0 && n.has_attr("axis") && n.op != "Gemm") {
        need_inputs(n, 2);
        // Legacy broadcasting: B's dims line up with A's from `axis` on. Trailing 1s make that
        // numpy broadcasting.
        const auto rank_a = static_cast<std::int64_t>(rank_of(n.inputs.at(0)));
        const auto rank_b = static_cast<std::int64_t>(rank_of(n.inputs.at(1)));
        std::int64_t axis = n.attr_int("axis");
        if (axis < 0) axis += rank_a;
        if (axis < 0 || axis + rank_b > rank_a)
          throw ShapeError(
              fmt::format("{}legacy broadcast axis {} does not fit B of rank {} into A "
                          "of rank {}",
                          n.where(), n.attr_int("axis"), rank_b, rank_a));
        n.inputs[1] = append_unit_dims(n, n.inputs[1], rank_b, rank_a - axis - rank_b);
      }
      n.attrs.erase("broadcast");
      n.attrs.erase("axis");
      n.attrs.erase("consumed_inputs");
    }
    n.attrs.erase("consumed_inputs");
    g_.add_node(std::move(n));
  }

  /// The opset translations read inputs and outputs before the registry's counts are checked.
  static void need_inputs(const Node& n, std::size_t count) {
    if (n.input_count() < count)
      throw GraphError(fmt::format("{}expected at least {} input(s), got {}", n.where(), count,
                                   n.input_count()));
  }
  static void need_outputs(const Node& n, std::size_t count) {
    if (n.outputs.size() < count || n.outputs[count - 1].empty())
      throw GraphError(fmt::format("{}expected at least {} output(s), got {}", n.where(), count,
                                   n.outputs.size()));
  }

  /// The rank of a value defined so far (shape inference over the graph built up to here).
  std::size_t rank_of(const std::string& value) {
    for (const auto& i : g_.inputs)
      if (i.name == value) return i.type.shape.rank();
    if (auto w = g_.weights.find(value); w != g_.weights.end()) return w->second.rank();
    g_.infer(evaluator_);
    return g_.type_of(value).shape.rank();
  }

  /// `value` (of rank `rank`) with `count` trailing dims of 1 added, through an Unsqueeze node.
  std::string append_unit_dims(const Node& n, const std::string& value, std::int64_t rank,
                               std::int64_t count) {
    if (count <= 0) return value;
    std::vector<std::int64_t> axes;
    for (std::int64_t i = 0; i < count; ++i) axes.push_back(rank + i);
    Node u{"Unsqueeze",
           unique_node_name(n.name + "/legacy_broadcast", "Unsqueeze"),
           {value, add_const(n, "unsqueeze_axes", Tensor::from<std::int64_t>({count}, axes))},
           {g_.unique_name(value + "/unsqueezed")},
           {}};
    const std::string out = u.outputs[0];
    g_.add_node(std::move(u));
    return out;
  }

  Tensor constant_value(const Node& n) {
    if (n.has_attr("value")) return n.attr_tensor("value");
    if (n.has_attr("value_float"))
      return Tensor::scalar<float>(static_cast<float>(n.attr_float("value_float", 0)));
    if (n.has_attr("value_int")) return Tensor::scalar<std::int64_t>(n.attr_int("value_int"));
    if (n.has_attr("value_floats")) {
      auto v = n.attr_floats("value_floats");
      std::vector<float> f(v.begin(), v.end());
      return Tensor::from<float>({static_cast<std::int64_t>(f.size())}, f);
    }
    if (n.has_attr("value_ints")) {
      auto v = n.attr_ints("value_ints");
      return Tensor::from<std::int64_t>({static_cast<std::int64_t>(v.size())}, v);
    }
    throw UnsupportedError(n.where() +
                           "only tensor, float(s) and int(s) constants are supported "
                           "(not strings or sparse tensors)");
  }

  static std::int64_t onnx_code_of(const std::string& s, const Node& n) {
    static const std::map<std::string, std::int64_t> codes = {
        {"FLOAT", 1},   {"UINT8", 2},   {"INT8", 3},    {"UINT16", 4},   {"INT16", 5},
        {"INT32", 6},   {"INT64", 7},   {"STRING", 8},  {"BOOL", 9},     {"FLOAT16", 10},
        {"DOUBLE", 11}, {"UINT32", 12}, {"UINT64", 13}, {"BFLOAT16", 16}};
    auto it = codes.find(s);
    if (it == codes.end()) throw UnsupportedError(n.where() + "unknown Cast target '" + s + "'");
    return it->second;
  }

  void upgrade_upsample(Node& n) {
    need_inputs(n, 1);
    // Upsample (opsets 7 to 9) is Resize with asymmetric coordinates.
    std::string scales;
    if (n.has_attr("scales")) {
      auto s = n.attr_floats("scales");
      std::vector<float> f(s.begin(), s.end());
      n.attrs.erase("scales");
      scales =
          add_const(n, "scales", Tensor::from<float>({static_cast<std::int64_t>(f.size())}, f));
    } else if (n.inputs.size() > 1) {
      scales = n.inputs[1];
    }
    std::string mode = n.attr_string("mode", "nearest");
    if (mode == "bilinear") mode = "linear";
    n.op = "Resize";
    n.inputs = {n.inputs.at(0), "", scales};
    n.attrs.clear();
    n.attrs["mode"] = mode;
    n.attrs["coordinate_transformation_mode"] = std::string("asymmetric");
    n.attrs["nearest_mode"] = std::string("floor");
  }

  void add_legacy_softmax(Node n) {
    // Before opset 13 these ops flatten the input to 2-D at `axis` (default 1).
    need_inputs(n, 1);
    need_outputs(n, 1);
    const std::int64_t axis = n.attr_int("axis", 1);
    const std::string x = n.inputs[0], y = n.outputs[0];
    Node shape{
        "Shape", g_.unique_name(n.name + "/shape"), {x}, {g_.unique_name(n.name + "/shape")}, {}};
    Node flat{"Flatten",
              g_.unique_name(n.name + "/flatten"),
              {x},
              {g_.unique_name(n.name + "/flat")},
              {{"axis", axis}}};
    node_names_->insert(shape.name);
    node_names_->insert(flat.name);
    const std::string shape_out = shape.outputs[0], flat_out = flat.outputs[0];
    g_.add_node(std::move(shape));
    g_.add_node(std::move(flat));
    Node core = n;
    core.inputs = {flat_out};
    core.outputs = {g_.unique_name(n.name + "/2d")};
    core.attrs["axis"] = std::int64_t{1};
    const std::string core_out = core.outputs[0];
    g_.add_node(std::move(core));
    Node back{"Reshape",
              unique_node_name(n.name + "/reshape", "Reshape"),
              {core_out, shape_out},
              {y},
              {}};
    g_.add_node(std::move(back));
  }

  std::string base_dir_;
  const ConstantEvaluator* evaluator_ = nullptr;
  int opset_ = 1;
  std::map<std::string, int> domain_versions_;  ///< opset_import: domain -> version
  Graph g_;
  /// Node names in use in the model, bodies included (shared with the importers of bodies), so
  /// that names made from them are unique in every scope.
  std::shared_ptr<std::set<std::string>> node_names_;
  std::set<std::string> graph_outputs_;
  std::map<std::string, std::string> alias_;  // output of a removed node -> its input
  const Importer* parent_ = nullptr;          // the enclosing graph's importer, for a body
  int depth_ = 0;                             // bodies enclosing this one
  static constexpr int kMaxDepth = 16;
};

::onnx::ModelProto parse_model(const std::string& bytes, const std::string& origin) {
  if (bytes.empty()) throw FormatError(fmt::format("'{}' is empty, not an ONNX model", origin));
  ::onnx::ModelProto m;
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
  if (!m.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage())
    throw FormatError(
        fmt::format("'{}' is not a valid ONNX model (truncated or corrupt protobuf)", origin));
  if (!m.has_graph())
    throw FormatError(fmt::format("'{}' parses as protobuf but holds no ONNX graph", origin));
  if (m.ir_version() < 3 && m.opset_import_size() == 0 && m.graph().node_size() == 0)
    throw FormatError(fmt::format("'{}' is not an ONNX model", origin));
  return m;
}

}  // namespace

Graph load_model_bytes(const std::string& bytes, const std::string& base_dir,
                       const ImportOptions& opts) {
  const auto m = parse_model(bytes, base_dir.empty() ? "<memory>" : base_dir);
  return Importer(base_dir, opts.evaluator).run(m, opts);
}

Graph load_model(const std::string& path, const ImportOptions& opts) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(fmt::format("cannot open ONNX model '{}'", path));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto m = parse_model(bytes, path);
  return Importer(std::filesystem::path(path).parent_path().string(), opts.evaluator).run(m, opts);
}

std::vector<std::optional<TensorType>> declared_output_types(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(fmt::format("cannot open ONNX model '{}'", path));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto m = parse_model(bytes, path);
  std::vector<std::optional<TensorType>> out;
  for (const auto& o : m.graph().output())
    out.push_back(o.has_type() ? std::optional(declared_type(
                                     o.type(), fmt::format("graph output '{}'", o.name()),
                                     DTypeRule::if_nonzero))
                               : std::nullopt);
  return out;
}

std::vector<OpSupport> supported_ops() {
  std::vector<OpSupport> v;
  for (const auto& name : OpRegistry::instance().names())
    if (const OpSupport* o = onnx_op(name)) v.push_back(*o);
  return v;
}

}  // namespace kiln::onnx
