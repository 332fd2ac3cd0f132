// Whole plans on the GPU against the CPU reference: every ONNX test folder (node tests, converted
// and operator models, the simple and light networks) and any folder of exported models, built
// for the "cuda" (FP32), "cuda-fp16" and "cuda-bf16" targets, run through an Engine on fresh
// random inputs and compared by max|gpu - ref| / max|ref| (1e-4 FP32, 1e-2 FP16, 5e-2 BF16; the
// 16-bit runs against the reference on inputs rounded through the format). Also the engine's own
// contracts: two contexts on two streams, CUDA graphs, smaller batches, bindings, 10,000
// enqueues without a leak.
//
//   test_engine_gpu [--data DIR] [--suite NAME]... [--filter TEXT] [--models DIR]... [--quiet]
//                   [--enqueues N]
//
// Suites: engine (the contracts), node, converted (pytorch-converted, pytorch-operator, simple),
// light (the nine light networks, weights drawn at random by role). Exits 77 without a GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "gpu_check.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/passes.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

namespace fs = std::filesystem;
using namespace kiln;
using i64 = std::int64_t;

namespace {

struct Tally {
  int passed = 0, failed = 0, unsupported = 0;
  double worst = 0;
  std::string worst_name;
  std::map<std::string, int> unsupported_ops;
};

bool quiet = false;
int enqueues = 10000;  // --enqueues N: fewer under compute-sanitizer

/// Fresh random values, never zero: uniform in +-[0.1, 1] (ints and bools from the test data).
Tensor random_like(const TensorType& t, std::mt19937_64& rng) {
  Tensor out(t.dtype, t.shape.values());
  std::uniform_real_distribution<double> u(0.1, 1.0);
  std::bernoulli_distribution sign(0.5);
  for (i64 i = 0; i < out.numel(); ++i) out.set(i, sign(rng) ? u(rng) : -u(rng));
  return out;
}

/// max|a - b| / max|b| over float tensors; NaN where one has a NaN the other has not.
double rel_error(const Tensor& got, const Tensor& ref) {
  if (got.dims() != ref.dims()) return INFINITY;
  double num = 0, den = 0;
  for (i64 i = 0; i < ref.numel(); ++i) {
    const double g = got.get(i), r = ref.get(i);
    if (std::isnan(r) || std::isnan(g)) {
      if (std::isnan(r) != std::isnan(g)) return INFINITY;
      continue;
    }
    if (std::isinf(r) || std::isinf(g)) {
      if (g != r) return INFINITY;
      continue;
    }
    num = std::max(num, std::abs(g - r));
    den = std::max(den, std::abs(r));
  }
  return den > 0 ? num / den : num;
}

/// Weights of a light network drawn at random by role (the light models hold 0.02 everywhere).
void randomize_weights(Graph& g, std::mt19937_64& rng) {
  std::map<std::string, std::string> role;  // weight -> "filter", "bias", "scale", "var"
  for (const Node& n : g.nodes) {
    auto set = [&](std::size_t i, const char* r) {
      if (i < n.inputs.size() && g.weights.count(n.inputs[i])) role[n.inputs[i]] = r;
    };
    if (n.op == "Conv" || n.op == "Gemm" || n.op == "MatMul" || n.op == "ConvTranspose")
      set(1, "filter"), set(2, "bias");
    if (n.op == "BatchNormalization")
      set(1, "scale"), set(2, "bias"), set(3, "bias"), set(4, "var");
    if (n.op == "Add" || n.op == "Sub") set(1, "bias");
    if (n.op == "Mul" || n.op == "Div") set(1, "scale");
  }
  for (auto& [name, w] : g.weights) {
    if (w.dtype() != DType::f32 || !role.count(name)) continue;
    const std::string& r = role[name];
    i64 fan_in = 1;
    for (std::size_t d = 1; d < w.dims().size(); ++d) fan_in *= w.dims()[d];
    if (r == "filter") {
      std::normal_distribution<double> nd(
          0.0, std::sqrt(2.0 / static_cast<double>(std::max<i64>(1, fan_in))));
      for (i64 i = 0; i < w.numel(); ++i) w.set(i, nd(rng));
    } else {
      std::uniform_real_distribution<double> u(r == "bias" ? -0.1 : 0.5, r == "bias" ? 0.1 : 1.5);
      for (i64 i = 0; i < w.numel(); ++i) w.set(i, u(rng));
    }
  }
}

/// Sets every BatchNormalization's mean and variance to those its input has on `inputs`, so that
/// each one normalizes what it sees and activations stay O(1) through deep networks (random
/// weights alone let them grow past FP16's range). Two passes: upstream changes move the stats.
void calibrate_batchnorm(Graph& g, const reference::TensorMap& inputs) {
  for (int pass = 0; pass < 2; ++pass) {
    reference::Executor ex(g);
    const auto all = ex.run_all(inputs);
    for (const Node& n : g.nodes) {
      if (n.op != "BatchNormalization" || n.inputs.size() < 5) continue;
      auto x = all.find(n.inputs[0]);
      if (x == all.end() || !g.weights.count(n.inputs[3]) || !g.weights.count(n.inputs[4]))
        continue;
      const Tensor& t = x->second;
      if (t.dims().size() < 2) continue;
      const i64 nb = t.dims()[0], ch = t.dims()[1], inner = t.numel() / std::max<i64>(1, nb * ch);
      Tensor& mean = g.weights[n.inputs[3]];
      Tensor& var = g.weights[n.inputs[4]];
      if (mean.numel() != ch || var.numel() != ch) continue;
      for (i64 k = 0; k < ch; ++k) {
        double s = 0, s2 = 0;
        for (i64 b = 0; b < nb; ++b)
          for (i64 i = 0; i < inner; ++i) {
            const double v = t.get((b * ch + k) * inner + i);
            s += v, s2 += v * v;
          }
        const double cnt = static_cast<double>(nb * inner), m = s / cnt;
        mean.set(k, m);
        var.set(k, std::max(1e-3, s2 / cnt - m * m));
      }
    }
  }
}

struct Case {
  std::string name;
  Graph graph;                    // inputs: the float ones (others became weights)
  reference::TensorMap inputs;    // fresh random floats
  reference::TensorMap expected;  // the reference on `graph`
  /// The same for an FP16 run: the inputs rounded to FP16 as the engine's input conversion does,
  /// so that the comparison measures the GPU's FP16 computation, not the rounding of the inputs.
  /// The inputs rounded through each precision's format (gpu_test::kPlanPrecisions) and the
  /// reference's outputs for them; [0] is FP32's, i.e. `inputs` and `expected`.
  reference::TensorMap rounded[gpu_test::kNumPlanPrecisions],
      expected_of[gpu_test::kNumPlanPrecisions];
  double largest = 0;  // largest reference activation (light networks)
};

/// Loads a test folder (model.onnx + test_data_set_0) or a lone .onnx file.
Case load_case(const fs::path& p, bool light, std::mt19937_64& rng) {
  Case c;
  c.name = p.filename().string();
  const fs::path model = fs::is_directory(p) ? p / "model.onnx" : p;
  onnx::ImportOptions io;
  io.evaluator = &reference::constant_evaluator();
  c.graph = onnx::load_model(model.string(), io);
  // Inputs that are not floats (indices, shapes, axes) come from the test data and become
  // constants, as they are in a deployed model.
  std::map<std::string, Tensor> data;
  const fs::path set0 = p / "test_data_set_0";
  if (fs::is_directory(p) && fs::is_directory(set0)) {
    for (std::size_t i = 0; i < c.graph.inputs.size(); ++i) {
      const fs::path f = set0 / fmt::format("input_{}.pb", i);
      if (fs::exists(f)) data[c.graph.inputs[i].name] = onnx::load_tensor(f.string());
    }
  }
  std::vector<ValueInfo> keep;
  for (const auto& vi : c.graph.inputs) {
    if (vi.type.dtype == DType::f32 || vi.type.dtype == DType::f16) {
      keep.push_back(vi);
      continue;
    }
    auto it = data.find(vi.name);
    if (it == data.end())
      throw UnsupportedError(fmt::format("non-float input '{}' without test data", vi.name));
    c.graph.weights[vi.name] = it->second;
  }
  c.graph.inputs = keep;
  c.graph.infer(&reference::constant_evaluator());
  if (light) {
    build::PassContext ctx{nullptr, &reference::constant_evaluator()};
    build::fold_constants(c.graph, ctx);
    randomize_weights(c.graph, rng);
  }
  for (const auto& vi : c.graph.inputs) {
    if (!vi.type.shape.is_static())
      throw UnsupportedError(fmt::format("input '{}' has dynamic dims", vi.name));
    c.inputs[vi.name] = random_like(vi.type, rng);
  }
  if (light) {
    calibrate_batchnorm(c.graph, c.inputs);
    // How large the reference's activations get: FP16 holds magnitudes up to 65504.
    reference::Executor all(c.graph);
    double most = 0;
    std::string where;
    for (const auto& [name, t] : all.run_all(c.inputs)) {
      if (t.dtype() != DType::f32) continue;
      for (i64 i = 0; i < t.numel(); ++i)
        if (std::abs(t.get(i)) > most) most = std::abs(t.get(i)), where = name;
    }
    c.largest = most;
    if (!quiet)
      std::printf("%s: largest reference activation %.4g (in '%s')\n", c.name.c_str(), most,
                  where.c_str());
  }
  reference::Executor ex(c.graph);
  c.expected = ex.run(c.inputs);
  for (int k = 0; k < gpu_test::kNumPlanPrecisions; ++k) {
    const DType stored = gpu_test::kPlanPrecisions[k].stored;
    for (const auto& [name, t] : c.inputs)
      c.rounded[k][name] =
          t.dtype() == DType::f32 && stored != DType::f32 ? t.cast(stored).cast(DType::f32) : t;
    c.expected_of[k] = k == 0 ? c.expected : ex.run(c.rounded[k]);
  }
  return c;
}

std::string first_unsupported_op(const std::string& what) {
  const auto a = what.find("op '");
  if (a == std::string::npos) return what.substr(0, 60);
  const auto b = what.find('\'', a + 4);
  return what.substr(a + 4, b - a - 4);
}

/// Builds `c` for a target, runs it on the GPU, compares with the reference.
void check_case(const Case& c, int k, Tally& t) {
  const gpu_test::PlanPrecision& prec = gpu_test::kPlanPrecisions[k];
  const double tol = prec.tol;
  const std::string label = fmt::format("{} [{}]", c.name, prec.label);
  std::map<std::string, Tensor> got;
  try {
    build::BuildOptions o;
    o.target = &plan::target_by_name(prec.target);
    o.evaluator = &reference::constant_evaluator();
    const plan::Plan p = build::build_plan(c.graph, o);
    runtime::Engine engine(p);
    auto ctx = engine.create_context();
    std::map<std::string, Tensor> ins;
    for (const auto& vi : p.inputs) ins[vi.name] = c.rounded[k].at(vi.name);
    got = runtime::run_on_gpu(*ctx, ins);
  } catch (const ShapeError& e) {
    // A plan needs static shapes; outputs whose size depends on values are not planned.
    if (std::string(e.what()).find("not static") == std::string::npos) {
      ++t.failed;
      std::printf("FAIL %s: %s\n", label.c_str(), e.what());
      return;
    }
    ++t.unsupported;
    ++t.unsupported_ops["(plan) shapes known only at run time"];
    if (!quiet) std::printf("unsupported %s: %s\n", label.c_str(), e.what());
    return;
  } catch (const UnsupportedError& e) {
    ++t.unsupported;
    ++t.unsupported_ops[first_unsupported_op(e.what())];
    if (!quiet) std::printf("unsupported %s: %s\n", label.c_str(), e.what());
    return;
  } catch (const std::exception& e) {
    ++t.failed;
    std::printf("FAIL %s: %s\n", label.c_str(), e.what());
    return;
  }
  double worst = 0;
  bool over = false;
  std::string detail;
  for (const auto& [name, ref] : c.expected_of[k]) {
    auto it = got.find(name);
    if (it == got.end()) {
      worst = INFINITY;
      detail += fmt::format(" output '{}' missing;", name);
      break;
    }
    double e = 0;
    if (ref.dtype() == DType::f32 || ref.dtype() == DType::f16 || ref.dtype() == DType::bf16)
      e = rel_error(it->second, ref);
    else if (it->second.to_doubles() != ref.to_doubles())
      e = INFINITY;
    worst = std::max(worst, e);
    // An output the model itself computes in 16 bits (an f16 node test) is held to that format's
    // tolerance in every engine: the reference rounds each op's result, the GPU may not.
    const gpu_test::PlanPrecision* own = gpu_test::plan_precision_of(ref.dtype());
    const double out_tol = own ? std::max(tol, own->tol) : tol;
    if (e > out_tol) {
      over = true;
      // Say what differs: shapes, magnitudes, non-finite values.
      double mg = 0, mr = 0;
      i64 nf_g = 0, nf_r = 0;
      const bool same = it->second.dims() == ref.dims();
      for (i64 i = 0; same && i < ref.numel(); ++i) {
        const double g = it->second.get(i), r = ref.get(i);
        if (!std::isfinite(g))
          ++nf_g;
        else
          mg = std::max(mg, std::abs(g));
        if (!std::isfinite(r))
          ++nf_r;
        else
          mr = std::max(mr, std::abs(r));
      }
      detail += fmt::format(
          " '{}': gpu {} ref {}, max|gpu| {:.4g} max|ref| {:.4g}, non-finite gpu {} ref {};", name,
          it->second.type_string(), ref.type_string(), mg, mr, nf_g, nf_r);
    }
  }
  if (!over) {
    ++t.passed;
    if (worst > t.worst) t.worst = worst, t.worst_name = label;
    if (!quiet) std::printf("pass %s: %.3g\n", label.c_str(), worst);
  } else {
    ++t.failed;
    std::printf("FAIL %s: max|gpu-ref|/max|ref| = %.3g (tolerance %.0e)%s\n", label.c_str(), worst,
                tol, detail.c_str());
  }
}

void run_folder_suite(const std::string& suite, const std::vector<fs::path>& entries, bool light,
                      const std::string& filter,
                      std::map<std::string, Tally[gpu_test::kNumPlanPrecisions]>& results) {
  std::mt19937_64 rng(std::random_device{}());
  auto& tallies = results[suite];
  for (const auto& e : entries) {
    const std::string name = e.filename().string();
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    Case c;
    try {
      c = load_case(e, light, rng);
    } catch (const std::exception& ex) {
      // Models the CPU reference cannot run are not GPU questions (conformance covers them).
      for (auto& t : tallies)
        ++t.unsupported, ++t.unsupported_ops["(reference) " + first_unsupported_op(ex.what())];
      if (!quiet) std::printf("skip %s: %s\n", name.c_str(), ex.what());
      continue;
    }
    // Random weights can drive a deep network's activations past what a format holds; such a
    // case says nothing about the GPU and is counted apart, with the magnitude.
    for (int k = 0; k < gpu_test::kNumPlanPrecisions; ++k) {
      const gpu_test::PlanPrecision& prec = gpu_test::kPlanPrecisions[k];
      if (c.largest > prec.limit) {
        ++tallies[k].unsupported;
        ++tallies[k].unsupported_ops[fmt::format("(data) activations beyond {:g}", prec.limit)];
        std::printf(
            "skip %s [%s]: the reference's activations reach %.3g with these random weights\n",
            name.c_str(), prec.label, c.largest);
        continue;
      }
      check_case(c, k, tallies[k]);
    }
  }
}

std::vector<fs::path> listing(const fs::path& dir, bool onnx_files) {
  std::vector<fs::path> v;
  if (!fs::is_directory(dir)) return v;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (onnx_files ? e.path().extension() == ".onnx" : fs::exists(e.path() / "model.onnx"))
      v.push_back(e.path());
  }
  std::sort(v.begin(), v.end());
  return v;
}

