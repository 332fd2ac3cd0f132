#include <doctest/doctest.h>

#include "kiln/ir/graph.hpp"
