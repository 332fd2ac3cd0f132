// The typed DSL's core: tensor expressions whose C++ type carries element type, layout and shape
// (each dim fixed, or dynamic = -1), the network under construction they point into, weight
// binding, layer options, and the one check helper every layer uses.
//
// A tensor's type never mentions the expression that made it, so diagnostics stay short:
//   kiln::dsl::Tensor<kiln::DType::f32, kiln::dsl::Layout::nchw, -1, 20, 24, 24>
// The DSL includes only the IR.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kiln/ir/error.hpp"
#include "kiln/ir/graph.hpp"
#include "kiln/ir/shape_rules.hpp"
#include "kiln/ir/weights.hpp"

namespace kiln::dsl {

using dim_t = std::int64_t;

// ---- element types and layouts ------------------------------------------------------------

inline constexpr DType f32 = DType::f32;
inline constexpr DType f64 = DType::f64;
inline constexpr DType f16 = DType::f16;
inline constexpr DType bf16 = DType::bf16;
inline constexpr DType i8 = DType::i8;
inline constexpr DType u8 = DType::u8;
inline constexpr DType i32 = DType::i32;
inline constexpr DType i64 = DType::i64;
inline constexpr DType boolean = DType::boolean;

/// What the dims of a tensor mean. `any` is a plain row-major tensor; it combines with every
/// layout. Convolutions and pooling take NCHW (NCW, NCDHW); recurrent layers take TNC.
enum class Layout : std::uint8_t { any, nc, ncw, nchw, ncdhw, nhwc, tnc };

inline constexpr Layout Any = Layout::any;
inline constexpr Layout NC = Layout::nc;
inline constexpr Layout NCW = Layout::ncw;
inline constexpr Layout NCHW = Layout::nchw;
inline constexpr Layout NCDHW = Layout::ncdhw;
inline constexpr Layout NHWC = Layout::nhwc;
inline constexpr Layout TNC = Layout::tnc;

constexpr std::string_view layout_name(Layout l) {
  switch (l) {
    case Layout::any: return "any";
    case Layout::nc: return "NC";
    case Layout::ncw: return "NCW";
    case Layout::nchw: return "NCHW";
    case Layout::ncdhw: return "NCDHW";
    case Layout::nhwc: return "NHWC";
    case Layout::tnc: return "TNC";
  }
  return "?";
}

/// Rank a layout implies (0 for `any`).
constexpr std::size_t layout_rank(Layout l) {
  switch (l) {
    case Layout::nc: return 2;
    case Layout::ncw:
    case Layout::tnc: return 3;
    case Layout::nchw:
    case Layout::nhwc: return 4;
    case Layout::ncdhw: return 5;
    default: return 0;
  }
}

}  // namespace kiln::dsl

// ---- rules on what only the DSL's types carry ---------------------------------------------
// The IR's rules, on numbers, are in kiln/ir/shape_rules.hpp. These compare element types,
// layouts and tensor types: the template arguments of each are what it compares, and its static
// check() the rule (detail::rule_on<same_element_type<A, B>::check>), so that a failed one names
// them: kiln::rules::same_element_type<kiln::DType::f32, kiln::DType::f16>::check.
namespace kiln::rules {

/// Operands of one element type.
template <DType A, DType B>
struct same_element_type {
  static constexpr void check() {
    if (A != B)
      rule_violation_fmt("element types {} and {} differ", static_cast<i64>(A),
                         static_cast<i64>(B));
  }
};

/// Operands of one layout, or of `any` (which combines with every layout).
template <dsl::Layout A, dsl::Layout B>
struct compatible_layouts {
  static constexpr void check() {
    if (A != B && A != dsl::Layout::any && B != dsl::Layout::any)
      rule_violation_fmt("layouts {} and {} differ", static_cast<i64>(A), static_cast<i64>(B));
  }
};

/// repeat<N>(x, block): the block returns the tensor type it takes.
template <class Takes, class Returns>
struct block_keeps_type {
  static constexpr void check() {
    if (!std::is_same_v<Takes, Returns>)
      rule_violation_fmt("the block changes the tensor type", 0, 0);
  }
};

}  // namespace kiln::rules

