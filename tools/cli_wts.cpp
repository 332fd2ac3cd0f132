// `kiln wts inspect FILE`: the dialect, then one line per weight (name, dtype, element count,
// shape where the dialect has one), then the weights hash that plans record.
#include "cli_wts.hpp"

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli_args.hpp"
#include "kiln/import/wts.hpp"
#include "kiln/ir/error.hpp"

namespace kiln::tools {

namespace {

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

int cmd_wts(const std::vector<std::string>& argv) {
  Command c(
      "wts",
      "Reads a WTS weights file completely and prints its dialect, one line per weight (name, "
      "dtype,\n"
      "element count, shape where the dialect has one) and the weights hash that a plan records.\n"
      "Exits 1 with the error (file, line or byte offset, what is wrong) if the file is bad.\n",
      "wts inspect");
  c.positionals("FILE", "the WTS file")
      .option("--dialect", "trt-hex|trt-binary|tensorrtx",
              "the file's dialect (detected when not given)");
  c.footer(
      "Dialects:\n"
      "  trt-hex     TensorRT samples: \"name type size\" + hex words (type 0 f32, 1 f16, 2 i8, 3 "
      "i32)\n"
      "  trt-binary  TensorRT char-RNN sample: \"name type (d0, d1, ...) \" + raw little-endian "
      "bytes\n"
      "  tensorrtx   tensorrtx gen_wts.py: \"name count\" + float32 hex words\n");
  const bool is_inspect = !argv.empty() && argv[0] == "inspect";
  const auto args =
      c.parse(is_inspect ? std::vector<std::string>(argv.begin() + 1, argv.end()) : argv);
  if (!args) return 0;
  if (!is_inspect)
    throw Error(
        argv.empty()
            ? "kiln wts: missing the subcommand (see kiln wts --help)"
            : fmt::format("kiln wts: unknown subcommand '{}' (see kiln wts --help)", argv[0]));
  std::optional<WtsDialect> dialect;
  if (args->has("--dialect")) dialect = parse_wts_dialect(args->get("--dialect"));
  return inspect(args->one_positional("FILE"), dialect);
}

}  // namespace kiln::tools
