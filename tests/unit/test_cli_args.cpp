// The kiln command line's option reader (tools/cli_args.hpp): options declared once with their
// help; errors name the flag.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "../../tools/cli_args.hpp"
#include "../../tools/ops_table.hpp"
#include "kiln/ir/error.hpp"

namespace kt = kiln::tools;

namespace {
void declare(kt::Command& c) {
  c.positionals("MODEL", "the model file")
      .flag("--json", "print JSON")
      .option("--save", "FILE", "write the plan to FILE")
      .repeatable("--input", "NAME=FILE", "an input file")
      .number("--iterations", "N", "timed runs")
      .number("-j", "N", "parallel jobs");
}
}  // namespace

TEST_CASE("cli: options, repeated options, numbers and positionals in any order") {
  kt::Command c("bench", "Measures a model.");
  declare(c);
  const auto a = c.parse({"--input", "x=a.npy", "m.onnx", "--json", "--input=y=b.pb",
                          "--iterations", "20", "-j", "3", "--save=out.plan"});
  REQUIRE(a.has_value());
  CHECK(a->one_positional("model") == "m.onnx");
  CHECK(a->has("--json"));
  CHECK(a->all("--input") == std::vector<std::string>{"x=a.npy", "y=b.pb"});
  CHECK(a->get("--save") == "out.plan");
  CHECK(a->number("--iterations", 0) == 20);
  CHECK(a->number("-j", 0) == 3);
  CHECK(a->number("--missing", 7) == 7);
  CHECK(a->get("--missing", "fallback") == "fallback");
}

TEST_CASE("cli: --help prints the usage and every option's help") {
  for (const char* h : {"--help", "-h"}) {
    kt::Command c("bench", "Measures a model.");
    declare(c);
    CHECK_FALSE(c.parse({"m.onnx", h}).has_value());
  }
  kt::Command c("run", "Runs a plan.", "run --plan");
  declare(c);
  const std::string help = c.help();
  CHECK(help.rfind("usage: kiln run --plan", 0) == 0);
  CHECK(help.find("Runs a plan.") != std::string::npos);
  for (const char* s : {"--json", "print JSON", "--save", "write the plan to FILE", "--input",
                        "NAME=FILE", "--iterations", "timed runs", "MODEL"})
    CHECK_MESSAGE(help.find(s) != std::string::npos, s);
}

TEST_CASE(
    "cli: an unknown flag, a missing value or a malformed number is an error naming the flag") {
  auto error_of = [](std::vector<std::string> argv) {
    kt::Command c("bench", "Measures a model.");
    declare(c);
    try {
      c.parse(argv);
    } catch (const kiln::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(error_of({"--no-such-flag", "m.onnx"}).find("kiln bench: unknown flag '--no-such-flag'") !=
        std::string::npos);
  CHECK(error_of({"m.onnx", "--iterations", "abc"}).find("--iterations") != std::string::npos);
  CHECK(error_of({"m.onnx", "--save"}).find("--save") != std::string::npos);
  CHECK(error_of({"m.onnx", "--save", "a", "--save", "b"}).find("--save") != std::string::npos);
  kt::Command c("bench", "Measures a model.");
  declare(c);
  const auto a = c.parse({"a.onnx", "b.onnx"});
  REQUIRE(a.has_value());
  CHECK_THROWS_WITH_AS(a->one_positional("model file"),
                       doctest::Contains("expected one model file, got 2 argument(s)"),
                       kiln::Error);
}

TEST_CASE(
    "cli: kiln ops --json escapes what it writes: names with quotes, backslashes and control "
    "characters round-trip") {
  kt::OpRow weird;
  weird.op = "Op\"quoted\"\\back\\slash\nnew\tline\x01\x1f end";
  weird.family = "fam\"ily";
  weird.cpu = true;
  weird.dsl_layer = "layer\\\"";
  const auto j = nlohmann::json::parse(kt::ops_json({weird, kt::OpRow{}}));
  REQUIRE(j.size() == 2);
  CHECK(j[0]["op"] == weird.op);
  CHECK(j[0]["family"] == weird.family);
  CHECK(j[0]["dsl_layer"] == weird.dsl_layer);
  CHECK(j[0]["cpu"] == true);
  CHECK(j[0]["gpu"] == false);
  CHECK(j[1]["op"] == "");
  // The real table: valid JSON with one object per row, in order.
  const auto rows = kt::ops_table();
  const auto all = nlohmann::json::parse(kt::ops_json(rows));
  REQUIRE(all.size() == rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) CHECK(all[i]["op"] == rows[i].op);
}
