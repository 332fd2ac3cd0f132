// libFuzzer target: the timing cache reader of the CUDA runtime (src/runtime/timing_cache.cpp,
// host code only), and the cache written back from what it read, which must read the same.
#include <cstdlib>
#include <map>
#include <sstream>

#include "fuzz_util.hpp"
#include "runtime/timing_cache.hpp"

using kiln::runtime::detail::TimingCacheText;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(kiln::fuzz::bytes_of(data, size));
  const TimingCacheText c =
      kiln::runtime::detail::parse_timing_cache(in, kiln::fuzz::kCacheIdentity);
  if (c.status != TimingCacheText::Status::ok) return 0;
  std::map<std::string, std::string> tactics;
  for (const auto& [k, v] : c.tactics) tactics.emplace(k, v);
  std::ostringstream out;
  kiln::runtime::detail::write_timing_cache(out, kiln::fuzz::kCacheIdentity, tactics);
  std::istringstream again(out.str());
  const TimingCacheText d =
      kiln::runtime::detail::parse_timing_cache(again, kiln::fuzz::kCacheIdentity);
  // Keys hold no tab or newline; values no newline: the file order of the written map survives.
  std::map<std::string, std::string> back(d.tactics.begin(), d.tactics.end());
  if (d.status != TimingCacheText::Status::ok || back != tactics) std::abort();
  return 0;
}