// ---- the engine's own contracts ------------------------------------------------------------

/// A small residual conv net with a classifier, batch 8: contexts, streams, graphs, batches.
Graph contract_net() {
  Graph g;
  g.name = "contract";
  std::mt19937_64 rng(7);
  auto w = [&](std::vector<i64> dims, double s) {
    Tensor t(DType::f32, dims);
    std::uniform_real_distribution<double> u(-s, s);
    for (i64 i = 0; i < t.numel(); ++i) t.set(i, u(rng));
    return t;
  };
  g.inputs.push_back({"x", TensorType{DType::f32, Shape::of({8, 3, 16, 16})}});
  g.weights["w1"] = w({16, 3, 3, 3}, 0.3);
  g.weights["b1"] = w({16}, 0.1);
  g.weights["w2"] = w({16, 16, 3, 3}, 0.1);
  g.weights["b2"] = w({16}, 0.1);
  g.weights["fc"] = w({10, 16}, 0.3);
  g.weights["fcb"] = w({10}, 0.1);
  auto node = [&](std::string op, std::vector<std::string> in, std::vector<std::string> out,
                  decltype(Node::attrs) a = {}) {
    Node n;
    n.name = out[0] + "_node";
    n.op = std::move(op);
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    n.attrs = std::move(a);
    g.nodes.push_back(std::move(n));
  };
  node("Conv", {"x", "w1", "b1"}, {"c1"}, {{"pads", std::vector<i64>{1, 1, 1, 1}}});
  node("Relu", {"c1"}, {"r1"});
  node("Conv", {"r1", "w2", "b2"}, {"c2"}, {{"pads", std::vector<i64>{1, 1, 1, 1}}});
  node("Add", {"c2", "r1"}, {"a2"});
  node("Relu", {"a2"}, {"r2"});
  node("MaxPool", {"r2"}, {"p2"},
       {{"kernel_shape", std::vector<i64>{2, 2}}, {"strides", std::vector<i64>{2, 2}}});
  node("GlobalAveragePool", {"p2"}, {"g2"});
  node("Flatten", {"g2"}, {"f2"});
  node("Gemm", {"f2", "fc", "fcb"}, {"y0"}, {{"transB", std::int64_t{1}}});
  node("Softmax", {"y0"}, {"y"}, {{"axis", std::int64_t{1}}});
  g.outputs = {"y"};
  g.infer(&reference::constant_evaluator());
  return g;
}

