// Reference kernels of the nn op family.
#include "families.hpp"
#include "kernel_util.hpp"

namespace kiln::reference {

void register_nn(KernelRegistry& r) { (void)r; }

}  // namespace kiln::reference
