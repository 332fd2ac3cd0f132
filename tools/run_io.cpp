#include "run_io.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"

namespace kiln::tools {
namespace {

std::string file_safe(const std::string& name) {
  std::string file = name;
  for (char& c : file)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
  return file;
}

std::pair<std::string, std::string> name_and_file(const std::string& flag,
                                                  const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    throw Error(fmt::format("{} expects NAME=FILE (.pb or .npy), got '{}'", flag, spec));
  return {spec.substr(0, eq), spec.substr(eq + 1)};
}

}  // namespace

Tensor random_tensor(const TensorType& t, std::mt19937_64& rng) {
  std::vector<std::int64_t> dims;
  for (const auto& d : t.shape) dims.push_back(d.is_fixed() ? d.value() : 1);
  Tensor x(t.dtype, dims);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 9);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.set(i, is_float(t.dtype)
                 ? u(rng)
                 : static_cast<double>(t.dtype == DType::boolean ? small(rng) % 2 : small(rng)));
  return x;
}

void add_input_options(Command& c) {
  c.repeatable("--input", "NAME=FILE", "input NAME from FILE (.npy, or .pb: an ONNX TensorProto)")
      .number("--seed", "N", "seed of the random inputs (uniform in [-1, 1]; default 1)")
      .option("--shapes", "LIST",
              "input dims, NAME:DxDx... separated by commas (the trtexec syntax): random inputs "
              "are drawn "
              "at them and a dynamic model or plan runs at them")
      .number(
          "--profile", "N",
          "a dynamic plan: the profile to run under (default: the first that accepts the shapes)");
}

plan::ShapeMap shapes_option(const Args& args, const std::vector<ValueInfo>& inputs) {
  if (!args.has("--shapes")) return {};
  plan::ShapeMap s = plan::parse_shape_list(args.get("--shapes"), "--shapes");
  for (const auto& [name, dims] : s) {
    const ValueInfo* vi = nullptr;
    for (const auto& i : inputs)
      if (i.name == name) vi = &i;
    if (!vi) {
      std::vector<std::string> names;
      for (const auto& i : inputs) names.push_back(i.name);
      throw ShapeError(fmt::format("--shapes {}: the model has no input '{}' (its inputs: {})",
                                   name, name, fmt::join(names, ", ")));
    }
    const Shape& want = vi->type.shape;
    bool fits = dims.size() == want.rank();
    for (std::size_t d = 0; fits && d < dims.size(); ++d)
      fits = dims[d] >= 1 && (!want[d].is_fixed() || want[d].value() == dims[d]);
    if (!fits)
      throw ShapeError(
          fmt::format("--shapes {}: input '{}' is {}; {} does not fit it (dims at least 1, fixed "
                      "dims as they are)",
                      name, name, vi->type.to_string(), dims_to_string(dims)));
  }
  return s;
}

void add_output_options(Command& c) {
  c.option("--output-dir", "DIR", "write each output as DIR/NAME.pb (or .npy)")
      .option("--output-format", "pb|npy", "the format of --output-dir's files (default pb)");
}

void add_expected_options(Command& c, const std::string& tolerance_default) {
  c.repeatable("--expected", "NAME=FILE", "compare output NAME with FILE (.npy or .pb)")
      .option("--expected-dir", "DIR",
              "compare the N-th output with DIR/output_N.pb, and take inputs not given from "
              "DIR/input_N.pb (an ONNX test folder)")
      .number("--tolerance", "T",
              "largest max|out-exp|/max|exp| accepted (default " + tolerance_default + ")");
}

namespace {
/// A value file of type `type`: a tensor's .pb or .npy; a sequence's or optional's .pb
/// (SequenceProto, OptionalProto).
Tensor load_value_file(const std::string& file, const TensorType& type) {
  if (type.is_tensor()) return load_tensor_file(file);
  if (std::filesystem::path(file).extension() != ".pb")
    throw Error(fmt::format("'{}': a value of type {} is read from a .pb file (an ONNX {})", file,
                            type.to_string(),
                            type.kind == ValueKind::sequence ? "SequenceProto" : "OptionalProto"));
  return onnx::load_value(file, type);
}

/// Prints one tensor's line of report_outputs.
void print_tensor(const std::string& label, const Tensor& t) {
  double sum = 0;
  std::vector<std::string> head;
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    sum += t.get(i);
    if (i < 6) head.push_back(fmt::format("{:.6g}", t.get(i)));
  }
  fmt::print("{}: {} checksum {:.9g} first [{}{}]\n", label, t.type_string(), sum,
             fmt::join(head, ", "), t.numel() > 6 ? ", ..." : "");
}
}  // namespace

