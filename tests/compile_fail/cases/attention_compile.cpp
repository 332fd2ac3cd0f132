// must-compile
// Grouped-query, multi-query, masked and 4-D attention layers and rotary embeddings, with the
// output types they give.
#include "kiln/dsl/dsl.hpp"
using namespace kiln::dsl;
void f() {
  auto q = input<"q", f32>(dyn, fix<16>, fix<512>);
  auto k = input<"k", f32>(dyn, fix<16>, fix<128>);
  auto v = input<"v", f32>(dyn, fix<16>, fix<128>);
  auto m = input<"m", boolean>(fix<16>, fix<16>);
  Tensor<f32, Any, -1, 16, 512> y = attention<8, kv_heads<2>, head_dim<64>, causal>(q, k, v, {}, "attn");
  Tensor<f32, Any, -1, 16, 512> y2 = attention<8, kv_heads<2>>(q, k, v, m, {.scale = 0.5});
  auto q4 = input<"q4", f32>(dyn, fix<8>, fix<16>, fix<64>);
  auto k4 = input<"k4", f32>(dyn, fix<1>, fix<20>, fix<64>);
  auto v4 = input<"v4", f32>(dyn, fix<1>, fix<20>, fix<32>);
  Tensor<f32, Any, -1, 8, 16, 32> y4 = attention<8, kv_heads<1>>(q4, k4, v4);
  auto cos = input<"cos", f32>(fix<64>, fix<16>);
  auto sin = input<"sin", f32>(fix<64>, fix<16>);
  auto pos = input<"pos", i64>(dyn, fix<16>);
  Tensor<f32, Any, -1, 16, 512> r = rotary_embedding<8, interleaved, rotary_dim<32>>(q, cos, sin, pos);
  Tensor<f32, Any, -1, 8, 16, 64> r4 = rotary_embedding<8>(q4, input<"c3", f32>(dyn, fix<16>, fix<32>),
                                                           input<"s3", f32>(dyn, fix<16>, fix<32>));
}
