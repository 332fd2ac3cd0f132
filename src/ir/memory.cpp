#include "kiln/ir/memory.hpp"

#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "kiln/ir/error.hpp"
#include "kiln/ir/shape.hpp"

namespace kiln {

namespace {

std::uint64_t default_limit() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return std::uint64_t{16} << 30;  // unknown: 16 GiB
  return static_cast<std::uint64_t>(pages) / 4 * 3 * static_cast<std::uint64_t>(page);
}

std::atomic<std::uint64_t> g_limit{0};  // 0: the default
std::atomic<std::uint64_t> g_in_use{0};

}  // namespace

std::uint64_t host_memory_limit() {
  const std::uint64_t l = g_limit.load();
  if (l) return l;
  static const std::uint64_t d = default_limit();
  return d;
}

void set_host_memory_limit(std::uint64_t bytes) { g_limit.store(bytes); }

std::uint64_t host_memory_in_use() { return g_in_use.load(); }

std::string format_bytes(std::uint64_t bytes) {
  static const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return fmt::format("{} bytes", bytes);
  return fmt::format("{:.1f} {} ({} bytes)", v, units[u], bytes);
}

std::uint64_t parse_bytes(std::string_view text, std::string_view flag) {
  auto bad = [&] {
    return Error(fmt::format("{} expects a byte count such as 512M, 4G or 1073741824, got '{}'",
                             flag, text));
  };
  double value = 0;
  const auto* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || !(value >= 0) || !std::isfinite(value)) throw bad();
  std::string_view unit(p, static_cast<std::size_t>(end - p));
  if (unit.size() >= 2 && (unit.substr(1) == "iB" || unit.substr(1) == "B"))
    unit = unit.substr(0, 1);
  double scale = 1;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "K" || unit == "k")
    scale = 1024.0;
  else if (unit == "M" || unit == "m")
    scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else
    throw bad();
  const double bytes = value * scale;
  if (bytes < 1 || bytes >= 1.8e19) throw bad();
  return static_cast<std::uint64_t>(bytes);
}

std::uint64_t tensor_bytes(std::string_view what, DType dtype,
                           const std::vector<std::int64_t>& dims) {
  std::uint64_t n = 1;
  for (auto d : dims) {
    if (d < 0)
      throw ShapeError(
          fmt::format("{}: dims {} have a negative entry", what, dims_to_string(dims)));
    if (d != 0 && n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) /
                          static_cast<std::uint64_t>(d))
      throw MemoryLimitError(fmt::format("{}: {}{} has more elements than 64 bits count", what,
                                         dtype_name(dtype), dims_to_string(dims)));
    n *= static_cast<std::uint64_t>(d);
  }
  const std::uint64_t es = dtype_size(dtype);
  if (n > std::numeric_limits<std::uint64_t>::max() / 2 / es)
    throw MemoryLimitError(fmt::format("{}: {}{} needs more bytes than 64 bits count", what,
                                       dtype_name(dtype), dims_to_string(dims)));
  return n * es;
}

HostReservation::HostReservation(std::uint64_t bytes, std::string_view what) {
  const std::uint64_t limit = host_memory_limit();
  std::uint64_t used = g_in_use.load();
  do {
    if (bytes > limit || used > limit - bytes)
      throw MemoryLimitError(fmt::format(
          "{} needs {}, which passes kiln's host memory limit of {} ({} in use; raise the limit "
          "with --max-memory)",
          what, format_bytes(bytes), format_bytes(limit), format_bytes(used)));
  } while (!g_in_use.compare_exchange_weak(used, used + bytes));
  bytes_ = bytes;
}

HostReservation& HostReservation::operator=(HostReservation&& o) noexcept {
  if (this != &o) {
    release();
    bytes_ = o.bytes_;
    o.bytes_ = 0;
  }
  return *this;
}

void HostReservation::release() {
  if (bytes_) g_in_use.fetch_sub(bytes_);
  bytes_ = 0;
}

}  // namespace kiln
