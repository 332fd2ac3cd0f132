// libFuzzer target: the .npy reader of `kiln run --input` and calibration data
// (src/import/npy.cpp).
#include "fuzz_util.hpp"
#include "kiln/import/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one(
      [&] { (void)kiln::parse_npy(kiln::fuzz::bytes_of(data, size), "<fuzz>"); });
}
