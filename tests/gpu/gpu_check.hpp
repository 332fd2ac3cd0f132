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
/// BF16 keeps 8 bits of mantissa to FP16's 11 (one rounding is 8x larger).
inline constexpr double kTolBf16 = 5e-2;

/// The precisions whole plans are built and checked in: the label, the GPU target, the tolerance
/// of max|gpu - ref| / max|ref|, the dtype the inputs are rounded through for the reference, and
/// the largest activation the format holds (beyond it a random-weight case says nothing).
struct PlanPrecision {
  const char* label;
  const char* target;
  double tol;
  kiln::DType stored;
  double limit;
};
inline constexpr PlanPrecision kPlanPrecisions[] = {
    {"fp32", "cuda", kTolF32, kiln::DType::f32, 1e30},
    {"fp16", "cuda-fp16", kTolF16, kiln::DType::f16, 6e4},
    {"bf16", "cuda-bf16", kTolBf16, kiln::DType::bf16, 1e30}};
inline constexpr int kNumPlanPrecisions = 3;

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

using kiln::kernels::Elem;

inline Elem elem(bool f16) { return f16 ? Elem::f16 : Elem::f32; }
inline const char* elem_name(Elem e) {
  return e == Elem::f32 ? "f32" : e == Elem::f16 ? "f16" : "bf16";
}
/// The plan precision whose values are stored as `e` (kPlanPrecisions is in Elem's order).
inline const PlanPrecision& plan_precision(Elem e) {
  static_assert(static_cast<int>(Elem::f32) == 0 && static_cast<int>(Elem::f16) == 1 &&
                static_cast<int>(Elem::bf16) == 2 && kNumPlanPrecisions == 3);
  return kPlanPrecisions[static_cast<int>(e)];
}
/// The plan precision that stores `t` (f32, f16 or bf16), or nullptr for other dtypes.
inline const PlanPrecision* plan_precision_of(kiln::DType t) {
  for (const auto& p : kPlanPrecisions)
    if (p.stored == t) return &p;
  return nullptr;
}
/// A kernel's tolerance in `e`: max|gpu - ref| / max|ref| on inputs rounded through `e`.
inline double tol_of(Elem e) { return plan_precision(e).tol; }

/// Values rounded through `e` (what a run in that format sees).
inline std::vector<float> round_to(std::vector<float> v, Elem e) {
  if (e == Elem::f16)
    for (auto& x : v) x = static_cast<float>(kiln::f16(x));
  else if (e == Elem::bf16)
    for (auto& x : v) x = static_cast<float>(kiln::bf16(x));
  return v;
}
inline std::vector<float> round_f16(std::vector<float> v) {
  return round_to(std::move(v), Elem::f16);
}

/// A device copy of `v` in `e` (converted from f32).
inline DeviceBuffer upload(const std::vector<float>& v, Elem e) {
  DeviceBuffer b(v.size() * static_cast<std::size_t>(kiln::kernels::elem_bytes(e)));
  if (e != Elem::f32) {
    std::vector<std::uint16_t> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i)
      h[i] = e == Elem::f16 ? kiln::f16::from_float(v[i]) : kiln::bf16::from_float(v[i]);
    b.upload(h.data(), h.size() * 2);
  } else {
    b.upload(v.data(), v.size() * 4);
  }
  return b;
}
inline DeviceBuffer upload(const std::vector<float>& v, bool f16 = false) {
  return upload(v, elem(f16));
}

/// An output buffer of n elements of `e`, poisoned (all bits set: NaN in every float format).
inline DeviceBuffer poisoned(i64 n, Elem e) {
  DeviceBuffer b(static_cast<std::size_t>(std::max<i64>(n, 1)) *
                 static_cast<std::size_t>(kiln::kernels::elem_bytes(e)));
  b.fill_bytes(0xff);
  return b;
}
inline DeviceBuffer poisoned(i64 n, bool f16 = false) { return poisoned(n, elem(f16)); }

inline std::vector<float> download(const DeviceBuffer& b, i64 n, Elem e) {
  KILN_CHECK(cudaDeviceSynchronize());
  std::vector<float> v(static_cast<std::size_t>(n));
  if (e != Elem::f32) {
    std::vector<std::uint16_t> h(v.size());
    b.download(h.data(), h.size() * 2);
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = e == Elem::f16 ? kiln::f16::to_float(h[i]) : kiln::bf16::to_float(h[i]);
  } else {
    b.download(v.data(), v.size() * 4);
  }
  return v;
}
inline std::vector<float> download(const DeviceBuffer& b, i64 n, bool f16 = false) {
  return download(b, n, elem(f16));
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
             Elem e) {
    const double tol = tol_of(e);
    const double rel = rel_error(gpu, ref);
    const bool ok = rel <= tol;
    (ok ? passed_ : failed_) += 1;
    double& worst = worst_[static_cast<int>(e)];
    worst = std::max(worst, rel);
    std::printf("%s %s %s max|gpu-ref|/max|ref| = %.3g\n", ok ? "pass" : "FAIL", elem_name(e),
                what.c_str(), rel);
  }
  void check(const std::string& what, const std::vector<float>& gpu, const kiln::Tensor& ref,
             bool f16 = false) {
    check(what, gpu, ref, elem(f16));
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
    std::printf("%s: %d passed, %d failed; largest error f32 %.3g, f16 %.3g", suite, passed_,
                failed_, worst_[0], worst_[1]);
    if (worst_[2] > 0) std::printf(", bf16 %.3g", worst_[2]);
    std::printf("\n");
    return failed_ ? 1 : 0;
  }

 private:
  int passed_ = 0, failed_ = 0;
  double worst_[3] = {0, 0, 0};  ///< by Elem
};

inline std::string dims_text(const std::vector<i64>& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

}  // namespace gpu_test
