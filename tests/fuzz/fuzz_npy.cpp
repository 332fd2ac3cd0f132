// libFuzzer target: the .npy reader of `kiln run --input` (tools/npy.cpp).
#include "../../tools/npy.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one(
      [&] { (void)kiln::tools::parse_npy(kiln::fuzz::bytes_of(data, size), "<fuzz>"); });
}
