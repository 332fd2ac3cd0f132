// Plans: memory planning laws, the reference executing plans inside one arena, plan files
// (round trip, refusals, corruption), the light ONNX models' layer counts, golden dumps.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kiln/import/onnx.hpp"
#include "kiln/ir/error.hpp"
#include "kiln/ir/fused.hpp"
#include "kiln/ir/hash.hpp"
#include "kiln/plan/plan_file.hpp"
#include "plan_test_util.hpp"

using namespace plan_test;
using namespace kiln;

namespace {

plan::Plan build_for_test(const Graph& g, const plan::Target* t = nullptr,
                          build::BuildReport* r = nullptr) {
  kiln::build::BuildOptions o;
  o.target = t;
  o.evaluator = &reference::constant_evaluator();
  return kiln::build::build_plan(g, o, r);
}

/// No two values of different buffers that are live at once share a byte.
void check_no_overlap(const plan::Plan& p) {
  std::vector<const plan::PlannedValue*> vs;
  for (const auto& [_, v] : p.memory.values) vs.push_back(&v);
  for (std::size_t i = 0; i < vs.size(); ++i)
    for (std::size_t j = i + 1; j < vs.size(); ++j) {
      const auto& a = *vs[i];
      const auto& b = *vs[j];
      if (a.root == b.root) continue;
      if (a.last < b.first || b.last < a.first) continue;
      // Conservative extents: [offset, offset + bytes) of contiguous values; strided values lie
      // inside their root, which is checked as a whole.
      if (!a.contiguous() || !b.contiguous()) continue;
      const bool apart = a.offset + a.bytes() <= b.offset || b.offset + b.bytes() <= a.offset;
      CHECK_MESSAGE(apart, a.name << " @" << a.offset << " and " << b.name << " @" << b.offset
                                  << " overlap while both live");
    }
  for (const auto& v : vs) {
    CHECK(v->offset % 4 == 0);
    CHECK(v->offset + v->bytes() <= p.memory.arena_bytes);
  }
}

}  // namespace

TEST_CASE("memory plan: a chain of activations runs in place, buffers are reused") {
  Builder b;
  auto x = b.input("x", {1, 4, 8, 8});
  std::string v = b.conv(x, 4, 4, 3);
  for (int i = 0; i < 6; ++i) v = b.conv(b.node("Relu", {v}), 4, 4, 3);
  Graph g = b.finish({v});
  build::BuildReport r;
  auto p = build_for_test(g, &plan::cpu_reference_target(), &r);
  CHECK(p.steps.size() == 7);
  // Two buffers suffice for a chain: each step reads one and writes the other (x's buffer is
  // reused once x dies).
  const std::int64_t tensor = 4 * 8 * 8 * 4;
  CHECK(p.memory.arena_bytes == 2 * tensor);
  CHECK(p.memory.naive_bytes == 8 * tensor);
  check_no_overlap(p);
  check_plan_equivalent(g, p, "chain");

  // Unfused, the Relus write in place over the conv outputs.
  auto plain = plan::plain_target();
  plain.name = "plain-in-place";
  plain.in_place = true;
  plain.pointwise_ops = plan::elementwise_ops();
  plan::register_target(plain);
  auto q = build_for_test(g, &plan::target_by_name("plain-in-place"));
  CHECK(q.steps.size() == 13);
  CHECK(q.memory.in_place == 6);
  check_no_overlap(q);
  check_plan_equivalent(g, q, "chain in place");
}

TEST_CASE("memory plan: concat inputs are slices of its output, reshapes are views") {
  Builder b;
  auto x = b.input("x", {2, 3, 4, 4});  // N = 2: channel slices are strided
  auto a = b.conv(x, 3, 2, 1);
  auto c = b.conv(x, 3, 5, 3);
  auto cat = b.node("Concat", {a, c}, {{"axis", std::int64_t{1}}});
  auto fl = b.node("Flatten", {cat}, {{"axis", std::int64_t{1}}});
  auto y = b.node("Sigmoid", {fl});
  Graph g = b.finish({y});
  auto p = build_for_test(g);
  CHECK(p.memory.slices == 2);
  CHECK(p.memory.views == 1);
  for (const auto& s : p.steps) CHECK(s.op != "Concat");
  CHECK(!p.memory.values.at(a).contiguous());
  CHECK(p.memory.values.at(a).root == cat);
  check_no_overlap(p);
  check_plan_equivalent(g, p, "concat slices");
}

