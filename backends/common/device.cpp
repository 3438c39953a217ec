#include "backends/common/device.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace ek {

namespace {
// The features named in EK_DISABLE_FEATURES, read on every call so tests can
// flip it with setenv.
bool disabled_by_env(const std::string& feature) {
  const char* env = std::getenv("EK_DISABLE_FEATURES");
  if (!env) return false;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ','))
    if (item == feature || item == "all") return true;
  return false;
}

uint64_t fnv1a(const std::string& s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}
}  // namespace

bool DeviceProfile::has(const std::string& feature) const {
  return features.count(feature) != 0 && !disabled_by_env(feature);
}

std::string DeviceProfile::fingerprint() const {
  uint64_t h = 1469598103934665603ull;
  for (const std::string* f : {&backend, &vendor, &device_name, &driver_name, &driver_version, &api_version})
    h = fnv1a(*f + '\x1f', h);
  // The feature set is identity too: hypervisors report one model name
  // ("AMD EPYC") for CPUs of different generations, and peaks cached under
  // the fingerprint must not cross from an AVX-512 host to an AVX2 one.
  for (const std::string& f : features) h = fnv1a(f + '\x1e', h);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string DeviceProfile::label() const { return backend + ":" + device_name; }

}  // namespace ek

#include <algorithm>

namespace ek {
namespace {
std::vector<BackendEntry>& backend_table() {
  static std::vector<BackendEntry> t;
  return t;
}
}  // namespace

void register_backend(BackendEntry entry) { backend_table().push_back(std::move(entry)); }

std::vector<BackendEntry> registered_backends() {
  auto t = backend_table();
  std::sort(t.begin(), t.end(), [](const BackendEntry& a, const BackendEntry& b) { return a.order < b.order; });
  return t;
}

}  // namespace ek
