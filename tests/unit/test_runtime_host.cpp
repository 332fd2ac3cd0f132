// The host side of the GPU runtime, which needs no GPU: which ops and targets it declares, the
// refusal of plans it cannot run, and the profiler's tables, rooflines and Chrome traces.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "../qdq_graphs.hpp"
#include "expect_error.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/specializer.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/plan/target.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/dynamic.hpp"
#include "kiln/runtime/engine.hpp"
#include "runtime/engine_impl.hpp"
#include "runtime/pointwise_table.hpp"
#include "runtime/steps_util.hpp"
#include "runtime/timing_cache.hpp"

using namespace kiln;
namespace rt = kiln::runtime;

namespace {

/// x -> Relu -> (op) -> y, built for `target`.
plan::Plan tiny_plan(const std::string& op, const plan::Target& target) {
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape::of({2, 3})}});
  Node relu;
  relu.name = "relu";
  relu.op = "Relu";
  relu.inputs = {"x"};
  relu.outputs = {"r"};
  g.nodes.push_back(relu);
  Node last;
  last.name = "last";
  last.op = op;
  last.inputs = {"r"};
  last.outputs = {"y"};
  if (op == "ArgMax") last.attrs["axis"] = std::int64_t{1};
  g.nodes.push_back(last);
  g.outputs = {"y"};
  g.infer(&reference::constant_evaluator());
  build::BuildOptions o;
  o.target = &target;
  o.evaluator = &reference::constant_evaluator();
  return build::build_plan(g, o);
}

}  // namespace

TEST_CASE("the GPU targets ask only for what the runtime runs") {
  for (bool fp16 : {false, true}) {
    const plan::Target& t = plan::cuda_target(fp16);
    CHECK(t.name == (fp16 ? "cuda-fp16" : "cuda"));
    for (const auto& op : t.pointwise_ops) CHECK_MESSAGE(rt::gpu_supports(op), op);
    for (const auto& [op, layouts] : t.layouts) CHECK_MESSAGE(rt::gpu_supports(op), op);
    CHECK(t.max_pointwise_chain == 8);
    CHECK_FALSE(t.in_place);  // cuDNN cannot write a convolution over the residual it adds
    CHECK_FALSE(t.strided_output);
    CHECK(t.layouts_of("Conv").front() == (fp16 ? plan::Layout::NHWC : plan::Layout::NCHW));
  }
  // cuda-bf16 is cuda-fp16's plan for an engine that stores BF16: same layouts and fusions.
  const plan::Target& bf16 = plan::target_by_name(rt::kCudaBf16Target);
  const plan::Target& fp16 = plan::cuda_target(true);
  CHECK(bf16.layouts == fp16.layouts);
  CHECK(bf16.fusions == fp16.fusions);
  CHECK(bf16.concat_in_place == fp16.concat_in_place);
  CHECK(rt::gpu_supports("Conv"));
  CHECK(rt::gpu_supports("LSTM"));
  CHECK(rt::gpu_supports(plan::kToLayoutOp));
  CHECK_FALSE(rt::gpu_supports("ArgMax"));
  CHECK(rt::gpu_supports("NonMaxSuppression"));
  CHECK_FALSE(rt::gpu_supports("NonZero"));
}

TEST_CASE("each GPU target names the precision its engines run, the others none") {
  CHECK(rt::target_precision("cuda") == rt::Precision::f32);
  CHECK(rt::target_precision("cuda-fp16") == rt::Precision::f16);
  CHECK(rt::target_precision("cuda-bf16") == rt::Precision::bf16);
  for (const char* other : {"cpu-reference", "plain", "CUDA-BF16", "cuda-int8", ""})
    CHECK_MESSAGE(!rt::target_precision(other), other);
  // Every name that has a precision is a target the builder knows.
  for (const char* name : {rt::kCudaTarget, rt::kCudaFp16Target, rt::kCudaBf16Target})
    CHECK_NOTHROW(plan::target_by_name(name));
  CHECK(std::string(rt::precision_name(rt::Precision::bf16)) == "BF16");
  CHECK(std::string(rt::element_name(rt::Precision::bf16)) == "bf16");
  CHECK(rt::element_size(rt::Precision::bf16) == 2);
}

