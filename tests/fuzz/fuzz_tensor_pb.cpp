// libFuzzer target: a serialized ONNX TensorProto (the .pb inputs of `kiln run --input`).
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_util.hpp"
#include "kiln/import/onnx.hpp"

namespace {
/// External data resolves against an empty folder of our own (see fuzz_onnx.cpp).
const std::string& tensor_dir() {
  static const std::string dir = [] {
    std::string t = (std::filesystem::temp_directory_path() / "kiln-fuzz-pb-XXXXXX").string();
    if (!mkdtemp(t.data())) std::abort();
    return t;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one(
      [&] { (void)kiln::onnx::load_tensor_bytes(kiln::fuzz::bytes_of(data, size), tensor_dir()); });
}
