// One registration function per op family (families.def); each lives in its own file in this
// folder.
#pragma once

#include "kiln/ir/op_registry.hpp"

namespace kiln::ops {

#define KILN_OP_FAMILY(family) void register_##family(OpRegistry& r);
#include "families.def"
#undef KILN_OP_FAMILY

inline void register_all(OpRegistry& r) {
#define KILN_OP_FAMILY(family) register_##family(r);
#include "families.def"
#undef KILN_OP_FAMILY
}

}  // namespace kiln::ops
