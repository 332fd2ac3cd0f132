// libFuzzer target: the INT8 calibration cache reader (TensorRT's text format,
// src/passes/calibration.cpp), and the cache written back from what it read, which must read the
// same scales.
#include <bit>
#include <cstdlib>

#include "fuzz_util.hpp"
#include "kiln/build/calibration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return kiln::fuzz::run_one([&] {
    const auto scales =
        kiln::build::parse_calibration_cache(kiln::fuzz::bytes_of(data, size), "fuzz");
    // Names that hold a newline or end in ':' (possible in what was read) cannot round-trip.
    for (const auto& [name, _] : scales)
      if (name.find('\n') != std::string::npos || name.find('\r') != std::string::npos) return;
    const auto again = kiln::build::parse_calibration_cache(
        kiln::build::calibration_cache_text(kiln::build::Calibrator::entropy, scales),
        "fuzz (written back)");
    if (again.size() != scales.size()) std::abort();
    for (const auto& [name, s] : scales)
      if (!again.count(name) ||
          std::bit_cast<std::uint32_t>(again.at(name)) != std::bit_cast<std::uint32_t>(s))
        std::abort();
  });
}
