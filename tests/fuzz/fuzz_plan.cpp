// libFuzzer target: the plan loader and the validation it runs on what it read
// (kiln::plan::deserialize_plan, which ends in validate() of src/plan/plan_file.cpp), then the
// CPU reference's check that it has a kernel for every step (reference::PlanExecutor).
//
// Before loading, the payload size and the checksum are made to agree with the bytes: a mutated
// file otherwise stops at the checksum, and a checksum proves integrity, not validity (issue 18
// item 3 was such a file).
#include <cstring>

#include "fuzz_util.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/plan_executor.hpp"

namespace {

/// Writes the payload size and checksum that `b` needs, where its header parses that far.
void reseal(std::string& b) {
  std::size_t at = 8 + 4;        // magic, format version
  for (int i = 0; i < 2; ++i) {  // library version, target
    std::uint32_t n = 0;
    if (b.size() < at + 4) return;
    std::memcpy(&n, b.data() + at, 4);
    at += 4 + std::size_t{n};
  }
  at += 8;  // weights hash
  if (b.size() < at + 8 + 8) return;
  const std::uint64_t payload = b.size() - at - 8 - 8;
  std::memcpy(b.data() + at, &payload, 8);
  const std::uint64_t sum = kiln::plan::plan_checksum(std::string_view(b).substr(0, b.size() - 8));
  std::memcpy(b.data() + b.size() - 8, &sum, 8);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes = kiln::fuzz::bytes_of(data, size);
  reseal(bytes);
  return kiln::fuzz::run_one([&] {
    const kiln::plan::Plan p = kiln::plan::deserialize_plan(bytes);
    kiln::reference::PlanExecutor exec(p);
  });
}
