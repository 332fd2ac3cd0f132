// Detection kernels against the CPU reference: RoiAlign (avg and max, both coordinate modes,
// adaptive and fixed sampling, rois partly outside the image), MaxRoiPool (scaled rois, bins
// clipped at the border, a roi past the image), TopK at detectors' sizes (ties too), GatherND and
// ScatterElements (every reduction), NonMaxSuppression (both box formats, with and without a
// score threshold, limits from 0 to none, rows of many tiles, tied scores; its selected rows must
// equal the reference's exactly).
#include <array>
#include <limits>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "detection.cuh"
#include "gpu_check.hpp"
#include "select.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

namespace {
DeviceBuffer upload_i64(const std::vector<i64>& v) {
  DeviceBuffer b(std::max<std::size_t>(v.size(), 1) * sizeof(i64));
  KILN_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(i64), cudaMemcpyHostToDevice));
  return b;
}
std::vector<i64> download_i64(const DeviceBuffer& b, std::size_t n) {
  std::vector<i64> v(n);
  KILN_CHECK(cudaMemcpy(v.data(), b.get(), n * sizeof(i64), cudaMemcpyDeviceToHost));
  return v;
}
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
        DeviceBuffer di = upload_i64(idx);
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
  // TopK: rows as long as a detector's flattened scores, values with many ties (ties keep the
  // lower index first), along an inner axis too; the largest and the smallest.
  struct TopKCase {
    i64 outer, n, inner, k;
    bool largest, ties;
  };
  for (const TopKCase& k :
       {TopKCase{1, 19206, 1, 1000, true, false}, TopKCase{2, 3000, 1, 300, true, true},
        TopKCase{3, 500, 4, 50, false, true}, TopKCase{4, 7, 1, 7, true, true}}) {
    for (bool f16 : {false, true}) {
      const std::string what =
          fmt::format("TopK [{},{},{}] k {} {}{}", k.outer, k.n, k.inner, k.k,
                      k.largest ? "largest" : "smallest", k.ties ? " (ties)" : "");
      report.run(what, [&] {
        const std::vector<i64> xd{k.outer, k.n, k.inner}, yd{k.outer, k.k, k.inner};
        auto x = random_values(numel(xd));
        if (k.ties)
          for (auto& v : x) v = std::round(v * 4.f);
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(xd, x), tk = tensor_i64({1}, {k.k});
        kiln::Node n = node("TopK", 2, {{"axis", i64{1}}, {"largest", i64{k.largest ? 1 : 0}}});
        n.outputs = {"values", "indices"};
        const auto ref = kiln::reference::run_node(n, {&tx, &tk});
        DeviceBuffer dx = upload(x, f16), dv = poisoned(numel(yd), f16);
        DeviceBuffer di(static_cast<std::size_t>(numel(yd)) * sizeof(i64));
        kk::TopKArgs a;
        a.type = f16 ? kk::ValueType::f16 : kk::ValueType::f32;
        a.outer = k.outer, a.n = k.n, a.inner = k.inner, a.k = k.k, a.largest = k.largest;
        a.x = dx.get(), a.values = dv.get(), a.indices = di.as<i64>();
        DeviceBuffer ws(kk::topk_workspace(a));
        a.workspace = ws.get();
        KILN_CHECK(kk::topk(a, nullptr));
        report.check(what + " values", download(dv, numel(yd), f16), ref[0], f16);
        const auto idx = download_i64(di, static_cast<std::size_t>(numel(yd)));
        i64 wrong = 0;
        for (i64 i = 0; i < ref[1].numel(); ++i)
          wrong += idx[static_cast<std::size_t>(i)] != static_cast<i64>(ref[1].get(i));
        report.expect(fmt::format("{} indices: {} of {} differ", what, wrong, ref[1].numel()),
                      wrong == 0);
      });
    }
  }

  // GatherND, with and without batch dims.
  struct GatherNDCase {
    std::vector<i64> data, indices;
    i64 batch_dims;
  };
  for (const GatherNDCase& k :
       {GatherNDCase{{4, 5, 6}, {7, 2}, 0}, GatherNDCase{{2, 3, 4, 5}, {2, 6, 2}, 1},
        GatherNDCase{{3, 8}, {3, 4, 1}, 1}}) {
    const std::string what = fmt::format("GatherND {} by {} batch_dims {}", dims_text(k.data),
                                         dims_text(k.indices), k.batch_dims);
    report.run(what, [&] {
      const auto b = static_cast<std::size_t>(k.batch_dims);
      const auto m = static_cast<std::size_t>(k.indices.back());
      std::vector<i64> idx(static_cast<std::size_t>(numel(k.indices)));
      for (std::size_t i = 0; i < idx.size(); ++i) {
        const i64 dim = k.data[b + i % m];
        idx[i] = static_cast<i64>(rng() % static_cast<unsigned>(2 * dim)) - dim;  // negative too
      }
      const auto x = random_values(numel(k.data));
      const kiln::Tensor tx = tensor(k.data, x), ti = tensor_i64(k.indices, idx);
      const kiln::Tensor ref =
          reference(node("GatherND", 2, {{"batch_dims", k.batch_dims}}), {&tx, &ti});
      std::vector<i64> yd(ref.dims().begin(), ref.dims().end());
      i64 batch = 1, rows = 1, inner = 1;
      for (std::size_t d = 0; d < b; ++d) batch *= k.data[d];
      for (std::size_t d = b; d + 1 < k.indices.size(); ++d) rows *= k.indices[d];
      for (std::size_t d = b + m; d < k.data.size(); ++d) inner *= k.data[d];
      kk::Dims indexed;
      indexed.rank = static_cast<int>(m);
      for (std::size_t d = 0; d < m; ++d) indexed.d[d] = k.data[b + d];
      DeviceBuffer dx = upload(x), di = upload_i64(idx), dy = poisoned(numel(yd));
      KILN_CHECK(
          kk::gather_nd(4, batch, rows, indexed, inner, di.as<i64>(), dx.get(), dy.get(), nullptr));
      report.check(what, download(dy, numel(yd)), ref);
    });
  }

  // ScatterElements along each axis: "none" with distinct targets (repeated ones land in no
  // defined order), the reductions with repeated targets.
  for (const char* red : {"none", "add", "mul", "max", "min"}) {
    for (i64 axis : {0, 1, 2}) {
      for (bool f16 : {false, true}) {
        const std::string what =
            fmt::format("ScatterElements [4,5,6] axis {} reduction {}", axis, red);
        report.run(what, [&] {
          const std::vector<i64> dd{4, 5, 6};
          std::vector<i64> id = dd;
          id[static_cast<std::size_t>(axis)] = 3;
          const bool distinct = std::string(red) == "none";
          std::vector<i64> idx(static_cast<std::size_t>(numel(id)));
          // For "none", the targets along the axis are the first 3 of a shuffle per line.
          const i64 len = dd[static_cast<std::size_t>(axis)];
          for (std::size_t i = 0; i < idx.size(); ++i) {
            std::vector<i64> c(3);
            i64 rest = static_cast<i64>(i);
            for (int d = 2; d >= 0; --d)
              c[static_cast<std::size_t>(d)] = rest % id[static_cast<std::size_t>(d)],
              rest /= id[static_cast<std::size_t>(d)];
            const i64 j = c[static_cast<std::size_t>(axis)];
            idx[i] = distinct ? (j + (c[0] + c[1] + c[2] - j)) % len
                              : static_cast<i64>(rng() % static_cast<unsigned>(len));
            if (idx[i] % 2) idx[i] -= len;  // negative indices count from the end
          }
          auto x = random_values(numel(dd), 0.5f, 1.5f), u = random_values(numel(id), 0.5f, 1.5f);
          if (f16) x = round_f16(x), u = round_f16(u);
          const kiln::Tensor tx = tensor(dd, x), ti = tensor_i64(id, idx), tu = tensor(id, u);
          const kiln::Tensor ref = reference(
              node("ScatterElements", 3, {{"axis", axis}, {"reduction", std::string(red)}}),
              {&tx, &ti, &tu});
          DeviceBuffer dx = upload(x, f16), di = upload_i64(idx), du = upload(u, f16);
          using R = kk::ScatterReduction;
          const std::string r = red;
          const R rr = r == "none"  ? R::none
                       : r == "add" ? R::add
                       : r == "mul" ? R::mul
                       : r == "max" ? R::max
                                    : R::min;
          KILN_CHECK(kk::scatter_elements(
              f16 ? 2 : 4, f16 ? kk::ValueType::f16 : kk::ValueType::f32, rr,
              kiln::kernels::Dims{3, {4, 5, 6}}, kiln::kernels::Dims{3, {id[0], id[1], id[2]}},
              static_cast<int>(axis), di.get(), true, du.get(), dx.get(), nullptr));
          report.check(what, download(dx, numel(dd), f16), ref, f16);
        });
      }
    }
  }

  // NonMaxSuppression: boxes in clusters (so that many overlap), scores with ties.
  struct NmsCase {
    i64 batches, classes, boxes, max_out;
    double iou;
    std::optional<double> score;
    bool center;
  };
  for (const NmsCase& k :
       {NmsCase{1, 1, 10, 3, 0.5, std::nullopt, false}, NmsCase{2, 3, 50, 10, 0.4, 0.3, false},
        NmsCase{1, 4, 700, 100, 0.5, 0.05, true},  // rows of three tiles
        NmsCase{1, 1, 3000, std::numeric_limits<i64>::max(), 0.6, std::nullopt, false},
        NmsCase{3, 2, 300, 0, 0.5, std::nullopt, false},  // a limit of 0 keeps nothing
        NmsCase{2, 2, 257, 1000, 0.0, 0.99, true}}) {     // a threshold few pass
    for (bool f16 : {false, true}) {
      const std::string what = fmt::format(
          "NonMaxSuppression {}x{} classes, {} boxes, max {} iou {} score {} {}", k.batches,
          k.classes, k.boxes, k.max_out, k.iou, k.score ? fmt::format("{}", *k.score) : "none",
          k.center ? "center" : "corners");
      report.run(what, [&] {
        std::uniform_real_distribution<float> at(0.f, 100.f), off(-4.f, 4.f), side(1.f, 12.f);
        std::vector<float> boxes;
        std::vector<std::array<float, 2>> centers(8);
        for (auto& c : centers) c = {at(rng), at(rng)};
        for (i64 i = 0; i < k.batches * k.boxes; ++i) {
          const auto& c = centers[rng() % centers.size()];
          const float cx = c[0] + off(rng), cy = c[1] + off(rng), w = side(rng), h = side(rng);
          if (k.center)
            boxes.insert(boxes.end(), {cx, cy, w, h});
          else if (i % 2)  // corners in either order
            boxes.insert(boxes.end(), {cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2});
          else
            boxes.insert(boxes.end(), {cy + h / 2, cx + w / 2, cy - h / 2, cx - w / 2});
        }
        auto scores = random_values(k.batches * k.classes * k.boxes, 0.f, 1.f);
        for (std::size_t i = 0; i < scores.size(); i += 5)  // ties: the lower index goes first
          scores[i] = std::round(scores[i] * 8.f) / 8.f;
        if (f16) boxes = round_f16(boxes), scores = round_f16(scores);
        const kiln::Tensor tb = tensor({k.batches, k.boxes, 4}, boxes),
                           ts = tensor({k.batches, k.classes, k.boxes}, scores),
                           tm = tensor_i64({1}, {k.max_out}),
                           ti = tensor({1}, {static_cast<float>(k.iou)}),
                           tt = tensor({1}, {static_cast<float>(k.score.value_or(0.0))});
        const kiln::Tensor ref =
            reference(node("NonMaxSuppression", 5, {{"center_point_box", i64{k.center}}}),
                      {&tb, &ts, &tm, &ti, k.score ? &tt : nullptr});
        DeviceBuffer db = upload(boxes, f16), ds = upload(scores, f16);
        kk::NmsArgs a;
        a.batches = k.batches, a.classes = k.classes, a.boxes = k.boxes;
        a.max_out = k.max_out, a.capacity = std::min(k.max_out, k.boxes);
        a.iou_threshold = static_cast<float>(k.iou);
        a.has_score_threshold = k.score.has_value();
        a.score_threshold = static_cast<float>(k.score.value_or(0.0));
        a.center = k.center;
        a.box_data = db.get(), a.scores = ds.get();
        DeviceBuffer ws(kk::nms_workspace(a));
        a.workspace = ws.get();
        KILN_CHECK(kk::nms(elem(f16), a, nullptr));
        std::int64_t count = -1;
        KILN_CHECK(cudaMemcpy(&count, kk::nms_count(a), sizeof count, cudaMemcpyDeviceToHost));
        std::vector<i64> rows(static_cast<std::size_t>(std::max<i64>(count, 0)) * 3);
        if (count > 0)
          KILN_CHECK(cudaMemcpy(rows.data(), kk::nms_rows(a), rows.size() * sizeof(i64),
                                cudaMemcpyDeviceToHost));
        const std::vector<i64> want(ref.data<i64>(), ref.data<i64>() + ref.numel());
        report.expect(
            fmt::format("{}: {} selected, the reference {}, rows equal", what, count, ref.dim(0)),
            count == ref.dim(0) && rows == want);
      });
    }
  }
  return report.finish("gpu-detection");
}
