// Reference kernels of the elementwise op family.
#include "families.hpp"
#include "kernel_util.hpp"

namespace kiln::reference {

void register_elementwise(KernelRegistry& r) { (void)r; }

}  // namespace kiln::reference
