// The sample plugin's registration (fc_plugin.hpp): built into a program, or as the shared
// library libkiln_fc_plugin.so that `kiln build/run --plugin` loads.
#include "fc_plugin.hpp"

namespace kiln_examples {
KILN_PLUGIN(FullyConnected);
}  // namespace kiln_examples