int check_contracts(const gpu_test::PlanPrecision& prec) {
  int failed = 0;
  const double tol = prec.tol;
  auto report = [&](bool ok, const std::string& what) {
    std::printf("%s engine %s [%s]\n", ok ? "pass" : "FAIL", what.c_str(), prec.label);
    failed += ok ? 0 : 1;
  };
  Graph g = contract_net();
  build::BuildOptions o;
  o.target = &plan::target_by_name(prec.target);
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  runtime::EngineOptions eo;
  eo.batch_sizes = {3};
  runtime::Engine engine(p, eo);
  report(engine.batch_resizable(), "is batch-resizable");
  std::mt19937_64 rng(std::random_device{}());
  reference::Executor ex(g);
  auto make_inputs = [&](i64 batch) {
    reference::TensorMap m;
    m["x"] = random_like(TensorType{DType::f32, Shape::of({batch, 3, 16, 16})}, rng);
    return m;
  };
  auto reference_of = [&](const reference::TensorMap& in) {
    // The graph is built for batch 8; smaller batches are the first rows of a batch-8 input.
    reference::TensorMap full = make_inputs(8);
    const Tensor& x = in.at("x");
    std::memcpy(full["x"].raw(), x.raw(), x.nbytes());
    Tensor y = ex.run(full).at("y");
    Tensor out(DType::f32, {x.dims()[0], 10});
    std::memcpy(out.raw(), y.raw(), out.nbytes());
    return out;
  };

  // Two contexts on two streams agree with the reference and with each other.
  auto c1 = engine.create_context(), c2 = engine.create_context();
  const auto in1 = make_inputs(8), in2 = make_inputs(8);
  const auto o1 = runtime::run_on_gpu(*c1, in1), o2 = runtime::run_on_gpu(*c2, in2);
  report(rel_error(o1.at("y"), reference_of(in1)) <= tol &&
             rel_error(o2.at("y"), reference_of(in2)) <= tol,
         "two contexts on two streams");
  report(c1->device_bytes() == engine.arena_bytes() + engine.workspace_bytes(),
         fmt::format("context memory = arena {} + workspace {} bytes", engine.arena_bytes(),
                     engine.workspace_bytes()));

  // CUDA graphs: captured once, replayed with new data in the same buffers.
  c1->set_cuda_graph(true);
  const auto g1 = runtime::run_on_gpu(*c1, in1);
  report(rel_error(g1.at("y"), o1.at("y")) == 0.0, "CUDA graph replay equals the launched run");

  // A smaller batch (tuned when the engine was made) and one timed on demand.
  for (i64 b : {3, 5}) {
    c2->set_batch(b);
    const auto inb = make_inputs(b);
    const auto ob = runtime::run_on_gpu(*c2, inb);
    report(rel_error(ob.at("y"), reference_of(inb)) <= tol,
           fmt::format("batch {} of {}", b, engine.max_batch()));
  }
  c2->set_batch(8);

  // Bindings: a missing or unknown name is an error naming it.
  auto throws_naming = [&](const runtime::Bindings& b, const std::string& name) {
    try {
      c1->execute(b);
    } catch (const Error& e) {
      return std::string(e.what()).find(name) != std::string::npos;
    }
    return false;
  };
  runtime::DeviceBuffer xin(8 * 3 * 16 * 16 * 4), yout(8 * 10 * 4);
  report(throws_naming({{"x", xin.get()}}, "'y'"), "a missing output binding is named");
  report(throws_naming({{"x", xin.get()}, {"y", yout.get()}, {"z", yout.get()}}, "'z'"),
         "an unknown binding is named");

  // 10,000 enqueues (graph replays and launches) leak no device memory.
  {
    const runtime::Bindings b = {{"x", xin.get()}, {"y", yout.get()}};
    xin.fill_bytes(0x3c);
    c1->execute(b);
    KILN_CHECK(cudaDeviceSynchronize());
    std::size_t free0 = 0, free1 = 0, total = 0;
    KILN_CHECK(cudaMemGetInfo(&free0, &total));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < enqueues; ++i) {
      c1->set_cuda_graph(i % 2 == 0);
      c1->enqueue(b, c1->stream());
    }
    KILN_CHECK(cudaStreamSynchronize(c1->stream()));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    KILN_CHECK(cudaMemGetInfo(&free1, &total));
    report(free1 >= free0,
           fmt::format("{} enqueues leak nothing (free before {} MiB, after {} MiB, {:.2f} s)",
                       enqueues, free0 >> 20, free1 >> 20, s));
  }
  // A plan for the CPU reference is refused with a message naming the target.
  try {
    build::BuildOptions cpu;
    cpu.evaluator = &reference::constant_evaluator();
    runtime::Engine bad(build::build_plan(g, cpu));
    report(false, "a cpu-reference plan is refused");
  } catch (const FormatError& e) {
    report(std::string(e.what()).find("cpu-reference") != std::string::npos,
           "a cpu-reference plan is refused");
  }
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  gpu_test::skip_without_gpu();
  std::string data = KILN_TEST_DATA, filter;
  std::set<std::string> suites;
  std::vector<std::string> model_dirs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--data")
      data = next();
    else if (a == "--suite")
      suites.insert(next());
    else if (a == "--filter")
      filter = next();
    else if (a == "--models")
      model_dirs.push_back(next());
    else if (a == "--quiet")
      quiet = true;
    else if (a == "--enqueues")
      enqueues = std::stoi(next());
    else {
      std::fprintf(stderr,
                   "unknown option '%s' (expected --data, --suite, --filter, --models, --quiet, "
                   "--enqueues)\n",
                   a.c_str());
      return 2;
    }
  }
  auto want = [&](const char* s) { return suites.empty() || suites.count(s); };
  int failed = 0;
  if (want("engine"))
    for (const auto& prec : gpu_test::kPlanPrecisions) failed += check_contracts(prec);

  std::map<std::string, Tally[gpu_test::kNumPlanPrecisions]> results;
  const fs::path root(data);
  if (!fs::is_directory(root)) {
    std::printf("SKIP suites node, converted, light: ONNX test data not found at '%s'\n",
                data.c_str());
  } else {
    if (want("node"))
      run_folder_suite("node", listing(root / "node", false), false, filter, results);
    if (want("converted")) {
      std::vector<fs::path> v;
      for (const char* d : {"pytorch-converted", "pytorch-operator", "simple"})
        for (auto& p : listing(root / d, false)) v.push_back(p);
      run_folder_suite("converted", v, false, filter, results);
    }
    if (want("light"))
      run_folder_suite("light", listing(root / "light", true), true, filter, results);
  }
  for (const auto& d : model_dirs) {
    auto v = listing(d, false);
    for (auto& p : listing(d, true)) v.push_back(p);
    run_folder_suite("models:" + fs::path(d).filename().string(), v, false, filter, results);
  }
  std::printf("\n%-22s %-5s %7s %7s %12s  %s\n", "suite", "prec", "passed", "failed", "unsupported",
              "largest error (case)");
  for (const auto& [suite, t] : results) {
    for (int k = 0; k < gpu_test::kNumPlanPrecisions; ++k) {
      std::printf("%-22s %-5s %7d %7d %12d  %.3g (%s)\n", suite.c_str(),
                  gpu_test::kPlanPrecisions[k].label, t[k].passed, t[k].failed, t[k].unsupported,
                  t[k].worst, t[k].worst_name.c_str());
      failed += t[k].failed;
    }
    std::map<std::string, int> ops = t[0].unsupported_ops;
    if (!ops.empty()) {
      std::string line;
      for (const auto& [op, n] : ops) line += fmt::format("{} {}, ", op, n);
      std::printf("  unsupported in %s (fp32): %s\n", suite.c_str(), line.c_str());
    }
  }
  std::printf("%d failed\n", failed);
  return failed == 0 ? 0 : 1;
}
