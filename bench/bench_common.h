// Shared benchmark harness: one process-wide set of devices with measured
// peaks, and the counters every case reports (bytes/s, flops/s and the
// roofline fraction against the device's measured peak of the bounding
// resource). Cases time device-side when the backend has timestamps
// (UseManualTime), else wall time of execute().
#pragma once

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "runtime/runtime.h"

namespace ek::bench {

// Devices opened once, filtered by EK_BENCH_BACKENDS (comma list), peaks ensured.
const std::vector<Device*>& devices();

// Roofline: the case is bounded by whichever of bytes/peak_bw and
// work/peak_compute takes longer; the fraction is that bound over the time.
// int_ops are measured against the int8 peak, flops against fp32.
struct Roofline {
  double bound_seconds = 0;
  std::string bound_by;  // "memory", "fp32", "int8"
};
Roofline roofline(const Cost& c, const DeviceProfile& p, bool cold_memory = true);

// Sets the counters of a case whose iterations each did `cost`, from the
// median per-iteration time in state.counters["seconds"] (which
// time_invocation sets; set it yourself if you time differently):
// GB/s, GFLOP/s, GOP/s (int8 paths), roofline (fraction of the bound).
// Google Benchmark's own rate counters divide by the main thread's CPU time,
// which is wrong for multi-threaded and device kernels, hence plain values.
void set_counters(benchmark::State& state, const Cost& cost, const DeviceProfile& p, bool cold_memory = true);

// The tuning a case binds `k` with: its defaults, overridden by
// EK_BENCH_TUNE ("name=value,name=value"; `ek bench --tune`) for the
// tunables `k` declares. A malformed entry throws InvalidArgument.
Tuning bench_tuning(const KernelImpl& k);

// Read bandwidth of this very moment on a CPU device (GB/s; 0 elsewhere): the
// profile's read microbenchmark for ~0.1 s over 4x the last-level cache.
// Memory-bound cases call it right before and after their timing loop and
// report read_GBps_now and frac_read_bw_now (see add_read_bw_now_counters),
// since a shared host's DRAM bandwidth moves by 2x from minute to minute.
double read_gbps_now(Device& dev);
// Sets read_GBps_now = mean(before, read_gbps_now(dev)) and
// frac_read_bw_now = bytes / seconds / that (no-op off the CPU).
void add_read_bw_now_counters(benchmark::State& state, Device& dev, double before, double bytes, double seconds);

// Runs `inv` once per iteration; the iteration time is the device time where
// the backend has timestamps, else wall time. Stores the median in
// state.counters["seconds"] and returns it.
double time_invocation(benchmark::State& state, Invocation& inv);

// Registers one benchmark per (case tagged "bench", kernel, device) of `op`:
// named "<op>/<backend>/<variant>/<case name>".
void register_op_cases(const std::string& op);

// Op-specific benchmark files (bench/<op>_bench.cpp) add cases that the
// generic list cannot express (e.g. weights rotated through a working set
// larger than the last-level cache) with a static
//   const ek::bench::RegisterCases reg([] { benchmark::RegisterBenchmark(...); });
// The function runs after the devices are open, before benchmarks start.
// Pass `replaces_op` when the function registers that op's "bench" cases
// itself (with extra counters), so the generic list does not repeat them.
struct RegisterCases {
  explicit RegisterCases(void (*fn)(), const char* replaces_op = nullptr);
};
// Runs every generic op registration, then every RegisterCases function.
void register_all_cases();

}  // namespace ek::bench
