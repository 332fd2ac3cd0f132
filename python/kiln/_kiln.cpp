// The Python module (`import kiln`): nanobind bindings over the C++ API and over the functions the
// `kiln` command line calls (tools/cli_*.hpp), so that Python and the CLI build, inspect and
// calibrate with one implementation. kiln/__init__.py adds the keyword-argument front ends.
//
// Host tensors are numpy arrays, copied in and out. On the GPU, bindings are device pointers
// (kiln/__init__.py takes them from DLPack or __cuda_array_interface__); everything that needs a
// GPU checks for one first and raises kiln.Error("no GPU: ...") without one, so the module imports
// on any machine.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli_args.hpp"
#include "cli_build.hpp"
#include "cli_examples.hpp"
#include "cli_gpu.hpp"
#include "kiln/build/specializer.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/reference/plan_executor.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/dynamic.hpp"
#include "kiln/runtime/engine.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace kiln::python {
namespace {

// ---- tensors ------------------------------------------------------------------------------------

using HostArray = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;

DType dtype_of(const nb::dlpack::dtype& t, const std::string& name) {
  using C = nb::dlpack::dtype_code;
  const auto code = static_cast<C>(t.code);
  if (t.lanes == 1) {
    if (code == C::Float && t.bits == 32) return DType::f32;
    if (code == C::Float && t.bits == 64) return DType::f64;
    if (code == C::Float && t.bits == 16) return DType::f16;
    if (code == C::Bfloat && t.bits == 16) return DType::bf16;
    if (code == C::Int && t.bits == 8) return DType::i8;
    if (code == C::Int && t.bits == 16) return DType::i16;
    if (code == C::Int && t.bits == 32) return DType::i32;
    if (code == C::Int && t.bits == 64) return DType::i64;
    if (code == C::UInt && t.bits == 8) return DType::u8;
    if (code == C::UInt && t.bits == 16) return DType::u16;
    if (code == C::UInt && t.bits == 32) return DType::u32;
    if (code == C::UInt && t.bits == 64) return DType::u64;
    if (code == C::Bool && t.bits == 8) return DType::boolean;
  }
  throw Error(fmt::format(
      "input '{}': an array of an element type kiln has no dtype for (code {}, {} bits)", name,
      t.code, t.bits));
}

nb::dlpack::dtype dlpack_of(DType d) {
  using C = nb::dlpack::dtype_code;
  const auto make = [](C c, int bits) {
    return nb::dlpack::dtype{static_cast<std::uint8_t>(c), static_cast<std::uint8_t>(bits), 1};
  };
  switch (d) {
    case DType::f32: return make(C::Float, 32);
    case DType::f64: return make(C::Float, 64);
    case DType::f16: return make(C::Float, 16);
    case DType::bf16: return make(C::Bfloat, 16);
    case DType::i8: return make(C::Int, 8);
    case DType::i16: return make(C::Int, 16);
    case DType::i32: return make(C::Int, 32);
    case DType::i64: return make(C::Int, 64);
    case DType::u8: return make(C::UInt, 8);
    case DType::u16: return make(C::UInt, 16);
    case DType::u32: return make(C::UInt, 32);
    case DType::u64: return make(C::UInt, 64);
    case DType::boolean: return make(C::Bool, 8);
    default: break;  // float8 and the sub-byte types
  }
  throw UnsupportedError(std::string("no DLPack dtype for ") + std::string(dtype_name(d)) +
                         " in this binding; cast it to a wider type in the model first");
}

/// A kiln tensor with a copy of `a`'s elements, converted to `want` when given (as `kiln run`
/// converts an input file of another dtype).
Tensor to_tensor(const HostArray& a, const std::string& name, const std::optional<DType>& want) {
  std::vector<std::int64_t> dims;
  for (std::size_t i = 0; i < a.ndim(); ++i) dims.push_back(static_cast<std::int64_t>(a.shape(i)));
  Tensor t(dtype_of(a.dtype(), name), dims);
  if (t.nbytes() != 0) std::memcpy(t.raw(), a.data(), t.nbytes());
  if (want && *want != t.dtype()) t = t.cast(*want);
  return t;
}

/// A numpy array that owns (a reference to) `t`'s storage; bf16 comes out as float32 (numpy has
/// no bfloat16).
nb::object to_numpy(Tensor t) {
  if (t.is_none()) return nb::none();  // an empty optional
  if (t.is_sequence()) {               // a list of arrays
    nb::list l;
    for (const Tensor& e : t.elements()) l.append(to_numpy(e));
    return l;
  }
  if (t.dtype() == DType::bf16) t = t.cast(DType::f32);
  auto* owner = new Tensor(std::move(t));
  nb::capsule keep(owner, [](void* p) noexcept { delete static_cast<Tensor*>(p); });
  std::vector<std::size_t> shape(owner->dims().begin(), owner->dims().end());
  nb::ndarray<nb::numpy> arr(owner->raw(), shape.size(), shape.data(), keep, nullptr,
                             dlpack_of(owner->dtype()));
  return arr.cast();
}

reference::TensorMap to_tensors(const std::map<std::string, HostArray>& in,
                                const std::vector<ValueInfo>& inputs) {
  reference::TensorMap m;
  for (const auto& [name, a] : in) {
    std::optional<DType> want;
    for (const auto& vi : inputs)
      if (vi.name == name) {
        if (!vi.type.is_tensor())
          throw Error(
              fmt::format("input '{}' is {}: kiln's Python module passes arrays only "
                          "(run it with `kiln run --input {}=FILE.pb`)",
                          name, vi.type.to_string(), name));
        want = vi.type.dtype;
      }
    m[name] = to_tensor(a, name, want);  // an unknown name is the executor's error
  }
  return m;
}

nb::dict to_dict(reference::TensorMap out, const std::vector<ValueInfo>& order) {
  nb::dict d;
  for (const auto& vi : order) {
    auto it = out.find(vi.name);
    if (it != out.end()) d[vi.name.c_str()] = to_numpy(std::move(it->second));
  }
  return d;
}

// ---- descriptions
// ---------------------------------------------------------------------------------

/// One input or output: name, dtype name ("f32") and dims (an int, or the name of a dynamic dim,
/// or None for an unnamed one).
nb::object tensor_info(const ValueInfo& vi) {
  nb::list dims;
  for (const auto& d : vi.type.shape) {
    if (d.is_fixed())
      dims.append(d.value());
    else if (d.is_symbolic())
      dims.append(nb::str(d.symbol_name().c_str()));
    else
      dims.append(nb::none());
  }
  nb::dict info;
  info["name"] = vi.name;
  info["dtype"] = std::string(dtype_name(vi.type.dtype));
  info["shape"] = nb::tuple(dims);
  if (!vi.type.is_tensor()) {  // a sequence (a list of arrays) or an optional (None or the value)
    info["kind"] = vi.type.is_optional()
                       ? (vi.type.is_sequence() ? "optional sequence" : "optional")
                       : "sequence";
    if (!vi.type.rank_known) info["shape"] = nb::none();
  }
  return info;
}

/// A graph's outputs as ValueInfos (a Graph names them; their types are inferred).
std::vector<ValueInfo> graph_outputs(const Graph& g) {
  std::vector<ValueInfo> v;
  for (const auto& name : g.outputs)
    v.push_back({name, g.has_type(name) ? g.type_of(name) : TensorType{}});
  return v;
}

std::string type_list(const std::vector<ValueInfo>& vs) {
  std::vector<std::string> v;
  for (const auto& vi : vs) v.push_back(vi.name + ": " + vi.type.to_string());
  return fmt::format("{}", fmt::join(v, ", "));
}

nb::list infos(const std::vector<ValueInfo>& vs) {
  nb::list l;
  for (const auto& v : vs) l.append(tensor_info(v));
  return l;
}

nb::list step_list(const plan::Plan& p) {
  nb::list steps;
  for (const auto& s : p.steps) {
    nb::dict d;
    d["name"] = s.name;
    d["op"] = is_fused(s) ? s.attr_string("pattern", s.op) : s.op;
    d["fused"] =
        is_fused(s) ? fused_absorbed(s) : std::vector<std::string>{};  // as Plan.dump() lists them
    d["layout"] = s.attr_string(plan::kLayoutAttr, "");
    d["inputs"] = s.inputs;
    d["outputs"] = s.outputs;
    steps.append(d);
  }
  return steps;
}

// ---- models and plans
// -------------------------------------------------------------------------------

/// An imported network (ONNX or a DSL example): the IR graph before building.
struct Model {
  Graph graph;
};

/// A built plan, with the report of its build when it was built here (not loaded).
struct KilnPlan {
  plan::Plan plan;
  std::string report;
  int layers_before = -1, layers_after = -1;
  std::unique_ptr<build::Specializer> specializer;  // dynamic plans: made on first run
};

/// Parses `argv` as `kiln build`'s options (add_build_options, the engine options, --check).
tools::Args build_args(const std::vector<std::string>& argv) {
  tools::Command c("build", "kiln.build()");
  add_build_options(c);
  add_engine_options(c);
  c.flag("--check", "run every pass's result on the CPU reference against the previous one");
  auto parsed = c.parse(argv);
  if (!parsed) throw Error("kiln.build(): --help is not an option here");
  if (!parsed->positional().empty())
    throw Error(fmt::format("kiln.build(): unexpected argument '{}'", parsed->positional()[0]));
  return *parsed;
}

std::unique_ptr<KilnPlan> build_model(const Model& m, const std::vector<std::string>& argv,
                                      bool verbose) {
  const tools::Args args = build_args(argv);
  auto out = std::make_unique<KilnPlan>();
  build::BuildReport report;
  out->plan = tools::build_graph(args, m.graph, verbose, &report);
  out->report = report.summary();
  out->layers_before = report.layers_before;
  out->layers_after = report.layers_after;
  return out;
}

std::string inspect_model(const Model& m, const std::vector<std::string>& argv) {
  const tools::Args args = build_args(argv);
  return tools::inspect_text(m.graph, tools::build_options(args, m.graph, 0));
}

nb::dict run_plan(KilnPlan& p, const std::map<std::string, HostArray>& inputs) {
  reference::TensorMap in = to_tensors(inputs, p.plan.inputs);
  reference::TensorMap out;
  if (!p.plan.is_dynamic()) {
    {
      nb::gil_scoped_release release;  // other Python threads run meanwhile
      reference::PlanExecutor exec(p.plan);
      out = exec.run(in);
    }
    return to_dict(std::move(out), p.plan.outputs);
  }
  // A dynamic plan runs specialized for the inputs' exact dims (as `kiln run --plan` does).
  if (!p.specializer)
    p.specializer =
        std::make_unique<build::Specializer>(p.plan, &reference::constant_evaluator(), 8);
  plan::ShapeMap shapes;
  for (const auto& [name, t] : in) shapes[name] = t.dims();
  const auto exact = p.specializer->plan_for(shapes, p.specializer->profile_for(shapes));
  {
    nb::gil_scoped_release release;
    reference::PlanExecutor exec(*exact);
    out = exec.run(in);
  }
  return to_dict(std::move(out), exact->outputs);
}

// ---- the GPU
// ----------------------------------------------------------------------------------------

void require_gpu(const char* what) {
  if (runtime::device_count() == 0)
    throw Error(fmt::format("no GPU: {} ({}); kiln runs plans on the CPU reference with Plan.run()",
                            what, runtime::no_device_reason()));
}

runtime::Bindings bindings_of(const std::map<std::string, std::uintptr_t>& ptrs) {
  runtime::Bindings b;
  for (const auto& [name, p] : ptrs) b[name] = reinterpret_cast<void*>(p);
  return b;
}

/// An engine of a static plan or of a dynamic one (DynamicEngine), made with the CLI's engine
/// options (--workspace, --timing-cache).
struct KilnEngine {
  std::shared_ptr<const plan::Plan> plan;
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<build::Specializer> specializer;
  std::unique_ptr<runtime::DynamicEngine> dynamic;
};

struct KilnContext {
  std::shared_ptr<KilnEngine> engine;  // keeps the engine alive
  std::unique_ptr<runtime::ExecutionContext> ctx;
  std::unique_ptr<runtime::DynamicContext> dctx;
  std::unique_ptr<runtime::TraceProfiler> profiler;
};

std::shared_ptr<KilnEngine> make_engine(const KilnPlan& p, const std::vector<std::string>& argv,
                                        bool tune_new_shapes) {
  require_gpu("kiln.Engine needs a CUDA device");
  const tools::Args args = build_args(argv);
  auto e = std::make_shared<KilnEngine>();
  e->plan = std::make_shared<const plan::Plan>(p.plan);
  const runtime::EngineOptions o = tools::engine_options(args);
  if (p.plan.is_dynamic()) {
    e->specializer =
        std::make_unique<build::Specializer>(p.plan, &reference::constant_evaluator(), 8);
    auto* sp = e->specializer.get();
    e->dynamic = std::make_unique<runtime::DynamicEngine>(
        p.plan,
        [sp](const plan::ShapeMap& s, std::size_t profile) { return sp->plan_for(s, profile); }, o,
        4, tune_new_shapes);
  } else {
    e->engine = std::make_unique<runtime::Engine>(p.plan, o);
  }
  return e;
}

runtime::ExecutionContext& static_context(KilnContext& c) {
  return c.dctx ? c.dctx->context() : *c.ctx;
}

/// (dtype name, dims) of input or output `name` at the context's batch (static plans) or input
/// shapes (dynamic plans). Throws naming the bindings when there is none of that name.
std::pair<std::string, std::vector<std::int64_t>> binding(KilnContext& c, const std::string& name) {
  const plan::Plan& p = c.dctx ? c.dctx->plan() : *c.engine->plan;
  std::vector<std::string> names;
  for (const auto* list : {&p.inputs, &p.outputs})
    for (const auto& vi : *list) {
      names.push_back(vi.name);
      if (vi.name != name) continue;
      std::vector<std::int64_t> d;
      for (const auto& x : vi.type.shape) d.push_back(x.value());
      if (!c.dctx && !d.empty()) d[0] = c.ctx->batch();
      return {std::string(dtype_name(vi.type.dtype)), d};
    }
  throw Error(fmt::format("'{}' is not an input or output of plan '{}' (its bindings: {})", name,
                          p.graph_name, fmt::join(names, ", ")));
}

}  // namespace
}  // namespace kiln::python