namespace kiln::dsl {

// ---- dims ---------------------------------------------------------------------------------

/// A dim the compiler knows: `fix<28>`.
template <dim_t N>
struct fix_t {
  static_assert(N >= 0, "fix<N>: a fixed dim is not negative");
  static constexpr dim_t value = N;
};
template <dim_t N>
inline constexpr fix_t<N> fix{};

/// A dim known when the network is built (`dyn(h)`), or not until it runs (`dyn`, e.g. batch).
/// `dyn("T")` names a dim known when it runs: inputs that name the same dim share it (the IR's
/// Dim::symbol("T")).
struct dyn_t {
  dim_t value = kDynamic;
  std::string_view symbol{};
  constexpr dyn_t operator()(dim_t v) const { return dyn_t{v}; }
  constexpr dyn_t operator()(std::string_view name) const { return dyn_t{kDynamic, name}; }
};
inline constexpr dyn_t dyn{};

template <class D>
struct static_dim_of;
template <dim_t N>
struct static_dim_of<fix_t<N>> {
  static constexpr dim_t value = N;
};
template <>
struct static_dim_of<dyn_t> {
  static constexpr dim_t value = kDynamic;
};

namespace detail {
template <class D>
constexpr std::string_view dim_symbol(const D& d) {
  if constexpr (std::is_same_v<D, dyn_t>)
    return d.symbol;
  else
    return {};
}
}  // namespace detail

/// A compile-time string (input names, `named<"conv2">`).
template <std::size_t N>
struct name_str {
  char s[N]{};
  constexpr name_str(const char (&a)[N]) {  // NOLINT: implicit on purpose
    for (std::size_t i = 0; i < N; ++i) s[i] = a[i];
  }
  constexpr std::string_view view() const { return {s, N - 1}; }
};

// ---- weights ------------------------------------------------------------------------------

/// Where a network takes its weights from: a WeightMap (PyTorch state_dict names by default)
/// plus BindOptions (prefix, rename map, strict). Converts implicitly from a WeightMap.
/// Several views of one map (a "backbone." and a "head." prefix, say) bind each with its own
/// options; the map's unused entries are those that no view took.
/// `w.scope("layer1.0")` names the layers of a sub-module: a layer "conv1" built with it is the
/// node "layer1.0.conv1" and asks for "layer1.0.conv1.weight" (then prefix and rename apply).
/// Scopes compose: `w.scope("layer1").scope("0") == w.scope("layer1.0")`.
/// `Weights::shapes_only()` binds zeros and records what the network asks for, so a caller can
/// list the weights a network needs (`Network::weight_specs()`) without having them.
class Weights {
 public:
  Weights(const WeightMap& map, BindOptions opts = {})  // NOLINT: implicit on purpose
      : map_(&map), opts_(std::move(opts)) {}
  static Weights shapes_only(BindOptions opts = {}) {
    static const WeightMap empty;
    Weights w(empty, std::move(opts));
    w.dry_run_ = true;
    return w;
  }
  const WeightMap& map() const { return *map_; }
  const BindOptions& options() const { return opts_; }
  bool dry_run() const { return dry_run_; }
  /// The name looked up in the map for a requested name (rename map first, else prefix).
  std::string resolve(const std::string& name) const { return opts_.resolve(name); }

  /// The same weights for the layers of sub-module `name` ("layer1.0").
  Weights scope(std::string_view name) const {
    Weights w = *this;
    w.scope_ += std::string(name) + ".";
    return w;
  }
  /// `name` inside this view's scope ("layer1.0.conv1"); `name` itself outside any scope.
  std::string scoped(const std::string& name) const { return scope_ + name; }

  bool operator==(const Weights&) const = default;

