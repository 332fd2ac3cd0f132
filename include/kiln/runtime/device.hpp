// CUDA devices as the runtime sees them, through the CUDA runtime API only (never libcuda), so
// that kiln starts and reports "no GPU" cleanly on a machine without one.
#pragma once

#include <string>
#include <vector>

namespace kiln::runtime {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int multiprocessors = 0;
  std::size_t memory_bytes = 0;
};

/// Number of usable CUDA devices; 0 when there is no driver or no device (never throws).
int device_count() noexcept;
/// Why device_count() is 0, in words ("no CUDA driver", "no device"), or "" when it is not.
std::string no_device_reason();
/// Properties of every device.
std::vector<DeviceInfo> devices();
/// "cudart 13.0, cuBLAS 13.0.0, cuDNN 9.13.0" — the libraries as loaded.
std::string library_versions();

}  // namespace kiln::runtime
