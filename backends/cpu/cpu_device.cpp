#include "backends/cpu/cpu_device.h"

#include "backends/cpu/cpu_thread_pool.h"

#include <HalideRuntime.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace ek {
namespace {

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (key == "model name" || key == "Model" || key == "Hardware") {
      std::string v = line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "unknown CPU";
}

// "32K", "2048K", "32M" as in /sys/devices/system/cpu/cpu0/cache/index*/size.
int64_t parse_cache_size(const std::string& s) {
  if (s.empty()) return 0;
  int64_t v = std::atoll(s.c_str());
  char unit = s.back();
  if (unit == 'K') v *= 1024;
  if (unit == 'M') v *= 1024 * 1024;
  return v;
}

int default_threads() {
  if (const char* env = std::getenv("EK_CPU_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

DeviceProfile probe_cpu_profile() {
  DeviceProfile p;
  p.backend = "cpu";
  p.device_class = "cpu";
  p.device_name = cpu_model_name();
  p.driver_name = "halide-aot";
  p.driver_version = "Halide 14";
  p.compute_units = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  p.threads = default_threads();
  p.max_workgroup_size = 1;
  p.unified_memory = true;
  p.memory_bytes = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  p.max_buffer_bytes = p.memory_bytes;
  for (int i = 0; i < 8; ++i) {
    std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::string level = read_first_line(dir + "level");
    if (level.empty()) break;
    std::string type = read_first_line(dir + "type");
    int64_t size = parse_cache_size(read_first_line(dir + "size"));
    if (level == "1" && type == "Data") p.shared_memory_bytes = size;
    if (type != "Instruction") p.cache_bytes = std::max(p.cache_bytes, size);
  }
#if defined(__x86_64__)
  p.architecture = "x86-64";
  p.api_version = "x86-64";
  __builtin_cpu_init();
  p.vendor = __builtin_cpu_is("amd") ? "AMD" : __builtin_cpu_is("intel") ? "Intel" : "x86";
  struct { const char* name; bool on; } isa[] = {
      {"sse41", __builtin_cpu_supports("sse4.1") != 0},
      {"avx2", __builtin_cpu_supports("avx2") != 0},
      {"fma", __builtin_cpu_supports("fma") != 0},
      {"f16c", __builtin_cpu_supports("f16c") != 0},
      {"avx512f", __builtin_cpu_supports("avx512f") != 0},
      {"avx512bw", __builtin_cpu_supports("avx512bw") != 0},
      {"avx512vl", __builtin_cpu_supports("avx512vl") != 0},
      {"avx512dq", __builtin_cpu_supports("avx512dq") != 0},
      {"avx512_vnni", __builtin_cpu_supports("avx512vnni") != 0},
      {"avx512_bf16", __builtin_cpu_supports("avx512bf16") != 0},
  };
  for (const auto& f : isa)
    if (f.on) p.features.insert(f.name);
  // AVX-VNNI (VEX-encoded) has no __builtin_cpu_supports name in GCC 12: CPUID.7.1:EAX[4].
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
  if (eax & (1u << 4)) p.features.insert("avx_vnni");
  if (p.features.count("avx512_vnni") || p.features.count("avx_vnni")) p.features.insert("int8_dot");
#elif defined(__aarch64__)
  p.architecture = "aarch64";
  p.api_version = "aarch64";
  p.vendor = "ARM";
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  p.features.insert("neon");
  if (hw & HWCAP_ASIMDDP) p.features.insert("dotprod");
  if (hw & HWCAP_ASIMDHP) p.features.insert("fp16_arith");
  if (hw & HWCAP_SVE) p.features.insert("sve");
#ifdef HWCAP2_I8MM
  if (hw2 & HWCAP2_I8MM) p.features.insert("i8mm");
#endif
  (void)hw2;
  if (p.features.count("dotprod")) p.features.insert("int8_dot");
#endif
  p.features.insert("fp16_storage");
  p.features.insert("int8_storage");
  p.features.insert("int8_arith");
  return p;
}

CpuDevice::CpuDevice() {
  profile_ = probe_cpu_profile();
  set_threads(profile_.threads);
}

void CpuDevice::set_threads(int n) {
  profile_.threads = std::max(1, n);
  cpu::set_pool_threads(profile_.threads);
}

void CpuDevice::measure_peaks(double seconds_budget) {
  const double each = std::max(0.05, seconds_budget / 4);
  // 4x the last-level cache (at least 256 MiB) so the stream comes from DRAM.
  const int64_t bytes = std::max<int64_t>(int64_t(256) << 20, 4 * profile_.cache_bytes);
  profile_.peak_read_gbps = cpu_measure_read_gbps(profile_.threads, bytes, each);
  profile_.peak_copy_gbps = cpu_measure_copy_gbps(profile_.threads, bytes, each);
  profile_.peak_fp32_gflops = cpu_measure_fp32_gflops(profile_.threads, profile_, each);
  profile_.peak_int8_gops = cpu_measure_int8_gops(profile_.threads, profile_, each);
  profile_.measured = true;
}

namespace {
std::vector<std::unique_ptr<Device>> enumerate_cpu(DeviceScan& scan) {
  std::vector<std::unique_ptr<Device>> out;
  out.push_back(std::make_unique<CpuDevice>());
  scan.notes.push_back("threads=" + std::to_string(out.back()->profile().threads));
  return out;
}
const RegisterBackend reg({"cpu", enumerate_cpu, 0});
}  // namespace

}  // namespace ek
