// The timing cache file's text form, apart from the engine so that it builds and is fuzzed
// without CUDA (tests/fuzz/fuzz_timing_cache.cpp):
//
//   kiln-timing-cache 2
//   IDENTITY                 the GPU, driver and libraries the tactics were timed on
//   KEY<tab>TACTIC           one per line, Step::tactic_key() and the tactic as text
#pragma once

#include <iosfwd>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::runtime::detail {

struct TimingCacheText {
  enum class Status { ok, not_a_cache, other_identity };
  Status status = Status::not_a_cache;
  std::string identity;       ///< the file's identity line (empty when not a cache)
  std::string other_version;  ///< the first line of a cache of another version (not_a_cache)
  std::vector<std::pair<std::string, std::string>> tactics;  ///< file order; only when ok
};

/// Reads a timing cache made on `identity`; lines without a tab are skipped. Never throws on any
/// content: a file of another kind or made elsewhere comes back as such, without tactics.
TimingCacheText parse_timing_cache(std::istream& in, std::string_view identity);

/// Writes the cache text for `identity` and `tactics`.
void write_timing_cache(std::ostream& out, std::string_view identity,
                        const std::map<std::string, std::string>& tactics);

}  // namespace kiln::runtime::detail
