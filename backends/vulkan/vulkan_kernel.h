// What an operator's Vulkan file (kernels/<op>/<op>_vulkan.cpp) needs: an
// Invocation that holds the call's tensors on the device and runs a sequence
// of dispatches of embedded shaders, plus eligibility helpers. A whole op:
//
//   std::unique_ptr<Invocation> bind(Device& d, const OpCall& call, const Tuning& t) {
//     const MyArgs a = MyArgs::parse(call);
//     auto inv = std::make_unique<VulkanOpInvocation>(d, call);  // inputs uploaded, outputs allocated
//     Dispatch k;
//     k.shader = "my_op/my_op.f32.spv";
//     k.spec = {uint32_t(tuning_value(t, "block", 256))}; // constant_id 0 = workgroup size
//     k.push.u32(a.n).f32(a.eps);
//     k.buffers = {inv->tensor("x"), inv->tensor_or_dummy("bias"), inv->tensor("y")};
//     k.groups = inv->grid(a.rows);                       // > 65535 groups spill into y
//     inv->dispatch(std::move(k));
//     return inv;
//   }
//
// and register it with RegisterKernel{KernelImpl{..., "vulkan", ...}} whose
// ineligible_reason uses vulkan_ineligible(profile, call, {features}, {shaders}).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/vulkan/vulkan_device.h"
#include "kernels/common/op.h"

namespace ek {

// An op call bound to a Vulkan device: every tensor of the call gets a device
// buffer (inputs uploaded now, outputs left for the kernel), dispatches are
// recorded once, execute() submits them, read_outputs() downloads the outputs.
class VulkanOpInvocation : public Invocation {
 public:
  // Throws InvalidArgument if `dev` is not a Vulkan device; Unsupported if a
  // tensor exceeds the device's storage-buffer range.
  VulkanOpInvocation(Device& dev, const OpCall& call);

  VulkanDevice& device() { return dev_; }
  // The whole buffer of a tensor of the call (throws InvalidArgument if absent).
  BufferBinding tensor(const std::string& name) const;
  // For optional tensors: the tensor's buffer, or a small placeholder when the
  // call has none (the shader must not read it then: pass a flag).
  BufferBinding tensor_or_dummy(const std::string& name);
  // A device buffer of the invocation's own (scratch, partial sums), kept for its lifetime.
  BufferBinding scratch(uint64_t bytes);

  // Group counts for `groups` workgroups along one logical axis: x up to the
  // device limit, the rest in y. Shaders compute the linear group as
  // gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x and skip ids >= the count.
  std::array<uint32_t, 3> grid(uint64_t groups) const;

  // Appends a dispatch (checked and its pipeline created now).
  void dispatch(Dispatch d) { seq_.add(std::move(d)); }

  void execute() override { seq_.run(); }
  double last_device_seconds() const override { return seq_.last_seconds(); }
  void read_outputs() override;

 private:
  VulkanDevice& dev_;
  OpCall call_;
  std::map<std::string, std::shared_ptr<VulkanBuffer>> buffers_;
  std::map<std::string, bool> is_output_;
  std::shared_ptr<VulkanBuffer> dummy_;
  std::vector<std::shared_ptr<VulkanBuffer>> scratch_;
  VulkanSequence seq_;
};

// Eligibility helpers; each returns "" when fine, else the reason.
// Features the profile must have ("subgroup_arith", ...; honours EK_DISABLE_FEATURES).
std::string vulkan_missing_features(const DeviceProfile& p, const std::vector<std::string>& features);
// Every tensor of the call must fit one storage binding (max_buffer_bytes).
std::string vulkan_oversized_tensors(const DeviceProfile& p, const OpCall& call);
// The shaders must be in this build (variants needing a glslc extension may be absent).
std::string vulkan_missing_shaders(const std::vector<std::string>& shaders);
// All three, in that order.
std::string vulkan_ineligible(const DeviceProfile& p, const OpCall& call, const std::vector<std::string>& features,
                              const std::vector<std::string>& shaders);

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// A tunable's value, or `def` when the tuning does not name it.
inline int64_t tuning_value(const Tuning& t, const std::string& name, int64_t def) {
  auto it = t.find(name);
  return it == t.end() ? def : it->second;
}

}  // namespace ek
