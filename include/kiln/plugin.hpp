// The plugin API (its home is the IR layer, include/kiln/ir/plugin.hpp, which every layer and
// the runtime read): what a plugin type declares, KILN_PLUGIN, and loading plugin libraries.
#pragma once

#include "kiln/ir/plugin.hpp"
