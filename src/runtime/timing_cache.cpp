#include "timing_cache.hpp"

#include <istream>
#include <ostream>

namespace kiln::runtime::detail {

namespace {
/// The first line; 2: tactics as to_text() (tactics.cpp) writes them.
constexpr std::string_view kCacheMagic = "kiln-timing-cache 2";
}  // namespace

TimingCacheText parse_timing_cache(std::istream& in, std::string_view identity) {
  TimingCacheText c;
  std::string magic, id;
  if (!std::getline(in, magic) || magic != kCacheMagic || !std::getline(in, id)) {
    if (magic.rfind("kiln-timing-cache ", 0) == 0 && magic.size() < 64) c.other_version = magic;
    return c;
  }
  c.identity = id;
  if (id != identity) {
    c.status = TimingCacheText::Status::other_identity;
    return c;
  }
  c.status = TimingCacheText::Status::ok;
  std::string line;
  while (std::getline(in, line)) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    c.tactics.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  return c;
}

void write_timing_cache(std::ostream& out, std::string_view identity,
                        const std::map<std::string, std::string>& tactics) {
  out << kCacheMagic << '\n' << identity << '\n';
  for (const auto& [k, v] : tactics) out << k << '\t' << v << '\n';
}

}  // namespace kiln::runtime::detail
