#include "kiln/ir/graph.hpp"

#include <algorithm>
#include <atomic>
#include <set>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/op_registry.hpp"
#include "kiln/ir/plugin.hpp"

namespace kiln {

std::string TensorType::to_string() const {
  const std::string t = std::string(dtype_name(dtype)) + (rank_known ? shape.to_string() : "[*]");
  switch (kind) {
    case ValueKind::tensor: return t;
    case ValueKind::sequence: return "seq(" + t + ")";
    case ValueKind::optional_tensor: return "opt(" + t + ")";
    case ValueKind::optional_sequence: return "opt(seq(" + t + "))";
  }
  return t;
}

TensorType type_of_value(const Tensor& v) {
  if (v.is_tensor()) return {v.dtype(), v.shape()};
  if (v.is_none()) return {v.dtype(), Shape{}, ValueKind::optional_tensor, false};
  TensorType t{v.dtype(), Shape{}, ValueKind::sequence, false};
  const auto& e = v.elements();
  if (e.empty()) return t;
  for (const Tensor& x : e)
    if (x.rank() != e[0].rank()) return t;
  t.rank_known = true;
  for (std::size_t d = 0; d < e[0].rank(); ++d) {
    bool same = true;
    for (const Tensor& x : e) same &= x.dim(d) == e[0].dim(d);
    t.shape.push_back(same ? Dim(e[0].dim(d)) : Dim::dynamic());
  }
  return t;
}

// ---- Node --------------------------------------------------------------------------------

std::string Node::where() const { return fmt::format("[{} '{}'] ", op, name); }

namespace {
template <class T>
const T* get_attr(const Node& n, const std::string& key) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end()) return nullptr;
  if (const T* v = std::get_if<T>(&it->second)) return v;
  throw GraphError(n.where() + "attribute '" + key + "' has the wrong type (" +
                   attribute_to_string(it->second) + ")");
}
}  // namespace

std::int64_t Node::attr_int(const std::string& key, std::int64_t fallback) const {
  const auto* v = get_attr<std::int64_t>(*this, key);
  return v ? *v : fallback;
}
std::int64_t Node::attr_int(const std::string& key) const {
  const auto* v = get_attr<std::int64_t>(*this, key);
  if (!v) throw GraphError(where() + "missing required attribute '" + key + "'");
  return *v;
}
double Node::attr_float(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  if (it != attrs.end())
    if (const auto* i = std::get_if<std::int64_t>(&it->second)) return static_cast<double>(*i);
  const auto* v = get_attr<double>(*this, key);
  return v ? *v : fallback;
}
std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  const auto* v = get_attr<std::string>(*this, key);
  return v ? *v : fallback;
}
std::vector<std::int64_t> Node::attr_ints(const std::string& key,
                                          std::vector<std::int64_t> fallback) const {
  const auto* v = get_attr<std::vector<std::int64_t>>(*this, key);
  return v ? *v : fallback;
}
std::vector<double> Node::attr_floats(const std::string& key, std::vector<double> fallback) const {
  const auto* v = get_attr<std::vector<double>>(*this, key);
  return v ? *v : fallback;
}
std::vector<std::string> Node::attr_strings(const std::string& key,
                                            std::vector<std::string> fallback) const {
  const auto* v = get_attr<std::vector<std::string>>(*this, key);
  return v ? *v : fallback;
}
const Tensor& Node::attr_tensor(const std::string& key) const {
  const auto* v = get_attr<Tensor>(*this, key);
  if (!v) throw GraphError(where() + "missing required attribute '" + key + "'");
  return *v;
}

const Subgraph& Node::attr_graph(const std::string& key) const {
  const auto* v = get_attr<Subgraph>(*this, key);
  if (!v || !v->graph) throw GraphError(where() + "missing required graph attribute '" + key + "'");
  return *v;
}

std::size_t Node::input_count() const {
  std::size_t n = inputs.size();
  while (n > 0 && inputs[n - 1].empty()) --n;
  return n;
}

