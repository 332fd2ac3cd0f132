// One registration function per op family of reference kernels (ir/ops/families.def), one file
// each.
#pragma once

#include "kiln/reference/executor.hpp"

namespace kiln::reference {

#define KILN_OP_FAMILY(family) void register_##family(KernelRegistry& r);
#include "ir/ops/families.def"
#undef KILN_OP_FAMILY

inline void register_all(KernelRegistry& r) {
#define KILN_OP_FAMILY(family) register_##family(r);
#include "ir/ops/families.def"
#undef KILN_OP_FAMILY
}

}  // namespace kiln::reference
