// A small Transformer encoder (token and position embeddings, 2 post-norm
// nn.TransformerEncoderLayer blocks, width 64, 4 heads) bound to a PyTorch state_dict through a
// WTS file from tools/gen_wts.py, under the state_dict's own names (the packed in_proj_weight
// included).
//   encoder [encoder.wts] [--input ids.bin] [--output hidden.bin]
// --input holds N x 16 token ids as raw little-endian int64 (N from the file's size).
#include "encoder.hpp"

int main(int argc, char** argv) {
  return examples::run_example("encoder", argc, argv, examples::encoder);
}
