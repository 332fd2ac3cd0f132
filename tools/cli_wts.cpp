// `kiln wts inspect FILE`: the dialect, then one line per weight (name, dtype, element count,
// shape where the dialect has one), then the weights hash that plans record.
#include "cli_wts.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <exception>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln::tools {

namespace {

constexpr const char* kWtsUsage = R"(usage: kiln wts inspect FILE [--dialect trt-hex|trt-binary|tensorrtx]

Reads a WTS weights file completely and prints its dialect, one line per weight (name, dtype,
element count, shape where the dialect has one) and the weights hash that a plan records.
Exits 1 with the error (file, line or byte offset, what is wrong) if the file is bad.

Dialects (detected unless --dialect is given):
  trt-hex     TensorRT samples: "name type size" + hex words (type 0 f32, 1 f16, 2 i8, 3 i32)
  trt-binary  TensorRT char-RNN sample: "name type (d0, d1, ...) " + raw little-endian bytes
  tensorrtx   tensorrtx gen_wts.py: "name count" + float32 hex words
)";

int inspect(const std::string& file, std::optional<WtsDialect> dialect) {
  WtsReadOptions opts;
  opts.dialect = dialect;
  const WtsFile f = read_wts(std::filesystem::path(file), opts);
  std::int64_t values = 0;
  std::size_t width = 4;
  for (const auto& e : f.entries) {
    values += e.count;
    width = std::max(width, e.name.size());
  }
  fmt::print("file: {}\ndialect: {}\nweights: {} ({} values)\n", file, wts_dialect_name(f.dialect),
             f.entries.size(), values);
  fmt::print("{:<{}}  {:<5}  {:>10}  {}\n", "name", width, "dtype", "count", "shape");
  for (const auto& e : f.entries)
    fmt::print("{:<{}}  {:<5}  {:>10}  {}\n", e.name, width, dtype_name(e.dtype), e.count,
               e.has_shape ? dims_to_string(e.dims) : "-");
  fmt::print("hash: {}\n", weights_hash_string(weights_hash(f.weights)));
  return 0;
}

}  // namespace

int wts_main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + std::max(argc, 0));
    for (const auto& a : args)
      if (a == "--help" || a == "-h" || a == "help") {
        fmt::print("{}", kWtsUsage);
        return 0;
      }
    if (args.empty() || args[0] != "inspect") {
      fmt::print(stderr, "kiln wts: {}\n\n{}",
                 args.empty() ? "missing the subcommand" : fmt::format("unknown subcommand '{}'", args[0]),
                 kWtsUsage);
      return 2;
    }
    std::optional<WtsDialect> dialect;
    std::vector<std::string> files;
    for (std::size_t i = 1; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a == "--dialect" || a.rfind("--dialect=", 0) == 0) {
        std::string v;
        if (a == "--dialect") {
          if (i + 1 == args.size()) {
            fmt::print(stderr, "kiln wts inspect: --dialect needs a value (trt-hex, trt-binary or tensorrtx)\n");
            return 2;
          }
          v = args[++i];
        } else {
          v = a.substr(10);
        }
        try {
          dialect = parse_wts_dialect(v);
        } catch (const Error& e) {
          fmt::print(stderr, "kiln wts inspect: {}\n", e.what());
          return 2;
        }
      } else if (a.size() > 1 && a[0] == '-') {
        fmt::print(stderr, "kiln wts inspect: unknown flag '{}'\n\n{}", a, kWtsUsage);
        return 2;
      } else {
        files.push_back(a);
      }
    }
    if (files.size() != 1) {
      fmt::print(stderr, "kiln wts inspect: expected one FILE, got {}\n\n{}", files.size(), kWtsUsage);
      return 2;
    }
    return inspect(files[0], dialect);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}

}  // namespace kiln::tools