TEST_CASE("plans of random networks: no overlap, same outputs, smaller arenas") {
  for (std::uint64_t seed = 200; seed < 240; ++seed) {
    CAPTURE(seed);
    const Graph g = random_cnn(seed, 18);
    const auto p = build_for_test(g);
    check_no_overlap(p);
    check_plan_equivalent(g, p, "random", seed);
    CHECK(p.memory.arena_bytes <= p.memory.naive_bytes);
  }
}

TEST_CASE("plan files: round trip") {
  for (std::uint64_t seed = 300; seed < 310; ++seed) {
    const Graph g = random_cnn(seed);
    const auto p = build_for_test(g);
    const std::string bytes = plan::serialize_plan(p);
    const auto q =
        plan::deserialize_plan(bytes, {.target = "cpu-reference", .weights_hash = p.weights_hash});
    CHECK(q.dump() == p.dump());
    CHECK(plan::serialize_plan(q) == bytes);
    const auto in = random_inputs(g, seed);
    reference::PlanExecutor a(p), b(q);
    CHECK(max_error(a.run(in), b.run(in)) == 0.0);
  }
  {
    // The GPU tactics a plan records survive the round trip (and show in its dump).
    auto p = build_for_test(random_cnn(301));
    p.tactics["conv|n1 c3 32x32 k16|f16|nhwc"] = "cudnn-graph 2 ws 0 ms 0.01";
    p.tactics["matmul|b1 m1 n10 k64|f32"] = "cublaslt 1 ws 1024 ms 0.005";
    const auto q = plan::deserialize_plan(plan::serialize_plan(p));
    CHECK(q.tactics == p.tactics);
    CHECK(q.dump().find("tactics: 2") != std::string::npos);
    CHECK(q.dump().find("-> cudnn-graph 2 ws 0 ms 0.01") != std::string::npos);
  }
  const auto path = (std::filesystem::temp_directory_path() / "kiln_test_plan.kplan").string();
  const Graph g = random_cnn(5);
  const auto p = build_for_test(g);
  plan::save_plan(p, path);
  CHECK(plan::load_plan(path).dump() == p.dump());
  std::filesystem::remove(path);
  CHECK_THROWS_WITH_AS(plan::load_plan(path), doctest::Contains("cannot open"), FormatError);
}

TEST_CASE("plan files: the checksum is FNV-1a 64 (kiln/ir/hash.hpp), FNV's published values") {
  CHECK(fnv1a64("", 0) == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
  const std::string bytes = plan::serialize_plan(build_for_test(random_cnn(9)));
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  CHECK(stored == fnv1a64(bytes.data(), bytes.size() - 8));
}

TEST_CASE("plan files: refusals name what differs") {
  const auto p = build_for_test(random_cnn(9));
  const std::string bytes = plan::serialize_plan(p);
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(bytes, {.target = "cuda-sm90"}),
                       doctest::Contains("built for target 'cpu-reference'; this is 'cuda-sm90'"),
                       FormatError);
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(bytes, {.weights_hash = p.weights_hash + 1}),
                       doctest::Contains("other weights"), FormatError);
  std::string m = bytes;
  m[0] = 'X';
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m), doctest::Contains("magic"), FormatError);
  m = bytes;
  m[8] = 7;  // format version
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m), doctest::Contains("format version 7"),
                       FormatError);
  // Plans of formats 2 (checksummed with FNV-1a seeded off FNV's offset basis), 3 (no
  // profiles) and 4 (no buckets) are refused, naming both versions.
  static_assert(plan::kPlanFormatVersion == 5);
  m = bytes;
  m[8] = 2;
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m),
                       doctest::Contains("plan format version 2; this kiln reads version 5"),
                       FormatError);
  for (char old : {'\3', '\4'}) {
    m = bytes;
    m[8] = old;
    const std::string want =
        fmt::format("plan format version {}; this kiln reads version 5", int(old));
    CHECK_THROWS_WITH_AS(plan::deserialize_plan(m), doctest::Contains(want.c_str()), FormatError);
  }
  m = bytes;
  m[8] = 2;  // format 2: free-text tactics
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m),
                       doctest::Contains("plan format version 2; this kiln reads version 5"),
                       FormatError);
  m = bytes;
  m[12 + 4] = '9';  // library version "0.1.0" -> "9.1.0"
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m), doctest::Contains("written by kiln 9.1.0"),
                       FormatError);
  m = bytes;
  m[bytes.size() / 2] ^= 0x10;
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(m), doctest::Contains("checksum"), FormatError);
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(bytes.substr(0, bytes.size() - 1)),
                       doctest::Contains("truncated"), FormatError);
  CHECK_THROWS_WITH_AS(plan::deserialize_plan(bytes + "x"), doctest::Contains("after its end"),
                       FormatError);
}

