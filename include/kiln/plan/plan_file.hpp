// Plan files: a versioned, checksummed binary form of a Plan.
//
//   "KILNPLAN"                      8 bytes, the magic
//   u32 format version              kPlanFormatVersion
//   str library version             the kiln that wrote it
//   str target                      Target::name ("cpu-reference", "cuda-sm90", ...)
//   u64 weights hash                of the weights the plan was built from
//   u64 payload size, payload       the plan (steps, bindings, memory plan, weights, tactics,
//                                   profiles, source graph and buckets of a dynamic plan)
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
#include <string_view>

#include "kiln/plan/plan.hpp"

namespace kiln::plan {

/// 2: GPU tactics after the weights; 3: the tactics as the runtime's typed Tactic writes them
/// ("cudnn-graph 2 ws 0 ms 0.01"; format 2's free text is refused with the file), and the
/// checksum is FNV-1a 64 with its offset basis (kiln/ir/hash.hpp);
/// 4: after the tactics, the profiles of a dynamic plan and, when there are any, the graph it is
/// specialized from (inputs with their symbolic dims, outputs, weights, nodes);
/// 5: after the source graph, a dynamic plan's buckets (profile, shape, step -> problem key).
inline constexpr std::uint32_t kPlanFormatVersion = 5;
/// The kiln version written into plan files.
const char* library_version();

struct LoadExpectations {
  std::string target;                         ///< empty: any target
  std::optional<std::uint64_t> weights_hash;  ///< the weights the caller has, if it cares
};

std::string serialize_plan(const Plan& p);
/// Reads a plan and validates it (validate_plan): a file whose checksum is right can still be
/// hostile.
Plan deserialize_plan(const std::string& bytes, const LoadExpectations& expect = {});
/// Recomputes the checksum of serialized plan bytes after an edit (tools that patch plans; tests
/// that prove the loader checks more than integrity).
void reseal_plan(std::string& bytes);

/// FNV-1a 64 of `bytes`: the checksum that ends a plan file, over every byte before it.
std::uint64_t plan_checksum(std::string_view bytes);

void save_plan(const Plan& p, const std::string& path);
/// Throws FormatError (unreadable, truncated, corrupt, built for something else).
Plan load_plan(const std::string& path, const LoadExpectations& expect = {});

}  // namespace kiln::plan
