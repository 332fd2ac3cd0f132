// Dynamic shapes (issue 14): profiles, bucket shapes, and plans specialized per exact shape
// against the reference executor running the graph made static at the same shape.
#include <doctest/doctest.h>

#include <random>

#include "expect_error.hpp"
#include "kiln/build/specializer.hpp"
#include "kiln/dsl/dsl.hpp"
#include "kiln/plan/plan_file.hpp"
#include "plan_test_util.hpp"

using namespace kiln;
using namespace plan_test;
using kiln::test::expect_error;
using plan::ShapeMap;

namespace {

Tensor i64_tensor(std::vector<i64> values, std::vector<i64> dims) {
  Tensor t(DType::i64, dims);
  for (std::size_t i = 0; i < values.size(); ++i)
    t.set(static_cast<i64>(i), static_cast<double>(values[i]));
  return t;
}

/// x [N,3,H,W] -> Conv 3x3 -> Relu -> y [N,4,H,W]; outputs y + y and y reshaped to [N, 4*H*W]
/// through the Shape -> Gather -> Unsqueeze -> Concat subgraph of exported models (the shape
/// program). With `fixed_reshape`, a third output reshapes y to the constant [1,4,8,8] instead,
/// which only the shape 1x3x8x8 satisfies.
Graph dynamic_net(bool fixed_reshape = false) {
  Builder b;
  b.g.inputs.push_back(
      {"x", {DType::f32, Shape{Dim::symbol("N"), 3, Dim::symbol("H"), Dim::symbol("W")}}});
  const std::string y = b.node("Relu", {b.conv("x", 3, 4, 3)});
  const std::string sum = b.node("Add", {y, y});
  b.g.weights["zero"] = i64_tensor({0}, {});
  b.g.weights["axes0"] = i64_tensor({0}, {1});
  b.g.weights["minus1"] = i64_tensor({-1}, {1});
  const std::string shape = b.node("Shape", {y});
  const std::string n = b.node("Gather", {shape, "zero"}, {{"axis", i64{0}}});
  const std::string n1 = b.node("Unsqueeze", {n, "axes0"});
  const std::string target = b.node("Concat", {n1, "minus1"}, {{"axis", i64{0}}});
  const std::string flat = b.node("Reshape", {y, target});
  std::vector<std::string> outs{sum, flat};
  if (fixed_reshape) {
    b.g.weights["c1488"] = i64_tensor({1, 4, 8, 8}, {4});
    Node r;
    r.op = "Reshape";
    r.name = "fixed_reshape";
    r.inputs = {sum, "c1488"};
    r.outputs = {"fixed"};
    b.g.add_node(r);
    outs.push_back("fixed");
  }
  return b.finish(outs);
}

build::BuildOptions reference_options() {
  build::BuildOptions o;
  o.evaluator = &reference::constant_evaluator();
  return o;
}

reference::TensorMap random_at(const ShapeMap& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  reference::TensorMap m;
  for (const auto& [name, dims] : s) m[name] = random_tensor(DType::f32, dims, rng);
  return m;
}

/// The graph made static at `s` and run by the reference executor: the oracle.
reference::TensorMap oracle(const Graph& g, const ShapeMap& s, const reference::TensorMap& in) {
  Graph st = g;
  build::BuildOptions o = reference_options();
  o.input_dims = s;
  build::make_static(st, o);
  return reference::Executor(st).run(in);
}

}  // namespace

