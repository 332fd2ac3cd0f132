// Max and average pooling (pads, strides, dilations, ceil mode, count_include_pad, global,
// 1-D) against the CPU reference, in f32 and f16.
#include "gpu_check.hpp"
#include "pool.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

int main() {
  skip_without_gpu();
  Report report;
  struct Case {
    const char* op;
    std::vector<i64> x;                // [N, C, H, W] or [N, C, L]
    std::vector<i64> k, s, pads, dil;  // pads: begin..., end...
    bool ceil = false, include_pad = false;
  };
  const std::vector<Case> cases = {
      {"MaxPool", {1, 20, 24, 24}, {2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}},
      {"MaxPool", {2, 3, 17, 15}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}},
      {"MaxPool", {2, 4, 13, 13}, {3, 3}, {2, 2}, {0, 0, 0, 0}, {1, 1}, true},
      {"MaxPool", {1, 2, 16, 16}, {3, 2}, {1, 2}, {1, 0, 2, 1}, {2, 2}},
      {"MaxPool", {2, 5, 30}, {4}, {3}, {1, 2}, {1}},
      {"AveragePool", {2, 3, 17, 15}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}},
      {"AveragePool", {2, 3, 17, 15}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, false, true},
      {"AveragePool", {1, 4, 14, 14}, {3, 3}, {2, 2}, {0, 0, 0, 0}, {1, 1}, true, false},
      {"AveragePool", {1, 4, 14, 14}, {3, 3}, {2, 2}, {1, 1, 1, 1}, {1, 1}, true, true},
      {"AveragePool", {4, 64, 7, 7}, {7, 7}, {1, 1}, {0, 0, 0, 0}, {1, 1}},
      {"AveragePool", {2, 5, 30}, {5}, {2}, {2, 2}, {1}, false, true},
      {"GlobalAveragePool", {2, 32, 9, 11}, {}, {}, {}, {}},
      {"GlobalMaxPool", {2, 32, 9, 11}, {}, {}, {}, {}},
  };
  for (const Case& c : cases) {
    for (bool f16 : {false, true}) {
      const bool global = std::string(c.op).rfind("Global", 0) == 0;
      const bool is_max = std::string(c.op).find("Max") != std::string::npos;
      std::string what = std::string(c.op) + " " + dims_text(c.x);
      if (!global)
        what += " k" + dims_text(c.k) + " s" + dims_text(c.s) + " pads" + dims_text(c.pads) +
                (c.dil.size() && c.dil[0] > 1 ? " dil" + dims_text(c.dil) : "") +
                (c.ceil ? " ceil" : "") + (c.include_pad ? " count_include_pad" : "");
      report.run(what, [&] {
        auto x = random_values(numel(c.x));
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(c.x, x);
        std::map<std::string, kiln::Attribute> attrs;
        if (!global) {
          attrs = {{"kernel_shape", c.k},
                   {"strides", c.s},
                   {"pads", c.pads},
                   {"ceil_mode", i64{c.ceil}}};
          if (is_max)
            attrs["dilations"] = c.dil;
          else
            attrs["count_include_pad"] = i64{c.include_pad};
        }
        const kiln::Tensor ref = reference(node(c.op, 1, attrs), {&tx});
        const bool one_d = c.x.size() == 3;
        kk::Pool2d p;
        p.planes = c.x[0] * c.x[1];
        p.in_h = one_d ? 1 : int(c.x[2]);
        p.in_w = int(c.x.back());
        p.out_h = one_d ? 1 : int(ref.dim(2));
        p.out_w = int(ref.dims().back());
        if (global) {
          p.k_h = p.in_h, p.k_w = p.in_w;
        } else if (one_d) {
          p.k_w = int(c.k[0]), p.stride_w = int(c.s[0]), p.dil_w = int(c.dil[0]);
          p.pad_left = int(c.pads[0]), p.pad_right = int(c.pads[1]);
        } else {
          p.k_h = int(c.k[0]), p.k_w = int(c.k[1]), p.stride_h = int(c.s[0]),
          p.stride_w = int(c.s[1]);
          p.dil_h = int(c.dil[0]), p.dil_w = int(c.dil[1]);
          p.pad_top = int(c.pads[0]), p.pad_left = int(c.pads[1]), p.pad_bottom = int(c.pads[2]),
          p.pad_right = int(c.pads[3]);
        }
        p.count_include_pad = c.include_pad;
        DeviceBuffer dx = upload(x, f16), dy = poisoned(ref.numel(), f16);
        KILN_CHECK(kk::pool2d(elem(f16), is_max ? kk::PoolMode::max : kk::PoolMode::average, p,
                              dx.get(), dy.get(), nullptr));
        report.check(what + " -> " + dims_text(ref.dims()), download(dy, ref.numel(), f16), ref,
                     f16);
      });
    }
  }
  return report.finish("gpu-pool");
}
