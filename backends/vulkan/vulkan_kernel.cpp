#include "backends/vulkan/vulkan_kernel.h"

#include <algorithm>

#include "codegen/embedded.h"
#include "kernels/common/error.h"

namespace ek {

VulkanOpInvocation::VulkanOpInvocation(Device& dev, const OpCall& call)
    : dev_(as_vulkan(dev)), call_(call), seq_(dev_) {
  const OpDef* def = Registry::instance().find_op(call.op);
  for (const auto& kv : call.tensors) {
    bool output = false;
    if (def)
      for (const ArgSpec& a : def->args)
        if (a.name == kv.first) output = a.output;
    const TensorRef& t = kv.second;
    const uint64_t bytes = t.nbytes();
    if (bytes > dev_.max_storage_range())
      throw Unsupported(cat(call.op, ": tensor ", kv.first, " ", shape_str(t.shape), " is ", bytes, " bytes, more than ",
                            dev_.profile().device_name, "'s storage-buffer range of ", dev_.max_storage_range(),
                            " bytes"));
    auto buf = dev_.create_buffer(bytes);
    if (!output && bytes) dev_.upload(*buf, 0, t.data, bytes);
    buffers_[kv.first] = std::move(buf);
    is_output_[kv.first] = output;
  }
}

BufferBinding VulkanOpInvocation::tensor(const std::string& name) const {
  auto it = buffers_.find(name);
  if (it == buffers_.end()) throw InvalidArgument(cat(call_.op, ": missing tensor '", name, "'"));
  return {it->second, 0, 0};
}

BufferBinding VulkanOpInvocation::tensor_or_dummy(const std::string& name) {
  auto it = buffers_.find(name);
  if (it != buffers_.end()) return {it->second, 0, 0};
  if (!dummy_) dummy_ = dev_.create_buffer(16);
  return {dummy_, 0, 0};
}

BufferBinding VulkanOpInvocation::scratch(uint64_t bytes) {
  scratch_.push_back(dev_.create_buffer(bytes));
  return {scratch_.back(), 0, 0};
}

std::array<uint32_t, 3> VulkanOpInvocation::grid(uint64_t groups) const {
  if (groups == 0) return {{0, 1, 1}};
  const uint64_t max_x = dev_.max_group_count(0);
  if (groups <= max_x) return {{static_cast<uint32_t>(groups), 1, 1}};
  const uint64_t y = ceil_div(groups, max_x);
  if (y > dev_.max_group_count(1))
    throw Unsupported(cat(call_.op, ": ", groups, " workgroups exceed ", dev_.profile().device_name, "'s grid"));
  return {{static_cast<uint32_t>(ceil_div(groups, y)), static_cast<uint32_t>(y), 1}};
}

void VulkanOpInvocation::read_outputs() {
  for (const auto& kv : buffers_) {
    if (!is_output_[kv.first]) continue;
    const TensorRef& t = call_.tensors.at(kv.first);
    if (t.nbytes()) dev_.download(*kv.second, 0, t.data, t.nbytes());
  }
}

std::string vulkan_missing_features(const DeviceProfile& p, const std::vector<std::string>& features) {
  std::string missing;
  for (const std::string& f : features)
    if (!p.has(f)) missing += cat(missing.empty() ? "" : ", ", f);
  return missing.empty() ? "" : "device lacks " + missing;
}

std::string vulkan_oversized_tensors(const DeviceProfile& p, const OpCall& call) {
  if (p.max_buffer_bytes <= 0) return "";
  for (const auto& kv : call.tensors)
    if (static_cast<int64_t>(kv.second.nbytes()) > p.max_buffer_bytes)
      return cat("tensor ", kv.first, " is ", kv.second.nbytes(), " bytes, more than the device's storage-buffer range of ",
                 p.max_buffer_bytes, " bytes");
  return "";
}

std::string vulkan_missing_shaders(const std::vector<std::string>& shaders) {
  for (const std::string& s : shaders)
    if (!find_embedded(s)) return cat("shader ", s, " is not in this build (glslc lacked an extension it needs)");
  return "";
}

std::string vulkan_ineligible(const DeviceProfile& p, const OpCall& call, const std::vector<std::string>& features,
                              const std::vector<std::string>& shaders) {
  std::string why = vulkan_missing_features(p, features);
  if (why.empty()) why = vulkan_oversized_tensors(p, call);
  if (why.empty()) why = vulkan_missing_shaders(shaders);
  return why;
}

}  // namespace ek