TEST_CASE("shape lists: the trtexec syntax, and what is wrong with a bad one") {
  const ShapeMap s = plan::parse_shape_list("x:1x3x224x224,mask:1x128,s:scalar", "--shapes");
  CHECK(s.at("x") == std::vector<i64>{1, 3, 224, 224});
  CHECK(s.at("mask") == std::vector<i64>{1, 128});
  CHECK(s.at("s").empty());
  CHECK(plan::format_shape_list(s) == "mask:1x128,s:scalar,x:1x3x224x224");
  CHECK(plan::parse_shape_list("input:0=2x3", "--shapes").at("input:0") == std::vector<i64>{2, 3});
  expect_error<ShapeError>([] { plan::parse_shape_list("x1x3", "--min-shapes"); },
                           {"--min-shapes", "'x1x3'", "NAME:"});
  expect_error<ShapeError>([] { plan::parse_shape_list("x:1xax3", "--shapes"); }, {"dim 'a'"});
  expect_error<ShapeError>([] { plan::parse_shape_list("x:1x3,x:2x3", "--shapes"); },
                           {"names 'x' twice"});
  expect_error<ShapeError>([] { plan::parse_shape_list("", "--shapes"); }, {"empty"});
  expect_error<ShapeError>([] { plan::parse_shape_list("x:1x99999999999999x3", "--shapes"); },
                           {"not a whole number"});
}

TEST_CASE(
    "profiles: min <= opt <= max, ranks and fixed dims of the model, every dynamic input named") {
  const Graph g = dynamic_net();
  const auto p = plan::make_profile(g, {{"x", {1, 3, 8, 8}}}, {{"x", {2, 3, 16, 16}}},
                                    {{"x", {4, 3, 32, 24}}});
  CHECK(p.inputs.at("x").opt == std::vector<i64>{2, 3, 16, 16});
  CHECK(p.contains({{"x", {3, 3, 9, 24}}}));
  CHECK_FALSE(p.contains({{"x", {3, 3, 9, 25}}}));
  CHECK(p.describe() == "x: [1,3,8,8] .. [2,3,16,16] .. [4,3,32,24]\n");
  // opt defaults to max, min to opt.
  const auto q = plan::make_profile(g, {}, {}, {{"x", {2, 3, 8, 8}}});
  CHECK(q.min() == q.max());

  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {{"x", {4, 3, 8, 8}}}, {{"x", {2, 3, 8, 8}}}, {{"x", {4, 3, 8, 8}}});
      },
      {"input 'x' dim 0 ('N')", "min 4, opt 2, max 4", "min <= opt <= max"});
  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {}, {}, {{"x", {1, 3, 8}}});
      },
      {"'x' has rank 4", "[1,3,8]"});
  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {}, {}, {{"x", {1, 5, 8, 8}}});
      },
      {"'x' dim 1 is fixed at 3", "got 5"});
  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {{"x", {0, 3, 8, 8}}}, {}, {{"x", {1, 3, 8, 8}}});
      },
      {"dim 0 ('N') is 0", "at least 1"});
  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {}, {}, {{"y", {1}}});
      },
      {"no input 'y'", "its inputs: x"});
  expect_error<ShapeError>([&] { plan::make_profile(g, {}, {}, {}); },
                           {"input 'x' has shape [N,3,H,W]", "--max-shapes"});
}

TEST_CASE("profiles: one dim_param in two inputs takes one value") {
  Builder b;
  b.g.inputs.push_back({"a", {DType::f32, Shape{Dim::symbol("S"), 4}}});
  b.g.inputs.push_back({"b", {DType::f32, Shape{Dim::symbol("S"), 4}}});
  const Graph g = b.finish({b.node("Add", {"a", "b"})});
  CHECK_NOTHROW(plan::make_profile(g, {}, {}, {{"a", {5, 4}}, {"b", {5, 4}}}));
  expect_error<ShapeError>(
      [&] {
        plan::make_profile(g, {}, {}, {{"a", {5, 4}}, {"b", {6, 4}}});
      },
      {"input 'a' dim 0 and input 'b' dim 0 are both 'S'", "5 and 6"});
  const auto p =
      plan::make_profile(g, {{"a", {1, 4}}, {"b", {1, 4}}}, {}, {{"a", {9, 4}}, {"b", {9, 4}}});
  expect_error<ShapeError>(
      [&] {
        plan::check_shape(g, p, {{"a", {2, 4}}, {"b", {3, 4}}});
      },
      {"both 'S'", "2 and 3"});
}