TEST_CASE("plan files: corrupted bytes and truncations are refused, never a crash") {
  const auto p = build_for_test(random_cnn(11, 10));
  const std::string bytes = plan::serialize_plan(p);
  int refused = 0;
  auto try_load = [&](const std::string& b) {
    try {
      (void)plan::deserialize_plan(b);
      return false;
    } catch (const FormatError&) {
      ++refused;
      return true;
    }
  };
  for (std::size_t len = 0; len < bytes.size(); len += 1 + len / 64)
    CHECK(try_load(bytes.substr(0, len)));
  std::mt19937_64 rng(3);
  for (int i = 0; i < 600; ++i) {
    std::string m = bytes;
    const std::size_t at = std::uniform_int_distribution<std::size_t>(0, m.size() - 1)(rng);
    m[at] = static_cast<char>(m[at] ^ (1 << (i % 8)));
    CAPTURE(at);
    CHECK(try_load(m));
  }
  CHECK(refused > 600);
}

namespace {

struct LightModel {
  const char* name;
  int max_layers_after;
};

std::string light_dir() {
  const char* env = std::getenv("KILN_ONNX_DATA");
  return (std::filesystem::path(env ? env : "/work/shared/onnx-backend-data") / "light").string();
}

}  // namespace

// Whole light models run on the reference (seconds each): in the `slow` suite, which CI skips.
TEST_CASE("light models: layer counts and the plan's outputs" * doctest::test_suite("slow") *
          doctest::skip(std::getenv("KILN_SLOW") == nullptr)) {
  for (const LightModel m :
       {LightModel{"light_vgg19", 27}, {"light_resnet50", 60}, {"light_inception_v1", 80}}) {
    const std::string model = m.name;
    CAPTURE(model);
    const std::string path = light_dir() + "/" + m.name + ".onnx";
    if (!std::filesystem::exists(path)) {
      MESSAGE("skipped: " << path << " is missing");
      continue;
    }
    Graph g = onnx::load_model(path, {.evaluator = &reference::constant_evaluator()});
    build::BuildReport r;
    const auto p = build_for_test(g, nullptr, &r);
    MESSAGE(m.name << ": layers before fusion " << r.layers_before << ", after " << r.layers_after
                   << ", arena " << p.memory.arena_bytes << " of " << p.memory.naive_bytes
                   << " bytes");
    CHECK(r.layers_after <= m.max_layers_after);
    check_no_overlap(p);
    // The expected output: input arange(n) / n (see the conformance runner).
    reference::TensorMap in;
    for (const auto& vi : p.inputs) {
      Tensor t(vi.type.dtype, vi.type.shape.values());
      for (std::int64_t i = 0; i < t.numel(); ++i)
        t.set(i, static_cast<double>(i) / static_cast<double>(t.numel()));
      in[vi.name] = t;
    }
    reference::PlanExecutor pe(p);
    const auto out = pe.run(in);
    const Tensor want = onnx::load_tensor(light_dir() + "/" + m.name + "_output_0.pb");
    const Tensor& got = out.at(p.outputs[0].name);
    REQUIRE(got.numel() == want.numel());
    double worst = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i)
      worst = std::max(worst, std::abs(got.get(i) - want.get(i)) / (1e-3 + std::abs(want.get(i))));
    CHECK(worst < 1e-2);
  }
}

