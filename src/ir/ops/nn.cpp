// Shape rules of the nn op family.
#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {

void register_nn(OpRegistry& r) { (void)r; }

}  // namespace kiln::ops