TEST_CASE("shapes outside the profile name the input, the dim, the value and the range") {
  const Graph g = dynamic_net();
  const auto p = plan::make_profile(g, {{"x", {1, 3, 8, 8}}}, {{"x", {2, 3, 16, 16}}},
                                    {{"x", {4, 3, 32, 32}}});
  CHECK_NOTHROW(plan::check_shape(g, p, {{"x", {4, 3, 8, 32}}}));
  expect_error<ShapeError>(
      [&] {
        plan::check_shape(g, p, {{"x", {2, 3, 33, 16}}}, 1);
      },
      {"input 'x' dim 2 ('H') is 33", "outside profile 1's range 8..32"});
  expect_error<ShapeError>([&] { plan::check_shape(g, p, {{"x", {2, 3, 16}}}); }, {"rank 4"});
  expect_error<ShapeError>(
      [&] {
        plan::check_shape(g, p, {{"x", {-2, 3, 16, 16}}});
      },
      {"is -2", "at least 1"});
  expect_error<ShapeError>([&] { plan::check_shape(g, p, {}); }, {"no shape given for input 'x'"});
  expect_error<ShapeError>(
      [&] {
        plan::check_shape(g, p, {{"x", {2, 3, 16, 16}}, {"z", {1}}});
      },
      {"no input 'z'"});
}

TEST_CASE(
    "bucket shapes: opt, min, max and shapes between; an exact shape runs with the smallest bucket "
    "that covers it") {
  const Graph g = dynamic_net();
  const auto p = plan::make_profile(g, {{"x", {1, 3, 8, 8}}}, {{"x", {2, 3, 16, 16}}},
                                    {{"x", {4, 3, 32, 32}}});
  const auto b = plan::bucket_shapes(p, 1);
  REQUIRE(b.size() == 4);
  CHECK(b[0] == p.opt());
  CHECK(b[1] == p.min());
  CHECK(b[2] == p.max());
  CHECK(b[3].at("x") == std::vector<i64>{3, 3, 20, 20});  // half way, rounded
  CHECK(plan::bucket_for(b, p.min()) == 1);
  CHECK(plan::bucket_for(b, {{"x", {2, 3, 9, 16}}}) == 0);
  CHECK(plan::bucket_for(b, {{"x", {3, 3, 17, 8}}}) == 3);
  CHECK(plan::bucket_for(b, {{"x", {4, 3, 17, 8}}}) == 2);
  // Every shape in the profile has a bucket that covers it (law over random shapes).
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200; ++i) {
    auto pick = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
    const ShapeMap s{{"x", {pick(1, 4), 3, pick(8, 32), pick(8, 32)}}};
    const auto& cover = b[plan::bucket_for(b, s)].at("x");
    for (std::size_t d = 0; d < 4; ++d) CHECK(cover[d] >= s.at("x")[d]);
  }
  // A fixed profile has one bucket.
  CHECK(plan::bucket_shapes(plan::fixed_profile(g, {{"x", {1, 3, 8, 8}}}), 2).size() == 1);
}

TEST_CASE("specialized plans match the reference at min, opt, max and random shapes") {
  const Graph g = dynamic_net();
  const auto p = plan::make_profile(g, {{"x", {1, 3, 5, 5}}}, {{"x", {2, 3, 12, 12}}},
                                    {{"x", {3, 3, 20, 17}}});
  build::Specializer sp(g, reference_options(), {p}, 3);
  std::vector<ShapeMap> shapes{p.min(), p.opt(), p.max()};
  std::mt19937_64 rng(11);
  for (int i = 0; i < 4; ++i) {
    auto pick = [&](i64 lo, i64 hi) { return std::uniform_int_distribution<i64>(lo, hi)(rng); };
    shapes.push_back({{"x", {pick(1, 3), 3, pick(5, 20), pick(5, 17)}}});
  }
  std::uint64_t seed = 1;
  for (const auto& s : shapes) {
    CAPTURE(plan::format_shape_list(s));
    const auto plan = sp.plan_for(s, sp.profile_for(s));
    const auto& x = s.at("x");
    CHECK(plan->inputs[0].type.shape == Shape::of(x));
    const auto in = random_at(s, seed++);
    reference::PlanExecutor pe(*plan);
    const auto got = pe.run(in);
    CHECK(got.at(g.outputs[1]).dims() == std::vector<i64>{x[0], 4 * x[2] * x[3]});
    CHECK(max_error(oracle(g, s, in), got) <= 1e-5);
  }
  // Seven distinct shapes through a cache of three: four evicted; asking again for the last
  // shape is a hit and builds nothing.
  CHECK(sp.stats().built == 7);
  CHECK(sp.stats().evicted == 4);
  sp.plan_for(shapes.back(), 0);
  CHECK(sp.stats().hits == 1);
  CHECK(sp.stats().built == 7);
  expect_error<ShapeError>(
      [&] {
        sp.plan_for({{"x", {4, 3, 8, 8}}}, 0);
      },
      {"input 'x' dim 0 ('N') is 4", "1..3"});
  expect_error<ShapeError>([&] { sp.plan_for(p.min(), 1); }, {"profile 1 does not exist"});
}

