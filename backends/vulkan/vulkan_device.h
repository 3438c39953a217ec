// The Vulkan backend: one VulkanDevice per physical device, with a compute
// queue, storage buffers, host transfers, a pipeline cache keyed by (shader,
// specialization constants), and VulkanSequence, a fixed list of dispatches
// recorded once and submitted as often as needed with timestamp timing.
//
// Operator code normally uses the smaller layer in vulkan_kernel.h
// (VulkanOpInvocation); this header is the plumbing under it.
//
// Conventions every shader of the project follows:
//   - storage buffers are bindings 0..N-1 of descriptor set 0, in the order of
//     Dispatch::buffers;
//   - specialization constant i is Dispatch::spec[i] (32-bit: uint, int, float
//     bits or bool 0/1); constant 0 is the workgroup size x by convention
//     (layout(local_size_x_id = 0) in;) where a shader's size is tunable;
//   - push constants are one block of 4-byte scalars (PushConstants);
//   - no shader assumes a subgroup size: it reads gl_SubgroupSize (lavapipe: 8,
//     NVIDIA: 32, AMD: 32/64, Intel: 8..32, Adreno: 64/128).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/common/device.h"
#include "backends/vulkan/vulkan_api.h"

namespace ek {

namespace vk {
class Context;  // VkDevice, queue, caches; shared by the device and its buffers
}

// A device-side storage buffer. Sizes are padded to 16 bytes so vec4/uvec2
// views of a tensor bound whole never leave the allocation; the padding's
// contents are undefined, kernels mask it.
class VulkanBuffer {
 public:
  ~VulkanBuffer();
  VulkanBuffer(const VulkanBuffer&) = delete;
  VulkanBuffer& operator=(const VulkanBuffer&) = delete;

  uint64_t size() const { return size_; }            // bytes asked for
  uint64_t allocated() const { return allocated_; }  // bytes bindable (>= size, multiple of 16)
  VkBuffer handle() const { return handle_; }

 private:
  friend class vk::Context;
  friend class VulkanDevice;
  friend class VulkanSequence;
  VulkanBuffer() = default;
  std::shared_ptr<vk::Context> ctx_;
  uint64_t size_ = 0, allocated_ = 0;
  VkBuffer handle_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  void* mapped_ = nullptr;  // set when the memory is host-visible (unified memory)
};

// A range of a buffer bound to one binding. range 0 = to the end of the buffer
// (its padded size). offset must be a multiple of the device's
// minStorageBufferOffsetAlignment.
struct BufferBinding {
  std::shared_ptr<VulkanBuffer> buffer;
  uint64_t offset = 0;
  uint64_t range = 0;
};

// Push-constant bytes, one 4-byte scalar after another, as a GLSL
// `layout(push_constant) uniform P { uint a; int b; float c; } pc;` lays them out.
class PushConstants {
 public:
  PushConstants& u32(uint32_t v);
  PushConstants& i32(int32_t v);
  PushConstants& f32(float v);
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

// Specialization-constant value helpers (all constants are 32-bit words).
uint32_t spec_f32(float v);
inline uint32_t spec_bool(bool v) { return v ? 1u : 0u; }

// One compute dispatch.
struct Dispatch {
  std::string shader;                  // embedded SPIR-V: "rms_norm/rms_norm.subgroup.f32.spv"
  std::vector<uint32_t> spec;          // specialization constants, constant_id = index
  PushConstants push;
  std::vector<BufferBinding> buffers;  // set 0, binding i
  std::array<uint32_t, 3> groups{{1, 1, 1}};  // a 0 anywhere: nothing to do, not dispatched
  uint32_t required_subgroup_size = 0;        // 0: the driver's choice (needs subgroup_size_control otherwise)
};

class VulkanDevice : public Device {
 public:
  ~VulkanDevice() override;

  // ---- memory
  // A device-local storage buffer (on unified-memory devices also host-mapped).
  std::shared_ptr<VulkanBuffer> create_buffer(uint64_t bytes);
  // Host <-> device copies (mapped memcpy on unified memory, else through a
  // staging buffer); they wait for completion. Ranges are checked.
  void upload(const VulkanBuffer& dst, uint64_t offset, const void* src, uint64_t bytes);
  void download(const VulkanBuffer& src, uint64_t offset, void* dst, uint64_t bytes);

  // ---- limits the dispatch layer checks
  uint64_t max_storage_range() const;    // maxStorageBufferRange (lavapipe: 128 MiB)
  uint64_t storage_offset_alignment() const;
  uint32_t max_group_count(int axis) const;
  uint32_t max_push_constant_bytes() const;
  bool has_timestamps() const;

  // ---- pipeline cache (one pipeline per shader + specialization + layout)
  struct PipelineStats {
    uint64_t hits = 0, misses = 0;
    size_t pipelines = 0;
  };
  PipelineStats pipeline_stats() const;

  void measure_peaks(double seconds_budget) override;

  const std::shared_ptr<vk::Context>& context() const { return ctx_; }

 private:
  friend class vk::Context;
  explicit VulkanDevice(std::shared_ptr<vk::Context> ctx);
  std::shared_ptr<vk::Context> ctx_;
};

// Downcast for kernel code; throws InvalidArgument when `dev` is another backend's.
VulkanDevice& as_vulkan(Device& dev);

// A fixed sequence of dispatches on one device, recorded into one command
// buffer at the first run() after a change and submitted on every run(), with
// a barrier between consecutive dispatches (each sees the previous one's
// writes) and timestamps around the whole sequence.
class VulkanSequence {
 public:
  explicit VulkanSequence(VulkanDevice& dev);
  ~VulkanSequence();
  VulkanSequence(const VulkanSequence&) = delete;
  VulkanSequence& operator=(const VulkanSequence&) = delete;

  // Checks the dispatch against the device (shader present, bindings within
  // maxStorageBufferRange and their buffers, push size, group counts) and
  // creates or finds its pipeline, so every error surfaces here, at bind time.
  void add(Dispatch d);
  size_t size() const;
  // Submits the sequence and waits for it.
  void run();
  // Device seconds of the last run() (timestamps), 0 when nothing was
  // dispatched, negative when the queue has no timestamps.
  double last_seconds() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace ek
