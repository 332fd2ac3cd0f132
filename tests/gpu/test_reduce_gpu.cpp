// Reductions (every ONNX Reduce* over single, several, non-adjacent and all axes) against the
// CPU reference, in f32 and f16.
#include "gpu_check.hpp"
#include "reduce.cuh"

using namespace gpu_test;
namespace kk = kiln::kernels;

int main() {
  skip_without_gpu();
  Report report;
  struct R {
    const char* op;
    kk::Reduction r;
    float lo, hi;
  };
  const R ops[] = {{"ReduceSum", kk::Reduction::sum, -2, 2},
                   {"ReduceMean", kk::Reduction::mean, -2, 2},
                   {"ReduceMax", kk::Reduction::max, -2, 2},
                   {"ReduceMin", kk::Reduction::min, -2, 2},
                   {"ReduceProd", kk::Reduction::prod, 0.8f, 1.25f},
                   {"ReduceL1", kk::Reduction::l1, -2, 2},
                   {"ReduceL2", kk::Reduction::l2, -2, 2},
                   {"ReduceLogSum", kk::Reduction::log_sum, 0.1f, 2},
                   {"ReduceLogSumExp", kk::Reduction::log_sum_exp, -5, 5},
                   {"ReduceSumSquare", kk::Reduction::sum_square, -2, 2}};
  struct Case {
    std::vector<i64> d, axes;
  };
  const Case cases[] = {{{2, 3, 4, 5}, {1}},       {{2, 3, 4, 5}, {0, 2}},   {{2, 3, 4, 5}, {3}},
                        {{2, 3, 4, 5}, {1, 2, 3}}, {{64, 1000}, {1}},        {{512, 130}, {0}},
                        {{3, 4, 5}, {0, 1, 2}},    {{8, 64, 14, 14}, {2, 3}}};
  for (const R& op : ops) {
    for (const Case& c : cases) {
      for (bool f16 : {false, true}) {
        i64 count = 1;
        for (i64 a : c.axes) count *= c.d[std::size_t(a)];
        if (op.r == kk::Reduction::prod && count > 200) continue;  // keep products finite
        const std::string what =
            fmt::format("{} {} axes {}", op.op, dims_text(c.d), dims_text(c.axes));
        report.run(what, [&] {
          auto x = random_values(numel(c.d), op.lo, op.hi);
          if (f16) x = round_f16(x);
          const kiln::Tensor tx = tensor(c.d, x), ta = tensor_i64({i64(c.axes.size())}, c.axes);
          const kiln::Tensor ref = reference(node(op.op, 2, {{"keepdims", i64{0}}}), {&tx, &ta});
          kk::Dims dims;
          dims.rank = int(c.d.size());
          unsigned mask = 0;
          for (std::size_t k = 0; k < c.d.size(); ++k) dims.d[k] = c.d[k];
          for (i64 a : c.axes) mask |= 1u << a;
          DeviceBuffer dx = upload(x, f16), dy = poisoned(ref.numel(), f16);
          KILN_CHECK(kk::reduce(elem(f16), op.r, kk::reduce_desc(dims, mask), dx.get(), dy.get(),
                                nullptr));
          report.check(what, download(dy, ref.numel(), f16), ref, f16);
        });
      }
    }
  }
  return report.finish("gpu-reduce");
}
