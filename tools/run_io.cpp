#include "run_io.hpp"

#include <cctype>
#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "kiln/import/onnx.hpp"

namespace kiln::tools {

Tensor random_tensor(const TensorType& t, std::mt19937_64& rng) {
  std::vector<std::int64_t> dims;
  for (const auto& d : t.shape) dims.push_back(d.is_fixed() ? d.value() : 1);
  Tensor x(t.dtype, dims);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> small(0, 9);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.set(i, is_float(t.dtype) ? u(rng)
                               : static_cast<double>(t.dtype == DType::boolean ? small(rng) % 2 : small(rng)));
  return x;
}

reference::TensorMap run_inputs(const Args& args, const std::vector<ValueInfo>& inputs) {
  reference::TensorMap given;
  for (const auto& spec : args.all("--input")) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos) throw Error("kiln run: --input expects NAME=FILE.pb, got '" + spec + "'");
    given[spec.substr(0, eq)] = onnx::load_tensor(spec.substr(eq + 1));
  }
  std::mt19937_64 rng(static_cast<std::uint64_t>(args.number("--seed", 1)));
  for (const auto& vi : inputs)
    if (!given.count(vi.name)) given[vi.name] = random_tensor(vi.type, rng);
  return given;
}

void report_outputs(const Args& args, const std::vector<std::string>& names,
                    const reference::TensorMap& outputs) {
  const std::string out_dir = args.get("--output-dir");
  if (!out_dir.empty()) std::filesystem::create_directories(out_dir);
  for (const auto& name : names) {
    const Tensor& t = outputs.at(name);
    double sum = 0;
    std::vector<std::string> head;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      sum += t.get(i);
      if (i < 6) head.push_back(fmt::format("{:.6g}", t.get(i)));
    }
    fmt::print("output {}: {} checksum {:.9g} first [{}{}]\n", name, t.type_string(), sum,
               fmt::join(head, ", "), t.numel() > 6 ? ", ..." : "");
    if (!out_dir.empty()) {
      std::string file = name;
      for (char& c : file)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') c = '_';
      onnx::save_tensor(t, (std::filesystem::path(out_dir) / (file + ".pb")).string(), name);
    }
  }
}

}  // namespace kiln::tools
