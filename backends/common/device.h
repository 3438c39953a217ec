// The device abstraction shared by all backends, and the flat capability profile
// that selection, tuning and benchmarks read. Backends fill the profile when they
// probe a device; runtime/ serialises it, caches measured peaks and loads
// profiles of devices that are not attached.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ek {

struct DeviceProfile {
  // Identity (these fields, and only these, make the fingerprint).
  std::string backend;         // "cpu", "vulkan", "opencl"
  std::string vendor;          // "AMD", "Mesa", "Qualcomm", ...
  std::string device_name;     // "llvmpipe (LLVM 15.0.6, 256 bits)"
  std::string driver_name;     // "llvmpipe", "PoCL", ...
  std::string driver_version;  // as the driver reports it
  std::string api_version;     // "1.3.239", "OpenCL 3.0", "x86-64"
  std::string architecture;    // "x86-64", "aarch64", "adreno-7xx", "hopper": tuning-DB fallback key

  std::string device_class = "cpu";  // mobile, edge, cloud, npu, cpu

  // Execution resources.
  int compute_units = 0;        // CPU: hardware threads; GPU: SMs/CUs/EUs
  int threads = 0;              // CPU worker threads the backend will use
  int max_workgroup_size = 0;
  std::vector<int> subgroup_sizes;  // supported sizes (min..max for varying drivers)
  int64_t shared_memory_bytes = 0;  // per workgroup (local/shared); CPU: L1d per core
  int64_t memory_bytes = 0;         // device-visible memory
  int64_t max_buffer_bytes = 0;     // largest single buffer / storage range
  int64_t cache_bytes = 0;          // last-level cache
  bool unified_memory = false;

  // Data types and instructions, as feature names, e.g. "fp16_storage",
  // "fp16_arith", "int8_storage", "int8_arith", "int_dot_product",
  // "subgroup_arith", "subgroup_shuffle", "avx2", "fma", "f16c", "avx512f",
  // "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "neon", "dotprod",
  // "i8mm", "sve".
  std::set<std::string> features;
  std::vector<std::string> coop_matrix_shapes;  // "16x16x16 f16->f32", ...
  std::vector<std::string> quirks;              // known driver issues applied

  // Measured by the built-in microbenchmark (0 = not measured).
  double peak_read_gbps = 0;    // streaming read bandwidth
  double peak_copy_gbps = 0;    // read+write bandwidth (bytes moved / s)
  double peak_fp32_gflops = 0;  // FMA = 2 flops
  double peak_int8_gops = 0;    // int8 dot product, multiply+add = 2 ops; 0 if none
  bool measured = false;

  // True if the feature is present and not disabled by EK_DISABLE_FEATURES
  // (a comma-separated list, e.g. "avx512f,int_dot_product") — the switch for
  // working around a driver bug or forcing a fallback path in tests.
  bool has(const std::string& feature) const;
  // Stable hash of the identity fields, as 16 hex digits.
  std::string fingerprint() const;
  // "cpu:AMD EPYC" style short label for tables.
  std::string label() const;
};

// A device a backend can run kernels on. Concrete backends derive from it and
// kernel implementations downcast to the backend type they were registered for.
class Device {
 public:
  virtual ~Device() = default;
  const std::string& backend() const { return profile_.backend; }
  const DeviceProfile& profile() const { return profile_; }
  DeviceProfile& mutable_profile() { return profile_; }
  // Runs the backend's microbenchmarks and stores peaks in the profile.
  virtual void measure_peaks(double seconds_budget) = 0;

 protected:
  DeviceProfile profile_;
};

// What a backend found when asked for devices, including why none were found.
struct DeviceScan {
  std::string backend;
  std::vector<std::string> notes;  // e.g. "no Vulkan loader (libvulkan.so.1)"
};

}  // namespace ek

namespace ek {

// Backends register themselves so the runtime can enumerate devices without
// knowing which backends were built.
using EnumerateDevicesFn = std::vector<std::unique_ptr<Device>> (*)(DeviceScan& scan);
struct BackendEntry {
  std::string name;  // "cpu", "vulkan", "opencl"
  EnumerateDevicesFn enumerate = nullptr;
  int order = 0;  // listing order
};
void register_backend(BackendEntry entry);
std::vector<BackendEntry> registered_backends();  // sorted by order
struct RegisterBackend {
  explicit RegisterBackend(BackendEntry e) { register_backend(std::move(e)); }
};

}  // namespace ek
