#include "backends/vulkan/vulkan_api.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "kernels/common/error.h"

namespace ek {
namespace vk {

const Loader* load_vulkan(std::string* why) {
  static std::once_flag once;
  static Loader loader;
  static bool ok = false;
  static std::string failure;
  std::call_once(once, [] {
    const char* env = std::getenv("EK_VULKAN_LOADER");
    const char* candidates[] = {env, "libvulkan.so.1", "libvulkan.so"};
    void* lib = nullptr;
    std::string errors;
    for (const char* name : candidates) {
      if (!name || !*name) continue;
      lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      const char* e = dlerror();
      errors += cat(errors.empty() ? "" : "; ", e ? e : name);
      if (env && name == env) break;  // an explicit path is not second-guessed
    }
    if (!lib) {
      failure = cat("no Vulkan loader (libvulkan.so.1): ", errors);
      return;
    }
    loader.vkGetInstanceProcAddr = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
    if (!loader.vkGetInstanceProcAddr) {
      failure = "Vulkan loader has no vkGetInstanceProcAddr";
      return;
    }
#define EK_VK_LOAD_GLOBAL(name)                                                                         \
  loader.name = reinterpret_cast<PFN_##name>(loader.vkGetInstanceProcAddr(VK_NULL_HANDLE, #name)); \
  if (!loader.name) {                                                                                   \
    failure = "Vulkan loader lacks " #name;                                                             \
    return;                                                                                             \
  }
    EK_VK_GLOBAL_FUNCTIONS(EK_VK_LOAD_GLOBAL)
#undef EK_VK_LOAD_GLOBAL
    loader.vkEnumerateInstanceVersion = reinterpret_cast<PFN_vkEnumerateInstanceVersion>(
        loader.vkGetInstanceProcAddr(VK_NULL_HANDLE, "vkEnumerateInstanceVersion"));
    ok = true;
  });
  if (!ok) {
    if (why) *why = failure;
    return nullptr;
  }
  return &loader;
}

bool InstanceFunctions::load(const Loader& l, VkInstance instance, std::string* missing) {
#define EK_VK_LOAD_INSTANCE(name)                                                       \
  name = reinterpret_cast<PFN_##name>(l.vkGetInstanceProcAddr(instance, #name)); \
  if (!name) {                                                                          \
    if (missing) *missing = #name;                                                      \
    return false;                                                                       \
  }
#define EK_VK_LOAD_INSTANCE_OPTIONAL(name) \
  name = reinterpret_cast<PFN_##name>(l.vkGetInstanceProcAddr(instance, #name));
  EK_VK_INSTANCE_FUNCTIONS(EK_VK_LOAD_INSTANCE)
  EK_VK_INSTANCE_OPTIONAL_FUNCTIONS(EK_VK_LOAD_INSTANCE_OPTIONAL)
#undef EK_VK_LOAD_INSTANCE
#undef EK_VK_LOAD_INSTANCE_OPTIONAL
  return true;
}

bool DeviceFunctions::load(const InstanceFunctions& fi, VkDevice device, std::string* missing) {
#define EK_VK_LOAD_DEVICE(name)                                                    \
  name = reinterpret_cast<PFN_##name>(fi.vkGetDeviceProcAddr(device, #name)); \
  if (!name) {                                                                     \
    if (missing) *missing = #name;                                                 \
    return false;                                                                  \
  }
  EK_VK_DEVICE_FUNCTIONS(EK_VK_LOAD_DEVICE)
#undef EK_VK_LOAD_DEVICE
  return true;
}

const char* result_name(VkResult r) {
  switch (r) {
#define EK_VK_CASE(x) \
  case x: return #x;
    EK_VK_CASE(VK_SUCCESS)
    EK_VK_CASE(VK_NOT_READY)
    EK_VK_CASE(VK_TIMEOUT)
    EK_VK_CASE(VK_EVENT_SET)
    EK_VK_CASE(VK_EVENT_RESET)
    EK_VK_CASE(VK_INCOMPLETE)
    EK_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    EK_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    EK_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    EK_VK_CASE(VK_ERROR_DEVICE_LOST)
    EK_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    EK_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    EK_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    EK_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    EK_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    EK_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    EK_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    EK_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
    EK_VK_CASE(VK_ERROR_UNKNOWN)
    EK_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    EK_VK_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    EK_VK_CASE(VK_ERROR_FRAGMENTATION)
    EK_VK_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
    EK_VK_CASE(VK_PIPELINE_COMPILE_REQUIRED)
    EK_VK_CASE(VK_ERROR_INVALID_SHADER_NV)
#undef EK_VK_CASE
    default: return "VkResult(?)";
  }
}

void check(VkResult r, const char* what, const std::string& device_name) {
  if (r == VK_SUCCESS) return;
  const std::string msg = cat("vulkan: ", what, " failed on ", device_name, ": ", result_name(r), " (", int(r), ")");
  if (r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_POOL_MEMORY ||
      r == VK_ERROR_FRAGMENTED_POOL || r == VK_ERROR_FRAGMENTATION)
    throw OutOfMemory(msg);
  throw DeviceError(msg);
}

}  // namespace vk
}  // namespace ek