namespace {

/// Builds `g` checking every pass on the reference, runs the plan on the test's inputs and
/// compares with its expected outputs. Returns false (with a message) when it does not agree.
void check_model_folder(const std::filesystem::path& dir, int* built, int* skipped) {
  Graph g;
  try {
    g = onnx::load_model((dir / "model.onnx").string(),
                         {.evaluator = &reference::constant_evaluator()});
  } catch (const Error&) {
    ++*skipped;  // an op or dtype the importer or the reference does not take: not the builder's
    return;
  }
  const std::string name = dir.filename().string();
  CAPTURE(name);
  const auto data = dir / "test_data_set_0";
  reference::TensorMap in;
  for (std::size_t i = 0; i < g.inputs.size(); ++i) {
    const auto f = data / fmt::format("input_{}.pb", i);
    if (!std::filesystem::exists(f)) return;
    in[g.inputs[i].name] = onnx::load_value(f.string(), g.inputs[i].type);
  }
  auto opts = checked_options_on(in);
  for (const auto& [k, t] : in) opts.input_dims[k] = t.dims();
  plan::Plan p;
  try {
    p = kiln::build::build_plan(g, opts);
  } catch (const ShapeError& e) {
    // Shapes that depend on input values (Expand by a run-time shape): a plan needs static ones.
    if (std::string(e.what()).find("not static") == std::string::npos) throw;
    ++*skipped;
    return;
  } catch (const UnsupportedError& e) {
    // Sequences (test_sequence_model*): plans hold tensors; the conformance suite runs them.
    if (std::string(e.what()).find("plans hold tensors") == std::string::npos) throw;
    ++*skipped;
    return;
  }
  ++*built;
  reference::PlanExecutor pe(p);
  const auto out = pe.run(in);
  for (std::size_t i = 0; i < p.outputs.size(); ++i) {
    const auto f = data / fmt::format("output_{}.pb", i);
    if (!std::filesystem::exists(f)) continue;
    const Tensor want = onnx::load_tensor(f.string());
    const Tensor& got = out.at(p.outputs[i].name);
    REQUIRE(got.numel() == want.numel());
    for (std::int64_t k = 0; k < got.numel(); ++k) {
      const double a = got.get(k), b = want.get(k);
      if (std::isnan(a) && std::isnan(b)) continue;
      REQUIRE_MESSAGE(std::abs(a - b) <= 1e-4 + 1e-3 * std::abs(b),
                      "output " << i << " element " << k << ": " << a << " vs " << b);
    }
  }
}

}  // namespace

TEST_CASE("converted PyTorch models: every pass keeps outputs, plans match the expected data") {
  const char* env = std::getenv("KILN_ONNX_DATA");
  const std::filesystem::path root(env ? env : "/work/shared/onnx-backend-data");
  int built = 0, skipped = 0;
  for (const char* set : {"pytorch-converted", "pytorch-operator", "simple"}) {
    if (!std::filesystem::exists(root / set)) continue;
    std::vector<std::filesystem::path> dirs;
    for (const auto& e : std::filesystem::directory_iterator(root / set))
      if (std::filesystem::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (const auto& d : dirs) check_model_folder(d, &built, &skipped);
  }
  MESSAGE("converted models: " << built << " built and checked, " << skipped
                               << " not importable, of data-dependent shapes or of sequences");
}

// Whole light models, each pass checked on the reference (a minute or so): the `slow` suite.
TEST_CASE("light models: every pass keeps outputs" * doctest::test_suite("slow") *
          doctest::skip(std::getenv("KILN_SLOW") == nullptr)) {
  for (const char* m : {"light_vgg19", "light_resnet50", "light_inception_v1", "light_squeezenet",
                        "light_densenet121", "light_shufflenet", "light_bvlc_alexnet",
                        "light_zfnet512", "light_inception_v2"}) {
    const std::string model = m;
    CAPTURE(model);
    const std::string path = light_dir() + "/" + model + ".onnx";
    if (!std::filesystem::exists(path)) continue;
    Graph g;
    try {
      g = onnx::load_model(path, {.evaluator = &reference::constant_evaluator()});
    } catch (const Error& e) {
      MESSAGE(model << " not importable: " << e.what());
      continue;
    }
    build::BuildReport r;
    const auto p = kiln::build::build_plan(g, checked_options(nullptr, 5), &r);
    Graph folded = r.before_fusion;
    check_plan_equivalent(folded, p, model, 5);
    MESSAGE(model << ": layers before fusion " << r.layers_before << ", after " << r.layers_after);
  }
}
