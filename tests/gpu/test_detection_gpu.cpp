// Detection kernels against the CPU reference: RoiAlign (avg and max, both coordinate modes,
// adaptive and fixed sampling, rois partly outside the image) and MaxRoiPool (scaled rois, bins
// clipped at the border, a roi past the image). NonMaxSuppression has no GPU step.
#include <random>

#include <fmt/format.h>

#include "detection.cuh"
#include "gpu_check.hpp"

using namespace gpu_test;
namespace kk = kiln::kernels;

namespace {
/// Rois [r, 4] (x1, y1, x2, y2) inside and around an image of h x w, their corners ordered.
std::vector<float> random_rois(std::mt19937& rng, i64 r, i64 h, i64 w, bool with_batch, i64 batch) {
  std::uniform_real_distribution<float> ux(-2.f, static_cast<float>(w) + 1.f),
      uy(-2.f, static_cast<float>(h) + 1.f);
  std::vector<float> v;
  for (i64 i = 0; i < r; ++i) {
    float x1 = ux(rng), x2 = ux(rng), y1 = uy(rng), y2 = uy(rng);
    if (x2 < x1) std::swap(x1, x2);
    if (y2 < y1) std::swap(y1, y2);
    if (with_batch) v.push_back(static_cast<float>(rng() % static_cast<unsigned>(batch)));
    v.insert(v.end(), {x1, y1, x2, y2});
  }
  return v;
}
}  // namespace

int main() {
  skip_without_gpu();
  Report report;
  std::mt19937 rng(11);

  struct AlignCase {
    i64 n, c, h, w, rois, oh, ow, ratio;
    double scale;
    const char* mode;
    const char* coords;
  };
  for (const AlignCase& k : {AlignCase{2, 3, 17, 23, 7, 3, 4, 0, 1.0, "avg", "half_pixel"},
                             AlignCase{1, 4, 32, 32, 5, 7, 7, 2, 0.25, "avg", "output_half_pixel"},
                             AlignCase{2, 2, 9, 12, 6, 2, 2, 0, 0.5, "max", "half_pixel"},
                             AlignCase{1, 1, 5, 5, 3, 4, 3, 3, 1.0, "max", "output_half_pixel"}}) {
    for (bool f16 : {false, true}) {
      const std::string what =
          fmt::format("RoiAlign N{} C{} {}x{} rois {} out {}x{} ratio {} scale {} {} {}", k.n, k.c,
                      k.h, k.w, k.rois, k.oh, k.ow, k.ratio, k.scale, k.mode, k.coords);
      report.run(what, [&] {
        const std::vector<i64> xd{k.n, k.c, k.h, k.w}, yd{k.rois, k.c, k.oh, k.ow};
        auto x = random_values(numel(xd));
        auto rois = random_rois(rng, k.rois, static_cast<i64>(static_cast<double>(k.h) / k.scale),
                                static_cast<i64>(static_cast<double>(k.w) / k.scale), false, 1);
        std::vector<i64> idx(static_cast<std::size_t>(k.rois));
        for (auto& b : idx) b = static_cast<i64>(rng() % static_cast<unsigned>(k.n));
        if (f16) x = round_f16(x), rois = round_f16(rois);
        const kiln::Tensor tx = tensor(xd, x), tr = tensor({k.rois, 4}, rois),
                           ti = tensor_i64({k.rois}, idx);
        const kiln::Tensor ref =
            reference(node("RoiAlign", 3,
                           {{"output_height", k.oh},
                            {"output_width", k.ow},
                            {"sampling_ratio", k.ratio},
                            {"spatial_scale", k.scale},
                            {"mode", std::string(k.mode)},
                            {"coordinate_transformation_mode", std::string(k.coords)}}),
                      {&tx, &tr, &ti});
        DeviceBuffer dx = upload(x, f16), dr = upload(rois, f16), dy = poisoned(numel(yd), f16);
        DeviceBuffer di(idx.size() * sizeof(i64));
        KILN_CHECK(
            cudaMemcpy(di.get(), idx.data(), idx.size() * sizeof(i64), cudaMemcpyHostToDevice));
        kk::RoiAlignArgs a;
        a.batch = k.n, a.channels = k.c, a.height = k.h, a.width = k.w, a.rois = k.rois;
        a.out_h = k.oh, a.out_w = k.ow, a.sampling_ratio = k.ratio;
        a.spatial_scale = static_cast<float>(k.scale);
        a.max_mode = std::string(k.mode) == "max";
        a.half_pixel = std::string(k.coords) == "half_pixel";
        a.x = dx.get(), a.boxes = dr.get(), a.batch_indices = di.as<i64>(), a.y = dy.get();
        KILN_CHECK(kk::roi_align(elem(f16), a, nullptr));
        report.check(what, download(dy, numel(yd), f16), ref, f16);
      });
    }
  }

  struct PoolCase {
    i64 n, c, h, w, rois, ph, pw;
    double scale;
  };
  for (const PoolCase& k :
       {PoolCase{2, 3, 14, 14, 6, 2, 2, 1.0}, PoolCase{1, 5, 20, 30, 8, 3, 4, 0.5},
        PoolCase{3, 2, 7, 9, 5, 7, 7, 0.0625}}) {
    for (bool f16 : {false, true}) {
      const std::string what = fmt::format("MaxRoiPool N{} C{} {}x{} rois {} pooled {}x{} scale {}",
                                           k.n, k.c, k.h, k.w, k.rois, k.ph, k.pw, k.scale);
      report.run(what, [&] {
        const std::vector<i64> xd{k.n, k.c, k.h, k.w}, yd{k.rois, k.c, k.ph, k.pw};
        auto x = random_values(numel(xd));
        auto rois = random_rois(rng, k.rois, static_cast<i64>(static_cast<double>(k.h) / k.scale),
                                static_cast<i64>(static_cast<double>(k.w) / k.scale), true, k.n);
        if (f16) x = round_f16(x), rois = round_f16(rois);
        const kiln::Tensor tx = tensor(xd, x), tr = tensor({k.rois, 5}, rois);
        const kiln::Tensor ref = reference(
            node("MaxRoiPool", 2,
                 {{"pooled_shape", std::vector<i64>{k.ph, k.pw}}, {"spatial_scale", k.scale}}),
            {&tx, &tr});
        DeviceBuffer dx = upload(x, f16), dr = upload(rois, f16), dy = poisoned(numel(yd), f16);
        kk::MaxRoiPoolArgs a;
        a.batch = k.n, a.channels = k.c, a.height = k.h, a.width = k.w, a.rois = k.rois;
        a.pooled_h = k.ph, a.pooled_w = k.pw, a.spatial_scale = static_cast<float>(k.scale);
        a.x = dx.get(), a.boxes = dr.get(), a.y = dy.get();
        KILN_CHECK(kk::max_roi_pool(elem(f16), a, nullptr));
        report.check(what, download(dy, numel(yd), f16), ref, f16);
      });
    }
  }
  return report.finish("gpu-detection");
}
