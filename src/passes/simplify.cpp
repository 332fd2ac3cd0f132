// Passes that remove work: verification, constant folding, inlining If nodes of known conditions,
// dead-layer elimination, identity elision.
#include <fmt/format.h>

#include "kiln/ir/control.hpp"
#include "kiln/ir/error.hpp"
#include "pass_util.hpp"

namespace kiln::build {

using namespace detail;

int verify_graph(Graph& g, const PassContext&) {
  g.verify();
  for (const auto& n : g.nodes)
    for (const auto& o : n.outputs)
      if (!o.empty() && !g.has_type(o))
        throw GraphError(
            fmt::format("{}output '{}' has no inferred type (infer shapes first)", n.where(), o));
  return 0;
}

namespace {
bool is_random(const std::string& op) {
  return op == "RandomNormal" || op == "RandomUniform" || op == "RandomNormalLike" ||
         op == "RandomUniformLike" || op == "Multinomial" || op == "Bernoulli";
}
}  // namespace

int fold_constants(Graph& g, const PassContext& ctx) {
  if (!ctx.evaluator)
    throw GraphError(
        "fold_constants needs a ConstantEvaluator (kiln::reference::constant_evaluator())");
  std::set<std::size_t> folded;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (is_random(n.op)) continue;
    std::vector<Tensor> values;
    bool known = !n.outputs.empty();
    for (const auto& o : n.outputs)
      if (!o.empty() && !g.known_value(o)) known = false;
    if (known) {
      for (const auto& o : n.outputs) values.push_back(o.empty() ? Tensor() : *g.known_value(o));
    } else {
      std::vector<const Tensor*> ins;
      bool all_const = true;
      for (const auto& in : n.inputs) {
        if (in.empty()) {
          ins.push_back(nullptr);
          continue;
        }
        const Tensor* w = weight(g, in);
        if (!w) {
          all_const = false;
          break;
        }
        ins.push_back(w);
      }
      if (!all_const) continue;
      try {
        values = ctx.evaluator->evaluate(n, ins);
      } catch (const Error&) {
        continue;  // left to run time, which reports the error where it happens
      }
    }
    bool ok = values.size() >= n.outputs.size();
    for (std::size_t o = 0; ok && o < n.outputs.size(); ++o)
      if (!n.outputs[o].empty() && !values[o].defined()) ok = false;
    if (!ok) continue;
    for (std::size_t o = 0; o < n.outputs.size(); ++o)
      if (!n.outputs[o].empty()) g.weights[n.outputs[o]] = values[o];
    folded.insert(i);
  }
  drop_nodes(g, folded);
  g.infer();
  return static_cast<int>(folded.size());
}

int inline_if(Graph& g, const PassContext&) {
  int inlined = 0;
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].op != "If") continue;
    const Tensor* cond = weight(g, g.nodes[i].inputs[0]);
    if (!cond || cond->numel() != 1) continue;
    const Node n = g.nodes[i];
    const Subgraph& branch = n.attr_graph(cond->get(0) != 0 ? "then_branch" : "else_branch");
    const Graph& b = *branch.graph;
    const std::size_t first = control::formal_inputs(n);
    std::map<std::string, std::string> rename;  // the branch's names -> the graph's
    for (std::size_t j = 0; j < branch.captures; ++j)
      rename[b.inputs[b.inputs.size() - branch.captures + j].name] = n.inputs[first + j];
    for (const auto& [name, w] : b.weights) {
      const std::string fresh = g.unique_name(n.name + "/" + name);
      g.weights[fresh] = w;
      rename[name] = fresh;
    }
    std::map<std::string, std::string> to_output;  // branch outputs its nodes make -> n's outputs
    for (std::size_t k = 0; k < b.outputs.size() && k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty()) to_output.emplace(b.outputs[k], n.outputs[k]);
    std::vector<Node> body;
    std::set<std::string> made;
    for (const Node& bn : b.nodes) {
      Node c = bn;
      c.name = g.unique_name(n.name + "/" + bn.name);
      for (auto& in : c.inputs) {
        if (in.empty()) continue;
        auto r = rename.find(in);
        if (r == rename.end())
          throw GraphError(fmt::format("{}{} reads '{}', which it neither defines nor captures",
                                       n.where(), bn.where(), in));
        in = r->second;
      }
      for (auto& o : c.outputs) {
        if (o.empty()) continue;
        auto out = to_output.find(o);
        std::string name = out != to_output.end() && !made.count(out->second)
                               ? out->second
                               : g.unique_name(n.name + "/" + o);
        made.insert(name);
        rename[o] = name;
        o = name;
      }
      body.push_back(std::move(c));
      g.nodes.push_back(body.back());  // reserves its names for unique_name
    }
    // A branch output that is an input, a weight, or an output given twice: an Identity.
    for (std::size_t k = 0; k < b.outputs.size() && k < n.outputs.size(); ++k) {
      if (n.outputs[k].empty() || rename.at(b.outputs[k]) == n.outputs[k]) continue;
      body.push_back(Node{"Identity",
                          g.unique_name(n.name + "/out" + std::to_string(k)),
                          {rename.at(b.outputs[k])},
                          {n.outputs[k]},
                          {}});
      g.nodes.push_back(body.back());
    }
    g.nodes.resize(g.nodes.size() - body.size());
    const auto at = g.nodes.begin() + static_cast<std::ptrdiff_t>(i);
    g.nodes.erase(at);
    g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(i), body.begin(), body.end());
    i += body.size();
    --i;
    ++inlined;
  }
  if (inlined) g.infer();
  return inlined;
}

