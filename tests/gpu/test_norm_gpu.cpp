// Softmax and log-softmax along each axis, BatchNormalization (folded to a per-channel affine,
// NCHW and NHWC, with a fused activation), TensorRT's Scale, and LRN, against the CPU reference.
#include "gpu_check.hpp"
#include "norm.cuh"
#include "softmax.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

int main() {
  skip_without_gpu();
  Report report;

  for (const std::vector<i64>& d :
       {std::vector<i64>{1, 10}, std::vector<i64>{64, 1000}, std::vector<i64>{2, 3, 4, 5},
        std::vector<i64>{4, 33, 7, 7}, std::vector<i64>{3, 5000}}) {
    for (i64 axis = 0; axis < i64(d.size()); ++axis) {
      for (const char* op : {"Softmax", "LogSoftmax"}) {
        for (bool f16 : {false, true}) {
          const std::string what = fmt::format("{} {} axis={}", op, dims_text(d), axis);
          report.run(what, [&] {
            auto x = random_values(numel(d), -6.f, 6.f);
            if (f16) x = round_f16(x);
            const kiln::Tensor tx = tensor(d, x);
            const kiln::Tensor ref = reference(node(op, 1, {{"axis", axis}}), {&tx});
            i64 outer = 1, inner = 1;
            for (i64 k = 0; k < axis; ++k) outer *= d[k];
            for (i64 k = axis + 1; k < i64(d.size()); ++k) inner *= d[k];
            DeviceBuffer dx = upload(x, f16), dy = poisoned(numel(d), f16);
            KILN_CHECK(kk::softmax(elem(f16), std::string(op) == "LogSoftmax", outer, d[axis],
                                   inner, dx.get(), dy.get(), nullptr));
            report.check(what, download(dy, numel(d), f16), ref, f16);
          });
        }
      }
    }
  }

  // BatchNormalization: fold on the device, then the affine (+ Relu) in NCHW and NHWC.
  for (const std::vector<i64>& d : {std::vector<i64>{2, 16, 9, 9}, std::vector<i64>{8, 64, 28, 28},
                                    std::vector<i64>{3, 7, 5}}) {
    for (bool relu : {false, true}) {
      for (bool nhwc : {false, true}) {
        for (bool f16 : {false, true}) {
          const std::string what = fmt::format("BatchNormalization{} {} {}", relu ? "+Relu" : "",
                                               dims_text(d), nhwc ? "NHWC" : "NCHW");
          report.run(what, [&] {
            const i64 n = d[0], c = d[1], inner = numel(d) / (n * c);
            auto x = random_values(numel(d));
            if (f16) x = round_f16(x);
            auto gamma = random_values(c), beta = random_values(c), mean = random_values(c),
                 var = random_values(c, 0.1f, 2.f);
            const kiln::Tensor tx = tensor(d, x), tg = tensor({c}, gamma), tb = tensor({c}, beta),
                               tm = tensor({c}, mean), tv = tensor({c}, var);
            kiln::Tensor ref = reference(node("BatchNormalization", 5, {{"epsilon", 1e-5}}),
                                         {&tx, &tg, &tb, &tm, &tv});
            if (relu) ref = reference(node("Relu", 1), {&ref});
            DeviceBuffer dg = upload(gamma), db = upload(beta), dm = upload(mean), dv = upload(var);
            DeviceBuffer scale(c * 4), shift(c * 4);
            KILN_CHECK(kk::batchnorm_fold(c, dg.as<float>(), db.as<float>(), dm.as<float>(),
                                          dv.as<float>(), 1e-5f, scale.as<float>(),
                                          shift.as<float>(), nullptr));
            // NHWC: transpose on the host, run as [N*spatial, C, 1], transpose back.
            std::vector<float> xin = x;
            if (nhwc)
              for (i64 b = 0; b < n; ++b)
                for (i64 ch = 0; ch < c; ++ch)
                  for (i64 s = 0; s < inner; ++s)
                    xin[(b * inner + s) * c + ch] = x[(b * c + ch) * inner + s];
            DeviceBuffer dx = upload(xin, f16), dy = poisoned(numel(d), f16);
            KILN_CHECK(kk::channel_affine(elem(f16), nhwc ? n * inner : n, c, nhwc ? 1 : inner,
                                          dx.get(), scale.as<float>(), shift.as<float>(), nullptr,
                                          relu ? kk::Activation::relu : kk::Activation::identity,
                                          0.f, 0.f, dy.get(), nullptr));
            std::vector<float> y = download(dy, numel(d), f16), out(y.size());
            if (nhwc) {
              for (i64 b = 0; b < n; ++b)
                for (i64 ch = 0; ch < c; ++ch)
                  for (i64 s = 0; s < inner; ++s)
                    out[(b * c + ch) * inner + s] = y[(b * inner + s) * c + ch];
              y = out;
            }
            report.check(what, y, ref, f16);
          });
        }
      }
    }
  }

  // Scale (mode channel): y = (x * scale + shift) ^ power.
  report.run("Scale channel with power", [&] {
    const std::vector<i64> d = {2, 6, 5, 5};
    auto x = random_values(numel(d), 0.5f, 2.f), s = random_values(6, 0.5f, 1.5f),
         b = random_values(6, 0.1f, 0.5f), p = random_values(6, 0.5f, 2.f);
    const kiln::Tensor tx = tensor(d, x), ts = tensor({6}, s), tb = tensor({6}, b),
                       tp = tensor({6}, p);
    const kiln::Tensor ref =
        reference(node("Scale", 4, {{"mode", std::string("channel")}}), {&tx, &ts, &tb, &tp});
    DeviceBuffer dx = upload(x), ds = upload(s), db = upload(b), dp = upload(p),
                 dy = poisoned(numel(d));
    KILN_CHECK(kk::channel_affine(kk::Elem::f32, 2, 6, 25, dx.get(), ds.as<float>(), db.as<float>(),
                                  dp.as<float>(), kk::Activation::identity, 0.f, 0.f, dy.get(),
                                  nullptr));
    report.check("Scale channel with power [2,6,5,5]", download(dy, numel(d)), ref);
  });

  // LRN (AlexNet, GoogLeNet settings and even sizes).
  struct L {
    std::vector<i64> d;
    int size;
    float alpha, beta, bias;
  };
  for (const L& c :
       {L{{2, 16, 7, 7}, 5, 1e-4f, 0.75f, 1.f}, L{{1, 64, 14, 14}, 5, 2e-4f, 0.75f, 2.f},
        L{{2, 7, 3, 3}, 4, 0.1f, 0.5f, 1.5f}, L{{1, 3, 5}, 3, 0.5f, 0.6f, 1.f}}) {
    for (bool f16 : {false, true}) {
      const std::string what = fmt::format("LRN {} size={}", dims_text(c.d), c.size);
      report.run(what, [&] {
        auto x = random_values(numel(c.d), -3.f, 3.f);
        if (f16) x = round_f16(x);
        const kiln::Tensor tx = tensor(c.d, x);
        const kiln::Tensor ref = reference(node("LRN", 1,
                                                {{"size", i64{c.size}},
                                                 {"alpha", double(c.alpha)},
                                                 {"beta", double(c.beta)},
                                                 {"bias", double(c.bias)}}),
                                           {&tx});
        DeviceBuffer dx = upload(x, f16), dy = poisoned(numel(c.d), f16);
        KILN_CHECK(kk::lrn(elem(f16), c.d[0], c.d[1], numel(c.d) / (c.d[0] * c.d[1]), c.size,
                           c.alpha, c.beta, c.bias, dx.get(), dy.get(), nullptr));
        report.check(what, download(dy, numel(c.d), f16), ref, f16);
      });
    }
  }
  return report.finish("gpu-norm");
}