TEST_CASE("several profiles: a shape runs under the first that accepts it") {
  const Graph g = dynamic_net();
  const auto small = plan::make_profile(g, {{"x", {1, 3, 4, 4}}}, {}, {{"x", {1, 3, 16, 16}}});
  const auto large = plan::make_profile(g, {{"x", {2, 3, 16, 16}}}, {}, {{"x", {8, 3, 64, 64}}});
  build::Specializer sp(g, reference_options(), {small, large});
  CHECK(sp.profile_for({{"x", {1, 3, 9, 9}}}) == 0);
  CHECK(sp.profile_for({{"x", {4, 3, 40, 20}}}) == 1);
  expect_error<ShapeError>(
      [&] {
        sp.profile_for({{"x", {1, 3, 40, 20}}});
      },
      {"outside profile 0's range"});
  expect_error<ShapeError>(
      [&] {
        sp.plan_for({{"x", {1, 3, 9, 9}}}, 1);
      },
      {"dim 0 ('N') is 1", "outside profile 1's range 2..8"});
}

TEST_CASE("a shape program that fails at one shape names the node and the shape") {
  const Graph g = dynamic_net(true);
  const auto p = plan::make_profile(g, {{"x", {1, 3, 8, 8}}}, {}, {{"x", {1, 3, 9, 9}}});
  build::Specializer sp(g, reference_options(), {p});
  const ShapeMap ok{{"x", {1, 3, 8, 8}}};
  const auto plan = sp.plan_for(ok, 0);
  const auto in = random_at(ok, 5);
  reference::PlanExecutor pe(*plan);
  CHECK(max_error(oracle(g, ok, in), pe.run(in)) <= 1e-5);
  expect_error<ShapeError>(
      [&] {
        sp.plan_for({{"x", {1, 3, 9, 8}}}, 0);
      },
      {"at shape x:1x3x9x8", "fixed_reshape"});
}

TEST_CASE("dynamic plans: built at opt, written and read back, specialized from the file") {
  const Graph g = dynamic_net();
  const auto p0 = plan::make_profile(g, {{"x", {1, 3, 5, 5}}}, {{"x", {2, 3, 12, 12}}},
                                     {{"x", {3, 3, 20, 17}}});
  const auto p1 = plan::make_profile(g, {{"x", {4, 3, 8, 8}}}, {}, {{"x", {6, 3, 9, 9}}});
  std::vector<build::BucketPlan> buckets;
  const plan::Plan dyn = build::build_dynamic_plan(g, reference_options(), {p0, p1}, 1, &buckets);
  REQUIRE(dyn.is_dynamic());
  CHECK(dyn.inputs[0].type.shape == Shape::of({2, 3, 12, 12}));
  // Profile 0: opt, min, max, half way; profile 1: opt (= max), min, half way.
  REQUIRE(buckets.size() == 7);
  CHECK(buckets[3].shape.at("x") == std::vector<i64>{2, 3, 13, 11});
  CHECK(buckets[4].profile == 1);

  const std::string bytes = plan::serialize_plan(dyn);
  const plan::Plan back = plan::deserialize_plan(bytes);
  REQUIRE(back.is_dynamic());
  CHECK(back.profiles.size() == 2);
  CHECK(back.profiles[1].describe() == p1.describe());
  CHECK(back.source->inputs[0].type.shape.to_string() == "[N,3,H,W]");
  CHECK(back.dump() == dyn.dump());
  CHECK(plan::serialize_plan(back) == bytes);

  build::Specializer sp(back, &reference::constant_evaluator());
  for (const ShapeMap& s : {p0.min(), p0.max(), ShapeMap{{"x", {5, 3, 9, 8}}}}) {
    CAPTURE(plan::format_shape_list(s));
    const auto in = random_at(s, 9);
    reference::PlanExecutor pe(*sp.plan_for(s, sp.profile_for(s)));
    CHECK(max_error(oracle(g, s, in), pe.run(in)) <= 1e-5);
  }
  expect_error<ShapeError>(
      [&] {
        build::Specializer(build::build_plan(g, reference_options()),
                           &reference::constant_evaluator());
      },
      {"is static"});
}

