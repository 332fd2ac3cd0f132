// libFuzzer target: an ONNX model from bytes through import and shape inference, with the
// reference's constant evaluator (shape subgraphs and constant folding run on what the file says).
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_util.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/reference/executor.hpp"

namespace {
/// External data resolves against an empty folder of our own: a location that reaches a file
/// anyway has escaped the model's folder.
const std::string& model_dir() {
  static const std::string dir = [] {
    std::string t = (std::filesystem::temp_directory_path() / "kiln-fuzz-onnx-XXXXXX").string();
    if (!mkdtemp(t.data())) std::abort();
    return t;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one([&] {
    kiln::onnx::ImportOptions o;
    o.infer = true;
    o.evaluator = &kiln::reference::constant_evaluator();
    (void)kiln::onnx::load_model_bytes(kiln::fuzz::bytes_of(data, size), model_dir(), o);
  });
}