 private:
  const WeightMap* map_;
  BindOptions opts_;
  std::string scope_;
  bool dry_run_ = false;
};

/// One weight a network asked for: its name in the map, the layer, the shape and dtype.
struct WeightSpec {
  std::string name;
  std::string layer;
  std::vector<dim_t> dims;
  DType dtype = DType::f32;
};

// ---- the network under construction -------------------------------------------------------

namespace detail {

/// The IR graph being built, with its weight binders. Tensors share it; when an op combines
/// tensors of two such states (two `input()` calls), the second is merged into the first.
struct NetState {
  Graph graph;
  std::set<std::string> used_names;
  std::vector<WeightSpec> specs;
  struct Binding {
    const WeightMap* map;
    bool dry_run;
    std::unique_ptr<WeightBinder> binder;
    /// What was taken through it (and through which view), replayed into the binder of the same
    /// map when another state absorbs this one: one binder per map, so that an entry one part of
    /// a network took is not reported unused by the binder of another part.
    struct Take {
      BindOptions view;
      std::string layer, key;
      std::vector<dim_t> dims;
      DType dtype;
    };
    std::vector<Take> takes;
  };
  std::vector<Binding> bindings;
  std::shared_ptr<NetState> merged_into;
  /// 0 for a network; a body of a control-flow layer (if_else) has a scope of its own, and
  /// tensors of two scopes never combine (a body reads the network's tensors as captured inputs).
  std::uint64_t scope = 0;

  std::set<std::string> generated;  // names made by fresh_name
  std::map<std::string, std::string>
      renamed;  // old name -> new: named(), and after a merge names in merged_into

  std::string fresh_name(const std::string& base) {
    std::string c = base;
    for (int i = 1; !used_names.insert(c).second; ++i) c = base + "_" + std::to_string(i);
    generated.insert(c);
    return c;
  }
  /// A user-given node name, which must be new.
  std::string claim_name(const std::string& name, std::string_view kind) {
    if (!used_names.insert(name).second)
      throw GraphError("[" + std::string(kind) + " '" + name + "'] the name '" + name +
                       "' is used twice in this network");
    return name;
  }

  /// Takes weight `wname` of `layer` through view `w`, and records what was asked for. One
  /// binder per map, whatever the view: it resolves no names itself (each view resolves its own)
  /// and reports the map's entries that no view took.
  kiln::Tensor take(const Weights& w, const std::string& layer, const std::string& wname,
                    const std::vector<dim_t>& dims, DType dtype) {
    const std::string key = w.resolve(wname);
    specs.push_back({key, layer, dims, dtype});
    Binding& b = binding_for(w.map(), w.dry_run(), w.options());
    b.takes.push_back({w.options(), layer, key, dims, dtype});
    return b.binder->take(layer, key, dims, dtype);
  }

  /// The binding of `map` (one per map, whatever the view), bound for one more view.
  Binding& binding_for(const WeightMap& map, bool dry_run, const BindOptions& view) {
    for (auto& b : bindings)
      if (b.map == &map && b.dry_run == dry_run) {
        b.binder->add_view(view);
        return b;
      }
    BindOptions map_wide;  // no prefix or rename map: names come resolved
    map_wide.strict = view.strict;
    map_wide.ignore_suffixes = view.ignore_suffixes;
    bindings.push_back(
        {&map, dry_run, std::make_unique<WeightBinder>(map, std::move(map_wide)), {}});
    return bindings.back();
  }

  /// Merges `other` into this state: its inputs, weights and nodes. Generated names that clash
  /// are renamed (other.renamed records how); a clash of given names is an error.
  void absorb(NetState& other) {
    std::map<std::string, std::string> ren;  // other's generated names that clash
    for (const auto& n : other.used_names) {
      if (!used_names.count(n)) continue;
      if (!other.generated.count(n))
        throw GraphError("two parts of one network both use the name '" + n + "'");
      ren[n];
    }
    for (const auto& n : other.used_names)
      if (!ren.count(n)) {
        used_names.insert(n);
        if (other.generated.count(n)) generated.insert(n);
      }
    for (auto& [old, now] : ren) now = fresh_name(old);
    auto map = [&](std::string& v) {
      auto it = ren.find(v);
      if (it != ren.end()) v = it->second;
    };
    for (auto& i : other.graph.inputs) graph.inputs.push_back(std::move(i));
    for (auto& [k, v] : other.graph.weights) {
      std::string key = k;
      map(key);
      graph.weights.emplace(key, std::move(v));
    }
    for (auto& n : other.graph.nodes) {
      map(n.name);
      for (auto& v : n.inputs) map(v);
      for (auto& v : n.outputs) map(v);
      graph.nodes.push_back(std::move(n));
    }
    for (auto& s : other.specs) specs.push_back(std::move(s));
    adopt_bindings(other);
    other = NetState{};
    other.renamed = std::move(ren);
  }