TEST_CASE("dynamic plans: a file whose profiles or source disagree is refused") {
  const Graph g = dynamic_net();
  const auto p0 = plan::make_profile(g, {{"x", {1, 3, 5, 5}}}, {{"x", {2, 3, 12, 12}}},
                                     {{"x", {3, 3, 20, 17}}});
  const plan::Plan dyn = build::build_dynamic_plan(g, reference_options(), {p0}, 0);
  const auto reject = [](plan::Plan p, std::vector<std::string> parts) {
    std::string bytes = plan::serialize_plan(p);
    expect_error<FormatError>([&] { plan::deserialize_plan(bytes); }, parts);
  };
  {
    plan::Plan p = dyn;
    p.profiles[0].inputs["x"].min = {3, 3, 5, 5};  // min > opt
    reject(p, {"profile 0", "min <= opt <= max"});
  }
  {
    plan::Plan p = dyn;
    p.profiles[0].inputs["x"].opt = {1, 3, 12, 12};  // the steps were made at 2x3x12x12
    reject(p, {"input 'x'", "not profile 0's opt shape"});
  }
  {
    plan::Plan p = dyn;
    Graph src = *p.source;
    src.nodes[0].inputs[0] = "nowhere";
    p.source = std::make_shared<const Graph>(src);
    reject(p, {"source graph", "nowhere"});
  }
  // Every truncation of the file is a FormatError, never a crash.
  const std::string bytes = plan::serialize_plan(dyn);
  for (std::size_t n = 0; n < bytes.size(); n += 97) {
    std::string cut = bytes.substr(0, n);
    expect_error<FormatError>([&] { plan::deserialize_plan(cut); }, {});
  }
}

