// Reference kernels of the rnn op family.
#include "families.hpp"
#include "kernel_util.hpp"

namespace kiln::reference {

void register_rnn(KernelRegistry& r) { (void)r; }

}  // namespace kiln::reference
