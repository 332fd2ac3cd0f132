// libFuzzer target: an ONNX model from bytes through import and shape inference, with the
// reference's constant evaluator (shape subgraphs and constant folding run on what the file says).
// External data resolves against an empty folder of our own.
#include "fuzz_util.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/reference/executor.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one([&] {
    kiln::onnx::ImportOptions o;
    o.infer = true;
    o.evaluator = &kiln::reference::constant_evaluator();
    (void)kiln::onnx::load_model_bytes(kiln::fuzz::bytes_of(data, size), kiln::fuzz::empty_dir(),
                                       o);
  });
}
