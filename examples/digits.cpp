// The digits CNN of tools/digits_int8.py: conv 16 3x3, relu, conv 32 3x3, relu, max pool 2,
// fc 64, relu, fc 10. Bound to the trained model's weights through a WTS file from
// tools/gen_wts.py (PyTorch state_dict names), and calibrated to INT8 with --int8 DIR.
//   digits [digits.wts] [--input x.bin] [--output logits.bin] [--int8 DIR [--calibrator NAME]]
// --input holds N 8x8 images as raw f32 (N from the file's size).
#include "digits.hpp"

int main(int argc, char** argv) {
  return examples::run_example("digits", argc, argv, examples::digits);
}