NB_MODULE(_kiln, m) {
  using namespace kiln;
  using namespace kiln::python;
  m.doc() =
      "kiln: build neural networks into fused plans and run them (C++ core; see kiln/__init__.py)";

  // kiln's errors, with the messages the C++ library gives. Subclasses are registered after the
  // base so that their translators are tried first.
  static nb::exception<Error> error(m, "Error", PyExc_RuntimeError);
  static nb::exception<ShapeError> shape_error(m, "ShapeError", error);
  static nb::exception<GraphError> graph_error(m, "GraphError", error);
  static nb::exception<FormatError> format_error(m, "FormatError", error);
  static nb::exception<UnsupportedError> unsupported_error(m, "UnsupportedError", error);
  static nb::exception<MemoryLimitError> memory_error(m, "MemoryLimitError", error);
  static nb::exception<WeightError> weight_error(m, "WeightError", error);

  m.attr("__version__") = plan::library_version();

  nb::class_<Model>(m, "Model",
                    "An imported network (ONNX or a DSL example): the IR graph before building.")
      .def("__repr__",
           [](const Model& md) {
             return fmt::format("<kiln.Model '{}': {} nodes, inputs {}, outputs {}>", md.graph.name,
                                md.graph.nodes.size(), type_list(md.graph.inputs),
                                type_list(graph_outputs(md.graph)));
           })
      .def_prop_ro(
          "name", [](const Model& md) { return md.graph.name; }, "The graph's name.")
      .def_prop_ro(
          "inputs", [](const Model& md) { return infos(md.graph.inputs); },
          "Inputs: dicts of name, dtype (\"f32\", ...) and shape (ints; a str or None for a "
          "dynamic dim).")
      .def_prop_ro(
          "outputs", [](const Model& md) { return infos(graph_outputs(md.graph)); },
          "Outputs, as inputs.")
      .def_prop_ro(
          "layers", [](const Model& md) { return md.graph.nodes.size(); },
          "Number of nodes of the graph.")
      .def(
          "dump", [](const Model& md) { return md.graph.dump(); },
          "The IR graph as text (`kiln inspect --graph`).")
      .def(
          "run",
          [](const Model& md, const std::map<std::string, HostArray>& inputs) {
            const reference::TensorMap in = to_tensors(inputs, md.graph.inputs);
            reference::TensorMap out;
            {
              nb::gil_scoped_release release;
              out = reference::Executor(md.graph).run(in);
            }
            return to_dict(std::move(out), graph_outputs(md.graph));
          },
          "inputs"_a,
          "Runs the unbuilt graph on the CPU reference: {name: ndarray} in, {name: ndarray} out.")
      .def("_build", &build_model, "argv"_a, "verbose"_a)
      .def("_inspect", &inspect_model, "argv"_a);

  m.def(
      "load_onnx",
      [](const std::filesystem::path& path) { return Model{tools::load_onnx(path.string())}; },
      "path"_a,
      "Imports an ONNX model (constants folded on the CPU reference), as `kiln build MODEL.onnx` "
      "does.");
  m.def(
      "example",
      [](const std::string& name, const std::filesystem::path& weights) {
        return Model{tools::example_graph(name, weights.string())};
      },
      "name"_a, "weights"_a = "",
      "An example network written in kiln's typed DSL (see examples()), with the weights of a WTS "
      "file, or\n"
      "random ones (seed 42) when `weights` is empty: `kiln build --example NAME [--weights "
      "FILE]`.");
  m.def("examples", &tools::example_names, "Names of the DSL example networks.");

  nb::class_<KilnPlan>(
      m, "Plan",
      "A built plan: fused steps, memory plan, weights (kiln.build(), kiln.load_plan()).")
      .def("__repr__",
           [](const KilnPlan& p) {
             return fmt::format(
                 "<kiln.Plan '{}' for {}{}: {} steps, arena {} bytes>", p.plan.graph_name,
                 p.plan.target,
                 p.plan.is_dynamic() ? fmt::format(", {} profiles", p.plan.profiles.size()) : "",
                 p.plan.steps.size(), p.plan.memory.arena_bytes);
           })
      .def_prop_ro(
          "target", [](const KilnPlan& p) { return p.plan.target; }, "The target it was built for.")
      .def_prop_ro(
          "inputs", [](const KilnPlan& p) { return infos(p.plan.inputs); }, "Input bindings.")
      .def_prop_ro(
          "outputs", [](const KilnPlan& p) { return infos(p.plan.outputs); }, "Output bindings.")
      .def_prop_ro(
          "is_dynamic", [](const KilnPlan& p) { return p.plan.is_dynamic(); },
          "Built with profiles: runs at any shape inside them.")
      .def_prop_ro(
          "profiles",
          [](const KilnPlan& p) {
            std::vector<std::string> v;
            for (const auto& pr : p.plan.profiles) v.push_back(pr.describe());
            return v;
          },
          "Each profile's min/opt/max dims, as text.")
      .def_prop_ro(
          "steps", [](const KilnPlan& p) { return step_list(p.plan); },
          "The steps in order: dicts of name, op (the pattern of a fused step, \"Conv+Add+Relu\"), "
          "fused (the layers a fused step absorbed), layout (\"NCHW\", \"NHWC\" or \"\"), inputs "
          "and outputs.")
      .def_prop_ro(
          "layers_before", [](const KilnPlan& p) { return p.layers_before; },
          "Layers before fusion (-1 for a loaded plan).")
      .def_prop_ro(
          "layers_after", [](const KilnPlan& p) { return p.layers_after; },
          "Layers after fusion: the steps (-1 for a loaded plan).")
      .def_prop_ro(
          "report", [](const KilnPlan& p) { return p.report; },
          "The build report `kiln build` prints: layer counts, passes, fused steps (empty for a "
          "loaded plan).")
      .def_prop_ro(
          "arena_bytes", [](const KilnPlan& p) { return p.plan.memory.arena_bytes; },
          "Bytes of the activation arena (liveness-planned).")
      .def_prop_ro(
          "naive_bytes", [](const KilnPlan& p) { return p.plan.memory.naive_bytes; },
          "Bytes of the activations, each in its own buffer.")
      .def_prop_ro("weights_hash", [](const KilnPlan& p) { return p.plan.weights_hash; })
      .def_prop_ro(
          "tactics", [](const KilnPlan& p) { return p.plan.tactics; },
          "GPU tactics recorded in the plan.")
      .def(
          "memory_report", [](const KilnPlan& p) { return p.plan.memory_report(); },
          "The memory plan as a table.")
      .def(
          "dump", [](const KilnPlan& p) { return p.plan.dump(); },
          "Steps, bindings and memory plan as text (`kiln inspect PLAN`).")
      .def(
          "save",
          [](const KilnPlan& p, const std::filesystem::path& path) {
            plan::save_plan(p.plan, path.string());
          },
          "path"_a, "Writes the plan file (versioned, checksummed).")
      .def("run", &run_plan, "inputs"_a,
           "Runs the plan on the CPU reference: {name: ndarray} in, {name: ndarray} out. Arrays of "
           "another\n"
           "dtype are converted to the input's; a dynamic plan is specialized for the inputs' "
           "dims.");

  m.def(
      "load_plan",
      [](const std::filesystem::path& path, const std::string& target) {
        auto p = std::make_unique<KilnPlan>();
        p->plan = plan::load_plan(path.string(), {.target = target});
        return p;
      },
      "path"_a, "target"_a = "",
      "Reads a plan file; raises kiln.FormatError when it is corrupt or was built for something "
      "else\n"
      "(a target other than `target`, when given).");

  // ---- GPU ----
  m.def("gpu_count", &runtime::device_count,
        "Number of usable CUDA devices (0 without a driver or device).");
  m.def("no_gpu_reason", &runtime::no_device_reason,
        "Why gpu_count() is 0, in words; \"\" when it is not.");

  nb::class_<KilnEngine>(m, "_Engine")
      .def(
          "__init__",
          [](KilnEngine* self, const KilnPlan& p, const std::vector<std::string>& argv,
             bool tune_new_shapes) {
            new (self) KilnEngine(std::move(*make_engine(p, argv, tune_new_shapes)));
          },
          "plan"_a, "argv"_a, "tune_new_shapes"_a = false)
      .def_prop_ro("is_dynamic", [](const KilnEngine& e) { return e.dynamic != nullptr; })
      .def("describe",
           [](const KilnEngine& e) {
             return e.engine ? e.engine->describe()
                             : std::string("dynamic engine: made per shape\n");
           })
      .def_prop_ro("max_batch",
                   [](const KilnEngine& e) { return e.engine ? e.engine->max_batch() : 0; })
      .def_prop_ro("weight_bytes",
                   [](const KilnEngine& e) { return e.engine ? e.engine->weight_bytes() : 0; })
      .def_prop_ro("arena_bytes",
                   [](const KilnEngine& e) { return e.engine ? e.engine->arena_bytes() : 0; })
      .def_prop_ro("tactics", [](const KilnEngine& e) {
        return e.engine ? e.engine->tactics() : std::map<std::string, std::string>{};
      });

  nb::class_<KilnContext>(m, "_Context")
      .def(
          "__init__",
          [](KilnContext* self, std::shared_ptr<KilnEngine> e) {
            new (self) KilnContext();
            self->engine = e;
            if (e->dynamic)
              self->dctx = e->dynamic->create_context();
            else
              self->ctx = e->engine->create_context();
          },
          "engine"_a)
      .def(
          "set_batch",
          [](KilnContext& c, std::int64_t b) {
            if (c.dctx) throw Error("set_batch: a dynamic plan's context takes set_input_shape()");
            c.ctx->set_batch(b);
          },
          "batch"_a)
      .def(
          "set_input_shape",
          [](KilnContext& c, const std::string& name, const std::vector<std::int64_t>& dims) {
            if (!c.dctx)
              throw Error(
                  "set_input_shape: a static plan's shapes are fixed (set_batch() changes dim 0)");
            c.dctx->set_input_shape(name, dims);
          },
          "name"_a, "dims"_a)
      .def(
          "set_profile",
          [](KilnContext& c, std::size_t p) {
            if (!c.dctx) throw Error("set_profile: a static plan has no profiles");
            c.dctx->set_profile(p);
          },
          "profile"_a)
      .def("binding", &binding, "name"_a,
           "The dtype name and dims an input or output binding has at the batch or shapes set.")
      .def(
          "set_cuda_graph",
          [](KilnContext& c, bool on) {
            if (c.dctx)
              c.dctx->set_cuda_graph(on);
            else
              c.ctx->set_cuda_graph(on);
          },
          "on"_a)
      .def("enable_profiler",
           [](KilnContext& c) {
             c.profiler = std::make_unique<runtime::TraceProfiler>();
             if (c.dctx)
               c.dctx->set_profiler(c.profiler.get());
             else
               c.ctx->set_profiler(c.profiler.get());
           })
      .def(
          "profile_table",
          [](KilnContext& c, std::size_t top) {
            if (!c.profiler) throw Error("profile_table: call enable_profiler() before the runs");
            return c.profiler->table(top);
          },
          "top"_a = 0)
      .def("profile_trace",
           [](KilnContext& c) {
             if (!c.profiler) throw Error("profile_trace: call enable_profiler() before the runs");
             return c.profiler->chrome_trace_json();
           })
      .def(
          "enqueue",
          [](KilnContext& c, const std::map<std::string, std::uintptr_t>& ptrs,
             std::uintptr_t stream) {
            const auto b = bindings_of(ptrs);
            const auto s = reinterpret_cast<runtime::Stream>(stream);
            nb::gil_scoped_release release;
            if (c.dctx)
              c.dctx->enqueue(b, s);
            else
              c.ctx->enqueue(b, s);
          },
          "bindings"_a, "stream"_a)
      .def(
          "execute",
          [](KilnContext& c, const std::map<std::string, std::uintptr_t>& ptrs) {
            const auto b = bindings_of(ptrs);
            nb::gil_scoped_release release;
            if (c.dctx)
              c.dctx->execute(b);
            else
              c.ctx->execute(b);
          },
          "bindings"_a)
      .def(
          "run",
          [](KilnContext& c, const std::map<std::string, HostArray>& inputs) {
            const auto& declared = c.dctx ? c.engine->dynamic->inputs() : c.engine->plan->inputs;
            reference::TensorMap in = to_tensors(inputs, declared);
            if (c.dctx)
              for (const auto& [name, t] : in) c.dctx->set_input_shape(name, t.dims());
            reference::TensorMap out;
            {
              nb::gil_scoped_release release;
              out = runtime::run_on_gpu(static_context(c), in);
            }
            const auto& outs = c.dctx ? c.dctx->plan().outputs : c.engine->plan->outputs;
            return to_dict(std::move(out), outs);
          },
          "inputs"_a);

  m.def(
      "_dlpack_info",
      [](nb::ndarray<nb::device::cuda> a) {
        std::vector<std::int64_t> shape, strides;
        for (std::size_t i = 0; i < a.ndim(); ++i) {
          shape.push_back(static_cast<std::int64_t>(a.shape(i)));
          strides.push_back(a.stride(i));
        }
        std::string kind = "?";
        try {
          kind = std::string(kiln::dtype_name(kiln::python::dtype_of(a.dtype(), "tensor")));
        } catch (const kiln::Error&) {}
        return nb::make_tuple(reinterpret_cast<std::uintptr_t>(a.data()), kind, shape, strides);
      },
      "tensor"_a,
      "(device pointer, kiln dtype name, shape, strides in elements) of a CUDA tensor passed "
      "through DLPack.");
}