std::string attribute_to_string(const Attribute& a) {
  struct Visitor {
    std::string operator()(std::int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return fmt::format("{}", v); }
    std::string operator()(const std::string& v) const { return "'" + v + "'"; }
    std::string operator()(const std::vector<std::int64_t>& v) const {
      return fmt::format("[{}]", fmt::join(v, ","));
    }
    std::string operator()(const std::vector<double>& v) const {
      return fmt::format("[{}]", fmt::join(v, ","));
    }
    std::string operator()(const std::vector<std::string>& v) const {
      return fmt::format("['{}']", fmt::join(v, "','"));
    }
    std::string operator()(const Tensor& t) const { return "tensor " + t.type_string(); }
    std::string operator()(const Subgraph& g) const {
      if (!g.graph) return "graph (none)";
      return fmt::format("graph '{}' ({} nodes, {} captured)", g.graph->name, g.graph->nodes.size(),
                         g.captures);
    }
  };
  return std::visit(Visitor{}, a);
}

// ---- Graph -------------------------------------------------------------------------------

namespace {
std::atomic<const ConstantEvaluator*> registered_evaluator{nullptr};
}  // namespace

const ConstantEvaluator* default_evaluator() { return registered_evaluator.load(); }
void set_default_evaluator(const ConstantEvaluator* evaluator) { registered_evaluator = evaluator; }

std::string Graph::unique_name(const std::string& base) const {
  std::set<std::string> used;
  for (const auto& i : inputs) used.insert(i.name);
  for (const auto& [k, v] : weights) used.insert(k);
  for (const auto& n : nodes) {
    used.insert(n.name);
    for (const auto& o : n.outputs) used.insert(o);
  }
  if (!used.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string c = fmt::format("{}_{}", base, i);
    if (!used.count(c)) return c;
  }
}

Node& Graph::add_node(Node n) {
  if (n.name.empty()) n.name = unique_name(n.op);
  if (n.outputs.empty()) n.outputs.push_back(n.name);
  nodes.push_back(std::move(n));
  return nodes.back();
}

std::optional<std::size_t> Graph::producer(const std::string& value) const {
  for (std::size_t i = 0; i < nodes.size(); ++i)
    for (const auto& o : nodes[i].outputs)
      if (o == value) return i;
  return std::nullopt;
}

const TensorType& Graph::type_of(const std::string& value) const {
  auto it = types_.find(value);
  if (it == types_.end())
    throw GraphError(fmt::format("graph '{}' has no value named '{}'", name, value));
  return it->second;
}

void Graph::verify() const {
  const auto& reg = OpRegistry::instance();
  std::set<std::string> defined;
  auto define = [&](const std::string& v, const std::string& by) {
    if (!defined.insert(v).second)
      throw GraphError(fmt::format("{}value '{}' is defined twice", by, v));
  };
  for (const auto& i : inputs) define(i.name, "[input] ");
  for (const auto& [k, v] : weights) define(k, "[weight] ");
  std::set<std::string> node_names;
  for (const auto& n : nodes) {
    if (!node_names.insert(n.name).second)
      throw GraphError(fmt::format("{}node name is used twice", n.where()));
    const OpSchema* s = reg.find(n.op);
    if (!s && plugin::is_plugin_op(n.op)) plugin::missing(n);
    if (!s) throw UnsupportedError(fmt::format("{}unknown op '{}'", n.where(), n.op));
    const int nin = static_cast<int>(n.input_count());
    if (nin < s->min_inputs || (s->max_inputs >= 0 && nin > s->max_inputs))
      throw GraphError(fmt::format(
          "{}expected {} to {} inputs, got {}", n.where(), s->min_inputs,
          s->max_inputs < 0 ? std::string("any number of") : std::to_string(s->max_inputs), nin));
    const int nout = static_cast<int>(n.outputs.size());
    if (nout < s->min_outputs || nout > s->max_outputs)
      throw GraphError(fmt::format("{}expected {} to {} outputs, got {}", n.where(), s->min_outputs,
                                   s->max_outputs, nout));
    for (const auto& in : n.inputs)
      if (!in.empty() && !defined.count(in))
        throw GraphError(
            fmt::format("{}input '{}' is not defined before this node (a missing "
                        "value, or a cycle)",
                        n.where(), in));
    for (const auto& o : n.outputs)
      if (!o.empty()) define(o, n.where());
  }
  for (const auto& o : outputs)
    if (!defined.count(o))
      throw GraphError(fmt::format("graph output '{}' is not produced by any node", o));
}

