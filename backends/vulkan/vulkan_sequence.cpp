// VulkanSequence: dispatches recorded once into a command buffer (with their
// descriptor sets) and submitted on every run, timed with timestamp queries.
#include <algorithm>

#include "backends/vulkan/vulkan_context.h"
#include "kernels/common/error.h"

namespace ek {

struct VulkanSequence::State {
  std::shared_ptr<vk::Context> ctx;
  struct Entry {
    Dispatch d;
    const vk::Pipeline* pipeline = nullptr;
    bool active = false;  // false: a group count is 0, nothing to dispatch
  };
  std::vector<Entry> entries;
  bool dirty = true;
  bool timestamps = false;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  VkQueryPool queries = VK_NULL_HANDLE;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  double last = 0;
  bool submitted = false;  // the fence belongs to a submission

  void record();
  ~State();
};

VulkanSequence::State::~State() {
  const auto& fn = ctx->fn;
  std::lock_guard<std::mutex> lock(ctx->mutex);
  // After a timed-out run the command buffer may still be executing: then its
  // objects are leaked rather than freed under the device's feet.
  if (submitted && fn.vkWaitForFences(ctx->device, 1, &fence, VK_TRUE, ctx->wait_timeout_ns) != VK_SUCCESS) return;
  if (cmd) fn.vkFreeCommandBuffers(ctx->device, ctx->command_pool, 1, &cmd);
  if (pool) fn.vkDestroyDescriptorPool(ctx->device, pool, nullptr);
  if (queries) fn.vkDestroyQueryPool(ctx->device, queries, nullptr);
  if (fence) fn.vkDestroyFence(ctx->device, fence, nullptr);
}

VulkanSequence::VulkanSequence(VulkanDevice& dev) : s_(new State) {
  s_->ctx = dev.context();
  s_->timestamps = dev.has_timestamps();
  vk::Context& c = *s_->ctx;
  VkFenceCreateInfo fci{VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  vk::check(c.fn.vkCreateFence(c.device, &fci, nullptr, &s_->fence), "vkCreateFence", c.name);
  if (s_->timestamps) {
    VkQueryPoolCreateInfo qci{VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qci.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qci.queryCount = 2;
    vk::check(c.fn.vkCreateQueryPool(c.device, &qci, nullptr, &s_->queries), "vkCreateQueryPool", c.name);
  }
}

VulkanSequence::~VulkanSequence() = default;

size_t VulkanSequence::size() const { return s_->entries.size(); }

void VulkanSequence::add(Dispatch d) {
  vk::Context& c = *s_->ctx;
  const std::string& sh = d.shader;
  EK_CHECK_ARG(!sh.empty(), "vulkan: dispatch without a shader name");
  const uint64_t align = std::max<uint64_t>(c.limits.minStorageBufferOffsetAlignment, 4);
  for (size_t i = 0; i < d.buffers.size(); ++i) {
    BufferBinding& b = d.buffers[i];
    EK_CHECK_ARG(b.buffer != nullptr, "vulkan: ", sh, ": binding ", i, " has no buffer");
    EK_CHECK_ARG(b.buffer->ctx_.get() == &c, "vulkan: ", sh, ": binding ", i, " is a buffer of another device");
    EK_CHECK_ARG(b.offset % align == 0, "vulkan: ", sh, ": binding ", i, " offset ", b.offset,
                 " is not a multiple of minStorageBufferOffsetAlignment ", align);
    EK_CHECK_ARG(b.offset < b.buffer->allocated(), "vulkan: ", sh, ": binding ", i, " offset ", b.offset,
                 " is outside its buffer of ", b.buffer->allocated(), " bytes");
    if (b.range == 0) {
      b.range = b.buffer->allocated() - b.offset;
      // The 16-byte padding must not push a tensor that fits over the limit
      // (NVIDIA's range is 2^32 - 1, not a multiple of 16).
      if (b.range > c.max_storage_range && b.buffer->size() - std::min(b.buffer->size(), b.offset) <= c.max_storage_range)
        b.range = c.max_storage_range / 4 * 4;
    }
    EK_CHECK_ARG(b.range <= b.buffer->allocated() - b.offset, "vulkan: ", sh, ": binding ", i, " range ", b.range,
                 " at offset ", b.offset, " exceeds its buffer of ", b.buffer->allocated(), " bytes");
    if (b.range > c.max_storage_range)
      throw Unsupported(cat("vulkan: ", sh, ": binding ", i, " spans ", b.range, " bytes, more than ", c.name,
                            "'s maxStorageBufferRange of ", c.max_storage_range, " bytes"));
  }
  const size_t push = d.push.bytes().size();
  if (push > c.limits.maxPushConstantsSize)
    throw Unsupported(cat("vulkan: ", sh, ": ", push, " bytes of push constants, ", c.name, " allows ",
                          c.limits.maxPushConstantsSize));
  bool active = true;
  for (int a = 0; a < 3; ++a) {
    if (d.groups[a] == 0) active = false;
    if (d.groups[a] > c.limits.maxComputeWorkGroupCount[a])
      throw Unsupported(cat("vulkan: ", sh, ": ", d.groups[a], " workgroups on axis ", a, ", ", c.name, " allows ",
                            c.limits.maxComputeWorkGroupCount[a]));
  }
  State::Entry e;
  e.pipeline = &c.pipeline(sh, d.spec, static_cast<uint32_t>(d.buffers.size()), static_cast<uint32_t>(push),
                           d.required_subgroup_size);
  e.active = active;
  e.d = std::move(d);
  s_->entries.push_back(std::move(e));
  s_->dirty = true;
}

void VulkanSequence::State::record() {
  vk::Context& c = *ctx;
  const auto& fn = c.fn;
  std::lock_guard<std::mutex> lock(c.mutex);

  // Descriptor sets: one per active dispatch that binds buffers.
  if (pool) {
    fn.vkDestroyDescriptorPool(c.device, pool, nullptr);
    pool = VK_NULL_HANDLE;
  }
  uint32_t sets = 0, descriptors = 0;
  for (const Entry& e : entries)
    if (e.active && !e.d.buffers.empty()) {
      ++sets;
      descriptors += static_cast<uint32_t>(e.d.buffers.size());
    }
  std::vector<VkDescriptorSet> set_of(entries.size(), VK_NULL_HANDLE);
  if (sets) {
    VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptors};
    VkDescriptorPoolCreateInfo pci{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    pci.maxSets = sets;
    pci.poolSizeCount = 1;
    pci.pPoolSizes = &size;
    vk::check(fn.vkCreateDescriptorPool(c.device, &pci, nullptr, &pool), "vkCreateDescriptorPool", c.name);
    std::vector<VkDescriptorBufferInfo> infos;
    infos.reserve(descriptors);
    std::vector<VkWriteDescriptorSet> writes;
    writes.reserve(descriptors);
    for (size_t i = 0; i < entries.size(); ++i) {
      const Entry& e = entries[i];
      if (!e.active || e.d.buffers.empty()) continue;
      VkDescriptorSetLayout layout = c.set_layout(static_cast<uint32_t>(e.d.buffers.size()));
      VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
      ai.descriptorPool = pool;
      ai.descriptorSetCount = 1;
      ai.pSetLayouts = &layout;
      vk::check(fn.vkAllocateDescriptorSets(c.device, &ai, &set_of[i]), "vkAllocateDescriptorSets", c.name);
      for (size_t b = 0; b < e.d.buffers.size(); ++b) {
        const BufferBinding& bb = e.d.buffers[b];
        infos.push_back({bb.buffer->handle(), bb.offset, bb.range});
        VkWriteDescriptorSet w{VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
        w.dstSet = set_of[i];
        w.dstBinding = static_cast<uint32_t>(b);
        w.descriptorCount = 1;
        w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
        w.pBufferInfo = &infos.back();
        writes.push_back(w);
      }
    }
    fn.vkUpdateDescriptorSets(c.device, static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
  }

  if (!cmd) {
    VkCommandBufferAllocateInfo cai{VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    cai.commandPool = c.command_pool;
    cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cai.commandBufferCount = 1;
    vk::check(fn.vkAllocateCommandBuffers(c.device, &cai, &cmd), "vkAllocateCommandBuffers", c.name);
  }
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  vk::check(fn.vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer", c.name);
  if (timestamps) fn.vkCmdResetQueryPool(cmd, queries, 0, 2);
  // Earlier uploads, host writes and earlier runs of this or other sequences
  // (the same buffers may be written again) come before the first dispatch.
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  fn.vkCmdPipelineBarrier(cmd,
                          VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                              VK_PIPELINE_STAGE_HOST_BIT,
                          VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  if (timestamps) fn.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, queries, 0);
  bool first = true;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (!e.active) continue;
    if (!first) {
      VkMemoryBarrier between{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
      between.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
      between.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
      fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                              &between, 0, nullptr, 0, nullptr);
    }
    first = false;
    fn.vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, e.pipeline->handle);
    if (set_of[i])
      fn.vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, e.pipeline->layout, 0, 1, &set_of[i], 0,
                                 nullptr);
    const auto& push = e.d.push.bytes();
    if (!push.empty())
      fn.vkCmdPushConstants(cmd, e.pipeline->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0,
                            static_cast<uint32_t>(push.size()), push.data());
    fn.vkCmdDispatch(cmd, e.d.groups[0], e.d.groups[1], e.d.groups[2]);
  }
  if (timestamps) fn.vkCmdWriteTimestamp(cmd, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries, 1);
  VkMemoryBarrier out{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  out.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  out.dstAccessMask = VK_ACCESS_HOST_READ_BIT | VK_ACCESS_TRANSFER_READ_BIT;
  fn.vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                          VK_PIPELINE_STAGE_HOST_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &out, 0, nullptr, 0,
                          nullptr);
  vk::check(fn.vkEndCommandBuffer(cmd), "vkEndCommandBuffer", c.name);
  dirty = false;
}

void VulkanSequence::run() {
  State& s = *s_;
  if (std::none_of(s.entries.begin(), s.entries.end(), [](const State::Entry& e) { return e.active; })) {
    s.last = 0;  // nothing to do: zero-size work is not dispatched
    return;
  }
  if (s.dirty) s.record();
  vk::Context& c = *s.ctx;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.submit_and_wait(s.cmd, s.fence, "vkQueueSubmit(dispatch)", &s.submitted);
  }
  if (!s.timestamps) {
    s.last = -1;
    return;
  }
  uint64_t ts[2] = {0, 0};
  vk::check(c.fn.vkGetQueryPoolResults(c.device, s.queries, 0, 2, sizeof ts, ts, sizeof(uint64_t),
                                       VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
            "vkGetQueryPoolResults", c.name);
  const uint64_t mask = c.timestamp_valid_bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << c.timestamp_valid_bits) - 1;
  const uint64_t ticks = ((ts[1] & mask) - (ts[0] & mask)) & mask;
  s.last = static_cast<double>(ticks) * c.timestamp_period_ns * 1e-9;
}

double VulkanSequence::last_seconds() const { return s_->last; }

}  // namespace ek