TEST_CASE("gpu_ops() is what the steps files registered, and nothing else") {
  const auto& ops = rt::gpu_ops();
  CHECK(ops == rt::detail::step_registry().ops());
  CHECK(std::is_sorted(ops.begin(), ops.end()));
  CHECK(std::adjacent_find(ops.begin(), ops.end()) == ops.end());
  for (const auto& op : ops) CHECK_MESSAGE(rt::gpu_supports(op), op);
  // Every op of the pointwise table runs (registered from the table, not from a list).
  for (const auto& op : plan::elementwise_ops()) CHECK_MESSAGE(rt::gpu_supports(op), op);
  for (const char* op : {"Round", "Sign", "Tan", "Shrink", "Swish", "Mod"})
    CHECK_MESSAGE(rt::gpu_supports(op), op);
  // A second registration of one op is a programming error, said as such.
  rt::detail::StepRegistry r;
  rt::detail::register_rnn_steps(r);
  CHECK_THROWS_WITH_AS(rt::detail::register_rnn_steps(r), "two GPU steps registered for op 'LSTM'",
                       Error);
}

TEST_CASE("every row of the pointwise table maps a node to its kernel op") {
  namespace kk = kiln::kernels;
  std::set<std::string> onnx;
  std::vector<bool> mapped(static_cast<std::size_t>(kk::PointwiseOp::count_), false);
  auto node = [](const char* op, const char* when_attr, const char* when_value) {
    Node n;
    n.name = "n";
    n.op = op;
    if (*when_attr) {
      const std::string v = when_value;
      if (!v.empty() && std::isdigit(static_cast<unsigned char>(v[0])))
        n.attrs[when_attr] = std::int64_t{std::stoll(v)};
      else
        n.attrs[when_attr] = v;
    }
    return n;
  };
  for (const auto& row : rt::detail::unary_rows()) {
    CHECK(kk::is_unary(row.op));
    if (!*row.onnx) continue;
    onnx.insert(row.onnx);
    const auto* got = rt::detail::unary_row(node(row.onnx, row.when_attr, row.when_value));
    REQUIRE_MESSAGE(got != nullptr, row.onnx);
    CHECK_MESSAGE(got->op == row.op, row.onnx);
    CHECK(rt::detail::binary_row(node(row.onnx, "", "")) == nullptr);
    mapped[static_cast<std::size_t>(row.op)] = true;
  }
  for (const auto& row : rt::detail::binary_rows()) {
    CHECK_FALSE(kk::is_unary(row.op));
    for (const char* op : {row.onnx, row.variadic}) {
      if (!*op) continue;
      onnx.insert(op);
      const auto* got = rt::detail::binary_row(node(op, row.when_attr, row.when_value));
      REQUIRE_MESSAGE(got != nullptr, op);
      CHECK_MESSAGE(got->op == row.op, op);
      mapped[static_cast<std::size_t>(row.op)] = true;
    }
  }
  // Every kernel op runs some ONNX op, except identity (what an absent activation is).
  for (std::size_t k = 0; k < mapped.size(); ++k)
    CHECK_MESSAGE(mapped[k] == (static_cast<kk::PointwiseOp>(k) != kk::PointwiseOp::identity), k);
  // The targets' lists are the table's.
  CHECK(onnx == plan::elementwise_ops());
  for (const auto& op : plan::activation_ops()) CHECK_MESSAGE(onnx.count(op), op);
  // Gelu's kernel op follows its attribute; Mod runs only as C fmod.
  CHECK(rt::detail::unary_row(node("Gelu", "", ""))->op == kk::PointwiseOp::gelu);
  CHECK(rt::detail::unary_row(node("Gelu", "approximate", "none"))->op == kk::PointwiseOp::gelu);
  CHECK(rt::detail::unary_row(node("Gelu", "approximate", "tanh"))->op ==
        kk::PointwiseOp::gelu_tanh);
  CHECK(rt::detail::binary_row(node("Mod", "", "")) == nullptr);
  CHECK(rt::detail::binary_row(node("Mod", "fmod", "0")) == nullptr);
  CHECK(rt::detail::binary_row(node("Sum", "", ""))->op == kk::PointwiseOp::add);
  CHECK(rt::detail::unary_row(node("Add", "", "")) == nullptr);
}

