// Benchmarks of the scan family (selective_scan, ssd_scan) at the real model
// shapes of shapes.json: mamba-2.8b (Mamba-1, D=5120, N=16) and mamba2-2.7b
// (Mamba-2, H=80, P=64, N=128) at T = 1, 512, 2048 on every device and
// kernel, plus the ssd_scan form sweep (sequential vs chunked over T) that
// docs/scan.md's crossover comes from, and f16 activations at T = 512 and
// decode.
//
// The "CPU" column is the process's CPU time (all worker threads): on a
// shared, loaded machine CPU time / threads is the figure to compare, wall
// time only when the cores are idle.
//
// Counters beyond the harness's: tokens/s, state_updates/s (B*T*D*N or
// B*T*H*P*N per second), pct_fp32_peak (flops as the op's cost counts them,
// over the profile's measured fp32 peak), pct_read_bw (bytes over the measured
// read bandwidth). Decode cases rotate through enough independent states
// (h0 -> hT pairs) to exceed the last-level cache, as a deep model's layers do,
// so the state really comes from memory.
#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "bench/bench_common.h"

#ifndef EK_SCAN_BENCH_LLC_MULTIPLE
#define EK_SCAN_BENCH_LLC_MULTIPLE 8
#endif

namespace ek::bench {
namespace {

OpCase scan_case(const std::string& op, std::map<std::string, int64_t> dims, bool softplus) {
  OpCase c;
  c.op = op;
  c.name = "bench";
  c.dims = std::move(dims);
  c.params.set(op == "ssd_scan" ? "dt_softplus" : "delta_softplus", softplus);
  return c;
}

// f16: the activations (u, delta, Bm, Cm, z / x, dt, Bm, Cm) in f16.
OpCase mamba1(int64_t T, bool f16 = false, int64_t B = 1) {
  return scan_case("selective_scan", {{"B", B}, {"T", T}, {"D", 5120}, {"N", 16}, {"G", 1}, {"dskip", 1}, {"z", 1},
                                      {"bias", 1}, {"h0", 1}, {"a_mode", 0}, {"delta_mode", 0}, {"f16", f16 ? 1 : 0}},
                   true);
}
OpCase mamba2(int64_t T, bool f16 = false, int64_t B = 1) {
  return scan_case("ssd_scan", {{"B", B}, {"T", T}, {"H", 80}, {"P", 64}, {"N", 128}, {"G", 1}, {"dskip", 1},
                                {"bias", 1}, {"h0", 1}, {"a_mode", 0}, {"dt_mode", 0}, {"f16", f16 ? 1 : 0}},
                   true);
}

double state_updates(const OpCase& c) {
  const auto& d = c.dims;
  if (c.op == "selective_scan") return double(d.at("B")) * d.at("T") * d.at("D") * d.at("N");
  return double(d.at("B")) * d.at("T") * d.at("H") * d.at("P") * d.at("N");
}

void extra_counters(benchmark::State& state, const OpCase& c, const Cost& cost, const DeviceProfile& p) {
  using benchmark::Counter;
  const double it = static_cast<double>(state.iterations());
  state.counters["tokens"] = Counter(double(c.dims.at("B")) * c.dims.at("T") * it, Counter::kIsRate);
  state.counters["state_updates"] = Counter(state_updates(c) * it, Counter::kIsRate, Counter::kIs1000);
  // Fractions: (work / peak) per iteration, divided by the time by the rate flag.
  if (p.peak_fp32_gflops > 0)
    state.counters["pct_fp32_peak"] =
        Counter(100.0 * cost.flops / (p.peak_fp32_gflops * 1e9) * it, Counter::kIsRate);
  if (p.peak_read_gbps > 0)
    state.counters["pct_read_bw"] = Counter(100.0 * cost.bytes / (p.peak_read_gbps * 1e9) * it, Counter::kIsRate);
}

// One benchmark per (device, kernel): `sets` independent calls rotated so
// that their states together exceed the last-level cache when sets > 1.
// in_place: hT is h0 (the state updated in place, as a decoder keeps it).
void add(const std::string& label, const OpCase& c, const Tuning& tuning_over, int sets, bool in_place = false) {
  const OpDef& def = Registry::instance().op(c.op);
  for (Device* dev : devices()) {
    for (const KernelImpl* k : Registry::instance().kernels(c.op, dev->backend())) {
      bool applies = true;
      for (const auto& kv : tuning_over) {
        bool has = false;
        for (const auto& t : k->tunables) has |= t.name == kv.first;
        applies &= has;
      }
      if (!applies) continue;
      const std::string name = c.op + "/" + dev->backend() + "/" + k->variant + "/" + label;
      benchmark::RegisterBenchmark(name.c_str(), [&def, c, dev, k, tuning_over, sets, in_place](benchmark::State& state) {
        std::vector<std::unique_ptr<OwnedCall>> calls;
        std::vector<std::unique_ptr<Invocation>> invs;
        Tuning tuning = bench_tuning(*k);
        for (const auto& kv : tuning_over) tuning[kv.first] = kv.second;
        for (int i = 0; i < sets; ++i) {
          calls.push_back(std::make_unique<OwnedCall>(make_call(def, c, 1234 + i)));
          if (in_place) calls.back()->call.tensors["hT"] = calls.back()->call.get("h0");
          const std::string why = k->ineligible_reason ? k->ineligible_reason(dev->profile(), calls[0]->call) : "";
          if (!why.empty()) {
            state.SkipWithError(("not eligible: " + why).c_str());
            return;
          }
          invs.push_back(k->bind(*dev, calls.back()->call, tuning));
          invs.back()->execute();  // warm-up: pipeline creation, first touch
        }
        const double read_before = sets > 1 ? read_gbps_now(*dev) : 0;  // states from DRAM
        size_t i = 0;
        std::vector<double> times;
        for (auto _ : state) {
          Invocation& inv = *invs[i++ % invs.size()];
          const auto t0 = std::chrono::steady_clock::now();
          inv.execute();
          const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          const double devt = inv.last_device_seconds();
          state.SetIterationTime(devt > 0 ? devt : wall);
          times.push_back(devt > 0 ? devt : wall);
        }
        if (times.empty()) return;
        // The median iteration: what the table and the harness's counters report.
        std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
        state.counters["seconds"] = times[times.size() / 2];
        const Cost cost = def.cost(calls[0]->call);
        set_counters(state, cost, dev->profile(), true);
        extra_counters(state, c, cost, dev->profile());
        // The state read and written once: what the decode target counts.
        if (sets > 1) add_read_bw_now_counters(state, *dev, read_before, 2.0 * 4.0 * state_updates(c), state.counters["seconds"]);
      })->UseManualTime()->MeasureProcessCPUTime()->Unit(benchmark::kMicrosecond);
    }
  }
}

// Enough rotating sets that the bytes they touch (states, separate final
// states, Mamba-1's A) exceed `llc_multiple` x the last-level cache (at least 2).
// At 2x, AMD's L3 (a victim cache, not LRU) still served a large part of a
// cyclic walk: Mamba-2 decode measured above the DRAM read bandwidth.
int rotating_sets(const OpCase& c, bool in_place = false) {
  const double state_bytes = 4.0 * state_updates(c) / c.dims.at("T");
  const double a_bytes = c.op == "selective_scan" ? 4.0 * c.dims.at("D") * c.dims.at("N") : 0.0;
  const double set_bytes = state_bytes * (in_place ? 1 : 2) + a_bytes;
  int64_t llc = 32 << 20;
  for (Device* d : devices()) llc = std::max(llc, d->profile().cache_bytes);
  const double llc_multiple = EK_SCAN_BENCH_LLC_MULTIPLE;
  return static_cast<int>(std::max(2.0, std::ceil(llc_multiple * llc / set_bytes)));
}

const RegisterCases reg([] {
  for (int64_t T : {512, 2048}) add(cat("mamba-2.8b D=5120 N=16 T=", T), mamba1(T), {}, 1);
  add("mamba-2.8b D=5120 N=16 decode T=1 (states rotated beyond LLC)", mamba1(1), {}, rotating_sets(mamba1(1)));
  add("mamba-2.8b D=5120 N=16 decode T=1 (state in cache)", mamba1(1), {}, 1);
  // In place (no separate hT to allocate in cache), and batches of 4 and 8
  // sequences, which read A [D, N] once for all their states.
  add("mamba-2.8b D=5120 N=16 decode T=1 in place (states rotated beyond LLC)", mamba1(1), {}, rotating_sets(mamba1(1), true), true);
  for (int64_t B : {4, 8})
    add(cat("mamba-2.8b D=5120 N=16 decode T=1 B=", B, " in place (states rotated beyond LLC)"), mamba1(1, false, B), {},
        rotating_sets(mamba1(1, false, B), true), true);
  // B=8 with its 5.2 MB of states in the LLC: the compute ceiling of the batched step.
  add("mamba-2.8b D=5120 N=16 decode T=1 B=8 in place (states in LLC)", mamba1(1, false, 8), {}, 1, true);
  for (int64_t T : {512, 2048}) add(cat("mamba2-2.7b H=80 P=64 N=128 T=", T), mamba2(T), {}, 1);
  add("mamba2-2.7b H=80 P=64 N=128 decode T=1 (states rotated beyond LLC)", mamba2(1), {}, rotating_sets(mamba2(1)));
  add("mamba2-2.7b H=80 P=64 N=128 decode T=1 (state in cache)", mamba2(1), {}, 1);
  add("mamba2-2.7b H=80 P=64 N=128 decode T=1 in place (states rotated beyond LLC)", mamba2(1), {}, rotating_sets(mamba2(1), true), true);
  // f16 activations.
  add("mamba-2.8b D=5120 N=16 T=512 f16", mamba1(512, true), {}, 1);
  add("mamba-2.8b D=5120 N=16 decode T=1 f16 (state in cache)", mamba1(1, true), {}, 1);
  add("mamba2-2.7b H=80 P=64 N=128 T=512 f16", mamba2(512, true), {}, 1);
  add("mamba2-2.7b H=80 P=64 N=128 decode T=1 f16 (state in cache)", mamba2(1, true), {}, 1);
  // ssd_scan forms over T (the crossover of docs/scan.md).
  for (int64_t T : {2, 4, 8, 16, 32, 64, 128, 512, 2048}) {
    add(cat("mamba2-2.7b form sweep T=", T, " sequential"), mamba2(T), {{"form", 1}}, 1);
    for (int64_t chunk : {32, 64, 128})
      add(cat("mamba2-2.7b form sweep T=", T, " chunked L=", chunk), mamba2(T), {{"form", 2}, {"chunk", chunk}}, 1);
  }
  for (int64_t chunk : {16, 32, 64, 128, 256})
    add(cat("mamba-2.8b T=512 segment sweep chunk=", chunk), mamba1(512), {{"chunk", chunk}}, 1);
});

}  // namespace
}  // namespace ek::bench
