// Host steps on the GPU runtime (src/runtime/steps_host.cpp) against the CPU reference: an If
// between GPU steps (both branches, f32 and 16-bit plans), NonZero and what reads its
// output (values sized at run time, an output sized at run time through run_on_gpu and through
// enqueue() with an OutputAllocator), a context asked for CUDA graphs, which runs such plans
// as a graph per run of GPU steps between the waiting ones, and NonMaxSuppression's GPU step,
// which sizes its output on the host (its score threshold a value of the run, read each run); an
// If whose branch holds a sequence (kiln::ValueKind) inside its host step.
#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "gpu_check.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/plan/target.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/engine.hpp"

using namespace gpu_test;
using kiln::DType;
using kiln::Graph;
using kiln::Node;
using kiln::Shape;
using kiln::Subgraph;
using kiln::Tensor;

namespace {

std::shared_ptr<Graph> body(std::string name, std::vector<std::string> captured,
                            std::vector<Node> nodes, std::vector<std::string> outputs) {
  auto g = std::make_shared<Graph>();
  g->name = std::move(name);
  for (auto& c : captured) g->inputs.push_back({c, kiln::TensorType{}});
  g->nodes = std::move(nodes);
  g->outputs = std::move(outputs);
  return g;
}

/// y = 2 * (cond ? relu(x) + 1 : -relu(x)), x f32[4, 8]: Relu and Mul on the GPU, the If on the
/// host.
Graph if_graph() {
  Graph g;
  g.inputs = {{"cond", {DType::boolean, Shape{}}}, {"x", {DType::f32, Shape{4, 8}}}};
  g.weights["one"] = Tensor::scalar<float>(1.0f);
  g.weights["two"] = Tensor::scalar<float>(2.0f);
  g.nodes.push_back(Node{"Relu", "relu", {"x"}, {"r"}, {}});
  auto then_b = body("then", {"r", "one"}, {Node{"Add", "add", {"r", "one"}, {"t"}, {}}}, {"t"});
  auto else_b = body("else", {"r", "one"}, {Node{"Neg", "neg", {"r"}, {"e"}, {}}}, {"e"});
  g.nodes.push_back(
      Node{"If",
           "if",
           {"cond", "r", "one"},
           {"b"},
           {{"then_branch", Subgraph{then_b, 2}}, {"else_branch", Subgraph{else_b, 2}}}});
  g.nodes.push_back(Node{"Mul", "mul", {"b", "two"}, {"y"}, {}});
  g.outputs = {"y"};
  return g;
}

/// if_graph() whose then branch passes relu(x) through a sequence (SplitToSequence into rows,
/// ConcatFromSequence back): the sequence lives inside the If's host step.
Graph if_sequence_graph() {
  Graph g = if_graph();
  auto then_b = body("then_seq", {"r", "one"},
                     {Node{"SplitToSequence", "rows", {"r"}, {"rows"}, {}},
                      Node{"ConcatFromSequence", "cat", {"rows"}, {"back"}, {{"axis", i64{0}}}},
                      Node{"Add", "add", {"back", "one"}, {"t"}, {}}},
                     {"t"});
  g.nodes[1].attrs["then_branch"] = Subgraph{then_b, 2};
  return g;
}

/// y = relu(x)[NonZero(relu(x))] * 3 as [K] (GatherND of the positive entries), K known when it
/// runs: Relu on the GPU, the rest on the host.
Graph nonzero_graph() {
  Graph g;
  g.inputs = {{"x", {DType::f32, Shape{3, 5}}}};
  g.weights["three"] = Tensor::scalar<float>(3.0f);
  g.nodes.push_back(Node{"Relu", "relu", {"x"}, {"r"}, {}});
  g.nodes.push_back(Node{"NonZero", "nz", {"r"}, {"idx"}, {}});
  g.nodes.push_back(Node{"Transpose", "t", {"idx"}, {"pairs"}, {}});
  g.nodes.push_back(Node{"GatherND", "gather", {"r", "pairs"}, {"v"}, {}});
  g.nodes.push_back(Node{"Mul", "mul", {"v", "three"}, {"y"}, {}});
  g.outputs = {"y"};
  return g;
}

/// sel = NonMaxSuppression(boxes, relu(logits), 20, 0.5, threshold) on the GPU (Relu: exact in
/// 16 bits too, and its zeros tie), then on the host picked = Gather(boxes, sel[:, 2], axis 1):
/// [1, K, 4].
Graph nms_graph() {
  Graph g;
  g.inputs = {{"boxes", {DType::f32, Shape{1, 300, 4}}},
              {"logits", {DType::f32, Shape{1, 3, 300}}},
              {"threshold", {DType::f32, Shape{1}}}};
  g.weights["max_out"] = Tensor(DType::i64, {1});
  g.weights["max_out"].data<i64>()[0] = 20;
  g.weights["iou"] = Tensor::scalar<float>(0.5f);
  g.weights["two"] = Tensor::scalar<i64>(2);
  g.nodes.push_back(Node{"Relu", "relu", {"logits"}, {"scores"}, {}});
  g.nodes.push_back(Node{"NonMaxSuppression",
                         "suppress",
                         {"boxes", "scores", "max_out", "iou", "threshold"},
                         {"sel"},
                         {}});
  g.nodes.push_back(Node{"Gather", "ids", {"sel", "two"}, {"box_ids"}, {{"axis", i64{1}}}});
  g.nodes.push_back(Node{"Gather", "pick", {"boxes", "box_ids"}, {"picked"}, {{"axis", i64{1}}}});
  g.outputs = {"sel", "picked"};
  return g;
}

/// y = -reshape(-relu(x), [2, 8]) with both Negs marked to run on the host: the first one's
/// output is read only through a view (the Reshape, no step), which the second host step reads
/// from the device, so the first must upload it (the detection networks' ReduceMin -> Reshape ->
/// TopK).
Graph host_view_graph() {
  Graph g;
  g.inputs = {{"x", {DType::f32, Shape{4, 4}}}};
  g.weights["shape"] = Tensor(DType::i64, {2});
  g.weights["shape"].data<i64>()[0] = 2;
  g.weights["shape"].data<i64>()[1] = 8;
  g.nodes.push_back(Node{"Relu", "relu", {"x"}, {"r"}, {}});
  g.nodes.push_back(Node{"Neg", "neg1", {"r"}, {"n"}, {}});
  g.nodes.push_back(Node{"Reshape", "view", {"n", "shape"}, {"v"}, {}});
  g.nodes.push_back(Node{"Neg", "neg2", {"v"}, {"y"}, {}});
  g.outputs = {"y"};
  return g;
}

kiln::plan::Plan plan_of(const Graph& g, Elem e) {
  kiln::build::BuildOptions o;
  o.target = &kiln::plan::target_by_name(plan_precision(e).target);
  o.evaluator = &kiln::reference::constant_evaluator();
  return kiln::build::build_plan(g, o);
}

std::vector<float> floats(const Tensor& t) {
  const auto d = t.to_doubles();
  return {d.begin(), d.end()};
}

}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  for (Elem e : {Elem::f32, Elem::f16}) {
    report.run(fmt::format("If between GPU steps ({})", elem_name(e)), [&] {
      const Graph g = if_graph();
      const kiln::plan::Plan p = plan_of(g, e);
      kiln::runtime::Engine engine(p);
      report.expect("If: one host step", engine.host_steps() == 1);
      auto ctx = engine.create_context();
      for (bool cond : {true, false})
        for (bool graph : {false, true}) {
          ctx->set_cuda_graph(graph);
          const auto x = round_to(random_values(32), e);
          const std::map<std::string, Tensor> in{{"cond", Tensor::scalar<bool>(cond)},
                                                 {"x", tensor({4, 8}, x)}};
          const Tensor ref = kiln::reference::Executor(g).run(in).at("y");
          report.check(fmt::format("If cond {}{}", cond, graph ? " (CUDA graph asked)" : ""),
                       floats(kiln::runtime::run_on_gpu(*ctx, in).at("y")), ref, e);
        }
    });
    report.run(fmt::format("An If whose branch holds a sequence ({})", elem_name(e)), [&] {
      const Graph g = if_sequence_graph();
      kiln::runtime::Engine engine(plan_of(g, e));
      auto ctx = engine.create_context();
      for (bool cond : {true, false}) {
        const auto x = round_to(random_values(32), e);
        const std::map<std::string, Tensor> in{{"cond", Tensor::scalar<bool>(cond)},
                                               {"x", tensor({4, 8}, x)}};
        const Tensor ref = kiln::reference::Executor(g).run(in).at("y");
        report.check(fmt::format("If with a sequence, cond {}", cond),
                     floats(kiln::runtime::run_on_gpu(*ctx, in).at("y")), ref, e);
      }
    });
    report.run(fmt::format("NonZero, GatherND and Mul sized at run time ({})", elem_name(e)), [&] {
      const Graph g = nonzero_graph();
      const kiln::plan::Plan p = plan_of(g, e);
      kiln::runtime::Engine engine(p);
      auto ctx = engine.create_context();
      for (float keep : {-10.f, 0.f, 10.f}) {  // none, about half, all positive
        auto x = round_to(random_values(15), e);
        for (auto& v : x) v = keep < -1 ? -std::abs(v) - 0.5f : keep > 1 ? std::abs(v) + 0.5f : v;
        const std::map<std::string, Tensor> in{{"x", tensor({3, 5}, x)}};
        const Tensor ref = kiln::reference::Executor(g).run(in).at("y");
        const Tensor got = kiln::runtime::run_on_gpu(*ctx, in).at("y");
        report.expect(fmt::format("NonZero: {} values, the reference {}", got.numel(), ref.numel()),
                      got.dims() == ref.dims());
        if (got.dims() == ref.dims() && ref.numel() > 0)
          report.check(fmt::format("NonZero then GatherND, {} values", ref.numel()), floats(got),
                       ref, e);
      }
      // enqueue() with an OutputAllocator: called with the output's dims, the data copied there.
      struct Allocator final : kiln::runtime::OutputAllocator {
        DeviceBuffer buffer{1};
        std::vector<i64> dims;
        int calls = 0;
        void* allocate(const std::string&, const std::vector<i64>& d, std::size_t bytes) override {
          ++calls;
          dims = d;
          buffer = DeviceBuffer(std::max<std::size_t>(bytes, 1));
          return buffer.get();
        }
      } alloc;
      const auto x = round_to(random_values(15), e);
      const std::map<std::string, Tensor> in{{"x", tensor({3, 5}, x)}};
      const Tensor ref = kiln::reference::Executor(g).run(in).at("y");
      DeviceBuffer xb(15 * sizeof(float));
      xb.upload(x.data(), 15 * sizeof(float));
      ctx->set_output_allocator(&alloc);
      ctx->execute({{"x", xb.get()}});
      report.expect(
          "the allocator was called once with the reference's dims",
          alloc.calls == 1 && alloc.dims == ref.dims() && ctx->output_dims("y") == ref.dims());
      std::vector<float> got(static_cast<std::size_t>(ref.numel()));
      if (!got.empty()) alloc.buffer.download(got.data(), got.size() * sizeof(float));
      if (ref.numel() > 0) report.check("NonZero through enqueue() and the allocator", got, ref, e);
      bool refused = false;
      ctx->set_output_allocator(nullptr);
      try {
        ctx->execute({{"x", xb.get()}});
      } catch (const kiln::Error& err) {
        refused = std::string(err.what()).find("OutputAllocator") != std::string::npos;
      }
      report.expect("without an allocator the run is refused, naming it", refused);
    });

    report.run(
        fmt::format("NonMaxSuppression on the GPU, sized on the host ({})", elem_name(e)), [&] {
          const Graph g = nms_graph();
          const kiln::plan::Plan p = plan_of(g, e);
          kiln::runtime::Engine engine(p);
          report.expect(
              "NonMaxSuppression: a GPU step (kind nms); the Gathers of its output: host",
              engine.host_steps() == 2 && engine.describe().find(" nms ") != std::string::npos);
          auto ctx = engine.create_context();
          std::mt19937 rng(5);
          std::uniform_real_distribution<float> at(0.f, 60.f), side(2.f, 15.f);
          for (float threshold : {0.f, 2.f, 5.f})  // many pass, few, none
            for (bool graph : {false, true}) {
              ctx->set_cuda_graph(graph);
              std::vector<float> boxes;
              for (int i = 0; i < 300; ++i) {
                const float x = at(rng), y = at(rng);
                boxes.insert(boxes.end(), {y, x, y + side(rng), x + side(rng)});
              }
              boxes = round_to(boxes, e);
              const auto logits = round_to(random_values(900, -3.f, 3.f), e);
              const std::map<std::string, Tensor> in{{"boxes", tensor({1, 300, 4}, boxes)},
                                                     {"logits", tensor({1, 3, 300}, logits)},
                                                     {"threshold", tensor({1}, {threshold})}};
              const auto ref = kiln::reference::Executor(g).run(in);
              const auto got = kiln::runtime::run_on_gpu(*ctx, in);
              const Tensor &rs = ref.at("sel"), &gs = got.at("sel");
              const std::string what =
                  fmt::format("NMS threshold {}{}: {} selected, the reference {}", threshold,
                              graph ? " (CUDA graph asked)" : "", gs.dims()[0], rs.dims()[0]);
              const bool same =
                  gs.dims() == rs.dims() &&
                  std::equal(rs.data<i64>(), rs.data<i64>() + rs.numel(), gs.data<i64>());
              report.expect(what, same);
              if (same && rs.numel() > 0)
                report.check("the boxes picked by its output on the host", floats(got.at("picked")),
                             ref.at("picked"), e);
            }
        });
    report.run(fmt::format("a host step's output read through a view ({})", elem_name(e)), [&] {
      const Graph g = host_view_graph();
      kiln::plan::Plan p = plan_of(g, e);
      for (auto& s : p.steps)
        if (s.name == "neg1" || s.name == "neg2") s.attrs[kiln::plan::kHostAttr] = i64{1};
      report.expect("the Reshape is a view, no step",
                    p.memory.values.at("v").how.rfind("view of", 0) == 0);
      kiln::runtime::Engine engine(p);
      auto ctx = engine.create_context();
      const auto x = round_to(random_values(16), e);
      const std::map<std::string, Tensor> in{{"x", tensor({4, 4}, x)}};
      report.check("host step, view, host step",
                   floats(kiln::runtime::run_on_gpu(*ctx, in).at("y")),
                   kiln::reference::Executor(g).run(in).at("y"), e);
    });
  }
  return report.finish("gpu-control");
}
