// Plugins from a shared library (examples/plugins: libkiln_fc_plugin.so, its path the first
// argument): loaded by a program that exports kiln's symbols, its plugin then imports from ONNX,
// runs on the CPU reference and through a saved plan, the library recorded on each node; loading
// it again does nothing; and files that are no plugin library are refused naming them.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>

#include "expect_error.hpp"
#include "kiln/ir/plugin.hpp"
#include "kiln/plan/plan_file.hpp"
#include "onnx_test_util.hpp"
#include "plan_test_util.hpp"

using namespace kiln;
using kiln::test::expect_error;
using i64 = std::int64_t;

namespace {
std::string library_path() {
  const char* p = std::getenv("KILN_TEST_PLUGIN_LIBRARY");
  return p ? p : "";
}
}  // namespace

TEST_CASE("a plugin library loads, and its plugin runs from ONNX and from a plan") {
  const std::string lib = library_path();
  if (lib.empty()) {
    MESSAGE("SKIP: KILN_TEST_PLUGIN_LIBRARY names no plugin library");
    return;
  }
  CHECK(plugin::find("kiln.examples::FullyConnected@1") == nullptr);
  plugin::load_library(lib);
  const plugin::Entry* e = plugin::find("kiln.examples::FullyConnected@1");
  REQUIRE(e != nullptr);
  CHECK(e->library == std::filesystem::weakly_canonical(lib).string());
  plugin::load_library(lib);  // again: nothing happens

  kiln::test::ModelBuilder mb(17);
  auto* o = mb.m.add_opset_import();
  o->set_domain("kiln.examples");
  o->set_version(1);
  mb.input("x", {2, 3});
  mb.initializer("W", {2, 3}, {1, 0, 0, 0, 1, 1});
  mb.initializer("b", {2}, {10, 20});
  auto* n = mb.node("FullyConnected", {"x", "W", "b"}, {"y"}, "fc");
  n->set_domain("kiln.examples");
  kiln::test::ModelBuilder::integer(n, "out_features", 2);
  mb.output("y");
  const Graph g = mb.load();
  REQUIRE(g.nodes.size() == 1);
  CHECK(g.nodes[0].attr_string(plugin::kLibraryAttr, "") == e->library);
  const Tensor x = Tensor::from<float>({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor y = reference::Executor(g).run({{"x", x}}).at("y");
  CHECK(y.to_doubles() == std::vector<double>{11, 25, 14, 31});

  build::BuildOptions bo;
  bo.evaluator = &reference::constant_evaluator();
  const std::string path =
      (std::filesystem::temp_directory_path() / "kiln_test_plugin_library.plan").string();
  plan::save_plan(build::build_plan(g, bo), path);
  const plan::Plan p = plan::load_plan(path);
  std::remove(path.c_str());
  reference::PlanExecutor pe(p);
  CHECK(pe.run({{"x", x}}).at("y").to_doubles() == std::vector<double>{11, 25, 14, 31});
}

TEST_CASE("files that are no plugin library are refused, naming them") {
  // A file that is no shared library.
  const std::string junk =
      (std::filesystem::temp_directory_path() / "kiln_test_not_a_library.so").string();
  if (FILE* f = std::fopen(junk.c_str(), "wb")) {
    std::fputs("not an ELF file", f);
    std::fclose(f);
  }
  expect_error<Error>([&] { plugin::load_library(junk); }, {junk, "could not be loaded"});
  std::remove(junk.c_str());
  expect_error<Error>([] { plugin::load_library("/nonexistent/libkiln_x.so"); },
                      {"/nonexistent/libkiln_x.so", "no file"});
  // A shared library that registers no plugin (the C library itself).
  for (const char* libc :
       {"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"})
    if (std::filesystem::exists(libc)) {
      expect_error<Error>([&] { plugin::load_library(libc); }, {libc, "registers no plugin"});
      break;
    }
}