const Tensor* Graph::known_value(const std::string& name) const {
  if (auto w = weights.find(name); w != weights.end()) return &w->second;
  if (auto k = known_.find(name); k != known_.end()) return &k->second;
  return nullptr;
}

namespace {
/// Shape and Size need only the dims of their input: a view without data stands in for it.
bool needs_only_dims(const Node& n) { return n.op == "Shape" || n.op == "Size"; }
}  // namespace

void Graph::infer(const ConstantEvaluator* evaluator) {
  verify();
  types_.clear();
  known_.clear();
  for (const auto& i : inputs) types_[i.name] = i.type;
  for (const auto& [k, w] : weights) types_[k] = TensorType{w.dtype(), w.shape()};
  const auto& reg = OpRegistry::instance();
  std::map<std::string, const Node*> shapes;  // outputs of Shape nodes
  for (const auto& n : nodes) {
    std::vector<const TensorType*> in;
    std::vector<const Tensor*> consts;
    for (const auto& name : n.inputs) {
      in.push_back(name.empty() ? nullptr : &types_.at(name));
      consts.push_back(name.empty() ? nullptr : known_value(name));
    }
    const OpSchema& schema = *reg.find(n.op);
    if (!schema.takes_any_value)
      for (std::size_t i = 0; i < in.size(); ++i)
        if (in[i] && !in[i]->is_tensor())
          throw GraphError(fmt::format("{}input {} ('{}') is {}: this op takes tensors", n.where(),
                                       i, n.inputs[i], in[i]->to_string()));
    InferContext ctx(n, in, consts, evaluator);
    std::vector<TensorType> out;
    try {
      out = schema.infer(ctx);
    } catch (const ShapeError& e) {
      const std::string msg = e.what();
      if (msg.rfind(n.where(), 0) == 0) throw;
      throw ShapeError(n.where() + msg);
    } catch (const GraphError&) {
      throw;
    } catch (const UnsupportedError&) {
      throw;
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (msg.rfind(n.where(), 0) == 0) throw;
      throw GraphError(n.where() + msg);
    }
    for (std::size_t i = 0; i < n.outputs.size(); ++i)
      if (!n.outputs[i].empty() && i < out.size()) types_[n.outputs[i]] = out[i];
    if (n.op == "Shape" && n.has_output(0)) shapes[n.outputs[0]] = &n;
    if (evaluator) evaluate_if_known(n, in, consts, *evaluator);
    if (n.op == "Gather" && n.has_output(0) && !known_.count(n.outputs[0]))
      fold_fixed_dims(n, shapes);  // needs no evaluator: the dims are in the types
  }
}

// Gather(Shape(x), indices) where the gathered dims of x are fixed, though others are not (the
// `if x.shape[1] == 1` of exported models, whose branches then fold): the value is known.
void Graph::fold_fixed_dims(const Node& gather, const std::map<std::string, const Node*>& shapes) {
  auto src = shapes.find(gather.inputs[0]);
  const Tensor* idx = gather.input_count() == 2 ? known_value(gather.inputs[1]) : nullptr;
  if (src == shapes.end() || !idx || gather.attr_int("axis", 0) != 0 || idx->numel() > 64) return;
  const Node& shape = *src->second;
  const Shape& x = types_.at(shape.inputs[0]).shape;
  const auto r = static_cast<std::int64_t>(x.rank());
  auto clamp = [&](std::int64_t v) { return std::clamp(v < 0 ? v + r : v, std::int64_t{0}, r); };
  const std::int64_t start = clamp(shape.attr_int("start", 0)),
                     end = clamp(shape.attr_int("end", r));
  const std::int64_t len = std::max<std::int64_t>(0, end - start);
  std::vector<std::int64_t> values;
  for (std::int64_t i : idx->to_int64s()) {
    if (i < -len || i >= len) return;  // running the graph reports it
    const Dim& d = x[static_cast<std::size_t>(start + (i < 0 ? i + len : i))];
    if (!d.is_fixed()) return;
    values.push_back(d.value());
  }
  Tensor t = Tensor::from<std::int64_t>(idx->dims(), values);
  types_[gather.outputs[0]] = TensorType{DType::i64, t.shape()};
  known_[gather.outputs[0]] = std::move(t);
}

