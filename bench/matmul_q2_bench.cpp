// matmul_q2 benchmarks beyond the generic case list:
//   decode_cold  GEMV (T=1) with the weights rotated through a working set of
//                at least 4x the last-level cache (profile.cache_bytes), as a
//                model's layers are: every call streams its weights from DRAM.
//   decode_hot   GEMV (T=1) on one weight matrix again and again (cache-resident
//                when it fits): the kernel's compute rate.
//   prefill      GEMM at T=512.
// For every shapes.json matmul shape, format and kernel eligible on the device.
// Counters (from the median iteration): weight_GBps (native format bytes /
// s), frac_read_bw (of the profile's measured read bandwidth), frac_peak (of
// the profile's int8 or fp32 peak for 2*T*N*K ops), plus bench_common's
// seconds, GB/s, GFLOP/s or GOP/s (int8 kernels) and roofline. decode_cold on
// a CPU adds read_GBps_now (the read microbenchmark right before and after
// the case) and frac_read_bw_now (weight_GBps over it).
//
//   ./build/bench/ek_bench --benchmark_filter='matmul_q2/cpu/.*/q2g128/decode_cold'
#include <algorithm>
#include <vector>
#include <chrono>
#include <cmath>
#include <memory>

#include "bench/bench_common.h"
#include "kernels/matmul_q2/matmul_q2.h"

namespace ek::bench {
namespace {

struct Q2Shape {
  const char* name;
  int64_t N, K;
};
const Q2Shape kShapes[] = {
    {"mistral-7b ffn up", 14336, 4096},    {"mistral-7b ffn down", 4096, 14336},
    {"mistral-7b qkv", 6144, 4096},        {"llama-3.2-1b ffn up", 8192, 2048},
    {"llama-3.2-1b ffn down", 2048, 8192}, {"bitnet-2b ffn down", 2560, 6912},
    {"mamba-2.8b in_proj", 10240, 2560},   {"mamba-2.8b out_proj", 2560, 5120},
    {"hybrid-edge-1b mamba2 in_proj", 10304, 2048},
};

enum class Mode { decode_cold, decode_hot, prefill };
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::decode_cold: return "decode_cold";
    case Mode::decode_hot: return "decode_hot";
    case Mode::prefill: return "prefill";
  }
  return "?";
}

OpCase make_case(q2::Format f, int64_t T, int64_t N, int64_t K) {
  OpCase c;
  c.op = "matmul_q2";
  c.name = "bench";
  c.dims = {{"T", T}, {"N", N}, {"K", K}, {"bias", 0}, {"f16", 0}};
  c.params.set("format", std::string(q2::info(f).name));
  return c;
}

void run_case(benchmark::State& state, Device* dev, const KernelImpl* k, q2::Format f, Mode mode, int64_t N,
              int64_t K) {
  const OpDef& def = Registry::instance().op("matmul_q2");
  const DeviceProfile& p = dev->profile();
  const int64_t T = mode == Mode::prefill ? 512 : 1;
  const OpCase c = make_case(f, T, N, K);
  const double weight_bytes = static_cast<double>(N) * q2::row_bytes(f, K);
  // Enough distinct weight matrices to cover 4x the last-level cache.
  int copies = 1;
  if (mode == Mode::decode_cold) {
    const double llc = p.cache_bytes > 0 ? static_cast<double>(p.cache_bytes) : 32.0 * (1 << 20);
    copies = static_cast<int>(std::max(2.0, std::ceil(4 * llc / weight_bytes)));
  }
  std::vector<std::unique_ptr<OwnedCall>> calls;
  std::vector<std::unique_ptr<Invocation>> invs;
  for (int i = 0; i < copies; ++i) {
    calls.push_back(std::make_unique<OwnedCall>(make_call(def, c, 1000 + i)));
    if (i == 0 && k->ineligible_reason) {
      const std::string why = k->ineligible_reason(p, calls[0]->call);
      if (!why.empty()) {
        state.SkipWithError(("not eligible: " + why).c_str());
        return;
      }
    }
    invs.push_back(k->bind(*dev, calls.back()->call, bench_tuning(*k)));
    invs.back()->execute();  // warm-up: first touch, pipeline creation
  }
  // decode_cold: the read bandwidth of this very moment, before and after.
  const double read_before = mode == Mode::decode_cold ? read_gbps_now(*dev) : 0;
  size_t next = 0;
  std::vector<double> times;
  for (auto _ : state) {
    Invocation& inv = *invs[next];
    next = (next + 1) % invs.size();
    const auto t0 = std::chrono::steady_clock::now();
    inv.execute();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double devt = inv.last_device_seconds();
    const double t = devt > 0 ? devt : wall;
    state.SetIterationTime(t);
    times.push_back(t);
  }
  if (times.empty()) return;
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  const double t = times[times.size() / 2];  // median: shared machines only add outliers
  state.counters["seconds"] = t;
  const bool int8 = k->nmse_bound > 1e-6;  // the int8-activation paths promise 5e-4
  Cost cost = def.cost(calls[0]->call);
  const double ops = 2.0 * T * N * K;
  if (int8) {
    cost.int_ops = ops;
    cost.flops = 0;
  }
  set_counters(state, cost, p, mode == Mode::decode_cold || mode == Mode::prefill);
  state.counters["weight_GBps"] = weight_bytes / t / 1e9;
  if (p.peak_read_gbps > 0) state.counters["frac_read_bw"] = weight_bytes / (p.peak_read_gbps * 1e9) / t;
  const double peak = int8 ? p.peak_int8_gops : p.peak_fp32_gflops;
  if (peak > 0) state.counters["frac_peak"] = ops / (peak * 1e9) / t;
  state.counters["copies"] = copies;
  if (mode == Mode::decode_cold) add_read_bw_now_counters(state, *dev, read_before, weight_bytes, t);
}

void register_all() {
  for (Device* dev : devices()) {
    for (const KernelImpl* k : Registry::instance().kernels("matmul_q2", dev->backend())) {
      for (const q2::FormatInfo& fi : q2::formats()) {
        for (Mode mode : {Mode::decode_cold, Mode::decode_hot, Mode::prefill}) {
          for (const Q2Shape& s : kShapes) {
            if (s.K % fi.block_elems != 0) continue;
            // Hot-cache and prefill on the three largest shapes; cold decode on all.
            if (mode != Mode::decode_cold && !(s.N == 14336 || s.K == 14336 || s.N == 10304)) continue;
            const std::string name = cat("matmul_q2/", dev->backend(), "/", k->variant, "/", fi.name, "/",
                                         mode_name(mode), "/", s.name, " N=", s.N, " K=", s.K);
            const q2::Format f = fi.format;
            const int64_t N = s.N, K = s.K;
            benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run_case(st, dev, k, f, mode, N, K); })
                ->UseManualTime()
                ->MeasureProcessCPUTime()
                ->Unit(benchmark::kMicrosecond);
          }
        }
      }
    }
  }
}

// Replaces the generic "bench" cases of matmul_q2 (they lack int_ops and
// the cold-weight rotation).
const RegisterCases reg(register_all, "matmul_q2");

}  // namespace
}  // namespace ek::bench