TEST_CASE(
    "dynamic plans: each bucket's problems by step, written and read back; a shape between "
    "buckets takes its bucket's tactics") {
  const Graph g = dynamic_net();
  const auto p0 = plan::make_profile(g, {{"x", {1, 3, 8, 8}}}, {{"x", {2, 3, 16, 16}}},
                                     {{"x", {4, 3, 32, 32}}});
  plan::Plan dyn = build::build_dynamic_plan(g, reference_options(), {p0}, 1);
  // What kiln build records on a GPU: per bucket, the problem each step ran (keys of `tactics`).
  const auto shapes = plan::bucket_shapes(p0, 1);
  REQUIRE(shapes.size() == 4);
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const std::string key = fmt::format("conv problem {}", i);
    dyn.tactics[key] = fmt::format("cudnn {} ws 0 ms 1", i);
    dyn.buckets.push_back({0, shapes[i], {{"conv", key}, {"gemm", "shared problem"}}});
  }
  dyn.tactics["shared problem"] = "cublaslt 2 ws 64 ms 1";
  const std::string bytes = plan::serialize_plan(dyn);
  const plan::Plan back = plan::deserialize_plan(bytes);
  REQUIRE(back.buckets.size() == 4);
  CHECK(back.buckets[3].shape == shapes[3]);
  CHECK(back.buckets[2].steps.at("conv") == "conv problem 2");
  CHECK(back.dump() == dyn.dump());
  CHECK(plan::serialize_plan(back) == bytes);
  // 2x3x9x16 falls in opt's bucket (0), 3x3x17x8 in the half-way one (3), 4x3x17x8 in max's (2).
  const auto opt = back.bucket_step_tactics({{"x", {2, 3, 9, 16}}}, 0);
  CHECK(opt.at("conv") == "cudnn 0 ws 0 ms 1");
  CHECK(opt.at("gemm") == "cublaslt 2 ws 64 ms 1");
  CHECK(back.bucket_step_tactics({{"x", {3, 3, 17, 8}}}, 0).at("conv") == "cudnn 3 ws 0 ms 1");
  CHECK(back.bucket_step_tactics({{"x", {4, 3, 17, 8}}}, 0).at("conv") == "cudnn 2 ws 0 ms 1");
  CHECK(back.bucket_step_tactics(p0.min(), 1).empty());               // no bucket of profile 1
  CHECK(back.bucket_step_tactics({{"x", {5, 3, 8, 8}}}, 0).empty());  // none covers it

  const auto reject = [](const plan::Plan& p, std::vector<std::string> parts) {
    const std::string b = plan::serialize_plan(p);
    expect_error<FormatError>([&] { plan::deserialize_plan(b); }, parts);
  };
  {
    plan::Plan p = dyn;
    p.buckets[1].steps["conv"] = "nowhere";
    reject(p, {"bucket step 'conv'", "'nowhere'", "no tactic"});
  }
  {
    plan::Plan p = dyn;
    p.buckets[1].profile = 3;
    reject(p, {"bucket of profile 3", "the plan has 1"});
  }
  for (std::size_t n = bytes.size() - 200; n < bytes.size(); n += 7) {
    const std::string cut = bytes.substr(0, n);
    expect_error<FormatError>([&] { plan::deserialize_plan(cut); }, {});
  }
}

TEST_CASE(
    "the DSL's named dynamic dims build a dynamic plan that runs at every shape of its profile") {
  using namespace kiln::dsl;
  auto net = [](const Weights& w) {
    auto x = input<"image", f32, NCHW>(dyn("N"), fix<3>, dyn("H"), dyn("W"));  // [N,3,H,W]
    auto c1 = relu(conv2d<8, kernel<3>, padding<1>>(x, w, "conv1"));           // [N,8,H,W]
    auto p = max_pool<kernel<2>, stride<2>>(c1);                               // [N,8,H/2,W/2]
    auto c2 = relu(conv2d<8, kernel<3>, padding<1>>(p, w, "conv2"));
    return network(fully_connected<5>(global_avg_pool(c2), w, "fc").named("scores"),  // [N,5]
                   c2.named("features"));
  };
  WeightMap m;
  std::mt19937_64 rng(1);
  const Network shapes = net(Weights::shapes_only());
  for (const auto& s : shapes.weight_specs()) m.add(s.name, random_tensor(DType::f32, s.dims, rng));
  const Graph g = net(m).graph();
  CHECK(g.inputs[0].type.shape.to_string() == "[N,3,H,W]");
  const auto p = plan::make_profile(g, {{"image", {1, 3, 8, 8}}}, {{"image", {2, 3, 32, 32}}},
                                    {{"image", {4, 3, 48, 40}}});
  const plan::Plan dyn = build::build_dynamic_plan(g, reference_options(), {p});
  build::Specializer sp(plan::deserialize_plan(plan::serialize_plan(dyn)),
                        &reference::constant_evaluator());
  for (const ShapeMap& s : {p.min(), p.opt(), p.max(), ShapeMap{{"image", {3, 3, 17, 33}}}}) {
    CAPTURE(plan::format_shape_list(s));
    const auto in = random_at(s, 21);
    reference::PlanExecutor pe(*sp.plan_for(s, 0));
    const auto got = pe.run(in);
    const auto& d = s.at("image");
    CHECK((got.at("features").dims() == std::vector<std::int64_t>{d[0], 8, d[2] / 2, d[3] / 2}));
    CHECK(max_error(oracle(g, s, in), got) <= 1e-5);
  }
}