void Graph::evaluate_if_known(const Node& n, const std::vector<const TensorType*>& in,
                              std::vector<const Tensor*> consts, const ConstantEvaluator& eval) {
  // Sequences and optionals are not folded: known values become weights, which are tensors.
  for (const auto* t : in)
    if (t && !t->is_tensor()) return;
  for (const auto& o : n.outputs)
    if (auto t = types_.find(o); t != types_.end() && !t->second.is_tensor()) return;
  std::int64_t elements = 0;
  std::vector<Tensor> stand_ins;
  stand_ins.reserve(consts.size());
  for (std::size_t i = 0; i < consts.size(); ++i) {
    if (!in[i]) continue;
    if (!consts[i]) {
      if (!needs_only_dims(n) || !in[i]->shape.is_static()) return;
      stand_ins.push_back(Tensor::view(in[i]->dtype, in[i]->shape.values(), nullptr, nullptr));
      consts[i] = &stand_ins.back();
      continue;
    }
    elements += consts[i]->numel();
  }
  if (elements > kFoldLimit) return;
  std::vector<Tensor> values;
  try {
    values = eval.evaluate(n, consts);
  } catch (const Error&) {
    return;  // not foldable here; running the graph reports the error
  }
  for (std::size_t i = 0; i < n.outputs.size() && i < values.size(); ++i) {
    if (n.outputs[i].empty() || !values[i].defined()) continue;
    // The computed value is the truth: its dims refine what the rule could say.
    types_[n.outputs[i]] = TensorType{values[i].dtype(), values[i].shape()};
    known_[n.outputs[i]] = std::move(values[i]);
  }
}

// ---- dump --------------------------------------------------------------------------------

std::string Graph::dump() const {
  std::string s = fmt::format("graph '{}'\n", name);
  // A body's dump follows its node's line, indented by two more spaces.
  auto nested = [](const std::string& body) {
    std::string out;
    std::size_t start = 0;
    while (start < body.size()) {
      const std::size_t end = body.find('\n', start);
      out += "    " + body.substr(start, end - start) + "\n";
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return out;
  };
  auto typed = [&](const std::string& v) {
    auto it = types_.find(v);
    return it == types_.end() ? v : v + ": " + it->second.to_string();
  };
  for (const auto& i : inputs) s += fmt::format("  input {}\n", typed(i.name));
  for (const auto& [k, w] : weights) s += fmt::format("  weight {}: {}\n", k, w.type_string());
  for (const auto& n : nodes) {
    std::vector<std::string> outs;
    for (const auto& o : n.outputs) outs.push_back(o.empty() ? "_" : typed(o));
    std::vector<std::string> ins;
    for (const auto& i : n.inputs) ins.push_back(i.empty() ? "_" : i);
    std::vector<std::string> attrs;
    for (const auto& [k, v] : n.attrs) attrs.push_back(k + "=" + attribute_to_string(v));
    s += fmt::format("  {} = {} '{}'({}){}\n", fmt::join(outs, ", "), n.op, n.name,
                     fmt::join(ins, ", "),
                     attrs.empty() ? "" : fmt::format(" {{{}}}", fmt::join(attrs, ", ")));
    for (const auto& [k, v] : n.attrs)
      if (const auto* body = std::get_if<Subgraph>(&v); body && body->graph)
        s += fmt::format("  {}:\n", k) + nested(body->graph->dump());
  }
  for (const auto& o : outputs) s += fmt::format("  output {}\n", typed(o));
  return s;
}

}  // namespace kiln