  /// Takes over `other`'s weight bindings (what it took through each map is replayed into this
  /// state's binder of the same map).
  void adopt_bindings(NetState& other) {
    for (auto& b : other.bindings) {
      Binding* mine = nullptr;
      for (auto& m : bindings)
        if (m.map == b.map && m.dry_run == b.dry_run) mine = &m;
      if (!mine) {
        bindings.push_back(std::move(b));
        continue;
      }
      for (auto& t : b.takes) {  // into this map's binder (its tensors are in the graph already)
        mine->binder->add_view(t.view);
        mine->binder->take(t.layer, t.key, t.dims, t.dtype);
        mine->takes.push_back(std::move(t));
      }
    }
    other.bindings.clear();
  }
};

inline std::shared_ptr<NetState> root(std::shared_ptr<NetState> s) {
  while (s && s->merged_into) s = s->merged_into;
  return s;
}

/// A value's current name: renamed by each merge on the way to the root state.
inline std::string resolve(const std::shared_ptr<NetState>& start, std::string v) {
  for (const NetState* s = start.get(); s; s = s->merged_into.get()) {
    // Renames chain within one state (a tensor named twice); each name is renamed at most once.
    for (std::size_t hops = 0; hops <= s->renamed.size(); ++hops) {
      auto it = s->renamed.find(v);
      if (it == s->renamed.end() || it->second == v) break;
      v = it->second;
    }
  }
  return v;
}

/// The one state two tensors share, merging if they were built apart.
inline std::shared_ptr<NetState> unify(std::shared_ptr<NetState> a, std::shared_ptr<NetState> b) {
  a = root(std::move(a));
  b = root(std::move(b));
  if (a == b) return a;
  if (a->scope != b->scope)
    throw GraphError(
        "a tensor of the network and a tensor of an if_else branch meet in one layer: a branch "
        "reads the network's tensors only as the captured inputs given to if_else");
  a->absorb(*b);
  b->merged_into = a;
  return a;
}

/// "[conv2d 'conv2'] "
inline std::string where(std::string_view kind, const std::string& name) {
  return "[" + std::string(kind) + " '" + name + "'] ";
}

/// Runs a shape rule at build time; a violation is rethrown naming the layer.
template <class F>
auto checked(std::string_view kind, const std::string& name, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const ShapeError& e) {
    throw ShapeError(where(kind, name) + e.what());
  }
}

}  // namespace detail

// ---- tensors ------------------------------------------------------------------------------

/// A tensor expression: a value of the network under construction. Its type carries the element
/// type, the layout and the dims (a fixed value, or -1 for a dynamic dim); dims() holds the
/// values known when the network is built (-1 where not known until it runs).
template <DType D, Layout L, dim_t... Ds>
class Tensor {
 public:
  static constexpr DType dtype = D;
  static constexpr Layout layout = L;
  static constexpr std::size_t rank = sizeof...(Ds);
  static constexpr std::array<dim_t, sizeof...(Ds)> static_dims{Ds...};
  using dims_type = std::array<dim_t, sizeof...(Ds)>;
  static_assert(layout_rank(L) == 0 || layout_rank(L) == sizeof...(Ds),
                "the tensor's rank does not match its layout");

  Tensor(std::shared_ptr<detail::NetState> net, std::string value, dims_type dims)
      : net_(std::move(net)), value_(std::move(value)), dims_(dims) {
    for (std::size_t i = 0; i < rank; ++i)
      if (static_dims[i] >= 0) dims_[i] = static_dims[i];
  }

  /// The IR value name.
  std::string value() const { return detail::resolve(net_, value_); }
  /// Dims known when the network is built (-1: known when it runs).
  const dims_type& dims() const { return dims_; }
  dim_t dim(std::size_t i) const { return dims_[i]; }
  /// The network under construction.
  std::shared_ptr<detail::NetState> state() const { return detail::root(net_); }

  /// Renames the value (a network output's name). Tensors that hold the old name follow the
  /// rename, whether they are used before or after it (the order in which function arguments are
  /// evaluated is unspecified).
  Tensor named(const std::string& new_name) const {
    auto s = state();
    const std::string old = value();
    s->claim_name(new_name, "named");
    s->renamed[old] = new_name;
    for (auto& n : s->graph.nodes) {
      for (auto& o : n.outputs)
        if (o == old) o = new_name;
      for (auto& i : n.inputs)
        if (i == old) i = new_name;
    }
    for (auto& i : s->graph.inputs)
      if (i.name == old) i.name = new_name;
    return Tensor(s, new_name, dims_);
  }

