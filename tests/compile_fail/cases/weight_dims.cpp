// A weight of a zero dim.
// expect: weight<dims...>: give every dim of the weight, fixed and positive
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f(const Weights& w) { auto t = weight<0, 64>(w, "pos.weight"); }
