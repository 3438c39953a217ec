// The logical device: creation with every useful feature the device has,
// memory, host transfers, the pipeline cache, and the backend's registration.
#include "backends/vulkan/vulkan_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/vulkan/vulkan_context.h"
#include "codegen/embedded.h"
#include "kernels/common/error.h"

namespace ek {
namespace vk {

namespace {

constexpr uint64_t kStagingMax = uint64_t(64) << 20;  // transfers larger than this go in chunks

uint64_t round_up(uint64_t v, uint64_t m) { return (v + m - 1) / m * m; }

// Index of the memory type allowed by `bits` that has `required`, scoring
// `preferred` flags up and `avoided` flags down; UINT32_MAX if none.
uint32_t pick_memory_type(const VkPhysicalDeviceMemoryProperties& mem, uint32_t bits, VkMemoryPropertyFlags required,
                          VkMemoryPropertyFlags preferred, VkMemoryPropertyFlags avoided) {
  uint32_t best = UINT32_MAX;
  int best_score = -1000;
  for (uint32_t i = 0; i < mem.memoryTypeCount; ++i) {
    if (!(bits & (1u << i))) continue;
    const VkMemoryPropertyFlags f = mem.memoryTypes[i].propertyFlags;
    if ((f & required) != required) continue;
    int score = __builtin_popcount(f & preferred) * 4 - __builtin_popcount(f & avoided) * 8;
    // Among equals, the type on the larger heap (discrete GPUs: not the 256 MiB BAR window).
    if (score > best_score ||
        (score == best_score && mem.memoryHeaps[mem.memoryTypes[i].heapIndex].size >
                                    mem.memoryHeaps[mem.memoryTypes[best].heapIndex].size)) {
      best = i;
      best_score = score;
    }
  }
  return best;
}

uint64_t timeout_from_env() {
  double seconds = 300;
  if (const char* env = std::getenv("EK_VULKAN_TIMEOUT_S")) {
    double v = std::atof(env);
    if (v > 0) seconds = v;
  }
  return static_cast<uint64_t>(seconds * 1e9);
}

}  // namespace

std::unique_ptr<VulkanDevice> Context::open(std::shared_ptr<Instance> inst, const PhysicalDeviceInfo& info) {
  std::shared_ptr<Context> ctx(new Context());
  ctx->instance = std::move(inst);
  ctx->init(info);
  std::unique_ptr<VulkanDevice> dev(new VulkanDevice(ctx));
  dev->profile_ = make_profile(*ctx->instance, info);
  return dev;
}

void Context::init(const PhysicalDeviceInfo& info) {
  const InstanceFunctions& fi = instance->fn;
  physical = info.handle;
  name = info.name;
  limits = info.props.limits;
  memory_props = info.memory;
  queue_family = info.queue_family;
  wait_timeout_ns = timeout_from_env();
  const uint32_t api = std::min(info.props.apiVersion, instance->api_version);

  // ---- features: enable everything supported that a kernel may use
  std::vector<const char*> exts;
  auto want_ext = [&](const char* e, bool core) {
    if (!core && info.extensions.count(e)) exts.push_back(e);
  };
  VkPhysicalDeviceFeatures2 f2{VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
  f2.features.shaderInt16 = info.base.shaderInt16;
  f2.features.shaderInt64 = info.base.shaderInt64;
  f2.features.shaderFloat64 = info.base.shaderFloat64;
  void** tail = &f2.pNext;
  auto link = [&](auto& s) {
    s.pNext = nullptr;
    *tail = &s;
    tail = &s.pNext;
  };
  VkPhysicalDevice16BitStorageFeatures s16 = info.storage16;
  link(s16);
  VkPhysicalDevice8BitStorageFeatures s8 = info.storage8;
  if (info.can_8bit) {
    link(s8);
    want_ext(VK_KHR_8BIT_STORAGE_EXTENSION_NAME, api >= VK_API_VERSION_1_2);
  }
  VkPhysicalDeviceShaderFloat16Int8Features f16i8 = info.float16_int8;
  if (info.can_f16i8) {
    link(f16i8);
    want_ext(VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME, api >= VK_API_VERSION_1_2);
  }
  VkPhysicalDeviceSubgroupSizeControlFeatures ssc = info.size_control;
  if (info.can_size_control) {
    link(ssc);
    want_ext(VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME, api >= VK_API_VERSION_1_3);
  }
  VkPhysicalDeviceShaderIntegerDotProductFeatures idp = info.int_dot_features;
  if (info.can_int_dot) {
    link(idp);
    want_ext(VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME, api >= VK_API_VERSION_1_3);
  }
  VkPhysicalDeviceShaderSubgroupExtendedTypesFeatures sext = info.subgroup_extended;
  if (info.can_subgroup_extended) {
    link(sext);
    want_ext(VK_KHR_SHADER_SUBGROUP_EXTENDED_TYPES_EXTENSION_NAME, api >= VK_API_VERSION_1_2);
  }
  // maintenance4 lets SPIR-V 1.6 shaders (glslc --target-env=vulkan1.3) size
  // workgroups with LocalSizeId.
  VkPhysicalDeviceMaintenance4Features m4 = info.maintenance4_features;
  if (info.can_maintenance4) {
    link(m4);
    want_ext(VK_KHR_MAINTENANCE_4_EXTENSION_NAME, api >= VK_API_VERSION_1_3);
  }
  VkPhysicalDeviceCooperativeMatrixFeaturesKHR cm_khr = info.coopmat_khr;
  cm_khr.cooperativeMatrixRobustBufferAccess = VK_FALSE;
  if (info.can_coopmat_khr && info.coopmat_khr.cooperativeMatrix) {
    link(cm_khr);
    want_ext(VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME, false);
  }
  VkPhysicalDeviceCooperativeMatrixFeaturesNV cm_nv = info.coopmat_nv;
  cm_nv.cooperativeMatrixRobustBufferAccess = VK_FALSE;
  if (info.can_coopmat_nv && info.coopmat_nv.cooperativeMatrix) {
    link(cm_nv);
    want_ext(VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME, false);
  }
  // Pre-1.2 drivers need the extensions the 8/16-bit storage ones build on.
  if (api < VK_API_VERSION_1_2 && info.can_8bit) want_ext(VK_KHR_STORAGE_BUFFER_STORAGE_CLASS_EXTENSION_NAME, false);

  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qci{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
  qci.queueFamilyIndex = queue_family;
  qci.queueCount = 1;
  qci.pQueuePriorities = &priority;
  VkDeviceCreateInfo dci{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
  dci.pNext = &f2;
  dci.queueCreateInfoCount = 1;
  dci.pQueueCreateInfos = &qci;
  dci.enabledExtensionCount = static_cast<uint32_t>(exts.size());
  dci.ppEnabledExtensionNames = exts.data();
  check(fi.vkCreateDevice(physical, &dci, nullptr, &device), "vkCreateDevice", name);
  std::string missing;
  if (!fn.load(fi, device, &missing)) throw DeviceError(cat("vulkan: ", name, ": device lacks ", missing));
  fn.vkGetDeviceQueue(device, queue_family, 0, &queue);

  // ---- limits
  max_storage_range = limits.maxStorageBufferRange;
  max_allocation = info.maintenance3.maxMemoryAllocationSize ? info.maintenance3.maxMemoryAllocationSize
                                                             : uint64_t(1) << 31;
  if (info.has_maintenance4 && info.maintenance4.maxBufferSize)
    max_allocation = std::min<uint64_t>(max_allocation, info.maintenance4.maxBufferSize);
  timestamp_valid_bits = info.queue_families[queue_family].timestampValidBits;
  timestamp_period_ns = limits.timestampPeriod > 0 ? limits.timestampPeriod : 1.0;
  subgroup_size_control = info.has_size_control_props && info.size_control.subgroupSizeControl &&
                          (info.subgroup_size_control.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT);
  min_subgroup = info.has_size_control_props ? info.subgroup_size_control.minSubgroupSize : info.subgroup.subgroupSize;
  max_subgroup = info.has_size_control_props ? info.subgroup_size_control.maxSubgroupSize : info.subgroup.subgroupSize;

  // ---- memory types, from the bits a storage buffer accepts
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = 256;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  VkBuffer probe = VK_NULL_HANDLE;
  check(fn.vkCreateBuffer(device, &bci, nullptr, &probe), "vkCreateBuffer", name);
  VkMemoryRequirements req;
  fn.vkGetBufferMemoryRequirements(device, probe, &req);
  fn.vkDestroyBuffer(device, probe, nullptr);
  const bool unified = info.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                       info.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
  const VkMemoryPropertyFlags mappable = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  device_memory_type = pick_memory_type(info.memory, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                        unified ? mappable : 0, unified ? 0 : VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
  if (device_memory_type == UINT32_MAX) device_memory_type = pick_memory_type(info.memory, req.memoryTypeBits, 0, 0, 0);
  if (device_memory_type == UINT32_MAX) throw DeviceError(cat("vulkan: ", name, ": no memory type for storage buffers"));
  device_memory_mapped =
      unified && (info.memory.memoryTypes[device_memory_type].propertyFlags & mappable) == mappable;
  staging_memory_type = pick_memory_type(info.memory, req.memoryTypeBits, mappable, VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
                                         VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  if (staging_memory_type == UINT32_MAX && !device_memory_mapped)
    throw DeviceError(cat("vulkan: ", name, ": no host-visible coherent memory for transfers"));

  // ---- command pool, transfer command buffer, pipeline cache
  VkCommandPoolCreateInfo pci{VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
  pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pci.queueFamilyIndex = queue_family;
  check(fn.vkCreateCommandPool(device, &pci, nullptr, &command_pool), "vkCreateCommandPool", name);
  VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
  cai.commandPool = command_pool;
  cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  cai.commandBufferCount = 1;
  check(fn.vkAllocateCommandBuffers(device, &cai, &transfer_cmd_), "vkAllocateCommandBuffers", name);
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  check(fn.vkCreateFence(device, &fci, nullptr, &transfer_fence_), "vkCreateFence", name);
  VkPipelineCacheCreateInfo cci{VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
  check(fn.vkCreatePipelineCache(device, &cci, nullptr, &pipeline_cache_), "vkCreatePipelineCache", name);
}

Context::~Context() {
  if (device == VK_NULL_HANDLE) return;
  fn.vkDeviceWaitIdle(device);
  for (auto& kv : pipelines_) fn.vkDestroyPipeline(device, kv.second->handle, nullptr);
  for (auto& kv : pipeline_layouts_) fn.vkDestroyPipelineLayout(device, kv.second, nullptr);
  for (auto& kv : set_layouts_) fn.vkDestroyDescriptorSetLayout(device, kv.second, nullptr);
  for (auto& kv : modules_) fn.vkDestroyShaderModule(device, kv.second, nullptr);
  if (pipeline_cache_) fn.vkDestroyPipelineCache(device, pipeline_cache_, nullptr);
  if (staging_) fn.vkDestroyBuffer(device, staging_, nullptr);
  if (staging_memory_) fn.vkFreeMemory(device, staging_memory_, nullptr);
  if (transfer_fence_) fn.vkDestroyFence(device, transfer_fence_, nullptr);
  if (command_pool) fn.vkDestroyCommandPool(device, command_pool, nullptr);
  fn.vkDestroyDevice(device, nullptr);
}

// ---------------------------------------------------------------- submission

void Context::submit_and_wait(VkCommandBuffer cmd, VkFence fence, const char* what, bool* submitted) {
  check(fn.vkResetFences(device, 1, &fence), "vkResetFences", name);
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  check(fn.vkQueueSubmit(queue, 1, &si, fence), what, name);
  if (submitted) *submitted = true;
  VkResult r = fn.vkWaitForFences(device, 1, &fence, VK_TRUE, wait_timeout_ns);
  if (r == VK_TIMEOUT)
    throw DeviceError(cat("vulkan: ", what, " on ", name, " did not finish within ", wait_timeout_ns / 1e9,
                          " s (EK_VULKAN_TIMEOUT_S)"));
  check(r, what, name);
}

template <class F>
void Context::one_shot(const char* what, F&& record) {
  // vkBeginCommandBuffer resets it (the pool allows individual resets).
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(fn.vkBeginCommandBuffer(transfer_cmd_, &bi), "vkBeginCommandBuffer", name);
  record(transfer_cmd_);
  check(fn.vkEndCommandBuffer(transfer_cmd_), "vkEndCommandBuffer", name);
  submit_and_wait(transfer_cmd_, transfer_fence_, what);
}

// ---------------------------------------------------------------- buffers

std::shared_ptr<VulkanBuffer> Context::create_buffer(uint64_t bytes) {
  const uint64_t alloc = round_up(std::max<uint64_t>(bytes, 16), 16);
  if (alloc > max_allocation)
    throw OutOfMemory(cat("vulkan: buffer of ", bytes, " bytes exceeds ", name, "'s largest allocation (",
                          max_allocation, " bytes)"));
  std::shared_ptr<VulkanBuffer> b(new VulkanBuffer());
  b->ctx_ = shared_from_this();
  b->size_ = bytes;
  b->allocated_ = alloc;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = alloc;
  bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(fn.vkCreateBuffer(device, &bci, nullptr, &b->handle_), "vkCreateBuffer", name);
  VkMemoryRequirements req;
  fn.vkGetBufferMemoryRequirements(device, b->handle_, &req);
  // The type chosen at init accepts storage buffers in general; should this
  // buffer's requirements exclude it, any device-local type it allows will do.
  uint32_t type = device_memory_type;
  bool map = device_memory_mapped;
  if (!(req.memoryTypeBits & (1u << type))) {
    type = pick_memory_type(memory_props, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, 0);
    if (type == UINT32_MAX) type = pick_memory_type(memory_props, req.memoryTypeBits, 0, 0, 0);
    if (type == UINT32_MAX) throw DeviceError(cat("vulkan: ", name, ": no memory type for a storage buffer"));
    const VkMemoryPropertyFlags mappable = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    map = map && (memory_props.memoryTypes[type].propertyFlags & mappable) == mappable;
  }
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = type;
  VkResult r = fn.vkAllocateMemory(device, &mai, nullptr, &b->memory_);
  if (r != VK_SUCCESS) {
    b->memory_ = VK_NULL_HANDLE;
    check(r, cat("vkAllocateMemory(", bytes, " bytes)").c_str(), name);
  }
  check(fn.vkBindBufferMemory(device, b->handle_, b->memory_, 0), "vkBindBufferMemory", name);
  if (map) check(fn.vkMapMemory(device, b->memory_, 0, VK_WHOLE_SIZE, 0, &b->mapped_), "vkMapMemory", name);
  return b;
}

void Context::destroy_buffer(VulkanBuffer& b) {
  // Every submission is waited for before it returns, so nothing in flight uses b.
  if (b.mapped_) fn.vkUnmapMemory(device, b.memory_);
  if (b.handle_) fn.vkDestroyBuffer(device, b.handle_, nullptr);
  if (b.memory_) fn.vkFreeMemory(device, b.memory_, nullptr);
}

void Context::ensure_staging(uint64_t bytes) {
  if (staging_size_ >= bytes) return;
  if (staging_) fn.vkDestroyBuffer(device, staging_, nullptr);
  if (staging_memory_) fn.vkFreeMemory(device, staging_memory_, nullptr);
  staging_ = VK_NULL_HANDLE;
  staging_memory_ = VK_NULL_HANDLE;
  staging_size_ = 0;
  const uint64_t size = std::max<uint64_t>(round_up(bytes, 1 << 20), 1 << 20);
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = size;
  bci.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  check(fn.vkCreateBuffer(device, &bci, nullptr, &staging_), "vkCreateBuffer(staging)", name);
  VkMemoryRequirements req;
  fn.vkGetBufferMemoryRequirements(device, staging_, &req);
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = staging_memory_type;
  if (!(req.memoryTypeBits & (1u << staging_memory_type)))
    mai.memoryTypeIndex = pick_memory_type(memory_props, req.memoryTypeBits,
                                           VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                           VK_MEMORY_PROPERTY_HOST_CACHED_BIT, 0);
  if (mai.memoryTypeIndex == UINT32_MAX) throw DeviceError(cat("vulkan: ", name, ": no host-visible memory for staging"));
  check(fn.vkAllocateMemory(device, &mai, nullptr, &staging_memory_), "vkAllocateMemory(staging)", name);
  check(fn.vkBindBufferMemory(device, staging_, staging_memory_, 0), "vkBindBufferMemory(staging)", name);
  check(fn.vkMapMemory(device, staging_memory_, 0, VK_WHOLE_SIZE, 0, &staging_mapped_), "vkMapMemory(staging)", name);
  staging_size_ = size;
}

namespace {
void check_range(const VulkanBuffer& b, uint64_t offset, uint64_t bytes, const char* what) {
  EK_CHECK_ARG(offset <= b.allocated() && bytes <= b.allocated() - offset, "vulkan: ", what, " of ", bytes,
               " bytes at offset ", offset, " is outside the buffer of ", b.allocated(), " bytes");
}
}  // namespace

void Context::upload(const VulkanBuffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
  check_range(dst, offset, bytes, "upload");
  if (bytes == 0) return;
  if (dst.mapped_) {
    std::memcpy(static_cast<char*>(dst.mapped_) + offset, src, bytes);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex);
  ensure_staging(std::min(bytes, kStagingMax));
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(bytes - done, staging_size_);
    std::memcpy(staging_mapped_, static_cast<const char*>(src) + done, n);
    one_shot("upload", [&](VkCommandBuffer cmd) {
      VkBufferCopy region{0, offset + done, n};
      fn.vkCmdCopyBuffer(cmd, staging_, dst.handle_, 1, &region);
      VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT;
      fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0,
                              nullptr, 0, nullptr);
    });
    done += n;
  }
}

void Context::download(const VulkanBuffer& src, uint64_t offset, void* dst, uint64_t bytes) {
  check_range(src, offset, bytes, "download");
  if (bytes == 0) return;
  if (src.mapped_) {
    std::memcpy(dst, static_cast<const char*>(src.mapped_) + offset, bytes);
    return;
  }
  std::lock_guard<std::mutex> lock(mutex);
  ensure_staging(std::min(bytes, kStagingMax));
  for (uint64_t done = 0; done < bytes;) {
    const uint64_t n = std::min(bytes - done, staging_size_);
    one_shot("download", [&](VkCommandBuffer cmd) {
      VkMemoryBarrier before{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      before.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
      before.dstAccessMask = VK_ACCESS_TRANSFER_READ_BIT;
      fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                              VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &before, 0, nullptr, 0, nullptr);
      VkBufferCopy region{offset + done, 0, n};
      fn.vkCmdCopyBuffer(cmd, src.handle_, staging_, 1, &region);
      VkMemoryBarrier after{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      after.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
      after.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
      fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &after, 0,
                              nullptr, 0, nullptr);
    });
    std::memcpy(static_cast<char*>(dst) + done, staging_mapped_, n);
    done += n;
  }
}

// ---------------------------------------------------------------- pipelines

VkDescriptorSetLayout Context::set_layout(uint32_t bindings) {
  auto it = set_layouts_.find(bindings);
  if (it != set_layouts_.end()) return it->second;
  std::vector<VkDescriptorSetLayoutBinding> b(bindings);
  for (uint32_t i = 0; i < bindings; ++i) {
    b[i].binding = i;
    b[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    b[i].descriptorCount = 1;
    b[i].stageFlags = VK_SHADER_STAGE_COMPUTE_BIT;
  }
  VkDescriptorSetLayoutCreateInfo ci{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
  ci.bindingCount = bindings;
  ci.pBindings = b.data();
  VkDescriptorSetLayout layout = VK_NULL_HANDLE;
  check(fn.vkCreateDescriptorSetLayout(device, &ci, nullptr, &layout), "vkCreateDescriptorSetLayout", name);
  set_layouts_[bindings] = layout;
  return layout;
}

const Pipeline& Context::pipeline(const std::string& shader, const std::vector<uint32_t>& spec, uint32_t bindings,
                                  uint32_t push_bytes, uint32_t required_subgroup_size) {
  std::lock_guard<std::mutex> lock(mutex);
  Key key{shader, spec, bindings, push_bytes, required_subgroup_size};
  auto found = pipelines_.find(key);
  if (found != pipelines_.end()) {
    ++hits_;
    return *found->second;
  }

  if (required_subgroup_size) {
    if (!subgroup_size_control)
      throw Unsupported(cat("vulkan: ", shader, " asks for subgroup size ", required_subgroup_size, " but ", name,
                            " cannot set subgroup sizes"));
    if (required_subgroup_size < min_subgroup || required_subgroup_size > max_subgroup ||
        (required_subgroup_size & (required_subgroup_size - 1)))
      throw Unsupported(cat("vulkan: ", shader, " asks for subgroup size ", required_subgroup_size, "; ", name,
                            " supports ", min_subgroup, "..", max_subgroup));
  }

  VkShaderModule module = VK_NULL_HANDLE;
  auto mit = modules_.find(shader);
  if (mit != modules_.end()) {
    module = mit->second;
  } else {
    const EmbeddedFile* spv = find_embedded(shader);
    if (!spv)
      throw NotFound(cat("vulkan: shader '", shader, "' is not in this build (not compiled, or its glslc "
                                                     "extensions were missing at build time)"));
    if (spv->size == 0 || spv->size % 4 != 0)
      throw DeviceError(cat("vulkan: embedded shader '", shader, "' is not SPIR-V (", spv->size, " bytes)"));
    VkShaderModuleCreateInfo ci{VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
    ci.codeSize = spv->size;
    ci.pCode = reinterpret_cast<const uint32_t*>(spv->data);  // the generated arrays are 4-byte aligned
    check(fn.vkCreateShaderModule(device, &ci, nullptr, &module), cat("vkCreateShaderModule(", shader, ")").c_str(),
          name);
    modules_[shader] = module;
  }

  VkPipelineLayout layout = VK_NULL_HANDLE;
  auto lit = pipeline_layouts_.find({bindings, push_bytes});
  if (lit != pipeline_layouts_.end()) {
    layout = lit->second;
  } else {
    VkDescriptorSetLayout set = set_layout(bindings);
    VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes};
    VkPipelineLayoutCreateInfo ci{VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
    ci.setLayoutCount = 1;
    ci.pSetLayouts = &set;
    ci.pushConstantRangeCount = push_bytes ? 1 : 0;
    ci.pPushConstantRanges = &range;
    check(fn.vkCreatePipelineLayout(device, &ci, nullptr, &layout), "vkCreatePipelineLayout", name);
    pipeline_layouts_[{bindings, push_bytes}] = layout;
  }

  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo si{};
  si.mapEntryCount = static_cast<uint32_t>(entries.size());
  si.pMapEntries = entries.data();
  si.dataSize = spec.size() * 4;
  si.pData = spec.data();

  VkPipelineShaderStageRequiredSubgroupSizeCreateInfo sg{
      VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO};
  sg.requiredSubgroupSize = required_subgroup_size;
  VkComputePipelineCreateInfo ci{VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.pNext = required_subgroup_size ? &sg : nullptr;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module;
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = spec.empty() ? nullptr : &si;
  ci.layout = layout;
  auto p = std::make_unique<Pipeline>();
  p->layout = layout;
  p->bindings = bindings;
  p->push_bytes = push_bytes;
  check(fn.vkCreateComputePipelines(device, pipeline_cache_, 1, &ci, nullptr, &p->handle),
        cat("vkCreateComputePipelines(", shader, ")").c_str(), name);
  ++misses_;
  const Pipeline& out = *p;
  pipelines_[key] = std::move(p);
  return out;
}

VulkanDevice::PipelineStats Context::stats() const {
  std::lock_guard<std::mutex> lock(mutex);
  return {hits_, misses_, pipelines_.size()};
}

}  // namespace vk

// ---------------------------------------------------------------- public classes

VulkanBuffer::~VulkanBuffer() {
  if (ctx_) ctx_->destroy_buffer(*this);
}

PushConstants& PushConstants::u32(uint32_t v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  bytes_.insert(bytes_.end(), p, p + 4);
  return *this;
}
PushConstants& PushConstants::i32(int32_t v) { return u32(static_cast<uint32_t>(v)); }
PushConstants& PushConstants::f32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u32(u);
}

uint32_t spec_f32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}

VulkanDevice::VulkanDevice(std::shared_ptr<vk::Context> ctx) : ctx_(std::move(ctx)) {}
VulkanDevice::~VulkanDevice() = default;

std::shared_ptr<VulkanBuffer> VulkanDevice::create_buffer(uint64_t bytes) { return ctx_->create_buffer(bytes); }
void VulkanDevice::upload(const VulkanBuffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
  EK_CHECK_ARG(dst.ctx_ == ctx_, "vulkan: upload to a buffer of another device");
  ctx_->upload(dst, offset, src, bytes);
}
void VulkanDevice::download(const VulkanBuffer& src, uint64_t offset, void* dst, uint64_t bytes) {
  EK_CHECK_ARG(src.ctx_ == ctx_, "vulkan: download from a buffer of another device");
  ctx_->download(src, offset, dst, bytes);
}
uint64_t VulkanDevice::max_storage_range() const { return ctx_->max_storage_range; }
uint64_t VulkanDevice::storage_offset_alignment() const {
  return std::max<uint64_t>(ctx_->limits.minStorageBufferOffsetAlignment, 4);
}
uint32_t VulkanDevice::max_group_count(int axis) const { return ctx_->limits.maxComputeWorkGroupCount[axis]; }
uint32_t VulkanDevice::max_push_constant_bytes() const { return ctx_->limits.maxPushConstantsSize; }
bool VulkanDevice::has_timestamps() const { return ctx_->timestamp_valid_bits > 0; }
VulkanDevice::PipelineStats VulkanDevice::pipeline_stats() const { return ctx_->stats(); }

VulkanDevice& as_vulkan(Device& dev) {
  auto* v = dynamic_cast<VulkanDevice*>(&dev);
  if (!v) throw InvalidArgument(cat("vulkan kernel bound to a ", dev.backend(), " device (", dev.profile().label(), ")"));
  return *v;
}

// ---------------------------------------------------------------- registration

namespace {

std::vector<std::unique_ptr<Device>> enumerate_vulkan(DeviceScan& scan) {
  std::vector<std::unique_ptr<Device>> out;
  std::string why;
  const vk::Loader* loader = vk::load_vulkan(&why);
  if (!loader) {
    scan.notes.push_back(why);
    return out;
  }
  std::shared_ptr<vk::Instance> inst;
  try {
    inst = vk::create_instance(*loader);
  } catch (const std::exception& e) {
    scan.notes.push_back(e.what());
    return out;
  }
  uint32_t count = 0;
  VkResult r = inst->fn.vkEnumeratePhysicalDevices(inst->handle, &count, nullptr);
  std::vector<VkPhysicalDevice> pds(count);
  if (r == VK_SUCCESS || r == VK_INCOMPLETE) r = inst->fn.vkEnumeratePhysicalDevices(inst->handle, &count, pds.data());
  if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
    scan.notes.push_back(cat("vkEnumeratePhysicalDevices failed: ", vk::result_name(r)));
    return out;
  }
  pds.resize(count);
  if (pds.empty()) scan.notes.push_back("no Vulkan devices (no driver/ICD installed?)");
  for (uint32_t i = 0; i < pds.size(); ++i) {
    try {
      vk::PhysicalDeviceInfo info = vk::query_physical_device(*inst, pds[i]);
      auto dev = vk::Context::open(inst, info);
      const DeviceProfile& p = dev->profile();
      std::string sizes;
      for (int s : p.subgroup_sizes) sizes += (sizes.empty() ? "" : "/") + std::to_string(s);
      scan.notes.push_back(cat("device ", i, ": ", p.device_name, " (Vulkan ", p.api_version, ", ", p.driver_name,
                               " ", p.driver_version, ", subgroup ", sizes, ")"));
      out.push_back(std::move(dev));
    } catch (const std::exception& e) {
      scan.notes.push_back(cat("device ", i, " skipped: ", e.what()));
    }
  }
  return out;
}

const RegisterBackend reg({"vulkan", enumerate_vulkan, 1});

}  // namespace

}  // namespace ek