 private:
  std::shared_ptr<detail::NetState> net_;
  std::string value_;
  dims_type dims_;
};

template <class T>
struct is_tensor : std::false_type {};
template <DType D, Layout L, dim_t... Ds>
struct is_tensor<Tensor<D, L, Ds...>> : std::true_type {};
template <class T>
concept tensor_expr = is_tensor<std::remove_cvref_t<T>>::value;

namespace detail {

/// The tensor type of element type D, layout L and the dims in the array A.
template <DType D, Layout L, auto A, class Seq = std::make_index_sequence<A.size()>>
struct tensor_of;
template <DType D, Layout L, auto A, std::size_t... I>
struct tensor_of<D, L, A, std::index_sequence<I...>> {
  using type = Tensor<D, L, A[I]...>;
};

/// The one compile-time check of every layer: evaluates Layer::rule on the input tensors' fixed
/// dims in a constant expression, so a violated rule is a compile error that shows the layer
/// (this struct's first argument) and the input types.
template <class Layer, class... Inputs>
struct shape_check {
  static constexpr auto out = Layer::rule(Inputs::static_dims...);
};

/// Whether Layer's rule holds on the inputs' fixed dims (a violation is no constant expression).
template <class Layer, class... Inputs>
concept rule_holds = requires {
  typename std::integral_constant<bool, (Layer::rule(Inputs::static_dims...), true)>;
};

/// Never defined: a failed rule check names it in its compile error, whose first line so shows
/// the layer (its kind and options), the rule and the numbers it failed on:
///   shape_rule_fails<conv2d_layer<50, kernel<5>, in_channels<20>>, kiln::rules::input_channels,
///   20, 50>
template <class Layer, auto Rule, dim_t... Numbers>
struct shape_rule_fails;

/// One rule on values the compiler knows: Rule(Numbers...), a rule of kiln/ir/shape_rules.hpp on
/// numbers (a layer's declared size and what reaches it), or the check() of a kiln::rules class
/// whose template arguments are what it compares (element types, layouts). `holds`: the call is a
/// constant expression (a violation calls the non-constexpr rule_violation).
template <auto Rule, dim_t... Numbers>
struct rule_on {
  static constexpr bool holds =
      requires { typename std::integral_constant<bool, (Rule(Numbers...), true)>; };
};

/// The first rule of Rs that does not hold, else void.
template <class... Rs>
struct first_failing {
  static constexpr std::size_t index = [] {
    constexpr bool holds[] = {Rs::holds..., true};
    std::size_t i = 0;
    while (i < sizeof...(Rs) && holds[i]) ++i;
    return i;
  }();
  using type = std::tuple_element_t<index, std::tuple<Rs..., void>>;
};

/// `ok` when no rule failed (Failing = void); else the compile error names shape_rule_fails, and
/// `ok` is false (a layer then compiles no further: its error is the only one).
template <class Layer, class Failing>
struct rules_report {
  static constexpr bool ok = true;
};
template <class Layer, auto Rule, dim_t... Numbers>
struct rules_report<Layer, rule_on<Rule, Numbers...>> {
  static_assert(sizeof(shape_rule_fails<Layer, Rule, Numbers...>) == 0);
  static constexpr bool ok = false;
};

template <class R>
struct rule_list {
  using type = std::tuple<R>;
};
template <class... Rs>
struct rule_list<std::tuple<Rs...>> {
  using type = std::tuple<Rs...>;
};
template <class Layer, class Rules>
struct rules_report_of;
template <class Layer, class... Rs>
struct rules_report_of<Layer, std::tuple<Rs...>> {
  using type = rules_report<Layer, typename first_failing<Rs...>::type>;
};

/// The rules of Layer on numbers the compiler knows (rule_on<...>, or std::tuples of them, in the
/// order the layer's rule checks them): `ok` is true when all hold; otherwise the compile error
/// names shape_rule_fails<Layer, Rule, Numbers...> of the first that fails, and only that one. A
/// layer checks its rules this way before its output type (checked_output_t), so that the error is
/// short and the only one; numbers a later rule takes are chosen to pass where an earlier one
/// fails.
template <class Layer, class... Rules>
using rules_check =
    typename rules_report_of<Layer, decltype(std::tuple_cat(
                                        std::declval<typename rule_list<Rules>::type>()...))>::type;

/// One rule: rules_check<Layer, rule_on<Rule, Numbers...>>.
template <class Layer, auto Rule, dim_t... Numbers>
using rule_check = rules_check<Layer, rule_on<Rule, Numbers...>>;

/// Fixed dim i of tensor type T (kDynamic past its rank, so that a rule after a failed rank check
/// takes a number that passes).
template <class T>
constexpr dim_t static_dim(std::size_t i) {
  return i < T::rank ? T::static_dims[i] : kDynamic;
}

/// Dim i of T right-aligned to rank R (numpy broadcasting): 1 where T has none.
template <class T, std::size_t R>
constexpr dim_t aligned_dim(std::size_t i) {
  return i < R - T::rank ? 1 : T::static_dims[i - (R - T::rank)];
}
template <class A, class B, class Seq>
struct broadcast_rules_of;
template <class A, class B, std::size_t... I>
struct broadcast_rules_of<A, B, std::index_sequence<I...>> {
  static constexpr std::size_t R = A::rank > B::rank ? A::rank : B::rank;
  using type =
      std::tuple<rule_on<rules::broadcast_dim, aligned_dim<A, R>(I), aligned_dim<B, R>(I)>...>;
};
/// rules::broadcast_dim on each pair of dims that tensor types A and B broadcast (right-aligned),
/// but the last Skip (a matrix product's matrix dims), for rules_check.
template <class A, class B, std::size_t Skip = 0>
using broadcast_rules = typename broadcast_rules_of<
    A, B, std::make_index_sequence<(A::rank > B::rank ? A::rank : B::rank) - Skip>>::type;

/// What a layer whose rule failed returns, so that its compile error is the only one: it takes
/// any arguments.
struct failed_layer {
  template <class... A>
  failed_layer(A&&...) {}  // NOLINT
};

template <bool Checked, class Layer, DType D, Layout L, class... Inputs>
struct output_of {
  using type = failed_layer;  // a failed rules_check has said why
};
template <class Layer, DType D, Layout L, class... Inputs>
struct output_of<true, Layer, D, L, Inputs...> {
  using type = typename tensor_of<D, L, shape_check<Layer, Inputs...>::out>::type;
};
template <class Layer, DType D, Layout L, class... Inputs>
  requires(!rule_holds<Layer, Inputs...>)
struct output_of<true, Layer, D, L, Inputs...> {
  // A rule no rules_check covers: its own words (its constexpr evaluation), and no follow-on error.
  static_assert(sizeof(shape_check<Layer, Inputs...>::out) > 0);
  using type = failed_layer;
};

/// Output type of a layer: its dims are the rule's result on the inputs' fixed dims; `Checked`:
/// the layer's rule_checks passed (a failed one has said why).
template <class Layer, DType D, Layout L, class... Inputs>
using output_t = typename output_of<true, Layer, D, L, Inputs...>::type;
template <bool Checked, class Layer, DType D, Layout L, class... Inputs>
using checked_output_t = typename output_of<Checked, Layer, D, L, Inputs...>::type;

/// Runs Layer::rule on the build-time dims of the inputs, naming the layer on violation.
template <class Layer, class... Inputs>
auto run_rule(const std::string& name, const Inputs&... in) {
  return checked(Layer::kind, name, [&] { return Layer::rule(in.dims()...); });
}

/// A node name: the given one (unique), or a fresh one from the layer kind.
inline std::string node_name(NetState& s, std::string_view kind, const std::string& given) {
  return given.empty() ? s.fresh_name(std::string(kind)) : s.claim_name(given, kind);
}
/// A layer with weights: its node name in the scope of `w` (Weights::scope).
inline std::string node_name(NetState& s, std::string_view kind, const std::string& given,
                             const Weights& w) {
  return given.empty() ? s.fresh_name(w.scoped(std::string(kind)))
                       : s.claim_name(w.scoped(given), kind);
}

/// Adds a node; returns its (single) output value name = node name.
inline std::string emit(NetState& s, std::string op, const std::string& node,
                        std::vector<std::string> inputs,
                        std::map<std::string, Attribute> attrs = {}, std::size_t outputs = 1) {
  Node n;
  n.op = std::move(op);
  n.name = node;
  n.inputs = std::move(inputs);
  n.attrs = std::move(attrs);
  n.outputs.push_back(node);
  for (std::size_t i = 1; i < outputs; ++i)
    n.outputs.push_back(s.fresh_name(node + ":" + std::to_string(i)));
  s.graph.nodes.push_back(std::move(n));
  return node;
}

/// Dims that must be known to size a weight; throws naming the layer otherwise.
inline void require_known(std::string_view kind, const std::string& name, std::string_view what,
                          dim_t v) {
  if (v < 0)
    throw ShapeError(where(kind, name) + std::string(what) +
                     " must be known when the network is built (it sizes a weight)");
}

/// Takes weight `wname` of shape `dims` for layer `layer`, records it, adds it to the graph
/// under its own name and returns that name.
inline std::string take_weight(NetState& s, const Weights& w, const std::string& layer,
                               const std::string& wname, std::vector<dim_t> dims,
                               DType dtype = DType::f32) {
  kiln::Tensor t = s.take(w, layer, wname, dims, dtype);
  std::string ir = s.fresh_name(wname);
  s.graph.weights.emplace(ir, std::move(t));
  return ir;
}

/// Adds a constant (axes, pads, shapes, clip bounds) as a graph weight.
inline std::string constant(NetState& s, const std::string& name, kiln::Tensor t) {
  std::string ir = s.fresh_name(name);
  s.graph.weights.emplace(ir, std::move(t));
  return ir;
}
inline std::string constant_ints(NetState& s, const std::string& name, std::vector<dim_t> v) {
  const dim_t n = static_cast<dim_t>(v.size());
  return constant(s, name, kiln::Tensor::from<std::int64_t>({n}, v));
}

// ---- layer options: `conv2d<64, kernel<3>, stride<2>, padding<1>, no_bias>` ----------------

struct kernel_tag {};
struct stride_tag {};
struct padding_tag {};
struct dilation_tag {};
struct group_tag {};
struct bias_tag {};
struct ceil_tag {};
struct in_size_tag {};
struct out_pad_tag {};
struct axes_tag {};
struct keep_tag {};
struct layers_tag {};
struct direction_tag {};
struct include_pad_tag {};
struct none_tag {};
struct name_tag {};

struct no_option {
  using tag = none_tag;
  static constexpr std::array<dim_t, 0> v{};
  static constexpr std::string_view value{};
};

/// The first option in Os whose tag is Tag, else Default.
template <class Tag, class Default, class... Os>
struct pick {
  using type = Default;
};
template <class Tag, class Default, class O, class... Os>
struct pick<Tag, Default, O, Os...> {
  using type = std::conditional_t<std::is_same_v<typename O::tag, Tag>, O,
                                  typename pick<Tag, Default, Os...>::type>;
};
template <class Tag, class... Os>
inline constexpr bool has_option = (std::is_same_v<typename Os::tag, Tag> || ...);

/// The node name: the one given at run time, else a compile-time layer_name<"...">, else fresh.
template <class... Os>
std::string given_name(const std::string& given) {
  return given.empty() ? std::string(pick<name_tag, no_option, Os...>::type::value) : given;
}

/// An option's values spread over S spatial axes: one value for all, or one per axis.
template <std::size_t S, std::size_t N>
constexpr std::array<dim_t, S> spread(const std::array<dim_t, N>& v, dim_t fallback) {
  std::array<dim_t, S> out{};
  for (std::size_t i = 0; i < S; ++i) out[i] = N == 0 ? fallback : (N == 1 ? v[0] : v[i]);
  return out;
}

inline std::vector<dim_t> to_vector(const auto& arr) { return {arr.begin(), arr.end()}; }

}  // namespace detail

