// DeviceProfile <-> JSON. Loading checks every field's type and names the one
// that is wrong, so a hand-written profile fails with a useful message.
#include <fstream>

#include "runtime/runtime.h"

namespace ek {

nlohmann::json profile_to_json(const DeviceProfile& p) {
  nlohmann::json j;
  j["backend"] = p.backend;
  j["vendor"] = p.vendor;
  j["device_name"] = p.device_name;
  j["driver_name"] = p.driver_name;
  j["driver_version"] = p.driver_version;
  j["api_version"] = p.api_version;
  j["architecture"] = p.architecture;
  j["device_class"] = p.device_class;
  j["compute_units"] = p.compute_units;
  j["threads"] = p.threads;
  j["max_workgroup_size"] = p.max_workgroup_size;
  j["subgroup_sizes"] = p.subgroup_sizes;
  j["shared_memory_bytes"] = p.shared_memory_bytes;
  j["memory_bytes"] = p.memory_bytes;
  j["max_buffer_bytes"] = p.max_buffer_bytes;
  j["cache_bytes"] = p.cache_bytes;
  j["unified_memory"] = p.unified_memory;
  j["features"] = p.features;
  j["coop_matrix_shapes"] = p.coop_matrix_shapes;
  j["quirks"] = p.quirks;
  j["measured"] = p.measured;
  j["peak_read_gbps"] = p.peak_read_gbps;
  j["peak_copy_gbps"] = p.peak_copy_gbps;
  j["peak_fp32_gflops"] = p.peak_fp32_gflops;
  j["peak_int8_gops"] = p.peak_int8_gops;
  j["fingerprint"] = p.fingerprint();
  return j;
}

namespace {
template <class T>
void read_field(const nlohmann::json& j, const char* key, T& out, bool required = false) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) throw InvalidArgument(cat("profile: missing field '", key, "'"));
    return;
  }
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InvalidArgument(cat("profile: field '", key, "' has the wrong type (", it->type_name(), ")"));
  }
}
}  // namespace

DeviceProfile profile_from_json(const nlohmann::json& j) {
  EK_CHECK_ARG(j.is_object(), "profile: expected a JSON object");
  DeviceProfile p;
  read_field(j, "backend", p.backend, true);
  EK_CHECK_ARG(p.backend == "cpu" || p.backend == "vulkan" || p.backend == "opencl", "profile: backend '",
               p.backend, "' is not one of cpu, vulkan, opencl");
  read_field(j, "vendor", p.vendor);
  read_field(j, "device_name", p.device_name, true);
  read_field(j, "driver_name", p.driver_name);
  read_field(j, "driver_version", p.driver_version);
  read_field(j, "api_version", p.api_version);
  read_field(j, "architecture", p.architecture);
  read_field(j, "device_class", p.device_class);
  static const char* classes[] = {"mobile", "edge", "cloud", "npu", "cpu"};
  EK_CHECK_ARG(std::find(std::begin(classes), std::end(classes), p.device_class) != std::end(classes),
               "profile: device_class '", p.device_class, "' is not one of mobile, edge, cloud, npu, cpu");
  read_field(j, "compute_units", p.compute_units);
  read_field(j, "threads", p.threads);
  read_field(j, "max_workgroup_size", p.max_workgroup_size);
  read_field(j, "subgroup_sizes", p.subgroup_sizes);
  read_field(j, "shared_memory_bytes", p.shared_memory_bytes);
  read_field(j, "memory_bytes", p.memory_bytes);
  read_field(j, "max_buffer_bytes", p.max_buffer_bytes);
  read_field(j, "cache_bytes", p.cache_bytes);
  read_field(j, "unified_memory", p.unified_memory);
  read_field(j, "features", p.features);
  read_field(j, "coop_matrix_shapes", p.coop_matrix_shapes);
  read_field(j, "quirks", p.quirks);
  read_field(j, "measured", p.measured);
  read_field(j, "peak_read_gbps", p.peak_read_gbps);
  read_field(j, "peak_copy_gbps", p.peak_copy_gbps);
  read_field(j, "peak_fp32_gflops", p.peak_fp32_gflops);
  read_field(j, "peak_int8_gops", p.peak_int8_gops);
  return p;
}

DeviceProfile load_profile(const std::string& path) {
  std::ifstream in(path);
  EK_CHECK_ARG(static_cast<bool>(in), "profile: cannot open '", path, "'");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InvalidArgument(cat("profile: '", path, "' is not valid JSON: ", e.what()));
  }
  return profile_from_json(j);
}

}  // namespace ek