TEST_CASE("a GPU plan with an op the runtime lacks is refused, naming the step and the op") {
  for (const char* target : {rt::kCudaTarget, rt::kCudaFp16Target, rt::kCudaBf16Target}) {
    CAPTURE(target);
    const plan::Plan ok = tiny_plan("Sigmoid", plan::target_by_name(target));
    CHECK_NOTHROW(rt::check_gpu_plan(ok));
    const plan::Plan bad = tiny_plan("ArgMax", plan::target_by_name(target));
    try {
      rt::check_gpu_plan(bad);
      FAIL("ArgMax was accepted");
    } catch (const UnsupportedError& e) {
      const std::string what = e.what();
      CHECK(what.find("'ArgMax'") != std::string::npos);
      CHECK(what.find("last") != std::string::npos);
    }
  }
}

TEST_CASE(
    "Attention and RotaryEmbedding have GPU steps; Hardmax has none: a GPU plan with it is refused "
    "by name") {
  CHECK(rt::gpu_supports("Attention"));
  CHECK(rt::gpu_supports("RotaryEmbedding"));
  CHECK(rt::gpu_supports("LayerNormalization"));
  CHECK(rt::gpu_supports("RMSNormalization"));
  CHECK_FALSE(rt::gpu_supports("Hardmax"));
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape::of({2, 3})}});
  Node n;
  n.name = "hm";
  n.op = "Hardmax";
  n.inputs = {"x"};
  n.outputs = {"y"};
  g.nodes.push_back(n);
  g.outputs = {"y"};
  g.infer(&reference::constant_evaluator());
  build::BuildOptions o;
  const plan::Target& target = plan::cuda_target(false);
  o.target = &target;
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  try {
    rt::check_gpu_plan(p);
    FAIL("Hardmax was accepted");
  } catch (const UnsupportedError& e) {
    CHECK(std::string(e.what()) ==
          "[Hardmax 'hm'] the GPU runtime has no kernel for op 'Hardmax' (kiln build "
          "--host-fallback runs such steps on the host with the CPU reference)");
  }
}

TEST_CASE("control flow and values of data-dependent size are GPU plans with host steps") {
  // NonZero's output and the Add that reads it run on the host; the Relu before them on the GPU.
  Graph g;
  g.inputs = {{"x", {DType::f32, Shape{2, 3}}}};
  g.weights["one"] = Tensor::scalar<std::int64_t>(1);
  g.nodes.push_back(Node{"Relu", "relu", {"x"}, {"r"}, {}});
  g.nodes.push_back(Node{"NonZero", "nz", {"r"}, {"idx"}, {}});
  g.nodes.push_back(Node{"Add", "add", {"idx", "one"}, {"y"}, {}});
  g.outputs = {"y"};
  build::BuildOptions o;
  o.target = &plan::cuda_target(false);
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  CHECK(p.memory.values.at("y").sized_at_run_time());
  CHECK_NOTHROW(rt::check_gpu_plan(p));
  std::vector<std::string> host;
  for (const auto& s : p.steps)
    if (rt::runs_on_host(p, s)) host.push_back(s.name);
  CHECK(host == std::vector<std::string>{"nz", "add"});
}

TEST_CASE(
    "NonMaxSuppression of fixed-size inputs is a GPU step that waits for the stream; of inputs "
    "sized at run time, a host step") {
  // sel = NMS(boxes, relu(scores)) sizes itself on the GPU; the Gather reading it runs on the
  // host. NMS of NonZero-picked boxes (a value sized at run time) runs on the host.
  Graph g;
  g.inputs = {{"boxes", {DType::f32, Shape{1, 10, 4}}}, {"scores", {DType::f32, Shape{1, 2, 10}}}};
  g.weights["max_out"] = Tensor::scalar<std::int64_t>(3);
  g.weights["two"] = Tensor::scalar<std::int64_t>(2);
  g.nodes.push_back(Node{"Relu", "relu", {"scores"}, {"s"}, {}});
  g.nodes.push_back(Node{"NonMaxSuppression", "nms", {"boxes", "s", "max_out"}, {"sel"}, {}});
  g.nodes.push_back(
      Node{"Gather", "ids", {"sel", "two"}, {"box_ids"}, {{"axis", std::int64_t{1}}}});
  g.nodes.push_back(
      Node{"Gather", "pick", {"boxes", "box_ids"}, {"picked"}, {{"axis", std::int64_t{1}}}});
  g.nodes.push_back(Node{"NonMaxSuppression", "nms2", {"picked", "s", "max_out"}, {"sel2"}, {}});
  g.outputs = {"sel", "sel2"};
  build::BuildOptions o;
  o.target = &plan::cuda_target(false);
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan p = build::build_plan(g, o);
  CHECK_NOTHROW(rt::check_gpu_plan(p));
  std::vector<std::string> host, waits;
  for (const auto& s : p.steps) {
    if (rt::runs_on_host(p, s)) host.push_back(s.name);
    if (rt::waits_for_stream(p, s)) waits.push_back(s.name);
    CHECK(rt::sizes_on_gpu(s) == (s.op == "NonMaxSuppression"));
  }
  CHECK(host == std::vector<std::string>{"ids", "pick", "nms2"});
  CHECK(waits == std::vector<std::string>{"nms", "ids", "pick", "nms2"});
  CHECK(rt::sized_at_run_time(p, "sel"));
  CHECK_FALSE(rt::sized_at_run_time(p, "s"));
}