template <dim_t... V>
struct kernel {
  using tag = detail::kernel_tag;
  static constexpr std::array<dim_t, sizeof...(V)> v{V...};
};
template <dim_t... V>
struct stride {
  using tag = detail::stride_tag;
  static constexpr std::array<dim_t, sizeof...(V)> v{V...};
};
/// Zero padding: one value for every side, one per spatial axis (both sides), or all begins
/// then all ends (ONNX order).
template <dim_t... V>
struct padding {
  using tag = detail::padding_tag;
  static constexpr std::array<dim_t, sizeof...(V)> v{V...};
};
template <dim_t... V>
struct dilation {
  using tag = detail::dilation_tag;
  static constexpr std::array<dim_t, sizeof...(V)> v{V...};
};
template <dim_t G>
struct group {
  using tag = detail::group_tag;
  static constexpr std::array<dim_t, 1> v{G};
};
template <dim_t... V>
struct output_padding {
  using tag = detail::out_pad_tag;
  static constexpr std::array<dim_t, sizeof...(V)> v{V...};
};
/// The input size a layer declares (checked against what reaches it): features of a
/// fully_connected layer, channels of a convolution.
template <dim_t K>
struct in_features {
  using tag = detail::in_size_tag;
  static constexpr std::array<dim_t, 1> v{K};
};
template <dim_t C>
struct in_channels {
  using tag = detail::in_size_tag;
  static constexpr std::array<dim_t, 1> v{C};
};
/// The layer's name as a compile-time string, so that compile errors show it too:
/// `conv2d<50, kernel<5>, layer_name<"conv2">>(x, w)`.
template <name_str N>
struct layer_name {
  using tag = detail::name_tag;
  static constexpr std::array<dim_t, 0> v{};
  static constexpr std::string_view value = N.view();
};
/// No bias weight (PyTorch's bias=False).
struct no_bias {
  using tag = detail::bias_tag;
  static constexpr std::array<dim_t, 0> v{};
};
/// Pooling output rounds up (PyTorch's ceil_mode=True).
struct ceil_mode {
  using tag = detail::ceil_tag;
  static constexpr std::array<dim_t, 0> v{};
};
/// Average pooling counts padded elements (PyTorch's default).
struct count_include_pad {
  using tag = detail::include_pad_tag;
  static constexpr std::array<dim_t, 0> v{};
};
template <dim_t... A>
struct axes {
  using tag = detail::axes_tag;
  static constexpr std::array<dim_t, sizeof...(A)> v{A...};
};
template <bool Keep>
struct keep_dims {
  using tag = detail::keep_tag;
  static constexpr bool value = Keep;
  static constexpr std::array<dim_t, 0> v{};
};
template <dim_t N>
struct layers {
  using tag = detail::layers_tag;
  static constexpr std::array<dim_t, 1> v{N};
};
struct bidirectional {
  using tag = detail::direction_tag;
  static constexpr std::array<dim_t, 0> v{};
};