reference::TensorMap input_files(const Args& args, const std::vector<ValueInfo>& inputs) {
  reference::TensorMap given;
  for (const auto& spec : args.all("--input")) {
    auto [name, file] = name_and_file("--input", spec);
    TensorType type;  // a tensor, where `inputs` does not name it
    for (const auto& vi : inputs)
      if (vi.name == name) type = vi.type;
    given[name] = load_value_file(file, type);
  }
  return given;
}

reference::TensorMap run_inputs(const Args& args, const std::vector<ValueInfo>& inputs,
                                bool random) {
  reference::TensorMap given = input_files(args, inputs);
  for (const auto& [name, t] : given) {
    bool known = false;
    for (const auto& vi : inputs) known |= vi.name == name;
    if (!known) {
      std::vector<std::string> names;
      for (const auto& vi : inputs) names.push_back(vi.name);
      throw Error(fmt::format("--input {}: the model has no input '{}' (its inputs: {})", name,
                              name, fmt::join(names, ", ")));
    }
  }
  const plan::ShapeMap shapes = shapes_option(args, inputs);
  const std::string dir = args.get("--expected-dir");
  std::mt19937_64 rng(static_cast<std::uint64_t>(args.number("--seed", 1)));
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto& vi = inputs[i];
    if (!given.count(vi.name) && !dir.empty()) {
      const auto file = std::filesystem::path(dir) / fmt::format("input_{}.pb", i);
      if (std::filesystem::exists(file)) given[vi.name] = onnx::load_value(file.string(), vi.type);
    }
    if (!given.count(vi.name)) {
      if (!random) continue;
      if (!vi.type.is_tensor())
        throw Error(
            fmt::format("input '{}' is {}: give it with --input {}=FILE.pb or "
                        "--expected-dir (kiln makes random tensors only)",
                        vi.name, vi.type.to_string(), vi.name));
      try {
        auto sh = shapes.find(vi.name);
        given[vi.name] = random_tensor(
            sh == shapes.end() ? vi.type : TensorType{vi.type.dtype, Shape::of(sh->second)}, rng);
      } catch (const MemoryLimitError& e) {
        throw MemoryLimitError(fmt::format("random input '{}': {}", vi.name, e.what()));
      }
    }
    if (!given[vi.name].is_tensor()) continue;  // the executor checks it against its type
    if (auto sh = shapes.find(vi.name); sh != shapes.end() && given[vi.name].dims() != sh->second)
      throw ShapeError(fmt::format("--shapes gives input '{}' the dims {}, its file holds {}",
                                   vi.name, dims_to_string(sh->second),
                                   dims_to_string(given[vi.name].dims())));
    if (given[vi.name].dtype() != vi.type.dtype)
      given[vi.name] = given[vi.name].cast(vi.type.dtype);
  }
  return given;
}

void write_outputs_npy(const std::string& dir, const std::vector<std::string>& names,
                       const reference::TensorMap& outputs, bool as_f32) {
  std::filesystem::create_directories(dir);
  for (const auto& name : names) {
    const Tensor& t = outputs.at(name);
    const auto path = (std::filesystem::path(dir) / (file_safe(name) + ".npy")).string();
    write_npy(as_f32 && t.dtype() != DType::f32 ? t.cast(DType::f32) : t, path);
    fmt::print("wrote {}\n", path);
  }
}

void report_outputs(const Args& args, const std::vector<std::string>& names,
                    const reference::TensorMap& outputs) {
  const std::string out_dir = args.get("--output-dir");
  const std::string format = args.get("--output-format", "pb");
  if (format != "pb" && format != "npy")
    throw Error(fmt::format("--output-format expects pb or npy, got '{}'", format));
  if (!out_dir.empty()) std::filesystem::create_directories(out_dir);
  for (const auto& name : names) {
    const Tensor& t = outputs.at(name);
    const auto base = std::filesystem::path(out_dir) / file_safe(name);
    if (!t.is_tensor()) {  // a sequence: a line each tensor; NAME.pb a SequenceProto, or NAME_I.npy
      fmt::print("output {}: {}\n", name, t.type_string());
      if (t.is_sequence())
        for (std::size_t i = 0; i < t.elements().size(); ++i) {
          print_tensor(fmt::format("  {}[{}]", name, i), t.elements()[i]);
          if (!out_dir.empty() && format == "npy")
            write_npy(t.elements()[i], fmt::format("{}_{}.npy", base.string(), i));
        }
      if (!out_dir.empty() && format == "pb") onnx::save_value(t, base.string() + ".pb", name);
      continue;
    }
    print_tensor("output " + name, t);
    if (!out_dir.empty()) {
      if (format == "npy")
        write_npy(t, base.string() + ".npy");
      else
        onnx::save_tensor(t, base.string() + ".pb", name);
    }
  }
}

