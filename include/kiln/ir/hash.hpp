// kiln's one hash: FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3). The weights
// hash that plans record and the plan file's checksum are both this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kiln {

class Fnv1a64 {
 public:
  static constexpr std::uint64_t kOffsetBasis = 0xcbf29ce484222325ull;
  static constexpr std::uint64_t kPrime = 0x100000001b3ull;

  void bytes(const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    std::uint64_t h = h_;
    for (std::size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= kPrime;
    }
    h_ = h;
  }
  /// v as 8 little-endian bytes, whatever the host.
  void u64(std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
    bytes(b, 8);
  }
  /// The length (u64), then the bytes.
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  std::uint64_t value() const { return h_; }

 private:
  std::uint64_t h_ = kOffsetBasis;
};

/// FNV-1a 64 of n bytes.
inline std::uint64_t fnv1a64(const void* data, std::size_t n) {
  Fnv1a64 h;
  h.bytes(data, n);
  return h.value();
}

}  // namespace kiln
