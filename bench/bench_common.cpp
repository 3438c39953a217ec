#include "bench/bench_common.h"

#include "backends/cpu/cpu_device.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <string>

namespace ek::bench {

Tuning bench_tuning(const KernelImpl& k) {
  Tuning tuning = k.default_tuning();
  const char* env = std::getenv("EK_BENCH_TUNE");
  if (!env) return tuning;
  std::stringstream list(env);
  std::string item;
  while (std::getline(list, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    char* end = nullptr;
    const long long value = eq == std::string::npos ? 0 : std::strtoll(item.c_str() + eq + 1, &end, 10);
    if (eq == std::string::npos || eq == 0 || !end || *end != '\0' || end == item.c_str() + eq + 1)
      throw InvalidArgument(cat("EK_BENCH_TUNE: '", item, "' is not name=integer"));
    const std::string name = item.substr(0, eq);
    for (const auto& t : k.tunables)
      if (t.name == name) tuning[name] = value;
  }
  return tuning;
}

double read_gbps_now(Device& dev) {
  auto* cpu = dynamic_cast<CpuDevice*>(&dev);
  if (!cpu) return 0;
  const int64_t bytes = std::max<int64_t>(int64_t(256) << 20, 4 * dev.profile().cache_bytes);
  return cpu_measure_read_gbps(cpu->threads(), bytes, 0.1);
}

void add_read_bw_now_counters(benchmark::State& state, Device& dev, double before, double bytes, double seconds) {
  if (!dynamic_cast<CpuDevice*>(&dev) || seconds <= 0) return;
  const double now = 0.5 * (before + read_gbps_now(dev));
  state.counters["read_GBps_now"] = now;
  if (now > 0) state.counters["frac_read_bw_now"] = bytes / seconds / 1e9 / now;
}

const std::vector<Device*>& devices() {
  static DeviceSet set;
  static std::vector<Device*> list = [] {
    const char* env = std::getenv("EK_BENCH_BACKENDS");
    set = open_devices(env ? env : "");
    std::vector<Device*> out;
    for (auto& d : set.devices) {
      ensure_peaks(*d);
      out.push_back(d.get());
    }
    return out;
  }();
  return list;
}

Roofline roofline(const Cost& c, const DeviceProfile& p, bool cold_memory) {
  Roofline r;
  const double bw = p.peak_read_gbps > 0 ? p.peak_read_gbps * 1e9 : 0;
  if (bw > 0 && cold_memory) {
    r.bound_seconds = c.bytes / bw;
    r.bound_by = "memory";
  }
  if (p.peak_fp32_gflops > 0 && c.flops / (p.peak_fp32_gflops * 1e9) > r.bound_seconds) {
    r.bound_seconds = c.flops / (p.peak_fp32_gflops * 1e9);
    r.bound_by = "fp32";
  }
  if (p.peak_int8_gops > 0 && c.int_ops / (p.peak_int8_gops * 1e9) > r.bound_seconds) {
    r.bound_seconds = c.int_ops / (p.peak_int8_gops * 1e9);
    r.bound_by = "int8";
  }
  return r;
}

void set_counters(benchmark::State& state, const Cost& cost, const DeviceProfile& p, bool cold_memory) {
  auto it = state.counters.find("seconds");
  const double t = it == state.counters.end() ? 0.0 : it->second.value;
  if (t <= 0) return;
  state.counters["GB/s"] = cost.bytes / t / 1e9;
  state.counters["GFLOP/s"] = cost.flops / t / 1e9;
  if (cost.int_ops > 0) state.counters["GOP/s"] = cost.int_ops / t / 1e9;
  const Roofline r = roofline(cost, p, cold_memory);
  if (r.bound_seconds > 0) state.counters["roofline"] = r.bound_seconds / t;
  // A working set well inside the last-level cache is read from cache when a
  // case repeats, so its "memory" fraction can exceed 1: say so in the label.
  const bool cache_resident = p.cache_bytes > 0 && cost.bytes < 0.5 * static_cast<double>(p.cache_bytes);
  state.SetLabel((r.bound_by.empty() ? p.label() : r.bound_by + "-bound") + (cache_resident ? ", cache-resident" : ""));
}

double time_invocation(benchmark::State& state, Invocation& inv) {
  std::vector<double> times;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    inv.execute();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double dev = inv.last_device_seconds();
    const double t = dev > 0 ? dev : wall;
    state.SetIterationTime(t);
    times.push_back(t);
  }
  if (times.empty()) return 0;
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  const double median = times[times.size() / 2];
  state.counters["seconds"] = median;
  return median;
}

void register_op_cases(const std::string& op) {
  const OpDef& def = Registry::instance().op(op);
  for (const OpCase& c : def.cases()) {
    if (!c.tags.count("bench")) continue;
    for (Device* dev : devices()) {
      for (const KernelImpl* k : Registry::instance().kernels(op, dev->backend())) {
        const std::string name = op + "/" + dev->backend() + "/" + k->variant + "/" + c.name;
        benchmark::RegisterBenchmark(name.c_str(), [&def, c, dev, k](benchmark::State& state) {
          auto oc = std::make_shared<OwnedCall>(make_call(def, c, 1234));
          const std::string why = k->ineligible_reason ? k->ineligible_reason(dev->profile(), oc->call) : "";
          if (!why.empty()) {
            state.SkipWithError(("not eligible: " + why).c_str());
            return;
          }
          auto inv = k->bind(*dev, oc->call, bench_tuning(*k));
          inv->execute();  // warm-up: pipeline creation, first-touch
          time_invocation(state, *inv);
          set_counters(state, def.cost(oc->call), dev->profile());
        })->UseManualTime()->MeasureProcessCPUTime()->Unit(benchmark::kMicrosecond);
      }
    }
  }
}

namespace {
std::vector<void (*)()>& extra_cases() {
  static std::vector<void (*)()> v;
  return v;
}
std::set<std::string>& replaced_ops() {
  static std::set<std::string> s;
  return s;
}
}  // namespace

RegisterCases::RegisterCases(void (*fn)(), const char* replaces_op) {
  extra_cases().push_back(fn);
  if (replaces_op) replaced_ops().insert(replaces_op);
}

void register_all_cases() {
  for (const OpDef* def : Registry::instance().ops())
    if (!replaced_ops().count(def->name)) register_op_cases(def->name);
  for (auto fn : extra_cases()) fn();
}

}  // namespace ek::bench
