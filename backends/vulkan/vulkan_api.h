// The Vulkan API as this backend uses it: no link-time dependency on the
// loader (VK_NO_PROTOTYPES); libvulkan.so.1 is opened at run time and every
// function is fetched through vkGetInstanceProcAddr / vkGetDeviceProcAddr, so
// the library loads and runs on machines without Vulkan.
#pragma once

#ifndef VK_NO_PROTOTYPES
#define VK_NO_PROTOTYPES
#endif
#include <vulkan/vulkan.h>

#include <string>

// VK_KHR_cooperative_matrix postdates some distributions' headers (Debian 12
// ships 1.3.239); its few definitions are stable, so they are given here.
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_cooperative_matrix 1
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
#define EK_VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR static_cast<VkStructureType>(1000506000)
#define EK_VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR static_cast<VkStructureType>(1000506001)
typedef VkComponentTypeNV VkComponentTypeKHR;  // same values (FLOAT16 = 0, FLOAT32 = 1, ...)
typedef VkScopeNV VkScopeKHR;                  // same values (SUBGROUP = 3)
typedef struct VkCooperativeMatrixPropertiesKHR {
  VkStructureType sType;
  void* pNext;
  uint32_t MSize;
  uint32_t NSize;
  uint32_t KSize;
  VkComponentTypeKHR AType;
  VkComponentTypeKHR BType;
  VkComponentTypeKHR CType;
  VkComponentTypeKHR ResultType;
  VkBool32 saturatingAccumulation;
  VkScopeKHR scope;
} VkCooperativeMatrixPropertiesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
  VkStructureType sType;
  void* pNext;
  VkBool32 cooperativeMatrix;
  VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef VkResult(VKAPI_PTR* PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(
    VkPhysicalDevice, uint32_t*, VkCooperativeMatrixPropertiesKHR*);
#else
#define EK_VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR \
  VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR
#define EK_VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
#endif

namespace ek {
namespace vk {

// Functions fetched with vkGetInstanceProcAddr(nullptr, ...).
#define EK_VK_GLOBAL_FUNCTIONS(X)          \
  X(vkCreateInstance)                      \
  X(vkEnumerateInstanceExtensionProperties) \
  X(vkEnumerateInstanceLayerProperties)

// Instance-level functions; the optional ones may be null.
#define EK_VK_INSTANCE_FUNCTIONS(X)           \
  X(vkDestroyInstance)                        \
  X(vkEnumeratePhysicalDevices)               \
  X(vkGetPhysicalDeviceProperties)            \
  X(vkGetPhysicalDeviceProperties2)           \
  X(vkGetPhysicalDeviceFeatures2)             \
  X(vkGetPhysicalDeviceMemoryProperties)      \
  X(vkGetPhysicalDeviceQueueFamilyProperties) \
  X(vkEnumerateDeviceExtensionProperties)     \
  X(vkCreateDevice)                           \
  X(vkGetDeviceProcAddr)
#define EK_VK_INSTANCE_OPTIONAL_FUNCTIONS(X)             \
  X(vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR) \
  X(vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)

#define EK_VK_DEVICE_FUNCTIONS(X)     \
  X(vkDestroyDevice)                  \
  X(vkGetDeviceQueue)                 \
  X(vkCreateBuffer)                   \
  X(vkDestroyBuffer)                  \
  X(vkGetBufferMemoryRequirements)    \
  X(vkAllocateMemory)                 \
  X(vkFreeMemory)                     \
  X(vkBindBufferMemory)               \
  X(vkMapMemory)                      \
  X(vkUnmapMemory)                    \
  X(vkCreateShaderModule)             \
  X(vkDestroyShaderModule)            \
  X(vkCreateDescriptorSetLayout)      \
  X(vkDestroyDescriptorSetLayout)     \
  X(vkCreatePipelineLayout)           \
  X(vkDestroyPipelineLayout)          \
  X(vkCreatePipelineCache)            \
  X(vkDestroyPipelineCache)           \
  X(vkCreateComputePipelines)         \
  X(vkDestroyPipeline)                \
  X(vkCreateDescriptorPool)           \
  X(vkDestroyDescriptorPool)          \
  X(vkAllocateDescriptorSets)         \
  X(vkUpdateDescriptorSets)           \
  X(vkCreateCommandPool)              \
  X(vkDestroyCommandPool)             \
  X(vkAllocateCommandBuffers)         \
  X(vkFreeCommandBuffers)             \
  X(vkBeginCommandBuffer)             \
  X(vkEndCommandBuffer)               \
  X(vkCmdBindPipeline)                \
  X(vkCmdBindDescriptorSets)          \
  X(vkCmdPushConstants)               \
  X(vkCmdDispatch)                    \
  X(vkCmdPipelineBarrier)             \
  X(vkCmdCopyBuffer)                  \
  X(vkCmdFillBuffer)                  \
  X(vkCmdWriteTimestamp)              \
  X(vkCmdResetQueryPool)              \
  X(vkCreateQueryPool)                \
  X(vkDestroyQueryPool)               \
  X(vkGetQueryPoolResults)            \
  X(vkCreateFence)                    \
  X(vkDestroyFence)                   \
  X(vkResetFences)                    \
  X(vkWaitForFences)                  \
  X(vkQueueSubmit)                    \
  X(vkDeviceWaitIdle)

#define EK_VK_DECLARE_MEMBER(name) PFN_##name name = nullptr;

// The loader library and its global functions; process-wide, never unloaded
// (drivers keep threads and atexit handlers that outlive any one user).
struct Loader {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
  PFN_vkEnumerateInstanceVersion vkEnumerateInstanceVersion = nullptr;  // null on 1.0 loaders
  EK_VK_GLOBAL_FUNCTIONS(EK_VK_DECLARE_MEMBER)
};
// The loader, or nullptr with `why` set ("no Vulkan loader (libvulkan.so.1): ...").
// EK_VULKAN_LOADER overrides the library path (tests use it to simulate absence).
const Loader* load_vulkan(std::string* why);

struct InstanceFunctions {
  EK_VK_INSTANCE_FUNCTIONS(EK_VK_DECLARE_MEMBER)
  EK_VK_INSTANCE_OPTIONAL_FUNCTIONS(EK_VK_DECLARE_MEMBER)
  // False with `missing` naming the first absent required function.
  bool load(const Loader& l, VkInstance instance, std::string* missing);
};

struct DeviceFunctions {
  EK_VK_DEVICE_FUNCTIONS(EK_VK_DECLARE_MEMBER)
  bool load(const InstanceFunctions& fi, VkDevice device, std::string* missing);
};

#undef EK_VK_DECLARE_MEMBER

// "VK_ERROR_OUT_OF_DEVICE_MEMORY" etc.
const char* result_name(VkResult r);
// Throws the matching ek error (OutOfMemory, DeviceError) naming `what` and the
// device when r is not VK_SUCCESS.
void check(VkResult r, const char* what, const std::string& device_name);

}  // namespace vk
}  // namespace ek