TEST_CASE("symbolic dims: expressions of names, canonical, exact where the arithmetic allows") {
  const Dim h = Dim::symbol("H"), n = Dim::symbol("N"), s = Dim::symbol("S");
  CHECK(dim_affine(h, 1, 0, 2).to_string() == "H/2");
  CHECK(dim_affine(h, 1, 1, 2).to_string() == "(H+1)/2");
  CHECK(dim_affine(h, 2, -1, 1).to_string() == "2*H-1");
  // floor((floor((H+1)/2) + 1) / 2) = floor((H+3)/4): a pool after a stride-2 convolution.
  CHECK(dim_affine(dim_affine(h, 1, 1, 2), 1, 1, 2).to_string() == "(H+3)/4");
  // Common factors go: floor((2H+2)/4) = floor((H+1)/2).
  CHECK(dim_affine(h, 2, 2, 4).to_string() == "(H+1)/2");
  // floor(x/2) * 2 is no single quotient: dynamic rather than wrong.
  CHECK_FALSE(dim_affine(dim_affine(h, 1, 0, 2), 2, 0, 1).is_symbolic());
  CHECK(dim_mul(n, s).to_string() == "N*S");
  CHECK(dim_mul(s, n) == dim_mul(n, s));  // names sorted
  CHECK(dim_mul(Dim(3), dim_mul(n, s)).to_string() == "3*N*S");
  CHECK(dim_div_exact(dim_mul(Dim(768), dim_mul(n, s)), 768).to_string() == "N*S");
  CHECK_FALSE(dim_div_exact(dim_mul(Dim(3), n), 2).is_symbolic());
  CHECK(dim_add(h, h).to_string() == "2*H");
  CHECK(dim_add(h, Dim(5)).to_string() == "H+5");
  CHECK_FALSE(dim_add(h, s).is_symbolic());
  CHECK(dim_mul(Dim(1), dim_affine(h, 1, 1, 2)) == dim_affine(h, 1, 1, 2));
  // Anonymous dims and names that are no identifiers stay dynamic.
  CHECK_FALSE(dim_affine(Dim::dynamic(), 1, 0, 2).is_symbolic());
  CHECK_FALSE(dim_affine(Dim::symbol("batch size"), 1, 0, 2).is_symbolic());
  CHECK(dim_affine(Dim(9), 1, 1, 2).value() == 5);
  // Coefficients past 2^40 (a hostile dim_param, or products that would overflow) give up.
  for (const char* odd : {"999999999999999*H", "(H+1)/0", "H/1", "0*H", "+5", "H*", "(H", "B*A"})
    CHECK_MESSAGE(!dim_affine(Dim::symbol(odd), 3, 1, 2).is_symbolic(), odd);
  const Dim big = dim_mul(Dim(i64{1} << 39), h);
  CHECK(big.is_symbolic());
  CHECK_FALSE(dim_mul(big, Dim(i64{1} << 39)).is_symbolic());
  CHECK_FALSE(dim_mul(Dim(i64{1} << 39), Dim(i64{1} << 39)).is_fixed());
  // Evaluated with the names bound: the fixed arithmetic, for many values.
  for (i64 v = 1; v < 200; v += 7) {
    auto bind = [&](const std::string& name) { return name == "H" ? v : name == "N" ? 3 : -1; };
    CHECK(dim_value(dim_affine(dim_affine(h, 1, 1, 2), 1, 1, 2), bind) == ((v + 1) / 2 + 1) / 2);
    CHECK(dim_value(dim_affine(h, 2, -1, 1), bind) == 2 * v - 1);
    CHECK(dim_value(dim_mul(n, h), bind) == 3 * v);
  }
  CHECK(dim_value(s, [](const std::string&) { return i64{-1}; }) == kDynamic);
}