// ---- inputs -------------------------------------------------------------------------------

/// A network input named Name: `input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>)`.
/// Each call starts a network; tensors of different inputs combine into one network.
/// A dim given as `dyn` becomes a symbolic IR dim ("N" for the batch of NC/NCW/NCHW/NCDHW/NHWC,
/// "<name>.d<i>" otherwise); `dyn("T")` the symbolic dim "T"; `dyn(v)` is fixed to v in the IR
/// but dynamic in the C++ type.
template <name_str Name, DType D, Layout L = Layout::any, class... Ds>
auto input(Ds... ds) {
  using T = Tensor<D, L, static_dim_of<Ds>::value...>;
  auto s = std::make_shared<detail::NetState>();
  const std::string name(Name.view());
  s->claim_name(name, "input");
  const std::array<dim_t, sizeof...(Ds)> dims{ds.value...};
  const std::array<std::string_view, sizeof...(Ds)> symbols{detail::dim_symbol(ds)...};
  std::vector<Dim> ir;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] >= 0) {
      ir.emplace_back(dims[i]);
    } else if (!symbols[i].empty()) {
      ir.push_back(Dim::symbol(std::string(symbols[i])));
    } else {
      const bool batch = i == (L == Layout::tnc ? 1u : 0u) && L != Layout::any;
      ir.push_back(Dim::symbol(batch ? "N" : name + ".d" + std::to_string(i)));
    }
  }
  s->graph.inputs.push_back({name, TensorType{D, Shape(std::move(ir))}});
  return T(s, name, dims);
}

}  // namespace kiln::dsl
