// Shape rules of the rnn op family.
#include "families.hpp"
#include "infer_util.hpp"

namespace kiln::ops {

void register_rnn(OpRegistry& r) { (void)r; }

}  // namespace kiln::ops
