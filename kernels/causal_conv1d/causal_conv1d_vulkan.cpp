// Vulkan kernel of causal_conv1d (shader: causal_conv1d.comp): one invocation
// per (batch, token chunk, channel) sliding its window over the chunk; f32 and
// f16 x, widths 2..4, optional bias/state/SiLU via specialization constants.
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/causal_conv1d/causal_conv1d.h"

namespace ek {
namespace {

std::string shader_for(const OpCall& call) {
  const TensorRef* x = call.find("x");
  return x && x->dtype == DType::f16 ? "causal_conv1d/causal_conv1d.f16.spv" : "causal_conv1d/causal_conv1d.f32.spv";
}

std::unique_ptr<Invocation> bind(Device& d, const OpCall& call, const Tuning& t) {
  const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
  auto inv = std::make_unique<VulkanOpInvocation>(d, call);
  const uint32_t block = static_cast<uint32_t>(
      std::clamp<int64_t>(tuning_value(t, "block", 128), 1, std::max(1, inv->device().profile().max_workgroup_size)));
  // Tokens per invocation, 0 = from the device: GPUs 8 (parallelism over time
  // for prefill), CPU drivers 32 (fewer, longer invocations; measured ~1.5x
  // faster than 8 on lavapipe at T=512).
  int64_t want_chunk = tuning_value(t, "t_chunk", 0);
  if (want_chunk <= 0) want_chunk = d.profile().device_class == "cpu" ? 32 : 8;
  const uint32_t t_chunk = static_cast<uint32_t>(std::clamp<int64_t>(want_chunk, 1, 1 << 16));
  const uint64_t chunks = ceil_div(static_cast<uint64_t>(a.tokens), t_chunk);
  const uint64_t invocations = static_cast<uint64_t>(a.batch) * chunks * static_cast<uint64_t>(a.channels);
  Dispatch k;
  k.shader = shader_for(call);
  k.spec = {block, static_cast<uint32_t>(a.width), t_chunk, spec_bool(a.has_bias), spec_bool(a.has_state),
            spec_bool(a.silu)};
  k.push.u32(static_cast<uint32_t>(a.batch))
      .u32(static_cast<uint32_t>(a.tokens))
      .u32(static_cast<uint32_t>(a.channels))
      .u32(static_cast<uint32_t>(chunks));
  k.buffers = {inv->tensor("x"), inv->tensor("w"), inv->tensor_or_dummy("bias"), inv->tensor_or_dummy("s0"),
               inv->tensor("y"), inv->tensor("sT")};
  k.groups = inv->grid(ceil_div(invocations, block));
  inv->dispatch(std::move(k));
  return inv;
}

KernelImpl make_kernel() {
  KernelImpl k;
  k.op = "causal_conv1d";
  k.backend = "vulkan";
  k.variant = "time_chunked";
  k.doc = "one invocation per (batch, T_CHUNK tokens, channel), sliding register window";
  k.priority = 10;
  k.nmse_bound = 1e-7;  // fp32 accumulation; f16 inputs are read exactly
  k.tunables = {{"block", {64, 128, 256, 512}, 128}, {"t_chunk", {1, 4, 8, 16, 32, 64}, 0}};  // 0: from the device
  k.ineligible_reason = [](const DeviceProfile& p, const OpCall& call) {
    return vulkan_ineligible(p, call, {}, {shader_for(call)});
  };
  k.bind = bind;
  return k;
}

const RegisterKernel reg(make_kernel());

}  // namespace
}  // namespace ek
