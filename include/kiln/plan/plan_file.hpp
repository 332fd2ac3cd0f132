// Plan files: a versioned, checksummed binary form of a Plan.
//
//   "KILNPLAN"                      8 bytes, the magic
//   u32 format version              kPlanFormatVersion
//   str library version             the kiln that wrote it
//   str target                      Target::name ("cpu-reference", "cuda-sm90", ...)
//   u64 weights hash                of the weights the plan was built from
//   u64 payload size, payload       the plan (steps, bindings, memory plan, weights, tactics)
//   u64 checksum                    FNV-1a 64 (kiln/ir/hash.hpp) over every byte before it
//
// Integers are little-endian; str is a u32 length and bytes. Weight bytes start at a multiple of
// 16 from the start of the file. Loading refuses, with a FormatError saying what differs, a wrong
// magic, format version, library version, target or weights hash, a truncation or a checksum
// mismatch; it never crashes on any input.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kiln/plan/plan.hpp"

namespace kiln::plan {

/// 2: GPU tactics after the weights; 3: the checksum is FNV-1a 64 with its offset basis (kiln/ir/hash.hpp)
inline constexpr std::uint32_t kPlanFormatVersion = 3;
/// The kiln version written into plan files.
const char* library_version();

struct LoadExpectations {
  std::string target;                         ///< empty: any target
  std::optional<std::uint64_t> weights_hash;  ///< the weights the caller has, if it cares
};

std::string serialize_plan(const Plan& p);
Plan deserialize_plan(const std::string& bytes, const LoadExpectations& expect = {});

void save_plan(const Plan& p, const std::string& path);
/// Throws FormatError (unreadable, truncated, corrupt, built for something else).
Plan load_plan(const std::string& path, const LoadExpectations& expect = {});

}  // namespace kiln::plan
