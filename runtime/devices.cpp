#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "runtime/runtime.h"

namespace ek {

std::vector<std::string> known_backends() { return {"cpu", "vulkan", "opencl"}; }

DeviceSet open_devices(const std::string& backends) {
  std::vector<std::string> wanted;
  std::stringstream ss(backends);
  for (std::string b; std::getline(ss, b, ',');)
    if (!b.empty()) wanted.push_back(b);
  auto is_wanted = [&](const std::string& b) {
    return wanted.empty() || std::find(wanted.begin(), wanted.end(), b) != wanted.end();
  };
  const auto known = known_backends();
  for (const std::string& w : wanted)
    if (std::find(known.begin(), known.end(), w) == known.end())
      throw InvalidArgument(cat("unknown backend '", w, "' (known: cpu, vulkan, opencl)"));
  DeviceSet set;
  const auto registered = registered_backends();
  for (const std::string& name : known) {
    if (!is_wanted(name)) continue;
    DeviceScan scan;
    scan.backend = name;
    auto it = std::find_if(registered.begin(), registered.end(), [&](const BackendEntry& e) { return e.name == name; });
    if (it == registered.end()) {
      scan.notes.push_back("not built into this library");
    } else {
      try {
        for (auto& d : it->enumerate(scan)) set.devices.push_back(std::move(d));
      } catch (const std::exception& e) {
        scan.notes.push_back(std::string("enumeration failed: ") + e.what());
      }
    }
    set.scans.push_back(std::move(scan));
  }
  return set;
}

namespace {

std::string cache_dir() {
  if (const char* d = std::getenv("EK_CACHE_DIR")) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/edgekernels";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/edgekernels";
  return "/tmp/edgekernels-cache";
}

void make_dirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '/');) {
    cur += part + "/";
    ::mkdir(cur.c_str(), 0755);
  }
}

}  // namespace

void ensure_peaks(Device& dev, bool remeasure, double seconds_budget) {
  DeviceProfile& p = dev.mutable_profile();
  // Bump the version when a microbenchmark changes so stale peaks are re-measured.
  constexpr int kPeaksVersion = 3;  // 3: CPU read/copy buffers on huge pages
  const std::string file = cache_dir() + "/peaks-v" + std::to_string(kPeaksVersion) + "-" + p.backend + "-" +
                           p.fingerprint() + ".json";
  if (!remeasure) {
    std::ifstream in(file);
    if (in) {
      try {
        nlohmann::json j = nlohmann::json::parse(in);
        p.peak_read_gbps = j.at("peak_read_gbps").get<double>();
        p.peak_copy_gbps = j.at("peak_copy_gbps").get<double>();
        p.peak_fp32_gflops = j.at("peak_fp32_gflops").get<double>();
        p.peak_int8_gops = j.at("peak_int8_gops").get<double>();
        p.measured = true;
        return;
      } catch (const std::exception&) {
        // A corrupt cache entry is re-measured below.
      }
    }
  }
  dev.measure_peaks(seconds_budget);
  make_dirs(cache_dir());
  nlohmann::json j = {{"device", p.label()},
                      {"peak_read_gbps", p.peak_read_gbps},
                      {"peak_copy_gbps", p.peak_copy_gbps},
                      {"peak_fp32_gflops", p.peak_fp32_gflops},
                      {"peak_int8_gops", p.peak_int8_gops}};
  const std::string tmp = file + ".tmp" + std::to_string(::getpid());
  std::ofstream(tmp) << j.dump(2) << "\n";
  std::rename(tmp.c_str(), file.c_str());
}

}  // namespace ek
