// Data movement against the CPU reference: Transpose, Slice (with negative steps), Concat,
// Expand, Pad (every mode), Gather, Resize (nearest and linear, every coordinate mode), the
// NCHW <-> NHWC conversions and the f32 <-> f16 casts.
#include "copy.cuh"
#include "gpu_check.hpp"
#include "layout.cuh"
#include "resize.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

namespace {
kk::Dims to_dims(const std::vector<i64>& v) {
  kk::Dims d;
  d.rank = int(v.size());
  for (std::size_t k = 0; k < v.size(); ++k) d.d[k] = v[k];
  return d;
}
std::vector<i64> strides_of(const std::vector<i64>& d) {
  std::vector<i64> s(d.size(), 1);
  for (std::size_t k = d.size(); k-- > 1;) s[k - 1] = s[k] * d[k];
  return s;
}
}  // namespace

int main() {
  skip_without_gpu();
  Report report;

  // Transpose: the source read through permuted strides.
  struct T {
    std::vector<i64> d, perm;
  };
  for (const T& c :
       {T{{6, 7}, {1, 0}}, T{{2, 3, 4, 5}, {0, 2, 3, 1}}, T{{2, 3, 4, 5}, {3, 1, 0, 2}},
        T{{2, 3, 2, 2, 3, 2, 1, 2}, {7, 6, 5, 4, 3, 2, 1, 0}},
        // The head split of attention: the innermost dim kept, so 16-byte units move
        // (f16 rows of 64 are 8 of them); rows of 3 cannot widen; dims of 1 dropped.
        T{{4, 32, 12, 64}, {0, 2, 1, 3}}, T{{4, 6, 8, 3}, {0, 2, 1, 3}},
        T{{1, 5, 1, 6, 8}, {3, 0, 1, 2, 4}}}) {
    for (bool f16 : {false, true}) {
      const std::string what = "Transpose " + dims_text(c.d) + " perm " + dims_text(c.perm);
      report.run(what, [&] {
        auto x = random_values(numel(c.d));
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(c.d, x);
        const kiln::Tensor ref = reference(node("Transpose", 1, {{"perm", c.perm}}), {&tx});
        const std::vector<i64> in_st = strides_of(c.d);
        std::vector<i64> od;
        kk::Strides src;
        for (std::size_t k = 0; k < c.perm.size(); ++k)
          od.push_back(c.d[c.perm[k]]), src.s[k] = in_st[c.perm[k]];
        DeviceBuffer dx = upload(x, f16), dy = poisoned(numel(od), f16);
        const kk::Dims dims = to_dims(od);
        KILN_CHECK(kk::strided_copy(f16 ? 2 : 4, dims, dx.get(), src, dy.get(),
                                    kk::contiguous_strides(dims), nullptr));
        report.check(what, download(dy, numel(od), f16), ref, f16);
      });
    }
  }

  // Slice with steps (negative ones too): start offset plus strides times steps.
  report.run("Slice [10,12,7] steps [2,-3,1]", [&] {
    const std::vector<i64> d = {10, 12, 7}, starts = {1, 11, 2}, ends = {9, 0, 6}, axes = {0, 1, 2},
                           steps = {2, -3, 1};
    auto x = random_values(numel(d));
    const kiln::Tensor tx = tensor(d, x), ts = tensor_i64({3}, starts), te = tensor_i64({3}, ends),
                       ta = tensor_i64({3}, axes), tp = tensor_i64({3}, steps);
    const kiln::Tensor ref = reference(node("Slice", 5), {&tx, &ts, &te, &ta, &tp});
    const std::vector<i64> st = strides_of(d);
    kk::Strides src;
    i64 offset = 0;
    for (int k = 0; k < 3; ++k) src.s[k] = st[k] * steps[k], offset += starts[k] * st[k];
    DeviceBuffer dx = upload(x), dy = poisoned(ref.numel());
    const kk::Dims dims = to_dims(ref.dims());
    KILN_CHECK(kk::strided_copy(4, dims, dx.as<float>() + offset, src, dy.get(),
                                kk::contiguous_strides(dims), nullptr));
    report.check("Slice [10,12,7] steps [2,-3,1] -> " + dims_text(ref.dims()),
                 download(dy, ref.numel()), ref);
  });

  // Slices of whole rows at offsets that allow 16-, 8- and 4-byte units, or none (f16, start 1).
  for (const auto& [start, f16] :
       std::vector<std::pair<i64, bool>>{{4, false}, {2, false}, {8, true}, {2, true}, {1, true}}) {
    const std::string what = "Slice [6,24] columns " + std::to_string(start) + ".." +
                             std::to_string(start + 16) + (f16 ? " f16" : " f32");
    report.run(what, [&] {
      const std::vector<i64> d = {6, 24};
      auto x = random_values(numel(d));
      if (f16) x = round_f16(x);
      const kiln::Tensor tx = tensor(d, x), ts = tensor_i64({1}, {start}),
                         te = tensor_i64({1}, {start + 16}), ta = tensor_i64({1}, {1});
      const kiln::Tensor ref = reference(node("Slice", 4), {&tx, &ts, &te, &ta});
      kk::Strides src;
      src.s[0] = 24, src.s[1] = 1;
      DeviceBuffer dx = upload(x, f16), dy = poisoned(ref.numel(), f16);
      const kk::Dims dims = to_dims(ref.dims());
      const auto* base = static_cast<const std::byte*>(dx.get()) + start * (f16 ? 2 : 4);
      KILN_CHECK(kk::strided_copy(f16 ? 2 : 4, dims, base, src, dy.get(),
                                  kk::contiguous_strides(dims), nullptr));
      report.check(what, download(dy, ref.numel(), f16), ref, f16);
    });
  }

  // Concat along axis 1: each input written at its offset in the output.
  for (bool f16 : {false, true}) {
    report.run("Concat axis 1", [&] {
      const std::vector<std::vector<i64>> ins = {{2, 3, 4, 5}, {2, 5, 4, 5}, {2, 1, 4, 5}};
      std::vector<std::vector<float>> xs;
      std::vector<kiln::Tensor> ts;
      for (const auto& d : ins)
        xs.push_back(f16 ? round_f16(random_values(numel(d))) : random_values(numel(d))),
            ts.push_back(tensor(d, xs.back()));
      const kiln::Tensor ref =
          reference(node("Concat", 3, {{"axis", i64{1}}}), {&ts[0], &ts[1], &ts[2]});
      DeviceBuffer dy = poisoned(ref.numel(), f16);
      const std::vector<i64> out_st = strides_of(ref.dims());
      kk::Strides dst;
      for (int k = 0; k < 4; ++k) dst.s[k] = out_st[k];
      i64 at = 0;
      std::vector<DeviceBuffer> keep;
      for (std::size_t i = 0; i < ins.size(); ++i) {
        keep.push_back(upload(xs[i], f16));
        const kk::Dims dims = to_dims(ins[i]);
        char* base = static_cast<char*>(dy.get()) + at * out_st[1] * (f16 ? 2 : 4);
        KILN_CHECK(kk::strided_copy(f16 ? 2 : 4, dims, keep.back().get(),
                                    kk::contiguous_strides(dims), base, dst, nullptr));
        at += ins[i][1];
      }
      report.check("Concat axis 1 -> " + dims_text(ref.dims()), download(dy, ref.numel(), f16), ref,
                   f16);
    });
  }

  // Expand: stride 0 on broadcast dims.
  report.run("Expand [3,1,5] -> [2,3,4,5]", [&] {
    auto x = random_values(15);
    const kiln::Tensor tx = tensor({3, 1, 5}, x), ts = tensor_i64({4}, {2, 3, 4, 5});
    const kiln::Tensor ref = reference(node("Expand", 2), {&tx, &ts});
    kk::Strides src;
    src.s[0] = 0, src.s[1] = 5, src.s[2] = 0, src.s[3] = 1;
    const kk::Dims dims = to_dims({2, 3, 4, 5});
    DeviceBuffer dx = upload(x), dy = poisoned(120);
    KILN_CHECK(
        kk::strided_copy(4, dims, dx.get(), src, dy.get(), kk::contiguous_strides(dims), nullptr));
    report.check("Expand [3,1,5] -> [2,3,4,5]", download(dy, 120), ref);
  });

  // Pad, every mode.
  struct P {
    const char* mode;
    kk::PadMode m;
    std::vector<i64> pads;
  };
  for (const P& c : {P{"constant", kk::PadMode::constant, {0, 1, 2, 1, 0, 2, 1, 3}},
                     P{"constant", kk::PadMode::constant, {0, -1, 1, -2, 1, 0, -1, 2}},
                     P{"reflect", kk::PadMode::reflect, {0, 1, 2, 3, 0, 2, 3, 4}},
                     P{"edge", kk::PadMode::edge, {1, 0, 3, 2, 0, 1, 4, 2}},
                     P{"wrap", kk::PadMode::wrap, {0, 1, 2, 3, 0, 2, 3, 4}}}) {
    for (bool f16 : {false, true}) {
      const std::vector<i64> d = {2, 3, 5, 6};
      const std::string what =
          std::string("Pad ") + c.mode + " " + dims_text(d) + " pads " + dims_text(c.pads);
      report.run(what, [&] {
        auto x = random_values(numel(d));
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(d, x), tp = tensor_i64({8}, c.pads), tv = tensor({}, {1.5f});
        const kiln::Tensor ref =
            reference(node("Pad", 3, {{"mode", std::string(c.mode)}}), {&tx, &tp, &tv});
        const std::uint64_t bits =
            f16 ? kiln::f16::from_float(1.5f) : std::bit_cast<std::uint32_t>(1.5f);
        DeviceBuffer dx = upload(x, f16), dy = poisoned(ref.numel(), f16);
        KILN_CHECK(kk::pad(f16 ? 2 : 4, c.m, to_dims(d), to_dims(ref.dims()), c.pads.data(), bits,
                           dx.get(), dy.get(), nullptr));
        report.check(what, download(dy, ref.numel(), f16), ref, f16);
      });
    }
  }

  // Gather (int64 and int32 indices, negative ones).
  struct G {
    std::vector<i64> d;
    i64 axis;
    std::vector<i64> idx_dims, idx;
    bool i64_indices;
  };
  for (const G& c : {G{{5, 6, 7}, 1, {4}, {0, 5, -1, 2}, true},
                     G{{10, 8}, 0, {2, 3}, {9, 0, 3, -10, 4, 4}, false},
                     G{{1000, 64},
                       0,
                       {16},
                       {1, 999, 500, 3, 7, 8, 0, 42, 43, 44, 100, 200, 300, 400, 600, 700},
                       true}}) {
    const std::string what = "Gather " + dims_text(c.d) + " axis " + std::to_string(c.axis) +
                             " indices " + dims_text(c.idx_dims);
    report.run(what, [&] {
      auto x = random_values(numel(c.d));
      const kiln::Tensor tx = tensor(c.d, x), ti = tensor_i64(c.idx_dims, c.idx);
      const kiln::Tensor ref = reference(node("Gather", 2, {{"axis", c.axis}}), {&tx, &ti});
      i64 outer = 1, inner = 1;
      for (i64 k = 0; k < c.axis; ++k) outer *= c.d[k];
      for (std::size_t k = c.axis + 1; k < c.d.size(); ++k) inner *= c.d[k];
      DeviceBuffer dx = upload(x), dy = poisoned(ref.numel());
      DeviceBuffer di(c.idx.size() * (c.i64_indices ? 8 : 4));
      if (c.i64_indices)
        di.upload(c.idx.data(), c.idx.size() * 8);
      else {
        std::vector<std::int32_t> i32(c.idx.begin(), c.idx.end());
        di.upload(i32.data(), i32.size() * 4);
      }
      KILN_CHECK(kk::gather(4, outer, c.d[c.axis], inner, di.get(), c.i64_indices,
                            i64(c.idx.size()), dx.get(), dy.get(), nullptr));
      report.check(what, download(dy, ref.numel()), ref);
    });
  }

  // Resize.
  struct Rz {
    const char* mode;
    const char* coord;
    const char* nearest;
    std::vector<i64> d;
    std::vector<float> scales;
    std::vector<i64> sizes;
  };
  const std::vector<Rz> rs = {
      {"nearest", "asymmetric", "floor", {1, 2, 4, 5}, {1, 1, 2, 2}, {}},
      {"nearest", "half_pixel", "round_prefer_floor", {2, 3, 5, 7}, {1, 1, 1.5f, 2.5f}, {}},
      {"nearest", "align_corners", "round_prefer_ceil", {1, 2, 6, 6}, {}, {1, 2, 9, 4}},
      {"nearest", "asymmetric", "ceil", {1, 2, 4, 4}, {1, 1, 3, 0.5f}, {}},  // the reference lacks
                                                                             // tf_half_pixel_for_nn
      {"linear", "half_pixel", "round_prefer_floor", {2, 3, 5, 7}, {1, 1, 2, 1.5f}, {}},
      {"linear", "align_corners", "round_prefer_floor", {1, 4, 8, 8}, {}, {1, 4, 15, 3}},
      {"linear", "pytorch_half_pixel", "round_prefer_floor", {1, 2, 6, 5}, {}, {1, 2, 1, 11}},
      {"linear", "asymmetric", "round_prefer_floor", {1, 2, 7, 5}, {1, 1, 0.6f, 2}, {}},
      {"linear",
       "half_pixel_symmetric",
       "round_prefer_floor",
       {1, 2, 5, 5},
       {1, 1, 2.3f, 0.7f},
       {}},
  };
  for (const Rz& c : rs) {
    for (bool f16 : {false, true}) {
      const std::string what =
          fmt::format("Resize {} {} {} {}", c.mode, c.coord,
                      c.mode == std::string("nearest") ? c.nearest : "", dims_text(c.d));
      report.run(what, [&] {
        auto x = random_values(numel(c.d));
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(c.d, x);
        const kiln::Tensor tsc = tensor({i64(c.scales.size())}, c.scales),
                           tsz = tensor_i64({i64(c.sizes.size())}, c.sizes);
        const kiln::Tensor ref = reference(
            node("Resize", 4,
                 {{"mode", std::string(c.mode)},
                  {"coordinate_transformation_mode", std::string(c.coord)},
                  {"nearest_mode", std::string(c.nearest)}}),
            {&tx, nullptr, c.scales.empty() ? nullptr : &tsc, c.sizes.empty() ? nullptr : &tsz});
        kk::Resize2d r;
        r.outer = c.d[0] * c.d[1];
        r.in_h = int(c.d[2]), r.in_w = int(c.d[3]), r.out_h = int(ref.dim(2)),
        r.out_w = int(ref.dim(3));
        r.scale_h = c.scales.empty() ? double(r.out_h) / r.in_h : c.scales[2];
        r.scale_w = c.scales.empty() ? double(r.out_w) / r.in_w : c.scales[3];
        r.mode =
            c.mode == std::string("nearest") ? kk::ResizeMode::nearest : kk::ResizeMode::linear;
        const std::string cm = c.coord, nm = c.nearest;
        r.coord = cm == "half_pixel"             ? kk::CoordMode::half_pixel
                  : cm == "align_corners"        ? kk::CoordMode::align_corners
                  : cm == "asymmetric"           ? kk::CoordMode::asymmetric
                  : cm == "pytorch_half_pixel"   ? kk::CoordMode::pytorch_half_pixel
                  : cm == "half_pixel_symmetric" ? kk::CoordMode::half_pixel_symmetric
                                                 : kk::CoordMode::tf_half_pixel_for_nn;
        r.nearest = nm == "floor"               ? kk::NearestMode::floor
                    : nm == "ceil"              ? kk::NearestMode::ceil
                    : nm == "round_prefer_ceil" ? kk::NearestMode::round_prefer_ceil
                                                : kk::NearestMode::round_prefer_floor;
        DeviceBuffer dx = upload(x, f16), dy = poisoned(ref.numel(), f16);
        KILN_CHECK(kk::resize2d(elem(f16), r, dx.get(), dy.get(), nullptr));
        report.check(what + " -> " + dims_text(ref.dims()), download(dy, ref.numel(), f16), ref,
                     f16);
      });
    }
  }

  // NCHW <-> NHWC and casts.
  for (const std::vector<i64>& d : {std::vector<i64>{2, 3, 5, 7}, std::vector<i64>{8, 64, 56, 56},
                                    std::vector<i64>{1, 33, 1, 65}}) {
    for (bool f16 : {false, true}) {
      const std::string what = "NCHW->NHWC->NCHW " + dims_text(d);
      report.run(what, [&] {
        auto x = random_values(numel(d));
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(d, x);
        const kiln::Tensor ref =
            reference(node("Transpose", 1, {{"perm", std::vector<i64>{0, 2, 3, 1}}}), {&tx});
        DeviceBuffer dx = upload(x, f16), dy = poisoned(numel(d), f16),
                     dz = poisoned(numel(d), f16);
        const std::size_t es = f16 ? 2 : 4;
        KILN_CHECK(kk::nchw_to_nhwc(es, d[0], d[1], d[2] * d[3], dx.get(), dy.get(), nullptr));
        report.check("NCHW->NHWC " + dims_text(d), download(dy, numel(d), f16), ref, f16);
        KILN_CHECK(kk::nhwc_to_nchw(es, d[0], d[1], d[2] * d[3], dy.get(), dz.get(), nullptr));
        report.check("NHWC->NCHW " + dims_text(d), download(dz, numel(d), f16), tx, f16);
      });
    }
  }
  report.run("Cast f32 -> f16 -> f32", [&] {
    const i64 n = 100003;
    auto x = random_values(n, -1000.f, 1000.f);
    const kiln::Tensor tx = tensor({n}, x);
    const kiln::Tensor ref = tx.cast(kiln::DType::f16).cast(kiln::DType::f32);
    DeviceBuffer dx = upload(x), dh = poisoned(n, true), dy = poisoned(n);
    KILN_CHECK(kk::cast(kk::Elem::f32, kk::Elem::f16, dx.get(), dh.get(), n, nullptr));
    KILN_CHECK(kk::cast(kk::Elem::f16, kk::Elem::f32, dh.get(), dy.get(), n, nullptr));
    const std::vector<float> y = download(dy, n);
    bool exact = true;
    for (i64 i = 0; i < n; ++i) exact = exact && y[i] == float(ref.get(i));
    report.expect("Cast f32 -> f16 -> f32 rounds exactly as the reference (n=100003)", exact);
  });
  return report.finish("gpu-copy");
}
