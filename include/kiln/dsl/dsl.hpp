// The typed DSL: networks written in C++20 whose shapes the compiler checks, lowered to the IR.
//
//   using namespace kiln::dsl;
//   auto x  = input<"data", f32, NCHW>(dyn, fix<1>, fix<28>, fix<28>);  // [N,1,28,28]
//   auto c1 = conv2d<20, kernel<5>>(x, w, "conv1");                     // [N,20,24,24]
//   ...
//   Network net = network(softmax(fully_connected<10>(f1, w, "ip2")).named("prob"));
//
// Header-only; includes only the IR. To run a network on the CPU reference, see kiln/run.hpp.
#pragma once

#include "kiln/dsl/attention.hpp"
#include "kiln/dsl/control.hpp"
#include "kiln/dsl/core.hpp"
#include "kiln/dsl/detection.hpp"
#include "kiln/dsl/elementwise.hpp"
#include "kiln/dsl/network.hpp"
#include "kiln/dsl/nn.hpp"
#include "kiln/dsl/ops.hpp"
#include "kiln/dsl/plugin.hpp"
#include "kiln/dsl/rnn.hpp"
#include "kiln/dsl/tensor_ops.hpp"