namespace {
plan::Plan built_for(const Graph& g, const char* target) {
  build::BuildOptions o;
  o.target = &plan::target_by_name(target);
  o.evaluator = &reference::constant_evaluator();
  return build::build_plan(g, o);
}
}  // namespace

TEST_CASE(
    "Q/DQ networks build for every GPU target as fused INT8 steps the runtime runs; an input zero "
    "point other than 0 on an INT8 product is refused, naming the node") {
  using kiln::test::qdq_conv;
  struct Case {
    const char* what;
    Graph g;
    const char* anchor;  // the fused INT8 step's first part ("" for none)
  };
  const Case cases[] = {
      {"conv 3x3 + residual", qdq_conv(2, 16, 16, 8, 3, 1, true), "ConvInteger"},
      {"conv 3 -> 10 channels, stride 2", qdq_conv(1, 3, 10, 9, 3, 2, false), "ConvInteger"},
      {"matmul k 37", kiln::test::qdq_matmul(4, 37, 10), "MatMulInteger"},
      {"maxpool", kiln::test::qdq_maxpool(2, 4, 6), ""},
  };
  for (const char* target : {rt::kCudaTarget, rt::kCudaFp16Target, rt::kCudaBf16Target}) {
    for (const auto& c : cases) {
      CAPTURE(target);
      CAPTURE(c.what);
      const plan::Plan p = built_for(c.g, target);
      CHECK_NOTHROW(rt::check_gpu_plan(p));
      int int8_products = 0, int8_steps = 0;
      for (const Node& s : p.steps) {
        int8_steps += p.step_precision(s) == "int8";
        if (!*c.anchor || as_body(s).parts.at(0).op != c.anchor) continue;
        ++int8_products;
        // The 16-bit targets keep INT8 convolutions in NHWC (patch rows along C).
        if (std::string(c.anchor) == "ConvInteger")
          CHECK(s.attr_string(plan::kLayoutAttr, "NCHW") ==
                (std::string(target) == rt::kCudaTarget ? "NCHW" : "NHWC"));
      }
      CHECK(int8_products == (*c.anchor ? 1 : 0));
      CHECK(int8_steps >= 2);  // the input's Q and the INT8 product or pool
    }
    // onnxruntime's default: uint8 activations with zero point 128.
    const plan::Plan u8 = built_for(qdq_conv(1, 4, 8, 6, 3, 1, false, DType::u8), target);
    test::expect_error<UnsupportedError>(
        [&] { rt::check_gpu_plan(u8); },
        {"[kiln.Fused 'Conv", "a u8 input", "zero point", "symmetric"});
  }
}

TEST_CASE("FP8 Q/DQ networks build for every GPU target as fused FP8 steps the runtime runs") {
  using kiln::test::qdq_conv;
  const DType f8 = DType::f8e4m3fn;
  const std::pair<const char*, Graph> cases[] = {
      {"conv 3x3 + residual", qdq_conv(2, 16, 16, 8, 3, 1, true, f8)},
      {"conv 3 -> 10 channels, stride 2", qdq_conv(1, 3, 10, 9, 3, 2, false, f8)},
      {"matmul k 37", kiln::test::qdq_matmul(4, 37, 10, 2, f8)},
  };
  for (const char* target : {rt::kCudaTarget, rt::kCudaFp16Target, rt::kCudaBf16Target}) {
    for (const auto& [what, g] : cases) {
      CAPTURE(target);
      CAPTURE(what);
      const plan::Plan p = built_for(g, target);
      CHECK_NOTHROW(rt::check_gpu_plan(p));
      int products = 0;
      for (const Node& s : p.steps) {
        if (s.attr_string("pattern", "").rfind("DequantizeLinear+DequantizeLinear+", 0) != 0)
          continue;
        ++products;
        CHECK(p.step_precision(s) == "fp8");
      }
      CHECK(products == 1);
    }
  }
}

