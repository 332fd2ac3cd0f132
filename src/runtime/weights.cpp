// Weight conversion: host floats to the device's storage format (f32, f16 or bf16) and back, and
// the engine's cache of device weights in the forms steps asked for.
#include <cstring>

#include "check.hpp"
#include "engine_impl.hpp"

namespace kiln::runtime::detail {

std::vector<std::byte> to_device_format(const float* data, i64 n, Precision fp) {
  std::vector<std::byte> out(static_cast<std::size_t>(n) * element_size(fp));
  if (fp == Precision::f32) {
    if (n) std::memcpy(out.data(), data, out.size());
    return out;
  }
  auto* h = reinterpret_cast<std::uint16_t*>(out.data());
  for (i64 i = 0; i < n; ++i)
    h[i] = fp == Precision::f16 ? f16::from_float(data[i]) : bf16::from_float(data[i]);
  return out;
}

std::vector<float> download_floats(const void* device, i64 n, Precision fp) {
  std::vector<float> out(static_cast<std::size_t>(n));
  if (fp == Precision::f32) {
    if (n) KILN_CHECK(cudaMemcpy(out.data(), device, out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
  }
  std::vector<std::uint16_t> raw(static_cast<std::size_t>(n));
  if (n) KILN_CHECK(cudaMemcpy(raw.data(), device, raw.size() * 2, cudaMemcpyDeviceToHost));
  for (std::size_t i = 0; i < raw.size(); ++i)
    out[i] = fp == Precision::f16 ? f16::to_float(raw[i]) : bf16::to_float(raw[i]);
  return out;
}

std::vector<float> host_floats(const Tensor& t) {
  switch (t.dtype()) {
    case DType::f32: return {t.data<float>(), t.data<float>() + t.numel()};
    case DType::f16:
    case DType::bf16:
    case DType::f64: {
      std::vector<float> v(static_cast<std::size_t>(t.numel()));
      for (i64 i = 0; i < t.numel(); ++i)
        v[static_cast<std::size_t>(i)] = static_cast<float>(t.get(i));
      return v;
    }
    default:
      throw UnsupportedError(fmt::format("expected a float weight, got {}", t.type_string()));
  }
}

// ---- weights ------------------------------------------------------------------------------

const void* WeightCache::get(const std::string& key, std::size_t bytes,
                             const std::function<void(DeviceBuffer&)>& fill) {
  std::lock_guard lock(mu_);
  auto it = buffers_.find(key);
  if (it != buffers_.end()) return it->second.get();
  DeviceBuffer b(std::max<std::size_t>(bytes, 1));
  fill(b);
  return buffers_.emplace(key, std::move(b)).first->second.get();
}

std::size_t WeightCache::bytes() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [_, b] : buffers_) n += b.bytes();
  return n;
}

const void* EngineState::weight(const std::string& name) {
  auto it = plan.weights.find(name);
  if (it == plan.weights.end())
    throw GraphError(fmt::format("'{}' is not a weight of the plan", name));
  const Tensor& t = it->second;
  if (float_kind(t.dtype()) || t.dtype() == DType::f64) {
    if (t.dtype() == DType::f64)
      throw UnsupportedError(
          fmt::format("weight '{}' is f64: the GPU runtime takes f32, f16 and bf16", name));
    const auto f = host_floats(t);
    auto bytes = to_device_format(f.data(), t.numel(), storage_of(t.dtype(), precision));
    return weights.get("w:" + name, bytes.size(),
                       [&](DeviceBuffer& b) { b.upload(bytes.data(), bytes.size()); });
  }
  return weights.get("w:" + name, t.nbytes(),
                     [&](DeviceBuffer& b) { b.upload(t.raw(), t.nbytes()); });
}

}  // namespace kiln::runtime::detail
