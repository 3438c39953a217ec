// selective_scan on Vulkan (shader: selective_scan.comp). Two variants:
// "subgroup" (a team of invocations per channel, states spread over the team,
// y summed by subgroup shuffles) and "thread" (one invocation per channel, no
// subgroup operations). One dispatch covers every token (llvmpipe: segments,
// see scan_gpu_common.h); T = 1 (decode) is the same single pass. f16
// activations run the shader's ACT_F16 build (".f16"), which reads them as
// packed pairs.
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/selective_scan/scan_gpu_common.h"
#include "kernels/selective_scan/selective_scan.h"

namespace ek {
namespace {

uint32_t pow2_floor(uint64_t v) {
  uint32_t p = 1;
  while (uint64_t(p) * 2 <= v) p *= 2;
  return p;
}

// Team size: a power of two no larger than the smallest subgroup, the state
// count (rounded up) or the tuned value.
uint32_t team_size(const DeviceProfile& p, int64_t N, int64_t tuned) {
  const int64_t sg_min = p.subgroup_sizes.empty() ? 1 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
  int64_t want = tuned > 0 ? tuned : 32;
  uint32_t team = pow2_floor(static_cast<uint64_t>(std::max<int64_t>(1, std::min(want, sg_min))));
  while (team > 1 && team / 2 >= N) team /= 2;  // no idle lanes beyond the states
  return team;
}

// Workgroup size: the tuned value (0: 64 on CPU drivers, 128 on GPUs) as a
// power of two, at least the largest subgroup (full subgroups only) and the team.
uint32_t workgroup_size(const DeviceProfile& p, int64_t tuned, uint32_t team) {
  const int64_t sg_max = p.subgroup_sizes.empty() ? 1 : *std::max_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
  int64_t wg = tuned > 0 ? tuned : (p.device_class == "cpu" ? 64 : 128);
  wg = std::min<int64_t>(wg, std::max(1, p.max_workgroup_size));
  wg = std::max<int64_t>({wg, sg_max, int64_t(team)});
  return pow2_floor(static_cast<uint64_t>(wg));
}

// The shader build for the call's activation dtype (u's: the contract makes
// u, delta, Bm, Cm, z share it).
std::string shader_for(const std::string& variant, const OpCall& call) {
  const TensorRef* u = call.find("u");
  const bool f16 = u && u->dtype == DType::f16;
  return cat("selective_scan/selective_scan.", variant, f16 ? ".f16" : "", ".spv");
}

KernelImpl make_kernel(const char* variant, bool subgroup, int priority, const char* doc) {
  KernelImpl k;
  k.op = "selective_scan";
  k.backend = "vulkan";
  k.variant = variant;
  k.doc = doc;
  k.priority = priority;
  k.nmse_bound = 1e-7;  // fp32 state and arithmetic; f16 activations are read exactly
  k.tunables = {{"block", {32, 64, 128, 256}, 0}};
  if (subgroup) k.tunables.push_back({"team", {2, 4, 8, 16, 32}, 0});
  const std::string name = variant;
  const std::vector<std::string> features =
      subgroup ? std::vector<std::string>{"subgroup_basic", "subgroup_shuffle"} : std::vector<std::string>{};
  k.ineligible_reason = [name, features](const DeviceProfile& p, const OpCall& call) {
    return vulkan_ineligible(p, call, features, {shader_for(name, call)});
  };
  k.bind = [name, subgroup](Device& d, const OpCall& call, const Tuning& t) -> std::unique_ptr<Invocation> {
    const SelectiveScanArgs a = SelectiveScanArgs::parse(call);
    const std::string shader = shader_for(name, call);
    auto inv = std::make_unique<VulkanOpInvocation>(d, call);
    const uint32_t team = subgroup ? team_size(d.profile(), a.state, tuning_value(t, "team", 0)) : 1;
    const uint32_t wg = workgroup_size(d.profile(), tuning_value(t, "block", 0), team);
    const uint32_t spt = static_cast<uint32_t>(ceil_div(static_cast<uint64_t>(a.state), team));
    // Token segments (one, except on llvmpipe: scan_gpu_common.h), the state
    // carried between them in scratch buffers.
    const int64_t seg_T = scan_gpu::tokens_per_dispatch(d.profile(), a.tokens, int64_t(spt) + 4);
    const int64_t segments = (a.tokens + seg_T - 1) / seg_T;
    const uint64_t state_bytes = uint64_t(a.batch * a.channels * a.state) * 4;
    BufferBinding carry[2];
    if (segments > 1) carry[0] = inv->scratch(state_bytes);
    if (segments > 2) carry[1] = inv->scratch(state_bytes);
    const uint64_t channels = static_cast<uint64_t>(a.batch * a.channels);
    for (int64_t s = 0; s < segments; ++s) {
      const int64_t t0 = s * seg_T, len = std::min(seg_T, a.tokens - t0);
      Dispatch k;
      k.shader = shader;
      k.spec = {wg, team, spt, spec_bool(a.has_dskip), spec_bool(a.has_z), spec_bool(a.has_delta_bias),
                spec_bool(a.has_h0 || s > 0), spec_bool(a.delta_softplus)};
      k.push.u32(uint32_t(a.batch)).u32(uint32_t(a.tokens)).u32(uint32_t(a.channels)).u32(uint32_t(a.state))
          .u32(uint32_t(a.groups)).u32(uint32_t(a.channels_per_group())).u32(uint32_t(t0)).u32(uint32_t(len));
      k.buffers = {inv->tensor("u"),
                   inv->tensor("delta"),
                   inv->tensor("A"),
                   inv->tensor("Bm"),
                   inv->tensor("Cm"),
                   inv->tensor_or_dummy("Dskip"),
                   inv->tensor_or_dummy("z"),
                   inv->tensor_or_dummy("delta_bias"),
                   s == 0 ? inv->tensor_or_dummy("h0") : carry[(s - 1) % 2],
                   inv->tensor("y"),
                   s == segments - 1 ? inv->tensor("hT") : carry[s % 2]};
      k.groups = inv->grid(ceil_div(channels, wg / team));
      inv->dispatch(std::move(k));
    }
    return inv;
  };
  return k;
}

const RegisterKernel subgroup(make_kernel("subgroup", true, 20,
                                          "team of invocations per channel, states in registers over all tokens, "
                                          "y summed by subgroup shuffles; f32 or f16 activations"));
const RegisterKernel thread(make_kernel("thread", false, 10,
                                        "one invocation per channel, states in registers over all tokens; f32 or "
                                        "f16 activations"));

}  // namespace
}  // namespace ek