TEST_CASE("an engine refuses a plan built for another target, before touching a GPU") {
  const plan::Plan cpu = tiny_plan("Sigmoid", plan::cpu_reference_target());
  try {
    rt::Engine e(cpu);
    FAIL("a cpu-reference plan was accepted");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).find("cpu-reference") != std::string::npos);
  }
}

TEST_CASE("the roofline is the larger of compute time and memory time") {
  rt::Roofline r{1e12, 1e9};                      // 1 TFLOP/s, 1 GB/s
  CHECK(r.ms(1e9, 0) == doctest::Approx(1.0));    // 1 GFLOP: 1 ms
  CHECK(r.ms(0, 1e6) == doctest::Approx(1.0));    // 1 MB: 1 ms
  CHECK(r.ms(2e9, 1e6) == doctest::Approx(2.0));  // compute-bound
  CHECK(r.ms(1e9, 3e6) == doctest::Approx(3.0));  // memory-bound
  CHECK(rt::Roofline{}.ms(1e9, 1e6) == 0.0);      // no rates measured: no roofline
}

TEST_CASE("the trace profiler averages runs, sorts steps and writes a Chrome trace") {
  rt::TraceProfiler p;
  CHECK(p.table().find("no profiled runs") != std::string::npos);
  auto run = [](float a, float b) {
    return std::vector<rt::StepTime>{{0, "conv \"1\"", "Conv+Relu", "cudnn-graph", a, 2e9, 1e6},
                                     {1, "pool", "MaxPool", "pool", b, 1e6, 4e6}};
  };
  p.report(1, run(1.0f, 3.0f));
  p.report(1, run(3.0f, 5.0f));
  REQUIRE(p.runs().size() == 2);
  const std::string t = p.table();
  // Means 2 and 4 ms: the pool first, its share two thirds.
  CHECK(t.find("pool") < t.find("conv"));
  CHECK(t.find("66.7%") != std::string::npos);
  CHECK(t.find("total 6.0000 ms over 2 steps (mean of 2 runs)") != std::string::npos);
  CHECK(t.find("roofline") == std::string::npos);
  CHECK(p.table(1).find("conv") == std::string::npos);  // --top 1
  p.set_roofline(rt::Roofline{1e12, 1e9});
  const std::string r = p.table();
  CHECK(r.find("roofline ms") != std::string::npos);
  CHECK(r.find("2.0000") != std::string::npos);  // the conv's 2 GFLOP at 1 TFLOP/s
  const auto j = nlohmann::json::parse(p.chrome_trace_json());
  REQUIRE(j["traceEvents"].size() == 4);
  for (const auto& e : j["traceEvents"]) CHECK(e["ph"] == "X");
  CHECK(j["traceEvents"][0]["name"] == "conv \"1\"");  // quotes round-trip
  CHECK(j["traceEvents"][2]["dur"].get<double>() ==
        doctest::Approx(3000.0));  // 3 ms in microseconds
  CHECK(j["traceEvents"][3]["args"]["run"] == 1);
}

