// sparse_attention benchmarks with attention-specific counters, over the
// op's "bench" cases (shapes.json at full size, a dense causal baseline at
// T = 4096 / 8192, the sliding-window 1024 + 4 sinks layer, decode against
// 32K / 64K caches), on every device and kernel:
//   GFLOPs        rate of 2 (Dk + Dv) flops per ALLOWED (query, key) pair
//   pct_fp32_peak that rate over the device's measured fp32 peak
//   allowed_frac  allowed pairs / (B Hq Tq Tk)
//   kv_MB         K/V bytes the kernels read (each allowed key row of each KV
//                 head once per layout head; from sparsity_stats)
//   kv_GBps       kv_MB per second, pct_read_bw over the measured read peak
//   kv_vs_pattern kv bytes / bytes of the pattern's keys per KV head
//                 (window + sinks, or the whole cache): 1.0 = reads nothing
//                 beyond what the pattern needs
//   GB/s, GFLOP/s, roofline: the same for the median iteration, as plain
//                 values (the columns of the `ek bench` table)
//   cpu_ms        process CPU time per iteration (all threads; CPU backend),
//   GFLOPs_per_core and pct_core_peak: the rate per CPU-second against one
//                 core's share of the fp32 peak. On a shared machine wall time
//                 measures how much CPU the process was given; these measure
//                 the kernel (= the 2-thread figures when both cores are free).
// Names: attention/<backend>/<variant>/<case>.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "bench/bench_common.h"
#include "kernels/sparse_attention/sparse_attention.h"

namespace ek::bench {
namespace {

namespace sa = ek::sparse_attention;

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

void run_case(benchmark::State& state, Device* dev, const KernelImpl* k, const OpDef* def, const OpCase& c) {
  auto oc = std::make_shared<OwnedCall>(make_call(*def, c, 1234));
  const std::string why = k->ineligible_reason ? k->ineligible_reason(dev->profile(), oc->call) : "";
  if (!why.empty()) {
    state.SkipWithError(("not eligible: " + why).c_str());
    return;
  }
  const sa::Args a = sa::Args::parse(oc->call);
  const sa::SparsityStats st = sa::sparsity_stats(a);
  auto inv = k->bind(*dev, oc->call, k->default_tuning());
  inv->execute();  // warm-up
  const double read_before = a.tq <= 8 ? read_gbps_now(*dev) : 0;  // decode: memory-bound
  const double cpu0 = process_cpu_seconds();
  const double median = time_invocation(state, *inv);
  const double cpu_per_iter = (process_cpu_seconds() - cpu0) / std::max<double>(1, static_cast<double>(state.iterations()));

  const DeviceProfile& p = dev->profile();
  const double flops = st.allowed_pairs * 2.0 * static_cast<double>(a.dk + a.dv);
  const double kv_bytes = st.keys_read * static_cast<double>(a.dk + a.dv) * dtype_size(a.kv_dtype);
  const int64_t pattern_keys =
      a.pattern.window > 0 ? std::min(a.tk, a.pattern.window + std::min(a.pattern.sinks, a.tk)) : a.tk;
  const double pattern_bytes = static_cast<double>(a.batch * a.hkv * pattern_keys) *
                               static_cast<double>(a.dk + a.dv) * dtype_size(a.kv_dtype);
  using benchmark::Counter;
  state.counters["GFLOPs"] = Counter(flops * 1e-9, Counter::kIsIterationInvariantRate);
  if (p.peak_fp32_gflops > 0)
    state.counters["pct_fp32_peak"] = Counter(100.0 * flops * 1e-9 / p.peak_fp32_gflops, Counter::kIsIterationInvariantRate);
  state.counters["allowed_frac"] = st.allowed_pairs / (static_cast<double>(a.batch * a.hq * a.tq) * a.tk);
  state.counters["kv_MB"] = kv_bytes * 1e-6;
  state.counters["kv_GBps"] = Counter(kv_bytes * 1e-9, Counter::kIsIterationInvariantRate);
  if (p.peak_read_gbps > 0)
    state.counters["pct_read_bw"] = Counter(100.0 * kv_bytes * 1e-9 / p.peak_read_gbps, Counter::kIsIterationInvariantRate);
  if (a.tq <= 8) {
    state.counters["kv_vs_pattern"] = kv_bytes / pattern_bytes;
    add_read_bw_now_counters(state, *dev, read_before, kv_bytes, median);
  }
  // Plain values of the median iteration for the `ek bench` table: K/V bytes
  // and allowed-pair flops per second, and the roofline fraction (the larger
  // of the read-bandwidth and fp32-peak times over the measured time).
  if (median > 0) {
    state.counters["GB/s"] = kv_bytes * 1e-9 / median;
    state.counters["GFLOP/s"] = flops * 1e-9 / median;
    double bound = 0;
    if (p.peak_read_gbps > 0) bound = std::max(bound, kv_bytes * 1e-9 / p.peak_read_gbps);
    if (p.peak_fp32_gflops > 0) bound = std::max(bound, flops * 1e-9 / p.peak_fp32_gflops);
    if (bound > 0) state.counters["roofline"] = bound / median;
  }
  if (dev->backend() == "cpu" && cpu_per_iter > 0) {
    state.counters["cpu_ms"] = cpu_per_iter * 1e3;
    state.counters["GFLOPs_per_core"] = flops * 1e-9 / cpu_per_iter;
    if (p.peak_fp32_gflops > 0 && p.threads > 0)
      state.counters["pct_core_peak"] = 100.0 * flops * 1e-9 / cpu_per_iter / (p.peak_fp32_gflops / p.threads);
  }
  state.SetLabel(p.label());
}

void register_attention() {
  const OpDef* def = Registry::instance().find_op(sa::kOp);
  if (!def) return;
  for (const OpCase& c : def->cases()) {
    if (!c.tags.count("bench")) continue;
    for (Device* dev : devices())
      for (const KernelImpl* k : Registry::instance().kernels(sa::kOp, dev->backend())) {
        const std::string name = std::string(sa::kOp) + "/" + dev->backend() + "/" + k->variant + "/" + c.name;
        benchmark::RegisterBenchmark(name.c_str(), [dev, k, def, c](benchmark::State& s) { run_case(s, dev, k, def, c); })
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond)
            ->MinTime(0.5);
      }
  }
}

const RegisterCases reg(register_attention, sa::kOp);

}  // namespace
}  // namespace ek::bench
