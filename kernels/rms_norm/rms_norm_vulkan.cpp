// Vulkan kernels of rms_norm (shader: rms_norm.comp). Two registered variants
// differ only in the workgroup reduction: "subgroup" (subgroup arithmetic,
// preferred) and "shared" (shared-memory tree, for devices without it). Each
// handles f32 and f16 x and the gated form.
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/rms_norm/rms_norm.h"

namespace ek {
namespace {

std::string shader_for(const char* reduce, const OpCall& call) {
  const TensorRef* x = call.find("x");
  const bool f16 = x && x->dtype == DType::f16;
  return cat("rms_norm/rms_norm.", reduce, f16 ? ".f16" : ".f32", ".spv");
}

// The workgroup size: the tuned value (0 = from the device), lowered to a
// power of two the device allows and to no more invocations than the row has
// work items (a dim=16 row does not get 256), but at least one subgroup.
// Device default: GPUs 256; CPU Vulkan drivers (lavapipe) one subgroup, since
// they run a workgroup's subgroups one after another and every barrier
// switches between them (measured 2x faster at T=512 than 64 invocations).
uint32_t workgroup_size(const DeviceProfile& p, int64_t block, int64_t work_items) {
  const int64_t sg_min = p.subgroup_sizes.empty() ? 1 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
  const int64_t sg_max = p.subgroup_sizes.empty() ? 1 : *std::max_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
  if (block <= 0) block = p.device_class == "cpu" ? sg_max : 256;
  const int64_t limit = std::min<int64_t>(block, std::max(1, p.max_workgroup_size));
  uint32_t wg = 1;
  while (int64_t(wg) * 2 <= limit) wg *= 2;
  uint32_t need = 1;
  while (int64_t(need) < std::max(work_items, sg_min)) need *= 2;
  return std::min(wg, need);
}

KernelImpl make_kernel(const char* reduce, int priority, std::vector<std::string> features, const char* doc) {
  KernelImpl k;
  k.op = "rms_norm";
  k.backend = "vulkan";
  k.variant = reduce;
  k.doc = doc;
  k.priority = priority;
  k.nmse_bound = 1e-7;  // fp32 accumulation; f16 inputs are read exactly
  k.tunables = {{"block", {8, 16, 32, 64, 128, 256, 512, 1024}, 0}};  // 0: from the device
  k.ineligible_reason = [reduce, features](const DeviceProfile& p, const OpCall& call) {
    return vulkan_ineligible(p, call, features, {shader_for(reduce, call)});
  };
  k.bind = [reduce](Device& d, const OpCall& call, const Tuning& t) -> std::unique_ptr<Invocation> {
    const RmsNormArgs a = RmsNormArgs::parse(call);
    auto inv = std::make_unique<VulkanOpInvocation>(d, call);
    Dispatch k;
    k.shader = shader_for(reduce, call);
    const int64_t work_items = a.dim % 4 == 0 ? a.dim / 4 : a.dim;  // quads or elements per row
    k.spec = {workgroup_size(d.profile(), tuning_value(t, "block", 0), work_items), spec_bool(a.gated)};
    k.push.u32(static_cast<uint32_t>(a.rows)).u32(static_cast<uint32_t>(a.dim)).f32(a.eps);
    k.buffers = {inv->tensor("x"), inv->tensor("w"), inv->tensor_or_dummy("z"), inv->tensor("y")};
    k.groups = inv->grid(static_cast<uint64_t>(a.rows));  // one workgroup per row
    inv->dispatch(std::move(k));
    return inv;
  };
  return k;
}

const RegisterKernel subgroup(make_kernel("subgroup", 20, {"subgroup_arith"},
                                          "one workgroup per row, subgroupAdd + shared partials"));
const RegisterKernel shared(make_kernel("shared", 10, {}, "one workgroup per row, shared-memory tree reduction"));

}  // namespace
}  // namespace ek
