// Reference kernels of the reduce op family.
#include "families.hpp"
#include "kernel_util.hpp"

namespace kiln::reference {

void register_reduce(KernelRegistry& r) { (void)r; }

}  // namespace kiln::reference
