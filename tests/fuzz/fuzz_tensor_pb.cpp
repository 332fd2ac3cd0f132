// libFuzzer target: a serialized ONNX TensorProto (the .pb inputs of `kiln run --input`);
// external data resolves against an empty folder of our own.
#include "fuzz_util.hpp"
#include "kiln/import/onnx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one([&] {
    (void)kiln::onnx::load_tensor_bytes(kiln::fuzz::bytes_of(data, size), kiln::fuzz::empty_dir());
  });
}
