// Writes the seed corpora that the library's own writers make (tests/fuzz/make_corpus.sh calls
// it; nothing generated is committed):
//   fuzz_seeds OUT [MODEL.onnx...]
//   OUT/wts/           small weight maps of f32, f16, i8 and i32 in each WTS dialect
//   OUT/npy/           every dtype kiln holds, ranks 0 to 4, an empty tensor
//   OUT/plan/          each MODEL built for the CPU reference and serialized, as `kiln build
//                      --save` does (a model that does not build is skipped, with a line)
//   OUT/timing_cache/  caches with the identity fuzz_timing_cache expects
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "fuzz_util.hpp"
#include "kiln/build/builder.hpp"
#include "kiln/build/calibration.hpp"
#include "kiln/import/npy.hpp"
#include "kiln/import/onnx.hpp"
#include "kiln/import/wts.hpp"
#include "kiln/plan/plan_file.hpp"
#include "kiln/reference/executor.hpp"
#include "runtime/timing_cache.hpp"

namespace fs = std::filesystem;
using namespace kiln;

namespace {

void write(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream f(file, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw Error(fmt::format("cannot write seed '{}'", file.string()));
}

/// A tensor whose values count 0, 1, .., 6, 0, .. from `start` (held by every dtype).
Tensor counting(DType t, std::vector<std::int64_t> dims, int start = 0) {
  Tensor x(t, std::move(dims));
  for (std::int64_t i = 0; i < x.numel(); ++i) x.set(i, static_cast<double>((start + i) % 7));
  return x;
}

void wts_seeds(const fs::path& out) {
  std::vector<WeightMap> maps(3);
  maps[0].set("conv1.weight", counting(DType::f32, {2, 1, 3, 3}));
  maps[0].set("conv1.bias", counting(DType::f32, {2}, 1));
  maps[1].set("fc.weight", counting(DType::f16, {3, 4}));
  maps[1].set("q.scale", counting(DType::i8, {5}));
  maps[1].set("idx", counting(DType::i32, {2, 2}));
  maps[2].set("w", counting(DType::f32, {1}));
  for (std::size_t m = 0; m < maps.size(); ++m)
    for (WtsDialect d : kAllWtsDialects)
      write(out / "wts" / fmt::format("{}-{}.wts", m, wts_dialect_name(d)),
            write_wts_string(maps[m], d));
}

void npy_seeds(const fs::path& out) {
  const std::vector<std::vector<std::int64_t>> shapes = {{},        {3},          {2, 3},
                                                         {2, 1, 2}, {1, 2, 1, 2}, {0, 3}};
  for (DType t : kAllDTypes)
    for (std::size_t s = 0; s < shapes.size(); ++s)
      write(out / "npy" / fmt::format("{}-{}.npy", dtype_name(t), s),
            serialize_npy(counting(t, shapes[s])));
}

void plan_seeds(const fs::path& out, const std::vector<std::string>& models) {
  for (const auto& m : models) {
    try {
      onnx::ImportOptions io;
      io.evaluator = &reference::constant_evaluator();
      build::BuildOptions bo;
      bo.evaluator = &reference::constant_evaluator();
      const plan::Plan p = build::build_plan(onnx::load_model(m, io), bo);
      write(out / "plan" / (fs::path(m).parent_path().filename().string() + ".plan"),
            plan::serialize_plan(p));
    } catch (const Error& e) {
      fmt::print("fuzz_seeds: no plan seed from {}: {:.100}\n", m, e.what());
    }
  }
}

void timing_cache_seeds(const fs::path& out) {
  const std::vector<std::map<std::string, std::string>> caches = {
      {},
      {{"conv f32 [1,3,8,8] k[4,3,3,3] s1 p1 d1 g1", "graph 3 ws 1024 ms 0.01250"},
       {"matmul f32 [8,16]x[16,4]", "index 2 ws 0 ms 0.00310"}},
      {{"conv f16 [2,8,4,4] k[8,8,1,1] s1 p0 d1 g1", "algo 1 ws 0 ms 0.0042"},
       {"key", "value\twith tab"}},
  };
  for (std::size_t c = 0; c < caches.size(); ++c) {
    std::ostringstream s;
    runtime::detail::write_timing_cache(s, fuzz::kCacheIdentity, caches[c]);
    write(out / "timing_cache" / fmt::format("{}.cache", c), s.str());
  }
}

void calib_cache_seeds(const fs::path& out) {
  const std::vector<std::map<std::string, float>> caches = {
      {{"input", 0.0078740157f}},
      {{"data", 0.0125f}, {"conv1:0", 0.5f}, {"(Unnamed Layer* 3) [Convolution]_output", 1.75e-3f}},
  };
  for (std::size_t c = 0; c < caches.size(); ++c)
    write(out / "calib_cache" / fmt::format("{}.txt", c),
          build::calibration_cache_text(c ? build::Calibrator::minmax : build::Calibrator::entropy,
                                        caches[c]));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: fuzz_seeds OUT [MODEL.onnx...]\n");
    return 2;
  }
  const fs::path out = argv[1];
  wts_seeds(out);
  npy_seeds(out);
  plan_seeds(out, std::vector<std::string>(argv + 2, argv + argc));
  timing_cache_seeds(out);
  calib_cache_seeds(out);
  return 0;
}
