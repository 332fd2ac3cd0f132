// Shared by the fuzz targets and the seed writer (docs/RELIABILITY.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "kiln/ir/error.hpp"
#include "kiln/ir/memory.hpp"

namespace kiln::fuzz {

/// The identity line of the timing caches that fuzz_timing_cache reads and fuzz_seeds writes
/// (a cache made elsewhere is skipped whole, so seeds carry this one to reach the tactic lines).
inline constexpr const char* kCacheIdentity = "fuzz GPU | sm_90 | 132 SMs | driver 13000 | cudnn 9";

inline std::string bytes_of(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

/// A fresh empty folder, made once per process: external data resolves against it, so a location
/// that reaches a file anyway has escaped the model's folder.
inline const std::string& empty_dir() {
  static const std::string dir = [] {
    std::string t = (std::filesystem::temp_directory_path() / "kiln-fuzz-XXXXXX").string();
    if (!mkdtemp(t.data())) std::abort();
    return t;
  }();
  return dir;
}

/// Runs `f` on one input: kiln's typed errors are the expected answer to a bad file; anything
/// else (a crash, a sanitizer report, another exception, which aborts) is a finding.
template <class F>
int run_one(F&& f) {
  // kiln's host memory limit, well under libFuzzer's -rss_limit_mb=2048: a file that asks for
  // more must get kiln's MemoryLimitError (the promise); only an allocation that bypasses the
  // limit trips libFuzzer.
  static const bool limited = (set_host_memory_limit(std::uint64_t{512} << 20), true);
  (void)limited;
  try {
    f();
  } catch (const kiln::Error&) {}
  return 0;
}

}  // namespace kiln::fuzz
