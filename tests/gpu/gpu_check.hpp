// Shared helpers of the GPU tests: device buffers from host data, the CPU reference on one IR
// node, and the max|gpu - ref| / max|ref| check with pass/FAIL lines and a closing count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "kernel_types.cuh"
#include "kiln/ir/dtype.hpp"
#include "kiln/reference/executor.hpp"
#include "kiln/runtime/device.hpp"
#include "kiln/runtime/library.hpp"
#include "runtime/check.hpp"

namespace gpu_test {

using kiln::runtime::DeviceBuffer;
using i64 = std::int64_t;

inline constexpr double kTolF32 = 1e-4, kTolF16 = 1e-2;

/// Exits 77 with "SKIP: <reason>" where no GPU exists.
inline void skip_without_gpu() {
  if (kiln::runtime::device_count() == 0) {
    std::printf("SKIP: %s\n", kiln::runtime::no_device_reason().c_str());
    std::exit(77);
  }
  for (const auto& d : kiln::runtime::devices())
    std::printf("device %d: %s (sm_%d%d, %d SMs)\n", d.index, d.name.c_str(), d.sm_major,
                d.sm_minor, d.multiprocessors);
  std::printf("libraries: %s\n", kiln::runtime::library_versions().c_str());
}

inline std::mt19937& rng() {
  static std::mt19937 g(std::random_device{}());
  return g;
}

/// Fresh random values in [lo, hi], never exactly zero.
inline std::vector<float> random_values(i64 n, float lo = -2.f, float hi = 2.f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    do x = u(rng());
    while (x == 0.f);
  }
  return v;
}

inline i64 numel(const std::vector<i64>& dims) {
  i64 n = 1;
  for (i64 d : dims) n *= d;
  return n;
}

/// Values rounded through f16 (what an FP16 run sees).
inline std::vector<float> round_f16(std::vector<float> v) {
  for (auto& x : v) x = static_cast<float>(kiln::f16(x));
  return v;
}

/// A device copy of `v` in f32 or (converted) f16.
inline DeviceBuffer upload(const std::vector<float>& v, bool f16 = false) {
  DeviceBuffer b(v.size() * (f16 ? 2 : 4));
  if (f16) {
    std::vector<std::uint16_t> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) h[i] = kiln::f16::from_float(v[i]);
    b.upload(h.data(), h.size() * 2);
  } else {
    b.upload(v.data(), v.size() * 4);
  }
  return b;
}

/// An output buffer of n elements, poisoned (all bits set: NaN in f32 and f16).
inline DeviceBuffer poisoned(i64 n, bool f16 = false) {
  DeviceBuffer b(static_cast<std::size_t>(std::max<i64>(n, 1)) * (f16 ? 2 : 4));
  b.fill_bytes(0xff);
  return b;
}

inline std::vector<float> download(const DeviceBuffer& b, i64 n, bool f16 = false) {
  KILN_CHECK(cudaDeviceSynchronize());
  std::vector<float> v(static_cast<std::size_t>(n));
  if (f16) {
    std::vector<std::uint16_t> h(v.size());
    b.download(h.data(), h.size() * 2);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = kiln::f16::to_float(h[i]);
  } else {
    b.download(v.data(), v.size() * 4);
  }
  return v;
}

inline kiln::Tensor tensor(const std::vector<i64>& dims, const std::vector<float>& v) {
  return kiln::Tensor::from<float>(dims, v);
}
inline kiln::Tensor tensor_i64(const std::vector<i64>& dims, const std::vector<i64>& v) {
  return kiln::Tensor::from<std::int64_t>(dims, v);
}

/// A node of `op` with inputs "in0".."inK" (empty names for null tensors) and one output.
inline kiln::Node node(const std::string& op, std::size_t inputs,
                       std::map<std::string, kiln::Attribute> attrs = {}) {
  kiln::Node n;
  n.op = op;
  n.name = op;
  for (std::size_t i = 0; i < inputs; ++i) n.inputs.push_back("in" + std::to_string(i));
  n.outputs = {"out"};
  n.attrs = std::move(attrs);
  return n;
}

/// The reference's first output for `n` on `inputs` (nullptr for an omitted optional input).
inline kiln::Tensor reference(kiln::Node n, const std::vector<const kiln::Tensor*>& inputs) {
  for (std::size_t i = 0; i < inputs.size() && i < n.inputs.size(); ++i)
    if (inputs[i] == nullptr) n.inputs[i] = "";
  return kiln::reference::run_node(n, inputs)[0];
}

/// Counts and prints the results.
class Report {
 public:
  /// max|gpu - ref| / max|ref|; NaN anywhere (an unwritten output) is infinite error.
  static double rel_error(const std::vector<float>& gpu, const kiln::Tensor& ref) {
    if (static_cast<i64>(gpu.size()) != ref.numel()) return INFINITY;
    double err = 0, mag = 0;
    for (i64 i = 0; i < ref.numel(); ++i) {
      const double r = ref.get(i), g = gpu[static_cast<std::size_t>(i)];
      if (std::isnan(g) != std::isnan(r)) return INFINITY;
      if (std::isnan(r)) continue;
      err = std::max(err, std::abs(g - r));
      mag = std::max(mag, std::abs(r));
    }
    return err / std::max(mag, 1e-30);
  }

  void check(const std::string& what, const std::vector<float>& gpu, const kiln::Tensor& ref,
             bool f16 = false) {
    const double tol = f16 ? kTolF16 : kTolF32;
    const double rel = rel_error(gpu, ref);
    const bool ok = rel <= tol;
    (ok ? passed_ : failed_) += 1;
    double& worst = f16 ? worst_f16_ : worst_f32_;
    worst = std::max(worst, rel);
    std::printf("%s %s %s max|gpu-ref|/max|ref| = %.3g\n", ok ? "pass" : "FAIL",
                f16 ? "f16" : "f32", what.c_str(), rel);
  }
  /// A check that is not a comparison (an expected error, a property).
  void expect(const std::string& what, bool ok) {
    (ok ? passed_ : failed_) += 1;
    std::printf("%s %s\n", ok ? "pass" : "FAIL", what.c_str());
  }
  /// Runs one case; an exception is a failure naming the case.
  template <class F>
  void run(const std::string& what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      ++failed_;
      std::printf("FAIL %s threw: %s\n", what.c_str(), e.what());
    }
  }
  int finish(const char* suite) const {
    std::printf("%s: %d passed, %d failed; largest error f32 %.3g, f16 %.3g\n", suite, passed_,
                failed_, worst_f32_, worst_f16_);
    return failed_ ? 1 : 0;
  }

 private:
  int passed_ = 0, failed_ = 0;
  double worst_f32_ = 0, worst_f16_ = 0;
};

inline std::string dims_text(const std::vector<i64>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

inline kiln::kernels::Elem elem(bool f16) {
  return f16 ? kiln::kernels::Elem::f16 : kiln::kernels::Elem::f32;
}

}  // namespace gpu_test
