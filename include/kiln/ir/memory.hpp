// The host memory limit. Every allocation whose size comes from a file or a model (tensors of
// the reference executor, initializers, random inputs, a plan's arena) is counted against one
// process-wide limit before it is made, so a hostile or mistaken number is an error naming the
// tensor, its dims and the bytes asked for -- never std::bad_alloc or the kernel's OOM killer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/ir/dtype.hpp"

namespace kiln {

/// The most bytes of host tensors kiln holds at once. Default: three quarters of the machine's
/// physical memory (the CLI's --max-memory sets it).
std::uint64_t host_memory_limit();
/// Sets the limit; 0 restores the default.
void set_host_memory_limit(std::uint64_t bytes);
/// Bytes of host tensors alive now.
std::uint64_t host_memory_in_use();

/// "37.3 GiB (40000000000 bytes)"
std::string format_bytes(std::uint64_t bytes);
/// Parses "512M", "2G", "1.5GiB", "1000000" (bytes); throws Error naming `flag` otherwise.
std::uint64_t parse_bytes(std::string_view text, std::string_view flag);

/// The bytes of `dims` elements of `dtype`; throws MemoryLimitError naming `what` when the count
/// or the byte size overflows 64 bits.
std::uint64_t tensor_bytes(std::string_view what, DType dtype,
                           const std::vector<std::int64_t>& dims);

/// Host bytes counted against the limit for as long as it lives (move-only).
class HostReservation {
 public:
  HostReservation() = default;
  /// Reserves `bytes` for `what` (e.g. "tensor f32[2,3]", "the plan's arena"); throws
  /// MemoryLimitError when the limit would be passed.
  HostReservation(std::uint64_t bytes, std::string_view what);
  HostReservation(HostReservation&& o) noexcept : bytes_(o.bytes_) { o.bytes_ = 0; }
  HostReservation& operator=(HostReservation&& o) noexcept;
  HostReservation(const HostReservation&) = delete;
  HostReservation& operator=(const HostReservation&) = delete;
  ~HostReservation() { release(); }
  void release();
  std::uint64_t bytes() const { return bytes_; }

 private:
  std::uint64_t bytes_ = 0;
};

}  // namespace kiln
