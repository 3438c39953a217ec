// The CPU backend: ISA detection, worker-thread control for Halide's runtime
// thread pool, and the microbenchmarks that measure this CPU's peaks.
#pragma once

#include "backends/common/device.h"

namespace ek {

class CpuDevice : public Device {
 public:
  CpuDevice();
  int threads() const { return profile_.threads; }
  // Sets the Halide runtime's worker count (all Halide kernels share one pool).
  void set_threads(int n);
  void measure_peaks(double seconds_budget) override;
};

// Fills the CPU identity, ISA features and cache sizes from cpuid / auxv / sysfs.
DeviceProfile probe_cpu_profile();

// Microbenchmarks (backends/cpu/cpu_microbench.cpp). Each runs on `threads`
// threads for about `seconds` and returns the best rate seen.
double cpu_measure_read_gbps(int threads, int64_t bytes, double seconds);
double cpu_measure_copy_gbps(int threads, int64_t bytes, double seconds);
double cpu_measure_fp32_gflops(int threads, const DeviceProfile& p, double seconds);
double cpu_measure_int8_gops(int threads, const DeviceProfile& p, double seconds);  // 0 without int8 dot

}  // namespace ek
