// Instance creation and the probe of a physical device: its properties and
// features, and the DeviceProfile made from them.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <thread>

#include "backends/cpu/cpu_device.h"
#include "backends/vulkan/vulkan_context.h"
#include "kernels/common/error.h"

namespace ek {
namespace vk {

Instance::~Instance() {
  if (handle != VK_NULL_HANDLE && fn.vkDestroyInstance) fn.vkDestroyInstance(handle, nullptr);
}

std::shared_ptr<Instance> create_instance(const Loader& loader) {
  uint32_t version = VK_API_VERSION_1_0;
  if (loader.vkEnumerateInstanceVersion) loader.vkEnumerateInstanceVersion(&version);
  if (version < VK_API_VERSION_1_1)
    throw DeviceError(cat("Vulkan loader is version ", VK_API_VERSION_MAJOR(version), ".",
                          VK_API_VERSION_MINOR(version), "; 1.1 or newer is required"));

  uint32_t count = 0;
  loader.vkEnumerateInstanceExtensionProperties(nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> exts(count);
  loader.vkEnumerateInstanceExtensionProperties(nullptr, &count, exts.data());
  std::vector<const char*> enabled;
  VkInstanceCreateFlags flags = 0;
  for (const auto& e : exts)
    if (std::strcmp(e.extensionName, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME) == 0) {
      // Lists portability drivers (MoltenVK) too; harmless elsewhere.
      enabled.push_back(VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME);
      flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }

  // EK_VULKAN_VALIDATION=1 turns on the Khronos validation layer when installed.
  std::vector<const char*> layers;
  if (const char* v = std::getenv("EK_VULKAN_VALIDATION"); v && std::strcmp(v, "0") != 0) {
    uint32_t lc = 0;
    loader.vkEnumerateInstanceLayerProperties(&lc, nullptr);
    std::vector<VkLayerProperties> ls(lc);
    loader.vkEnumerateInstanceLayerProperties(&lc, ls.data());
    for (const auto& l : ls)
      if (std::strcmp(l.layerName, "VK_LAYER_KHRONOS_validation") == 0) layers.push_back("VK_LAYER_KHRONOS_validation");
  }

  VkApplicationInfo app{VK_STRUCTURE_TYPE_APPLICATION_INFO};
  app.pApplicationName = "edgekernels";
  app.pEngineName = "edgekernels";
  app.apiVersion = std::min<uint32_t>(version, VK_API_VERSION_1_3);
  VkInstanceCreateInfo ci{VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
  ci.flags = flags;
  ci.pApplicationInfo = &app;
  ci.enabledExtensionCount = static_cast<uint32_t>(enabled.size());
  ci.ppEnabledExtensionNames = enabled.data();
  ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
  ci.ppEnabledLayerNames = layers.data();

  auto inst = std::make_shared<Instance>();
  inst->loader = &loader;
  inst->api_version = app.apiVersion;
  VkResult r = loader.vkCreateInstance(&ci, nullptr, &inst->handle);
  if (r != VK_SUCCESS) {
    inst->handle = VK_NULL_HANDLE;
    throw DeviceError(cat("vkCreateInstance failed: ", result_name(r),
                          r == VK_ERROR_INCOMPATIBLE_DRIVER ? " (no Vulkan driver/ICD installed?)" : ""));
  }
  std::string missing;
  if (!inst->fn.load(loader, inst->handle, &missing)) {
    // The destructor needs vkDestroyInstance, which load() fetched first if it could.
    throw DeviceError(cat("Vulkan instance lacks ", missing));
  }
  return inst;
}

namespace {

std::string version_string(uint32_t v) {
  return cat(VK_API_VERSION_MAJOR(v), ".", VK_API_VERSION_MINOR(v), ".", VK_API_VERSION_PATCH(v));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool contains(const std::string& haystack, const char* needle) { return haystack.find(needle) != std::string::npos; }

std::string vendor_name(uint32_t id) {
  switch (id) {
    case 0x1002: return "AMD";
    case 0x1010: return "Imagination";
    case 0x106B: return "Apple";
    case 0x10DE: return "NVIDIA";
    case 0x13B5: return "ARM";
    case 0x14E4: return "Broadcom";
    case 0x144D: return "Samsung";
    case 0x19E5: return "Huawei";
    case 0x1AE0: return "Google";
    case 0x5143: return "Qualcomm";
    case 0x8086: return "Intel";
    case 0x10001: return "Vivante";
    case 0x10002: return "VeriSilicon";
    case 0x10003: return "Kazan";
    case 0x10004: return "Codeplay";
    case 0x10005: return "Mesa";
    case 0x10006: return "PoCL";
    case 0x10007: return "MobileEye";
    default: return cat("vendor-0x", std::hex, id);
  }
}

// The driver's version in the vendor's own numbering.
std::string driver_version_string(uint32_t vendor, uint32_t v) {
  if (vendor == 0x10DE)  // NVIDIA: 10.8.8.6 bits
    return cat((v >> 22) & 0x3ff, ".", (v >> 14) & 0xff, ".", (v >> 6) & 0xff, ".", v & 0x3f);
  return version_string(v);
}

// A coarse family name: the fallback key of the tuning database when this
// exact device has no entry.
std::string architecture_of(const std::string& vendor, const std::string& name, VkPhysicalDeviceType type) {
  const std::string n = lower(name);
  if (type == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    if (contains(n, "llvmpipe")) return "llvmpipe";
    if (contains(n, "swiftshader")) return "swiftshader";
    return "cpu";
  }
  if (vendor == "NVIDIA") {
    if (contains(n, "h100") || contains(n, "h200") || contains(n, "h800") || contains(n, "gh200")) return "hopper";
    if (contains(n, "b100") || contains(n, "b200") || contains(n, "rtx 50") || contains(n, "gb200")) return "blackwell";
    if (contains(n, "rtx 40") || contains(n, "l40") || contains(n, " l4") || contains(n, "ada")) return "ada";
    if (contains(n, "a100") || contains(n, "a800") || contains(n, " a10") || contains(n, " a30") ||
        contains(n, " a40") || contains(n, "rtx 30") || contains(n, "rtx a") || contains(n, "orin"))
      return "ampere";
    if (contains(n, "rtx 20") || contains(n, "t4") || contains(n, "gtx 16") || contains(n, "quadro rtx"))
      return "turing";
    if (contains(n, "v100") || contains(n, "xavier")) return "volta";
    return "nvidia";
  }
  if (vendor == "Qualcomm") {
    // "Adreno (TM) 740" -> adreno-7xx
    auto p = n.find("adreno");
    if (p != std::string::npos) {
      auto d = n.find_first_of("0123456789", p);
      if (d != std::string::npos) return cat("adreno-", n[d], "xx");
    }
    return "adreno";
  }
  if (vendor == "ARM") {
    // "Mali-G710" -> mali-g7xx; "Immortalis-G715" likewise
    auto p = n.find("-g");
    if (p != std::string::npos && p + 2 < n.size() && std::isdigit(static_cast<unsigned char>(n[p + 2])))
      return cat("mali-g", n[p + 2], "xx");
    return "mali";
  }
  if (vendor == "AMD") {
    // Mesa RADV names the chip: "AMD Radeon RX 7900 XTX (RADV NAVI31)".
    auto p = n.find("(radv ");
    if (p != std::string::npos) {
      auto e = n.find(')', p);
      std::string chip = n.substr(p + 6, e == std::string::npos ? std::string::npos : e - p - 6);
      if (chip.compare(0, 6, "navi3") == 0 || chip.compare(0, 5, "gfx11") == 0) return "rdna3";
      if (chip.compare(0, 6, "navi2") == 0 || chip.compare(0, 5, "gfx10") == 0) return "rdna2";
      return "amd-" + chip;
    }
    if (contains(n, "rx 7") || contains(n, "780m")) return "rdna3";
    if (contains(n, "rx 6") || contains(n, "680m")) return "rdna2";
    if (contains(n, "mi300") || contains(n, "mi250") || contains(n, "mi210")) return "cdna";
    return "amd";
  }
  if (vendor == "Intel") {
    if (contains(n, "arc") || contains(n, "dg2")) return "intel-xe-hpg";
    if (contains(n, "xe") || contains(n, "iris")) return "intel-xe";
    return "intel";
  }
  return lower(vendor);
}

std::string device_class_of(const std::string& vendor, VkPhysicalDeviceType type) {
  switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "cloud";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
      // Phone/tablet SoC GPUs vs. laptop/mini-PC/Jetson integrated GPUs.
      if (vendor == "Qualcomm" || vendor == "ARM" || vendor == "Imagination" || vendor == "Apple" ||
          vendor == "Samsung" || vendor == "Huawei" || vendor == "Broadcom" || vendor == "Vivante")
        return "mobile";
      return "edge";
    default: return "edge";
  }
}

const char* component_name(int t) {
  switch (t) {
    case 0: return "f16";
    case 1: return "f32";
    case 2: return "f64";
    case 3: return "s8";
    case 4: return "s16";
    case 5: return "s32";
    case 6: return "s64";
    case 7: return "u8";
    case 8: return "u16";
    case 9: return "u32";
    case 10: return "u64";
    case 1000141000: return "bf16";
    default: return "?";
  }
}

template <class T>
void chain(void**& tail, T& s, VkStructureType type) {
  s.sType = type;
  s.pNext = nullptr;
  *tail = &s;
  tail = &s.pNext;
}

}  // namespace

PhysicalDeviceInfo query_physical_device(const Instance& inst, VkPhysicalDevice pd) {
  const InstanceFunctions& f = inst.fn;
  PhysicalDeviceInfo info;
  info.handle = pd;
  f.vkGetPhysicalDeviceProperties(pd, &info.props);
  info.name = info.props.deviceName;
  const uint32_t api = std::min(info.props.apiVersion, inst.api_version);
  if (info.props.apiVersion < VK_API_VERSION_1_1)
    throw DeviceError(cat(info.name, ": Vulkan ", version_string(info.props.apiVersion), ", 1.1 or newer is required"));

  uint32_t count = 0;
  f.vkEnumerateDeviceExtensionProperties(pd, nullptr, &count, nullptr);
  std::vector<VkExtensionProperties> exts(count);
  f.vkEnumerateDeviceExtensionProperties(pd, nullptr, &count, exts.data());
  for (const auto& e : exts) info.extensions.insert(e.extensionName);
  auto has_ext = [&](const char* e) { return info.extensions.count(e) != 0; };

  f.vkGetPhysicalDeviceMemoryProperties(pd, &info.memory);
  f.vkGetPhysicalDeviceQueueFamilyProperties(pd, &count, nullptr);
  info.queue_families.resize(count);
  f.vkGetPhysicalDeviceQueueFamilyProperties(pd, &count, info.queue_families.data());

  // Queue: a compute family with timestamps, preferring a compute-only one
  // (the dedicated/async compute queue of discrete GPUs).
  int best_score = -1;
  for (uint32_t i = 0; i < info.queue_families.size(); ++i) {
    const auto& q = info.queue_families[i];
    if (!(q.queueFlags & VK_QUEUE_COMPUTE_BIT) || q.queueCount == 0) continue;
    int score = (q.timestampValidBits ? 2 : 0) + ((q.queueFlags & VK_QUEUE_GRAPHICS_BIT) ? 0 : 1);
    if (score > best_score) {
      best_score = score;
      info.queue_family = i;
    }
  }
  if (info.queue_family == UINT32_MAX) throw DeviceError(cat(info.name, ": no compute queue"));

  // ---- properties
  info.can_size_control = api >= VK_API_VERSION_1_3 || has_ext(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME);
  info.can_int_dot = api >= VK_API_VERSION_1_3 || has_ext(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
  info.can_8bit = api >= VK_API_VERSION_1_2 || has_ext(VK_KHR_8BIT_STORAGE_EXTENSION_NAME);
  info.can_f16i8 = api >= VK_API_VERSION_1_2 || has_ext(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
  info.can_subgroup_extended = api >= VK_API_VERSION_1_2 || has_ext(VK_KHR_SHADER_SUBGROUP_EXTENDED_TYPES_EXTENSION_NAME);
  info.can_maintenance4 = api >= VK_API_VERSION_1_3 || has_ext(VK_KHR_MAINTENANCE_4_EXTENSION_NAME);
  info.can_coopmat_khr = has_ext(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME) &&
                         f.vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR != nullptr;
  info.can_coopmat_nv = !info.can_coopmat_khr && has_ext(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) &&
                        f.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV != nullptr;

  VkPhysicalDeviceProperties2 p2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
  void** tail = &p2.pNext;
  chain(tail, info.subgroup, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES);
  chain(tail, info.maintenance3, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES);
  if (info.can_size_control) {
    chain(tail, info.subgroup_size_control, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES);
    info.has_size_control_props = true;
  }
  if (api >= VK_API_VERSION_1_2 || has_ext(VK_KHR_DRIVER_PROPERTIES_EXTENSION_NAME)) {
    chain(tail, info.driver, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES);
    info.has_driver_props = true;
  }
  if (api >= VK_API_VERSION_1_3 || has_ext(VK_KHR_MAINTENANCE_4_EXTENSION_NAME)) {
    chain(tail, info.maintenance4, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_PROPERTIES);
    info.has_maintenance4 = true;
  }
  if (info.can_int_dot) {
    chain(tail, info.int_dot, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES);
    info.has_int_dot_props = true;
  }
  if (has_ext(VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME)) {
    chain(tail, info.nv_sm, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV);
    info.has_nv_sm = true;
  }
  if (has_ext(VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME)) {
    chain(tail, info.amd_core, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD);
    info.has_amd_core = true;
  }
  f.vkGetPhysicalDeviceProperties2(pd, &p2);

  // ---- features
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  tail = &f2.pNext;
  chain(tail, info.storage16, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES);
  if (info.can_8bit) chain(tail, info.storage8, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES);
  if (info.can_f16i8) chain(tail, info.float16_int8, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES);
  if (info.can_size_control)
    chain(tail, info.size_control, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES);
  if (info.can_int_dot)
    chain(tail, info.int_dot_features, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES);
  if (info.can_subgroup_extended)
    chain(tail, info.subgroup_extended, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SUBGROUP_EXTENDED_TYPES_FEATURES);
  if (info.can_maintenance4)
    chain(tail, info.maintenance4_features, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_4_FEATURES);
  if (info.can_coopmat_khr)
    chain(tail, info.coopmat_khr, EK_VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR);
  if (info.can_coopmat_nv)
    chain(tail, info.coopmat_nv, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV);
  f.vkGetPhysicalDeviceFeatures2(pd, &f2);
  info.base = f2.features;

  // ---- cooperative matrix shapes (subgroup scope)
  if (info.can_coopmat_khr && info.coopmat_khr.cooperativeMatrix) {
    uint32_t n = 0;
    f.vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR(pd, &n, nullptr);
    std::vector<VkCooperativeMatrixPropertiesKHR> shapes(n);
    for (auto& s : shapes) {
      s = {};
      s.sType = EK_VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
    }
    f.vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR(pd, &n, shapes.data());
    shapes.resize(n);
    for (const auto& s : shapes)
      if (static_cast<int>(s.scope) == 3)
        info.coop_shapes.push_back(cat(s.MSize, "x", s.NSize, "x", s.KSize, " ", component_name(static_cast<int>(s.AType)), "->",
                                       component_name(static_cast<int>(s.ResultType))));
  } else if (info.can_coopmat_nv && info.coopmat_nv.cooperativeMatrix) {
    uint32_t n = 0;
    f.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, nullptr);
    std::vector<VkCooperativeMatrixPropertiesNV> shapes(n);
    for (auto& s : shapes) {
      s = {};
      s.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV;
    }
    f.vkGetPhysicalDeviceCooperativeMatrixPropertiesNV(pd, &n, shapes.data());
    shapes.resize(n);
    for (const auto& s : shapes)
      if (s.scope == VK_SCOPE_SUBGROUP_NV)
        info.coop_shapes.push_back(cat(s.MSize, "x", s.NSize, "x", s.KSize, " ", component_name(static_cast<int>(s.AType)), "->",
                                       component_name(static_cast<int>(s.DType)), " (NV)"));
  }
  std::sort(info.coop_shapes.begin(), info.coop_shapes.end());
  info.coop_shapes.erase(std::unique(info.coop_shapes.begin(), info.coop_shapes.end()), info.coop_shapes.end());
  return info;
}

DeviceProfile make_profile(const Instance& inst, const PhysicalDeviceInfo& info) {
  const VkPhysicalDeviceProperties& pr = info.props;
  DeviceProfile p;
  p.backend = "vulkan";
  p.vendor = vendor_name(pr.vendorID);
  p.device_name = pr.deviceName;
  if (info.has_driver_props) {
    p.driver_name = info.driver.driverName;
    p.driver_version = info.driver.driverInfo[0] ? std::string(info.driver.driverInfo)
                                                 : driver_version_string(pr.vendorID, pr.driverVersion);
  } else {
    p.driver_name = p.vendor;
    p.driver_version = driver_version_string(pr.vendorID, pr.driverVersion);
  }
  p.api_version = version_string(pr.apiVersion);
  p.architecture = architecture_of(p.vendor, p.device_name, pr.deviceType);
  p.device_class = device_class_of(p.vendor, pr.deviceType);

  const unsigned host_threads = std::max(1u, std::thread::hardware_concurrency());
  if (info.has_nv_sm) {
    p.compute_units = static_cast<int>(info.nv_sm.shaderSMCount);
  } else if (info.has_amd_core) {
    p.compute_units = static_cast<int>(info.amd_core.shaderEngineCount * info.amd_core.shaderArraysPerEngineCount *
                                       info.amd_core.computeUnitsPerShaderArray);
  } else if (pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    p.compute_units = static_cast<int>(host_threads);  // lavapipe runs one thread per CPU (LP_NUM_THREADS)
  }
  if (pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    p.threads = static_cast<int>(host_threads);
    p.cache_bytes = probe_cpu_profile().cache_bytes;  // the device is this CPU
  }
  p.max_workgroup_size = static_cast<int>(
      std::min(pr.limits.maxComputeWorkGroupInvocations, pr.limits.maxComputeWorkGroupSize[0]));

  if (info.has_size_control_props && info.size_control.subgroupSizeControl &&
      info.subgroup_size_control.minSubgroupSize > 0) {
    for (uint32_t s = info.subgroup_size_control.minSubgroupSize; s <= info.subgroup_size_control.maxSubgroupSize;
         s *= 2)
      p.subgroup_sizes.push_back(static_cast<int>(s));
  }
  if (p.subgroup_sizes.empty()) p.subgroup_sizes.push_back(static_cast<int>(info.subgroup.subgroupSize));
  p.shared_memory_bytes = pr.limits.maxComputeSharedMemorySize;

  VkDeviceSize largest_local = 0, largest_any = 0;
  for (uint32_t i = 0; i < info.memory.memoryHeapCount; ++i) {
    largest_any = std::max(largest_any, info.memory.memoryHeaps[i].size);
    if (info.memory.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      largest_local = std::max(largest_local, info.memory.memoryHeaps[i].size);
  }
  p.memory_bytes = static_cast<int64_t>(largest_local ? largest_local : largest_any);
  uint64_t max_buffer = pr.limits.maxStorageBufferRange;
  if (info.maintenance3.maxMemoryAllocationSize) max_buffer = std::min<uint64_t>(max_buffer, info.maintenance3.maxMemoryAllocationSize);
  if (info.has_maintenance4 && info.maintenance4.maxBufferSize)
    max_buffer = std::min<uint64_t>(max_buffer, info.maintenance4.maxBufferSize);
  p.max_buffer_bytes = static_cast<int64_t>(max_buffer);
  p.unified_memory =
      pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU || pr.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;

  // ---- features, named as DeviceProfile documents them
  const bool compute_subgroups = (info.subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
  const VkSubgroupFeatureFlags ops = compute_subgroups ? info.subgroup.supportedOperations : 0;
  if (info.storage16.storageBuffer16BitAccess) p.features.insert("fp16_storage");
  if (info.can_f16i8 && info.float16_int8.shaderFloat16) p.features.insert("fp16_arith");
  if (info.can_8bit && info.storage8.storageBuffer8BitAccess) p.features.insert("int8_storage");
  if (info.can_f16i8 && info.float16_int8.shaderInt8) p.features.insert("int8_arith");
  if (info.base.shaderInt16) p.features.insert("int16_arith");
  if (info.base.shaderInt64) p.features.insert("int64_arith");
  if (info.can_int_dot && info.int_dot_features.shaderIntegerDotProduct) {
    p.features.insert("int_dot_product");
    if (info.has_int_dot_props && (info.int_dot.integerDotProduct4x8BitPackedSignedAccelerated ||
                                   info.int_dot.integerDotProduct4x8BitPackedMixedSignednessAccelerated))
      p.features.insert("int_dot_product_accelerated");
  }
  if (ops & VK_SUBGROUP_FEATURE_BASIC_BIT) p.features.insert("subgroup_basic");
  if (ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) p.features.insert("subgroup_arith");
  if (ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) p.features.insert("subgroup_shuffle");
  if (ops & VK_SUBGROUP_FEATURE_BALLOT_BIT) p.features.insert("subgroup_ballot");
  if (info.can_subgroup_extended && info.subgroup_extended.shaderSubgroupExtendedTypes)
    p.features.insert("subgroup_extended_types");
  if (info.has_size_control_props && info.size_control.subgroupSizeControl &&
      (info.subgroup_size_control.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT))
    p.features.insert("subgroup_size_control");
  if ((info.can_coopmat_khr && info.coopmat_khr.cooperativeMatrix) ||
      (info.can_coopmat_nv && info.coopmat_nv.cooperativeMatrix))
    p.features.insert(info.can_coopmat_khr ? "coopmat" : "coopmat_nv");
  p.coop_matrix_shapes = info.coop_shapes;

  // ---- quirks we act on
  if (pr.limits.maxStorageBufferRange < (uint64_t(1) << 31))
    p.quirks.push_back(cat("maxStorageBufferRange=", pr.limits.maxStorageBufferRange >> 20,
                           " MiB: kernels whose tensors exceed it are ineligible"));
  if (info.queue_families[info.queue_family].timestampValidBits == 0)
    p.quirks.push_back("no timestamps on the compute queue: device timing unavailable");
  if (p.architecture == "llvmpipe")
    p.quirks.push_back("llvmpipe: software Vulkan on the CPU; shader compiles are slow, keep processes short");
  (void)inst;
  return p;
}

}  // namespace vk
}  // namespace ek