TEST_CASE(
    "shape inference keeps expressions: convolutions, pooling, transposed convolution, "
    "Concat, Flatten and Reshape, as fixed shapes would compute them") {
  // x [N, 3, H, W] -> conv 7x7/2 pad 3 -> maxpool 3x3/2 pad 1 -> conv 3x3 SAME_UPPER /2 ->
  // deconv 2x2/2 -> concat with itself on channels -> flatten(1) ; y = reshape(x, [-1, W]).
  auto make = [](Shape xs) {
    Graph g;
    g.inputs.push_back({"x", {DType::f32, xs}});
    std::mt19937 r(1);
    auto w = [&](std::vector<i64> d) {
      const std::string name = "w" + std::to_string(g.weights.size());
      g.weights[name] = Tensor::from<float>(d, std::vector<float>(product(d), 0.5f));
      return name;
    };
    g.nodes.push_back(
        Node{"Conv",
             "c1",
             {"x", w({8, 3, 7, 7})},
             {"a"},
             {{"strides", std::vector<i64>{2, 2}}, {"pads", std::vector<i64>{3, 3, 3, 3}}}});
    g.nodes.push_back(Node{"MaxPool",
                           "p",
                           {"a"},
                           {"b"},
                           {{"kernel_shape", std::vector<i64>{3, 3}},
                            {"strides", std::vector<i64>{2, 2}},
                            {"pads", std::vector<i64>{1, 1, 1, 1}}}});
    g.nodes.push_back(
        Node{"Conv",
             "c2",
             {"b", w({8, 8, 3, 3})},
             {"c"},
             {{"strides", std::vector<i64>{2, 2}}, {"auto_pad", std::string("SAME_UPPER")}}});
    g.nodes.push_back(Node{"ConvTranspose",
                           "up",
                           {"c", w({8, 4, 2, 2})},
                           {"d"},
                           {{"strides", std::vector<i64>{2, 2}}}});
    g.nodes.push_back(Node{"Concat", "cat", {"d", "d"}, {"e"}, {{"axis", i64{1}}}});
    g.nodes.push_back(Node{"Flatten", "flat", {"e"}, {"f"}, {{"axis", i64{1}}}});
    g.weights["shape"] = Tensor::from<std::int64_t>({2}, std::vector<std::int64_t>{-1, 3});
    g.nodes.push_back(
        Node{"Transpose", "t", {"x"}, {"xt"}, {{"perm", std::vector<i64>{0, 2, 3, 1}}}});
    g.nodes.push_back(Node{"Reshape", "rs", {"xt", "shape"}, {"y"}, {}});
    g.weights["pads"] =
        Tensor::from<std::int64_t>({8}, std::vector<std::int64_t>{0, 0, 1, 2, 0, 0, 1, 0});
    g.nodes.push_back(Node{"Pad", "pad", {"x", "pads"}, {"z"}, {}});
    g.outputs = {"d", "f", "y", "z"};
    g.infer();
    return g;
  };
  const Graph sym = make(Shape{Dim::symbol("N"), 3, Dim::symbol("H"), Dim::symbol("W")});
  CHECK(sym.type_of("a").shape.to_string() == "[N,8,(H+1)/2,(W+1)/2]");
  CHECK(sym.type_of("b").shape.to_string() == "[N,8,(H+3)/4,(W+3)/4]");
  CHECK(sym.type_of("c").shape.to_string() == "[N,8,(H+7)/8,(W+7)/8]");
  CHECK(sym.type_of("d").shape.to_string() == "[N,4,?,?]");  // 2 * floor(x/8): no one quotient
  CHECK(sym.type_of("y").shape.to_string() == "[H*N*W,3]");
  CHECK(sym.type_of("z").shape.to_string() == "[N,3,H+2,W+2]");
  for (i64 hv : {1, 2, 7, 8, 9, 31, 224, 225}) {
    CAPTURE(hv);
    const Graph fixed = make(Shape{2, 3, hv, hv + 3});
    for (const char* v : {"a", "b", "c", "z"}) {
      const Shape& ss = sym.type_of(v).shape;
      const Shape& fs = fixed.type_of(v).shape;
      for (std::size_t d = 0; d < ss.rank(); ++d)
        CHECK(dim_value(ss[d], [&](const std::string& name) {
                return name == "N" ? 2 : name == "H" ? hv : hv + 3;
              }) == fs[d].value());
    }
  }
}
