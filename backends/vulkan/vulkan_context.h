// Internals of the Vulkan backend shared by its .cpp files (not for kernels):
// the instance, the logical device with its queue and caches, and the probe
// that turns a physical device into a DeviceProfile.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "backends/vulkan/vulkan_api.h"
#include "backends/vulkan/vulkan_device.h"

namespace ek {
namespace vk {

struct Instance {
  const Loader* loader = nullptr;
  VkInstance handle = VK_NULL_HANDLE;
  InstanceFunctions fn;
  uint32_t api_version = 0;
  ~Instance();
};
// Throws DeviceError with the reason.
std::shared_ptr<Instance> create_instance(const Loader& loader);

// Everything queried from a physical device, used for the profile and for
// choosing what to enable when the logical device is created.
struct PhysicalDeviceInfo {
  VkPhysicalDevice handle = VK_NULL_HANDLE;
  VkPhysicalDeviceProperties props{};
  VkPhysicalDeviceMemoryProperties memory{};
  std::set<std::string> extensions;
  std::vector<VkQueueFamilyProperties> queue_families;

  // properties
  VkPhysicalDeviceSubgroupProperties subgroup{};
  VkPhysicalDeviceSubgroupSizeControlProperties subgroup_size_control{};
  VkPhysicalDeviceDriverProperties driver{};
  VkPhysicalDeviceMaintenance3Properties maintenance3{};
  VkPhysicalDeviceMaintenance4Properties maintenance4{};
  VkPhysicalDeviceShaderIntegerDotProductProperties int_dot{};
  VkPhysicalDeviceShaderSMBuiltinsPropertiesNV nv_sm{};
  VkPhysicalDeviceShaderCorePropertiesAMD amd_core{};
  bool has_driver_props = false, has_maintenance4 = false, has_int_dot_props = false;
  bool has_nv_sm = false, has_amd_core = false, has_size_control_props = false;

  // features (what the device supports; all of it that we use is enabled)
  VkPhysicalDeviceFeatures base{};
  VkPhysicalDevice16BitStorageFeatures storage16{};
  VkPhysicalDevice8BitStorageFeatures storage8{};
  VkPhysicalDeviceShaderFloat16Int8Features float16_int8{};
  VkPhysicalDeviceSubgroupSizeControlFeatures size_control{};
  VkPhysicalDeviceShaderIntegerDotProductFeatures int_dot_features{};
  VkPhysicalDeviceShaderSubgroupExtendedTypesFeatures subgroup_extended{};
  VkPhysicalDeviceMaintenance4Features maintenance4_features{};
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR coopmat_khr{};
  VkPhysicalDeviceCooperativeMatrixFeaturesNV coopmat_nv{};
  // Which of the structs above are valid to chain (core at the device's
  // version, or extension present); the extension is then enabled too.
  bool can_8bit = false, can_f16i8 = false, can_size_control = false, can_int_dot = false;
  bool can_subgroup_extended = false, can_coopmat_khr = false, can_coopmat_nv = false, can_maintenance4 = false;
  std::vector<std::string> coop_shapes;

  uint32_t queue_family = UINT32_MAX;
  std::string name;  // device name, for messages
};
// Throws DeviceError when the device is unusable (Vulkan < 1.1, no compute queue).
PhysicalDeviceInfo query_physical_device(const Instance& inst, VkPhysicalDevice pd);
DeviceProfile make_profile(const Instance& inst, const PhysicalDeviceInfo& info);

struct Pipeline {
  VkPipeline handle = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  uint32_t bindings = 0;
  uint32_t push_bytes = 0;
};

// The logical device. All queue submissions, command-pool use, pipeline-map
// access and staging go through `mutex`, so one device may be shared by threads.
class Context : public std::enable_shared_from_this<Context> {
 public:
  static std::unique_ptr<VulkanDevice> open(std::shared_ptr<Instance> inst, const PhysicalDeviceInfo& info);
  ~Context();

  std::shared_ptr<Instance> instance;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  DeviceFunctions fn;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  std::string name;
  VkPhysicalDeviceLimits limits{};
  uint64_t max_storage_range = 0;
  uint64_t max_allocation = 0;
  uint32_t timestamp_valid_bits = 0;
  double timestamp_period_ns = 1.0;
  bool subgroup_size_control = false;  // required sizes can be set for compute
  uint32_t min_subgroup = 0, max_subgroup = 0;
  uint64_t wait_timeout_ns = 0;

  VkPhysicalDeviceMemoryProperties memory_props{};
  uint32_t device_memory_type = 0;
  bool device_memory_mapped = false;  // unified memory: map device buffers directly
  uint32_t staging_memory_type = 0;

  mutable std::mutex mutex;

  // Buffers (any thread).
  std::shared_ptr<VulkanBuffer> create_buffer(uint64_t bytes);
  void upload(const VulkanBuffer& dst, uint64_t offset, const void* src, uint64_t bytes);
  void download(const VulkanBuffer& src, uint64_t offset, void* dst, uint64_t bytes);
  void destroy_buffer(VulkanBuffer& b);

  // Pipelines (any thread): created on first use, then found.
  const Pipeline& pipeline(const std::string& shader, const std::vector<uint32_t>& spec, uint32_t bindings,
                           uint32_t push_bytes, uint32_t required_subgroup_size);
  VkDescriptorSetLayout set_layout(uint32_t bindings);  // caller holds mutex
  VulkanDevice::PipelineStats stats() const;

  // Submits one command buffer and waits on `fence` (caller holds mutex);
  // *submitted (if given) is set once the queue has accepted it.
  void submit_and_wait(VkCommandBuffer cmd, VkFence fence, const char* what, bool* submitted = nullptr);
  VkCommandPool command_pool = VK_NULL_HANDLE;  // guarded by mutex

 private:
  Context() = default;
  void init(const PhysicalDeviceInfo& info);
  void ensure_staging(uint64_t bytes);  // caller holds mutex
  // Records `record(cmd)` into the transfer command buffer, submits, waits.
  template <class F>
  void one_shot(const char* what, F&& record);

  VkPipelineCache pipeline_cache_ = VK_NULL_HANDLE;
  std::map<std::string, VkShaderModule> modules_;
  std::map<uint32_t, VkDescriptorSetLayout> set_layouts_;
  std::map<std::pair<uint32_t, uint32_t>, VkPipelineLayout> pipeline_layouts_;
  using Key = std::tuple<std::string, std::vector<uint32_t>, uint32_t, uint32_t, uint32_t>;
  std::map<Key, std::unique_ptr<Pipeline>> pipelines_;
  uint64_t hits_ = 0, misses_ = 0;

  VkCommandBuffer transfer_cmd_ = VK_NULL_HANDLE;
  VkFence transfer_fence_ = VK_NULL_HANDLE;
  VkBuffer staging_ = VK_NULL_HANDLE;
  VkDeviceMemory staging_memory_ = VK_NULL_HANDLE;
  void* staging_mapped_ = nullptr;
  uint64_t staging_size_ = 0;
};

}  // namespace vk
}  // namespace ek