TEST_CASE("a tactic reads back as it was written, and only as the typed form writes it") {
  using T = rt::detail::Tactic;
  for (auto b : {T::Backend::cudnn, T::Backend::cudnn_graph, T::Backend::cublaslt,
                 T::Backend::cudnn_sdpa, T::Backend::kernel})
    for (int algo : {0, 1, 7, 31})
      for (std::size_t ws : {std::size_t{0}, std::size_t{1024}, std::size_t{3} << 30})
        for (float ms : {0.f, 0.01f, 0.0123456789f, 12.5f, 1e-7f}) {
          const T t{b, algo, ws, ms};
          const std::string text = rt::detail::to_text(t);
          CHECK_MESSAGE(rt::detail::parse_tactic(text) == t, text);
        }
  CHECK(rt::detail::to_text(T{T::Backend::cudnn_graph, 2, 0, 0.5f}) == "cudnn-graph 2 ws 0 ms 0.5");
  CHECK(rt::detail::to_text(T{T::Backend::cudnn_sdpa, 1, 64, 0.25f}) ==
        "cudnn-sdpa 1 ws 64 ms 0.25");
  CHECK_THROWS_WITH_AS(rt::detail::parse_tactic("sdpa 1 ws 0 ms 1"),
                       doctest::Contains("<cudnn|cudnn-graph|cublaslt|cudnn-sdpa|kernel>"),
                       FormatError);
  // Plan format 2's free text, and broken text, are refused, quoting the text.
  for (const char* bad :
       {"graph 2 ws 0 ms 0.01000", "algo 3 ws 1024 ms 0.5", "index 1 ws 1024 ms 0.00500",
        "gemm 0 ws 0 ms 1", "cudnn 2 ws 0", "cudnn x ws 0 ms 1", "cudnn 2 ws -1 ms 1",
        "cudnn 2 ws 0 ms 1 extra", "cublaslt 1 ws 0 ms -2", ""})
    CHECK_THROWS_WITH_AS(rt::detail::parse_tactic(bad),
                         doctest::Contains(fmt::format("'{}' is not a tactic", bad).c_str()),
                         FormatError);
}

TEST_CASE(
    "an engine refuses a plan whose tactics are not in the typed form, before touching a GPU") {
  plan::Plan p = tiny_plan("Sigmoid", plan::cuda_target(false));
  p.tactics["conv|n1 c3 32x32 k16|f32|nchw"] = "graph 2 ws 0 ms 0.01000";  // format 2's text
  CHECK_THROWS_WITH_AS(rt::Engine{p},
                       doctest::Contains("the tactic of 'conv|n1 c3 32x32 k16|f32|nchw'"),
                       FormatError);
  // A plan file of format 2 is refused as a whole, naming both versions.
  plan::Plan q = tiny_plan("Sigmoid", plan::cuda_target(false));
  std::string bytes = plan::serialize_plan(q);
  bytes[8] = 2;
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(bytes),
                       doctest::Contains("plan format version 2; this kiln reads version 5"),
                       FormatError);
}

TEST_CASE("an engine takes the plans of the three GPU targets and names them for any other") {
  const plan::Plan cpu = tiny_plan("Sigmoid", plan::cpu_reference_target());
  CHECK_THROWS_WITH_AS(
      rt::Engine{cpu},
      doctest::Contains("the GPU runs plans built for 'cuda', 'cuda-fp16' or 'cuda-bf16'"),
      FormatError);
  if (rt::device_count() == 0) {
    // A cuda-bf16 plan passes the target check and stops only at the missing GPU.
    CHECK_THROWS_WITH_AS(
        rt::Engine{tiny_plan("Sigmoid", plan::target_by_name(rt::kCudaBf16Target))},
        doctest::Contains("no GPU"), Error);
  }
}

TEST_CASE("the timing cache text reads back what was written, and nothing from elsewhere") {
  using rt::detail::TimingCacheText;
  const std::map<std::string, std::string> tactics = {{"conv a", "graph 3 ws 0 ms 0.1"},
                                                      {"matmul b", "index 1 ws 64 ms\t0.2"}};
  std::ostringstream out;
  rt::detail::write_timing_cache(out, "gpu A", tactics);

  std::istringstream same(out.str());
  const TimingCacheText c = rt::detail::parse_timing_cache(same, "gpu A");
  CHECK(c.status == TimingCacheText::Status::ok);
  CHECK(std::map<std::string, std::string>(c.tactics.begin(), c.tactics.end()) == tactics);

  std::istringstream other(out.str());
  const TimingCacheText o = rt::detail::parse_timing_cache(other, "gpu B");
  CHECK(o.status == TimingCacheText::Status::other_identity);
  CHECK(o.identity == "gpu A");
  CHECK(o.tactics.empty());

  for (const std::string bad : {"", "kiln-timing-cache 1\ngpu A\n", "kiln-timing-cache 3"}) {
    std::istringstream in(bad);
    const TimingCacheText t = rt::detail::parse_timing_cache(in, "gpu A");
    CHECK(t.status == TimingCacheText::Status::not_a_cache);
    CHECK(t.other_version == (bad.empty() ? "" : bad.substr(0, bad.find('\n'))));
  }
}

