// libFuzzer target: a serialized ONNX TensorProto (the .pb inputs of `kiln run --input`), and the
// same bytes read as a SequenceProto and an OptionalProto (a sequence's or optional's value file);
// external data resolves against an empty folder of our own.
#include "fuzz_util.hpp"
#include "kiln/import/onnx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes = kiln::fuzz::bytes_of(data, size);
  kiln::fuzz::run_one([&] { (void)kiln::onnx::load_tensor_bytes(bytes, kiln::fuzz::empty_dir()); });
  for (auto kind : {kiln::ValueKind::sequence, kiln::ValueKind::optional_tensor,
                    kiln::ValueKind::optional_sequence})
    kiln::fuzz::run_one([&] {
      (void)kiln::onnx::load_value_bytes(bytes, kiln::TensorType{kiln::DType::f32, {}, kind},
                                         kiln::fuzz::empty_dir());
    });
  return 0;
}
