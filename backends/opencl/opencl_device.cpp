#include "backends/opencl/opencl_device.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>

#include "codegen/embedded.h"

namespace ek {

std::string cl_error_name(cl_int err) {
  switch (err) {
#define EK_CL_ERR(name) \
  case name: return #name;
    EK_CL_ERR(CL_SUCCESS)
    EK_CL_ERR(CL_DEVICE_NOT_FOUND)
    EK_CL_ERR(CL_DEVICE_NOT_AVAILABLE)
    EK_CL_ERR(CL_COMPILER_NOT_AVAILABLE)
    EK_CL_ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    EK_CL_ERR(CL_OUT_OF_RESOURCES)
    EK_CL_ERR(CL_OUT_OF_HOST_MEMORY)
    EK_CL_ERR(CL_PROFILING_INFO_NOT_AVAILABLE)
    EK_CL_ERR(CL_MEM_COPY_OVERLAP)
    EK_CL_ERR(CL_BUILD_PROGRAM_FAILURE)
    EK_CL_ERR(CL_MAP_FAILURE)
    EK_CL_ERR(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    EK_CL_ERR(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    EK_CL_ERR(CL_COMPILE_PROGRAM_FAILURE)
    EK_CL_ERR(CL_LINKER_NOT_AVAILABLE)
    EK_CL_ERR(CL_LINK_PROGRAM_FAILURE)
    EK_CL_ERR(CL_INVALID_VALUE)
    EK_CL_ERR(CL_INVALID_DEVICE_TYPE)
    EK_CL_ERR(CL_INVALID_PLATFORM)
    EK_CL_ERR(CL_INVALID_DEVICE)
    EK_CL_ERR(CL_INVALID_CONTEXT)
    EK_CL_ERR(CL_INVALID_QUEUE_PROPERTIES)
    EK_CL_ERR(CL_INVALID_COMMAND_QUEUE)
    EK_CL_ERR(CL_INVALID_HOST_PTR)
    EK_CL_ERR(CL_INVALID_MEM_OBJECT)
    EK_CL_ERR(CL_INVALID_BINARY)
    EK_CL_ERR(CL_INVALID_BUILD_OPTIONS)
    EK_CL_ERR(CL_INVALID_PROGRAM)
    EK_CL_ERR(CL_INVALID_PROGRAM_EXECUTABLE)
    EK_CL_ERR(CL_INVALID_KERNEL_NAME)
    EK_CL_ERR(CL_INVALID_KERNEL_DEFINITION)
    EK_CL_ERR(CL_INVALID_KERNEL)
    EK_CL_ERR(CL_INVALID_ARG_INDEX)
    EK_CL_ERR(CL_INVALID_ARG_VALUE)
    EK_CL_ERR(CL_INVALID_ARG_SIZE)
    EK_CL_ERR(CL_INVALID_KERNEL_ARGS)
    EK_CL_ERR(CL_INVALID_WORK_DIMENSION)
    EK_CL_ERR(CL_INVALID_WORK_GROUP_SIZE)
    EK_CL_ERR(CL_INVALID_WORK_ITEM_SIZE)
    EK_CL_ERR(CL_INVALID_GLOBAL_OFFSET)
    EK_CL_ERR(CL_INVALID_EVENT_WAIT_LIST)
    EK_CL_ERR(CL_INVALID_EVENT)
    EK_CL_ERR(CL_INVALID_OPERATION)
    EK_CL_ERR(CL_INVALID_BUFFER_SIZE)
    EK_CL_ERR(CL_INVALID_GLOBAL_WORK_SIZE)
    EK_CL_ERR(CL_INVALID_PROPERTY)
    EK_CL_ERR(CL_INVALID_COMPILER_OPTIONS)
    EK_CL_ERR(CL_INVALID_LINKER_OPTIONS)
    EK_CL_ERR(CL_PLATFORM_NOT_FOUND_KHR)
#undef EK_CL_ERR
    default: return cat("CL error ", err);
  }
}

// ---------------------------------------------------------------- BuildOptions

BuildOptions& BuildOptions::define(const std::string& name, int64_t value) {
  return raw(cat("-D", name, "=", value));
}

BuildOptions& BuildOptions::define(const std::string& name, const std::string& value) {
  return raw(cat("-D", name, "=", value));
}

BuildOptions& BuildOptions::raw(const std::string& option) {
  if (option.empty()) return *this;
  if (!text_.empty()) text_ += ' ';
  text_ += option;
  return *this;
}

// ---------------------------------------------------------------- probing

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (std::isspace(static_cast<unsigned char>(s.back())) || s.back() == '\0')) s.pop_back();
  size_t b = 0;
  while (b < s.size() && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  return s.substr(b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Raw queries: a device of an older version answers CL_INVALID_VALUE for newer
// parameters, which the probe treats as "absent" rather than as an error.
template <class T>
bool device_info(cl_device_id d, cl_device_info param, T& out) {
  return clGetDeviceInfo(d, param, sizeof(T), &out, nullptr) == CL_SUCCESS;
}

std::string device_string(cl_device_id d, cl_device_info param) {
  size_t size = 0;
  if (clGetDeviceInfo(d, param, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string s(size, '\0');
  if (clGetDeviceInfo(d, param, size, &s[0], nullptr) != CL_SUCCESS) return "";
  return trim(s);
}

template <class T>
std::vector<T> device_array(cl_device_id d, cl_device_info param) {
  size_t size = 0;
  if (clGetDeviceInfo(d, param, 0, nullptr, &size) != CL_SUCCESS || size < sizeof(T)) return {};
  std::vector<T> v(size / sizeof(T));
  if (clGetDeviceInfo(d, param, v.size() * sizeof(T), v.data(), nullptr) != CL_SUCCESS) return {};
  return v;
}

std::string platform_string(cl_platform_id p, cl_platform_info param) {
  size_t size = 0;
  if (clGetPlatformInfo(p, param, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string s(size, '\0');
  if (clGetPlatformInfo(p, param, size, &s[0], nullptr) != CL_SUCCESS) return "";
  return trim(s);
}

// "OpenCL 3.0 PoCL ..." / "OpenCL C 1.2 ..." -> 300 / 120 (major*100 + minor*10).
int parse_version(const std::string& s, const std::string& prefix) {
  if (s.compare(0, prefix.size(), prefix) != 0) return 0;
  int major = 0, minor = 0;
  if (std::sscanf(s.c_str() + prefix.size(), "%d.%d", &major, &minor) != 2) return 0;
  return major * 100 + minor * 10;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// What every OpenCL device of this probe answers, gathered once.
struct RawDevice {
  cl_device_id id = nullptr;
  int version = 0;            // CL_DEVICE_VERSION
  int c_version = 120;        // highest OpenCL C accepted
  std::vector<std::string> extensions;
  std::vector<std::string> c_features;  // OpenCL C 3.0 optional features
};

RawDevice read_raw(cl_device_id id) {
  RawDevice r;
  r.id = id;
  r.version = parse_version(device_string(id, CL_DEVICE_VERSION), "OpenCL ");
  r.extensions = split_words(device_string(id, CL_DEVICE_EXTENSIONS));
  r.c_version = std::max(120, parse_version(device_string(id, CL_DEVICE_OPENCL_C_VERSION), "OpenCL C "));
  if (r.version >= 300) {
    for (const cl_name_version& nv : device_array<cl_name_version>(id, CL_DEVICE_OPENCL_C_ALL_VERSIONS))
      r.c_version = std::max<int>(r.c_version, CL_VERSION_MAJOR(nv.version) * 100 + CL_VERSION_MINOR(nv.version) * 10);
    for (const cl_name_version& nv : device_array<cl_name_version>(id, CL_DEVICE_OPENCL_C_FEATURES))
      r.c_features.push_back(nv.name);
  }
  return r;
}

// The -cl-std option under which sub-group built-ins compile; nullptr if none.
const char* subgroup_option(const RawDevice& r) {
  if (contains(r.c_features, "__opencl_c_subgroups")) return "-cl-std=CL3.0";
  if (contains(r.extensions, "cl_khr_subgroups") && r.c_version >= 200)
    return r.c_version >= 300 ? "-cl-std=CL3.0" : "-cl-std=CL2.0";
  if (contains(r.extensions, "cl_intel_subgroups")) return "";
  return nullptr;
}

std::string normalise_vendor(const std::string& v) {
  const std::string l = lower(v);
  if (l.find("nvidia") != std::string::npos) return "NVIDIA";
  if (l.find("advanced micro devices") != std::string::npos || l == "authenticamd" || l == "amd") return "AMD";
  if (l.find("intel") != std::string::npos || l == "genuineintel") return "Intel";
  if (l.find("qualcomm") != std::string::npos) return "Qualcomm";
  if (l == "arm" || l.find("arm ltd") != std::string::npos || l.find("arm limited") != std::string::npos) return "ARM";
  if (l.find("imagination") != std::string::npos) return "Imagination";
  if (l.find("samsung") != std::string::npos) return "Samsung";
  if (l.find("apple") != std::string::npos) return "Apple";
  if (l.find("mesa") != std::string::npos) return "Mesa";
  return v;
}

std::string host_architecture() {
#if defined(__x86_64__)
  return "x86-64";
#elif defined(__aarch64__)
  return "aarch64";
#else
  struct utsname u;
  return uname(&u) == 0 ? std::string(u.machine) : "unknown";
#endif
}

std::string nvidia_architecture(int major, int minor) {
  const int cc = major * 10 + minor;
  if (cc >= 100) return cat("sm_", cc);  // Blackwell and later: keep the number
  if (cc >= 90) return "hopper";
  if (cc == 89) return "ada";
  if (cc >= 80) return "ampere";
  if (cc == 75) return "turing";
  if (cc >= 70) return "volta";
  if (cc >= 60) return "pascal";
  if (cc >= 50) return "maxwell";
  return cat("sm_", cc);
}

// A short family key for the tuning database's architecture fallback.
std::string device_architecture(const RawDevice& r, cl_device_type type, const std::string& vendor,
                                 const std::string& name) {
  if (type & CL_DEVICE_TYPE_CPU) return host_architecture();
  cl_uint major = 0, minor = 0;
  if (contains(r.extensions, "cl_nv_device_attribute_query") &&
      device_info(r.id, CL_DEVICE_COMPUTE_CAPABILITY_MAJOR_NV, major) &&
      device_info(r.id, CL_DEVICE_COMPUTE_CAPABILITY_MINOR_NV, minor))
    return nvidia_architecture(static_cast<int>(major), static_cast<int>(minor));
  const std::string l = lower(name);
  if (l.compare(0, 3, "gfx") == 0) return l.substr(0, l.find(':'));  // "gfx90a:sramecc+:xnack-"
  if (vendor == "Intel") {
    cl_version ip = 0;
    if (contains(r.extensions, "cl_intel_device_attribute_query") && device_info(r.id, CL_DEVICE_IP_VERSION_INTEL, ip))
      return cat("intel-gpu-", CL_VERSION_MAJOR(ip), ".", CL_VERSION_MINOR(ip));
    return "intel-gpu";
  }
  const size_t adreno = l.find("adreno");
  if (adreno != std::string::npos) {
    const size_t digit = l.find_first_of("0123456789", adreno);
    return digit == std::string::npos ? "adreno" : cat("adreno-", l[digit], "xx");
  }
  const size_t mali = l.find("mali-");
  if (mali != std::string::npos) return trim(l.substr(mali, l.find_first_of(" (", mali) - mali));
  std::string key = lower(vendor) + "-" + l;
  for (char& c : key)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '-';
  return key;
}

}  // namespace

DeviceProfile probe_opencl_profile(const cl::Platform& platform, const cl::Device& device) {
  const RawDevice r = read_raw(device());
  DeviceProfile p;
  p.backend = "opencl";
  p.device_name = device_string(r.id, CL_DEVICE_NAME);
  p.vendor = normalise_vendor(device_string(r.id, CL_DEVICE_VENDOR));
  const std::string platform_name = platform_string(platform(), CL_PLATFORM_NAME);
  p.driver_name = platform_name == "Portable Computing Language" ? "PoCL" : platform_name;
  p.driver_version = device_string(r.id, CL_DRIVER_VERSION);
  p.api_version = cat("OpenCL ", r.version / 100, ".", (r.version % 100) / 10);

  cl_device_type type = 0;
  device_info(r.id, CL_DEVICE_TYPE, type);
  p.architecture = device_architecture(r, type, p.vendor, p.device_name);

  cl_uint units = 0;
  device_info(r.id, CL_DEVICE_MAX_COMPUTE_UNITS, units);
  p.compute_units = static_cast<int>(units);
  size_t max_wg = 0;
  device_info(r.id, CL_DEVICE_MAX_WORK_GROUP_SIZE, max_wg);
  p.max_workgroup_size = static_cast<int>(std::min<size_t>(max_wg, 1 << 30));
  cl_ulong local_mem = 0, global_mem = 0, max_alloc = 0, cache = 0;
  device_info(r.id, CL_DEVICE_LOCAL_MEM_SIZE, local_mem);
  device_info(r.id, CL_DEVICE_GLOBAL_MEM_SIZE, global_mem);
  device_info(r.id, CL_DEVICE_MAX_MEM_ALLOC_SIZE, max_alloc);
  device_info(r.id, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, cache);
  p.shared_memory_bytes = static_cast<int64_t>(local_mem);
  p.memory_bytes = static_cast<int64_t>(global_mem);
  p.max_buffer_bytes = static_cast<int64_t>(max_alloc);
  p.cache_bytes = static_cast<int64_t>(cache);

  // CL_DEVICE_HOST_UNIFIED_MEMORY is deprecated since 2.0 but still answered
  // by current drivers; NVIDIA's own query covers Jetson.
  cl_bool host_unified = CL_FALSE, nv_integrated = CL_FALSE;
  device_info(r.id, CL_DEVICE_HOST_UNIFIED_MEMORY, host_unified);
  if (contains(r.extensions, "cl_nv_device_attribute_query"))
    device_info(r.id, CL_DEVICE_INTEGRATED_MEMORY_NV, nv_integrated);
  p.unified_memory = (type & CL_DEVICE_TYPE_CPU) || host_unified || nv_integrated;

  if (type & CL_DEVICE_TYPE_CPU) {
    p.device_class = "cpu";
    p.threads = p.compute_units;
  } else if (type & (CL_DEVICE_TYPE_ACCELERATOR | CL_DEVICE_TYPE_CUSTOM)) {
    p.device_class = "npu";
  } else if (p.unified_memory) {
    static const char* mobile_vendors[] = {"Qualcomm", "ARM", "Imagination", "Samsung", "Apple"};
    p.device_class = std::find(std::begin(mobile_vendors), std::end(mobile_vendors), p.vendor) != std::end(mobile_vendors)
                         ? "mobile"
                         : "edge";
  } else {
    p.device_class = "cloud";
  }

  // Features. fp16 and int8 storage are core OpenCL C (vload_half/vstore_half,
  // char); fp16 arithmetic needs cl_khr_fp16.
  p.features.insert("fp16_storage");
  p.features.insert("int8_storage");
  p.features.insert("int8_arith");
  if (contains(r.extensions, "cl_khr_fp16")) p.features.insert("fp16_arith");
  if (contains(r.extensions, "cl_khr_integer_dot_product")) {
    cl_bitfield caps = 0;
    if (!device_info(r.id, CL_DEVICE_INTEGER_DOT_PRODUCT_CAPABILITIES_KHR, caps) ||
        (caps & CL_DEVICE_INTEGER_DOT_PRODUCT_INPUT_4x8BIT_PACKED_KHR))
      p.features.insert("int_dot_product");
  }
  if (subgroup_option(r) != nullptr) {
    p.features.insert("subgroup_arith");
    if (contains(r.extensions, "cl_khr_subgroup_shuffle") || contains(r.extensions, "cl_intel_subgroups"))
      p.features.insert("subgroup_shuffle");
  }
  if (contains(r.extensions, "cl_khr_fp64")) p.features.insert("fp64");

  // Sub-group sizes from the vendor queries that state them; drivers with only
  // cl_khr_subgroups are probed with a kernel by OpenCLDevice.
  for (size_t s : device_array<size_t>(r.id, CL_DEVICE_SUB_GROUP_SIZES_INTEL)) p.subgroup_sizes.push_back(static_cast<int>(s));
  cl_uint warp = 0;
  if (p.subgroup_sizes.empty() && contains(r.extensions, "cl_nv_device_attribute_query") &&
      device_info(r.id, CL_DEVICE_WARP_SIZE_NV, warp) && warp > 0)
    p.subgroup_sizes.push_back(static_cast<int>(warp));
  if (p.subgroup_sizes.empty() && contains(r.extensions, "cl_amd_device_attribute_query") &&
      device_info(r.id, CL_DEVICE_WAVEFRONT_WIDTH_AMD, warp) && warp > 0)
    p.subgroup_sizes.push_back(static_cast<int>(warp));

  // Driver facts the kernels work around.
  cl_device_local_mem_type local_type = CL_LOCAL;
  if (device_info(r.id, CL_DEVICE_LOCAL_MEM_TYPE, local_type) && local_type == CL_GLOBAL)
    p.quirks.push_back("local_memory_is_global");
  cl_bool non_uniform = CL_FALSE;
  if (r.version < 200 || (r.version >= 300 && device_info(r.id, CL_DEVICE_NON_UNIFORM_WORK_GROUP_SUPPORT, non_uniform) &&
                          !non_uniform))
    p.quirks.push_back("no_non_uniform_workgroups");
  return p;
}

// ---------------------------------------------------------------- OpenCLDevice

OpenCLDevice::OpenCLDevice(const cl::Platform& platform, const cl::Device& device)
    : platform_(platform), device_(device) {
  profile_ = probe_opencl_profile(platform, device);
  const RawDevice raw = read_raw(device());
  extensions_ = raw.extensions;
  opencl_c_version_ = raw.c_version;
  if (const char* opt = subgroup_option(raw)) subgroup_option_ = opt;

  cl_int err = CL_SUCCESS;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, reinterpret_cast<cl_context_properties>(platform()), 0};
  context_ = cl::Context(device_, props, nullptr, nullptr, &err);
  check(err, "creating a context");
  // In order, with profiling: kernels of one invocation run in sequence and
  // their events carry device timestamps.
  queue_ = cl::CommandQueue(context_, device_, CL_QUEUE_PROFILING_ENABLE, &err);
  check(err, "creating a command queue");

  // Sub-group size from a probe kernel where no vendor query stated it.
  if (profile_.subgroup_sizes.empty() && has_extension("cl_khr_subgroups") && raw.version >= 210) {
    try {
      cl::Program prog = program_from_source(
          "opencl/subgroup_probe.cl", "kernel void ek_subgroup_probe(global uint* o) { o[0] = get_max_sub_group_size(); }",
          subgroup_option_);
      cl::Kernel k = kernel(prog, "opencl/subgroup_probe.cl", "ek_subgroup_probe");
      size_t local = std::min<size_t>(256, static_cast<size_t>(profile_.max_workgroup_size));
      size_t sg = 0;
      if (clGetKernelSubGroupInfo(k(), device_(), CL_KERNEL_MAX_SUB_GROUP_SIZE_FOR_NDRANGE, sizeof(local), &local,
                                  sizeof(sg), &sg, nullptr) == CL_SUCCESS &&
          sg > 0)
        profile_.subgroup_sizes.push_back(static_cast<int>(sg));
    } catch (const Error&) {
      // A driver that advertises sub-groups but cannot build them: leave the
      // sizes unknown and drop the feature rather than fail enumeration.
      profile_.features.erase("subgroup_arith");
      profile_.features.erase("subgroup_shuffle");
      profile_.quirks.push_back("subgroups_advertised_but_unbuildable");
    }
  }
}

bool OpenCLDevice::has_extension(const std::string& name) const { return contains(extensions_, name); }

void OpenCLDevice::check(cl_int err, const std::string& what) const {
  if (err == CL_SUCCESS) return;
  const std::string msg = cat(profile_.label(), ": ", what, ": ", cl_error_name(err), " (", err, ")");
  if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY) throw OutOfMemory(msg);
  throw DeviceError(msg);
}

OpenCLDevice& as_opencl(Device& device, const std::string& what) {
  auto* d = dynamic_cast<OpenCLDevice*>(&device);
  if (!d) throw InvalidArgument(cat(what, ": needs an OpenCL device, got ", device.profile().label()));
  return *d;
}

// ---------------------------------------------------------------- memory

cl::Buffer OpenCLDevice::alloc(size_t bytes, const std::string& what) {
  if (profile_.max_buffer_bytes > 0 && bytes > static_cast<uint64_t>(profile_.max_buffer_bytes))
    throw OutOfMemory(cat(profile_.label(), ": buffer ", what, " of ", bytes, " bytes exceeds the device's largest allocation (",
                          profile_.max_buffer_bytes, " bytes)"));
  cl_int err = CL_SUCCESS;
  // 16 bytes for empty tensors: kernels never touch it, but arguments must be valid buffers.
  cl::Buffer buf(context_, CL_MEM_READ_WRITE, std::max<size_t>(bytes, 16), nullptr, &err);
  check(err, cat("allocating buffer ", what, " (", bytes, " bytes)"));
  return buf;
}

void OpenCLDevice::upload(const cl::Buffer& dst, const void* src, size_t bytes, size_t offset) {
  if (bytes == 0) return;
  check(queue_.enqueueWriteBuffer(dst, CL_TRUE, offset, bytes, src), cat("writing ", bytes, " bytes to the device"));
}

void OpenCLDevice::download(const cl::Buffer& src, void* dst, size_t bytes, size_t offset) {
  if (bytes == 0) return;
  check(queue_.enqueueReadBuffer(src, CL_TRUE, offset, bytes, dst), cat("reading ", bytes, " bytes from the device"));
}

void OpenCLDevice::fill_u32(const cl::Buffer& dst, uint32_t pattern, size_t bytes, size_t offset) {
  if (bytes == 0) return;
  EK_CHECK_ARG(bytes % 4 == 0 && offset % 4 == 0, "opencl fill_u32: ", bytes, " bytes at ", offset,
               " is not a whole number of 32-bit words");
  check(queue_.enqueueFillBuffer(dst, pattern, offset, bytes), "filling a buffer");
  check(queue_.finish(), "filling a buffer");
}

// ---------------------------------------------------------------- programs

cl::Program OpenCLDevice::build(const std::string& key, const std::string& source_name, const std::string& source,
                                const std::string& options) {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  auto it = programs_.find(key);
  if (it != programs_.end()) {
    ++stats_.hits;
    return it->second;
  }
  cl_int err = CL_SUCCESS;
  cl::Program prog(context_, source, false, &err);
  check(err, cat("creating program ", source_name));
  err = prog.build(std::vector<cl::Device>{device_}, options.c_str());
  if (err != CL_SUCCESS) {
    std::string log = trim(prog.getBuildInfo<CL_PROGRAM_BUILD_LOG>(device_));
    constexpr size_t kMaxLog = 8000;
    if (log.size() > kMaxLog) log = log.substr(0, kMaxLog) + "\n[... build log truncated]";
    throw DeviceError(cat(profile_.label(), ": building OpenCL program ", source_name, " with options '", options,
                          "' failed: ", cl_error_name(err), "\n", log));
  }
  ++stats_.builds;
  programs_.emplace(key, prog);
  stats_.entries = programs_.size();
  return prog;
}

cl::Program OpenCLDevice::program(const std::string& source_name, const std::string& options) {
  {
    // Fast path without touching the embedded table.
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = programs_.find(source_name + '\n' + options);
    if (it != programs_.end()) {
      ++stats_.hits;
      return it->second;
    }
  }
  const EmbeddedFile* f = find_embedded(source_name);
  if (!f) throw NotFound(cat(profile_.label(), ": no embedded OpenCL source '", source_name, "'"));
  return build(source_name + '\n' + options, source_name,
               std::string(reinterpret_cast<const char*>(f->data), f->size), options);
}

cl::Program OpenCLDevice::program_from_source(const std::string& source_name, const std::string& source,
                                              const std::string& options) {
  return build(cat(source_name, '\n', options, '\n', std::hash<std::string>()(source)), source_name, source, options);
}

cl::Kernel OpenCLDevice::kernel(const cl::Program& prog, const std::string& source_name, const std::string& kernel_name) {
  cl_int err = CL_SUCCESS;
  cl::Kernel k(prog, kernel_name.c_str(), &err);
  check(err, cat("creating kernel ", kernel_name, " of ", source_name));
  return k;
}

cl::Kernel OpenCLDevice::kernel(const std::string& source_name, const std::string& options,
                                const std::string& kernel_name) {
  return kernel(program(source_name, options), source_name, kernel_name);
}

size_t OpenCLDevice::kernel_workgroup_limit(const cl::Kernel& k) const {
  size_t limit = 0;
  check(k.getWorkGroupInfo(device_, CL_KERNEL_WORK_GROUP_SIZE, &limit), "querying a kernel's workgroup size");
  return limit;
}

std::pair<cl::Kernel, size_t> OpenCLDevice::kernel_for_workgroup(
    const std::string& source_name, const std::function<std::string(size_t)>& options_for,
    const std::string& kernel_name, size_t wanted) {
  size_t wg = 1;
  while (wg * 2 <= std::min<size_t>(std::max<size_t>(wanted, 1), static_cast<size_t>(profile_.max_workgroup_size)))
    wg *= 2;
  for (;;) {
    cl::Kernel k = kernel(source_name, options_for(wg), kernel_name);
    const size_t limit = kernel_workgroup_limit(k);
    if (wg <= limit || wg == 1) return {k, wg};
    while (wg > limit && wg > 1) wg /= 2;
  }
}

OpenCLDevice::ProgramCacheStats OpenCLDevice::program_cache_stats() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return stats_;
}

// ---------------------------------------------------------------- dispatch

namespace detail {
void set_kernel_arg_checked(const OpenCLDevice& dev, cl::Kernel& kernel, cl_uint index, size_t size,
                            const void* value) {
  const cl_int err = clSetKernelArg(kernel(), index, size, value);
  if (err != CL_SUCCESS)
    dev.check(err, cat("setting argument ", index, " (", size, " bytes) of kernel ",
                       trim(kernel.getInfo<CL_KERNEL_FUNCTION_NAME>())));
}
}  // namespace detail

cl::Event OpenCLDevice::enqueue(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local) {
  cl::Event event;
  for (size_t i = 0; i < global.dimensions(); ++i)
    if (global.get()[i] == 0) return event;
  const cl_int err = queue_.enqueueNDRangeKernel(kernel, cl::NullRange, global, local, nullptr, &event);
  if (err != CL_SUCCESS) {
    std::string range;
    for (size_t i = 0; i < global.dimensions(); ++i) range += cat(i ? "x" : "", global.get()[i]);
    if (local.dimensions() > 0) {
      range += " local ";
      for (size_t i = 0; i < local.dimensions(); ++i) range += cat(i ? "x" : "", local.get()[i]);
    }
    check(err, cat("enqueueing kernel ", trim(kernel.getInfo<CL_KERNEL_FUNCTION_NAME>()), " over ", range));
  }
  return event;
}

void OpenCLDevice::finish() { check(queue_.finish(), "waiting for the queue"); }

double OpenCLDevice::elapsed_seconds(const cl::Event& first, const cl::Event& last) const {
  cl_ulong start = 0, end = 0;
  check(first.getProfilingInfo(CL_PROFILING_COMMAND_START, &start), "reading a profiling start time");
  check(last.getProfilingInfo(CL_PROFILING_COMMAND_END, &end), "reading a profiling end time");
  return end > start ? static_cast<double>(end - start) * 1e-9 : 0.0;
}

// ---------------------------------------------------------------- enumeration

namespace {

std::vector<std::unique_ptr<Device>> enumerate_opencl(DeviceScan& scan) {
  std::vector<std::unique_ptr<Device>> out;
  cl_uint num_platforms = 0;
  cl_int err = clGetPlatformIDs(0, nullptr, &num_platforms);
  if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && num_platforms == 0)) {
    scan.notes.push_back("no OpenCL platform: no ICD registered in /etc/OpenCL/vendors (or OCL_ICD_VENDORS)");
    return out;
  }
  if (err != CL_SUCCESS) {
    scan.notes.push_back(cat("clGetPlatformIDs failed: ", cl_error_name(err)));
    return out;
  }
  std::vector<cl_platform_id> ids(num_platforms);
  clGetPlatformIDs(num_platforms, ids.data(), nullptr);
  for (cl_platform_id pid : ids) {
    const cl::Platform platform(pid, true);
    const std::string pname = platform_string(pid, CL_PLATFORM_NAME);
    cl_uint num_devices = 0;
    err = clGetDeviceIDs(pid, CL_DEVICE_TYPE_ALL, 0, nullptr, &num_devices);
    if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && num_devices == 0)) {
      scan.notes.push_back(cat("platform '", pname, "': no devices"));
      continue;
    }
    if (err != CL_SUCCESS) {
      scan.notes.push_back(cat("platform '", pname, "': clGetDeviceIDs failed: ", cl_error_name(err)));
      continue;
    }
    std::vector<cl_device_id> devs(num_devices);
    clGetDeviceIDs(pid, CL_DEVICE_TYPE_ALL, num_devices, devs.data(), nullptr);
    for (cl_device_id did : devs) {
      const cl::Device device(did, true);
      const std::string dname = device_string(did, CL_DEVICE_NAME);
      cl_bool available = CL_FALSE, compiler = CL_FALSE;
      device_info(did, CL_DEVICE_AVAILABLE, available);
      device_info(did, CL_DEVICE_COMPILER_AVAILABLE, compiler);
      if (!available || !compiler) {
        scan.notes.push_back(cat("device '", dname, "': skipped (", !available ? "not available" : "no online compiler", ")"));
        continue;
      }
      try {
        out.push_back(std::make_unique<OpenCLDevice>(platform, device));
        const DeviceProfile& p = out.back()->profile();
        scan.notes.push_back(cat("'", dname, "' on '", pname, "': ", p.api_version, ", class ", p.device_class));
      } catch (const std::exception& e) {
        scan.notes.push_back(cat("device '", dname, "': ", e.what()));
      }
    }
  }
  if (out.empty()) scan.notes.push_back("no usable OpenCL device");
  return out;
}

const RegisterBackend reg({"opencl", enumerate_opencl, 2});

}  // namespace

}  // namespace ek