TEST_CASE(
    "a dynamic engine checks shapes and knows output dims on the host, before touching a GPU") {
  using kiln::test::expect_error;
  // x [N, 6] -> Relu -> Reshape to [N, 2, 3] through the Shape subgraph.
  Graph g;
  g.inputs.push_back({"x", TensorType{DType::f32, Shape{Dim::symbol("N"), 6}}});
  g.weights["zero"] = Tensor::from<std::int64_t>({}, {0});
  g.weights["axes0"] = Tensor::from<std::int64_t>({1}, {0});
  g.weights["rest"] = Tensor::from<std::int64_t>({2}, {2, 3});
  const auto add = [&](std::string op, std::vector<std::string> in, std::string out,
                       std::map<std::string, Attribute> attrs = {}) {
    Node n;
    n.op = std::move(op);
    n.name = out;
    n.inputs = std::move(in);
    n.outputs = {std::move(out)};
    n.attrs = std::move(attrs);
    g.nodes.push_back(std::move(n));
  };
  add("Relu", {"x"}, "r");
  add("Shape", {"r"}, "s");
  add("Gather", {"s", "zero"}, "n", {{"axis", std::int64_t{0}}});
  add("Unsqueeze", {"n", "axes0"}, "n1");
  add("Concat", {"n1", "rest"}, "target", {{"axis", std::int64_t{0}}});
  add("Reshape", {"r", "target"}, "y");
  g.outputs = {"y"};
  g.infer(&reference::constant_evaluator());
  const auto prof = plan::make_profile(g, {{"x", {1, 6}}}, {{"x", {4, 6}}}, {{"x", {16, 6}}});
  build::BuildOptions o;
  o.target = &plan::target_by_name(rt::kCudaTarget);
  o.evaluator = &reference::constant_evaluator();
  const plan::Plan dyn = build::build_dynamic_plan(g, o, {prof});
  build::Specializer sp(dyn, &reference::constant_evaluator());
  int asked = 0;
  rt::DynamicEngine engine(dyn, [&](const plan::ShapeMap& s, std::size_t p) {
    ++asked;
    return sp.plan_for(s, p);
  });
  auto ctx = engine.create_context();
  CHECK(ctx->input_shapes().at("x") == std::vector<std::int64_t>{4, 6});  // opt at first
  CHECK(ctx->output_dims("y") == std::vector<std::int64_t>{4, 2, 3});
  ctx->set_input_shape("x", {13, 6});
  CHECK(ctx->output_dims("y") == std::vector<std::int64_t>{13, 2, 3});
  CHECK(ctx->plan().inputs[0].type.shape == Shape::of({13, 6}));
  CHECK(ctx->output_dims("y") == std::vector<std::int64_t>{13, 2, 3});
  CHECK(asked == 2);  // each shape specialized once
  CHECK(engine.stats().engines_made == 0);
  expect_error<ShapeError>(
      [&] {
        ctx->set_input_shape("x", {17, 6});
      },
      {"input 'x' dim 0 ('N') is 17", "range 1..16"});
  expect_error<ShapeError>([&] { ctx->set_input_shape("x", {2, 7}); }, {"'x' dim 1 is fixed at 6"});
  expect_error<ShapeError>([&] { ctx->set_input_shape("x", {2}); }, {"rank 2"});
  expect_error<ShapeError>([&] { ctx->set_input_shape("z", {2, 6}); }, {"no input 'z'"});
  expect_error<ShapeError>([&] { ctx->set_profile(1); }, {"profile 1 does not exist"});
  expect_error<GraphError>([&] { ctx->output_dims("nope"); }, {"no output 'nope'"});
  CHECK(ctx->input_shapes().at("x") ==
        std::vector<std::int64_t>{13, 6});  // a refused shape changes nothing
  expect_error<FormatError>(
      [&] { rt::DynamicEngine(tiny_plan("Relu", plan::target_by_name(rt::kCudaTarget)), nullptr); },
      {"is static"});
  build::BuildOptions cpu = o;
  cpu.target = &plan::cpu_reference_target();
  expect_error<FormatError>(
      [&] { rt::DynamicEngine(build::build_dynamic_plan(g, cpu, {prof}), nullptr); },
      {"target 'cpu-reference'"});
}