int eliminate_dead(Graph& g, const PassContext&) {
  std::set<std::string> live(g.outputs.begin(), g.outputs.end());
  std::set<std::size_t> dead;
  for (std::size_t i = g.nodes.size(); i-- > 0;) {
    const Node& n = g.nodes[i];
    bool used = false;
    for (const auto& o : n.outputs) used |= !o.empty() && live.count(o);
    if (!used) {
      dead.insert(i);
      continue;
    }
    for (const auto& in : n.inputs)
      if (!in.empty()) live.insert(in);
  }
  drop_nodes(g, dead);
  int removed = static_cast<int>(dead.size());
  for (auto it = g.weights.begin(); it != g.weights.end();) {
    if (!live.count(it->first)) {
      it = g.weights.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  // Outputs nobody reads are dropped too (Dropout's mask, unused Split outputs stay: positional).
  for (auto& n : g.nodes)
    for (std::size_t o = 1; o < n.outputs.size(); ++o)
      if (n.op == "Dropout" && !live.count(n.outputs[o])) n.outputs[o].clear();
  g.infer();
  return removed;
}

namespace {
/// Does node `n` pass its input 0 through unchanged (given the inferred types)?
bool is_identity(const Graph& g, const std::map<std::string, TensorType>& types, const Node& n) {
  if (n.inputs.empty() || n.inputs[0].empty() || n.outputs.empty() || n.outputs[0].empty())
    return false;
  for (std::size_t o = 1; o < n.outputs.size(); ++o)
    if (!n.outputs[o].empty()) return false;  // Dropout's mask is read
  if (n.op == "Identity") return true;
  if (n.op == "Dropout") {
    if (n.has_input(2)) {  // training_mode must be a constant false
      const Tensor* t = weight(g, n.inputs[2]);
      if (!t || t->numel() != 1 || t->get(0) != 0.0) return false;
    }
    return true;
  }
  const TensorType& in = types.at(n.inputs[0]);
  const TensorType& out = types.at(n.outputs[0]);
  if (!in.shape.is_static() || in != out) return false;
  return n.op == "Cast" || n.op == "Reshape" || n.op == "Flatten" || n.op == "Squeeze" ||
         n.op == "Unsqueeze" || n.op == "Expand";
}
}  // namespace

int elide_identity(Graph& g, const PassContext&) {
  std::set<std::size_t> gone;
  const auto types = g.types();  // renamed values keep their types: x and y have one type
  for (std::size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (!is_identity(g, types, n)) continue;
    const std::string x = n.inputs[0], y = n.outputs[0];
    if (!is_graph_output(g, y)) {
      rename_uses(g, y, x);
    } else if (g.producer(x) && !is_graph_output(g, x) && !is_graph_input(g, x)) {
      rename_value(g, x, y);  // the graph output keeps its name; x's producer makes it
    } else {
      continue;
    }
    gone.insert(i);
  }
  // The elided nodes now read and write one name; drop them before verifying.
  drop_nodes(g, gone);
  g.infer();
  return static_cast<int>(gone.size());
}

}  // namespace kiln::build