reference::TensorMap expected_outputs(const Args& args, const std::vector<std::string>& names,
                                      const std::vector<TensorType>& types) {
  auto type_of = [&](std::size_t i) { return i < types.size() ? types[i] : TensorType{}; };
  reference::TensorMap expected;
  const std::string dir = args.get("--expected-dir");
  if (!dir.empty()) {
    if (!std::filesystem::is_directory(dir))
      throw Error(fmt::format("--expected-dir '{}' is not a folder", dir));
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto file = std::filesystem::path(dir) / fmt::format("output_{}.pb", i);
      if (std::filesystem::exists(file))
        expected[names[i]] = onnx::load_value(file.string(), type_of(i));
    }
    if (expected.empty()) throw Error(fmt::format("--expected-dir '{}' holds no output_N.pb", dir));
  }
  for (const auto& spec : args.all("--expected")) {
    auto [name, file] = name_and_file("--expected", spec);
    if (std::find(names.begin(), names.end(), name) == names.end())
      throw Error(fmt::format("--expected {}: the model has no output '{}' (its outputs: {})", name,
                              name, fmt::join(names, ", ")));
    const auto at = std::find(names.begin(), names.end(), name) - names.begin();
    expected[name] = load_value_file(file, type_of(static_cast<std::size_t>(at)));
  }
  return expected;
}

double relative_error(const Tensor& got, const Tensor& expected, const std::string& name) {
  if (!got.is_tensor() || !expected.is_tensor()) {  // a sequence: its tensors' largest error
    const bool same_kind =
        got.is_sequence() == expected.is_sequence() && got.is_none() == expected.is_none() &&
        (!got.is_sequence() || got.elements().size() == expected.elements().size());
    if (!same_kind)
      throw Error(fmt::format("output '{}': {} does not match the expected {}", name,
                              got.type_string(), expected.type_string()));
    double worst = 0;
    if (got.is_sequence())
      for (std::size_t i = 0; i < got.elements().size(); ++i)
        worst = std::max(worst, relative_error(got.elements()[i], expected.elements()[i],
                                               fmt::format("{}[{}]", name, i)));
    return worst;
  }
  if (got.numel() != expected.numel())
    throw Error(fmt::format("output '{}': {} does not match the expected {}", name,
                            got.type_string(), expected.type_string()));
  double worst = 0, scale = 0;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const double e = expected.get(i), g = got.get(i);
    const double d = std::isnan(e) && std::isnan(g) ? 0.0 : std::abs(g - e);
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    scale = std::max(scale, std::abs(e));
  }
  return scale > 0 ? worst / scale : worst;
}

bool check_expected(const reference::TensorMap& expected, const reference::TensorMap& outputs,
                    double tolerance) {
  bool ok = true;
  for (const auto& [name, exp] : expected) {
    const double err = relative_error(outputs.at(name), exp, name);
    const bool over = !(err <= tolerance);
    ok &= !over;
    fmt::print("expected {}: max|out-exp|/max|exp| = {:.3g} (tolerance {:.3g}) {}\n", name, err,
               tolerance, over ? "OVER" : "ok");
  }
  return ok;
}

void refuse_to_overwrite(const std::string& out, const std::string& flag,
                         const std::vector<std::pair<std::string, std::string>>& inputs) {
  std::error_code ec;
  if (!std::filesystem::exists(out, ec)) return;
  for (const auto& [path, what] : inputs)
    if (std::filesystem::equivalent(out, path, ec))
      throw Error(
          fmt::format("{} '{}' is {} being read ('{}'); kiln does not write over what it "
                      "reads: choose another file",
                      flag, out, what, path));
}

void write_text_file(const std::string& path, const std::string& text, const std::string& who) {
  std::ofstream f(path);
  f << text;
  if (!f) throw Error(fmt::format("{}: cannot write '{}'", who, path));
}

}  // namespace kiln::tools
