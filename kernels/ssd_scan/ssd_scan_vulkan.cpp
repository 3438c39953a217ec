// ssd_scan on Vulkan (shader: ssd_scan.comp). Two variants, "subgroup" and
// "thread", differ in the sequential form's reduction (subgroup shuffles in a
// team of invocations per state row, or one invocation per row); both use the
// same three-stage chunked form for long T. The form follows T (tunable
// "form": 0 = by T, 1 = sequential, 2 = chunked; "chunk_from_T"). f16 activations run the shaders' ACT_F16
// builds (".f16"), which read them as packed pairs; STATE_PASS reads none.
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/selective_scan/scan_gpu_common.h"
#include "kernels/ssd_scan/ssd_scan.h"

namespace ek {
namespace {

uint32_t pow2_floor(uint64_t v) {
  uint32_t p = 1;
  while (uint64_t(p) * 2 <= v) p *= 2;
  return p;
}
uint32_t pow2_ceil(uint64_t v) {
  uint32_t p = 1;
  while (p < v) p *= 2;
  return p;
}

int64_t sg_min(const DeviceProfile& p) {
  return p.subgroup_sizes.empty() ? 1 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
}
int64_t sg_max(const DeviceProfile& p) {
  return p.subgroup_sizes.empty() ? 1 : *std::max_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
}

struct Defaults {
  static constexpr int64_t chunk = 64;
  static constexpr int64_t chunk_from_T = 64;
};

// The shaders of one variant for one activation dtype.
struct Shaders {
  std::string seq, chunk_state, state_pass, chunk_out;
  std::vector<std::string> all() const { return {seq, chunk_state, state_pass, chunk_out}; }
};
Shaders shaders_for(const std::string& variant, const OpCall& call) {
  const TensorRef* x = call.find("x");  // the contract makes x, dt, Bm, Cm share x's dtype
  const char* act = x && x->dtype == DType::f16 ? ".f16" : "";
  return {cat("ssd_scan/ssd_scan.seq.", variant, act, ".spv"), cat("ssd_scan/ssd_scan.chunk_state", act, ".spv"),
          "ssd_scan/ssd_scan.state_pass.spv", cat("ssd_scan/ssd_scan.chunk_out", act, ".spv")};
}

KernelImpl make_kernel(const char* variant, bool subgroup, int priority, const char* doc) {
  KernelImpl k;
  k.op = "ssd_scan";
  k.backend = "vulkan";
  k.variant = variant;
  k.doc = doc;
  k.priority = priority;
  k.nmse_bound = 1e-7;  // fp32 state and arithmetic; f16 activations are read exactly
  k.tunables = {{"form", {0, 1, 2}, 0},
                {"chunk", {16, 32, 64, 128, 256}, Defaults::chunk},
                {"chunk_from_T", {8, 16, 32, 64, 128, 256}, Defaults::chunk_from_T},
                {"block", {32, 64, 128, 256}, 0}};
  if (subgroup) k.tunables.push_back({"team", {2, 4, 8, 16, 32}, 0});
  const std::string name = variant;
  const std::vector<std::string> features =
      subgroup ? std::vector<std::string>{"subgroup_basic", "subgroup_shuffle"} : std::vector<std::string>{};
  k.ineligible_reason = [name, features](const DeviceProfile& p, const OpCall& call) {
    return vulkan_ineligible(p, call, features, shaders_for(name, call).all());
  };
  k.bind = [name, subgroup](Device& d, const OpCall& call, const Tuning& t) -> std::unique_ptr<Invocation> {
    const SsdScanArgs a = SsdScanArgs::parse(call);
    const Shaders shaders = shaders_for(name, call);
    const DeviceProfile& prof = d.profile();
    auto inv = std::make_unique<VulkanOpInvocation>(d, call);
    const int64_t form = tuning_value(t, "form", 0);
    EK_CHECK_ARG(form >= 0 && form <= 2, "ssd_scan/vulkan: tunable form=", form, " is not 0, 1 or 2");
    const bool chunked = form == 2 || (form == 0 && a.tokens >= tuning_value(t, "chunk_from_T", Defaults::chunk_from_T));
    const int64_t block = tuning_value(t, "block", 0);
    const uint32_t max_wg = static_cast<uint32_t>(std::max(1, prof.max_workgroup_size));
    auto push = [&](uint32_t t0, uint32_t L, uint32_t nc, uint32_t tseg) {
      PushConstants pcs;
      pcs.u32(uint32_t(a.batch)).u32(uint32_t(a.tokens)).u32(uint32_t(a.heads)).u32(uint32_t(a.head_dim))
          .u32(uint32_t(a.state)).u32(uint32_t(a.groups)).u32(uint32_t(a.heads_per_group()))
          .u32(t0).u32(L).u32(nc).u32(tseg).f32(a.dt_min).f32(a.dt_max);
      return pcs;
    };
    auto spec = [&](uint32_t wg, uint32_t team, uint32_t spt, bool state_in, uint32_t lmax) {
      return std::vector<uint32_t>{wg,
                                   team,
                                   spt,
                                   spec_bool(a.has_dskip),
                                   spec_bool(a.has_dt_bias),
                                   spec_bool(state_in),
                                   spec_bool(a.dt_softplus),
                                   lmax,
                                   uint32_t(a.state),
                                   uint32_t(ceil_div(lmax, wg))};
    };
    const BufferBinding dskip = inv->tensor_or_dummy("Dskip"), bias = inv->tensor_or_dummy("dt_bias");
    const BufferBinding h0 = inv->tensor_or_dummy("h0");

    if (!chunked) {
      uint32_t team = 1;
      if (subgroup) {
        const int64_t want = tuning_value(t, "team", 0);
        team = pow2_floor(uint64_t(std::max<int64_t>(1, std::min<int64_t>(want > 0 ? want : 32, sg_min(prof)))));
        while (team > 1 && int64_t(team / 2) >= a.state) team /= 2;
      }
      int64_t wg = block > 0 ? block : (prof.device_class == "cpu" ? 64 : 128);
      wg = std::max<int64_t>({std::min<int64_t>(wg, max_wg), sg_max(prof), int64_t(team)});
      const uint32_t wgs = pow2_floor(uint64_t(wg));
      const uint32_t spt = uint32_t(ceil_div(uint64_t(a.state), team));
      // Token segments (one, except on llvmpipe: scan_gpu_common.h).
      const int64_t seg_T = scan_gpu::tokens_per_dispatch(prof, a.tokens, int64_t(spt) + 4);
      const int64_t segments = (a.tokens + seg_T - 1) / seg_T;
      const uint64_t state_bytes = uint64_t(a.batch * a.heads * a.head_dim * a.state) * 4;
      BufferBinding carry[2];
      if (segments > 1) carry[0] = inv->scratch(state_bytes);
      if (segments > 2) carry[1] = inv->scratch(state_bytes);
      const BufferBinding none = inv->tensor_or_dummy("");
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t t0 = s * seg_T, len = std::min(seg_T, a.tokens - t0);
        Dispatch k;
        k.shader = shaders.seq;
        k.spec = spec(wgs, team, spt, a.has_h0 || s > 0, 1);
        k.push = push(uint32_t(t0), 0, 0, uint32_t(len));
        k.buffers = {inv->tensor("x"), inv->tensor("dt"), inv->tensor("A"), inv->tensor("Bm"), inv->tensor("Cm"),
                     dskip, bias, s == 0 ? h0 : carry[(s - 1) % 2], inv->tensor("y"),
                     s == segments - 1 ? inv->tensor("hT") : carry[s % 2], none, none};
        k.groups = inv->grid(ceil_div(uint64_t(a.batch * a.heads * a.head_dim), wgs / team));
        inv->dispatch(std::move(k));
      }
      return inv;
    }

    // Chunked: segments of `segc` chunks, so the chunk-state scratch stays
    // within one storage binding; the state passes from segment to segment.
    int64_t L = tuning_value(t, "chunk", Defaults::chunk);
    EK_CHECK_ARG(L >= 1 && L <= 256, "ssd_scan/vulkan: tunable chunk=", L, " is not in 1..256");
    // CHUNK_OUT loops ~L * (2N + L) times per invocation: keep it within
    // llvmpipe's loop bound (scan_gpu_common.h).
    if (scan_gpu::bounds_shader_loops(prof))
      while (L > 8 && L * (2 * a.state + L + 8) > 32768) L /= 2;
    const uint64_t state_bytes = uint64_t(a.batch * a.heads * a.head_dim * a.state) * 4;
    const uint64_t budget = std::min<uint64_t>(uint64_t(std::max<int64_t>(prof.max_buffer_bytes, 1 << 20)), 256ull << 20) / 2;
    const int64_t chunks = (a.tokens + L - 1) / L;
    const int64_t segc = std::max<int64_t>(1, std::min<int64_t>(chunks, int64_t(budget / state_bytes)));
    const int64_t segments = (chunks + segc - 1) / segc;
    const BufferBinding local = inv->scratch(uint64_t(segc) * state_bytes);
    const BufferBinding decay = inv->scratch(uint64_t(a.batch * a.heads * segc) * 4);
    BufferBinding carry[2];
    if (segments > 1) carry[0] = inv->scratch(state_bytes);
    if (segments > 2) carry[1] = inv->scratch(state_bytes);
    const uint32_t wg_state = std::min<uint32_t>(pow2_floor(uint64_t(block > 0 ? block : 128)), pow2_floor(max_wg));
    // CHUNK_OUT: one invocation per chunk token up to 64 (larger workgroups
    // computed wrong results on lavapipe from the 184th invocation on), more
    // tokens per invocation beyond.
    const uint32_t wg_out = std::min<uint32_t>(std::min<uint32_t>(pow2_ceil(uint64_t(L)), 64), pow2_floor(max_wg));
    for (int64_t sgi = 0; sgi < segments; ++sgi) {
      const int64_t t0 = sgi * segc * L, tseg = std::min<int64_t>(segc * L, a.tokens - t0);
      const int64_t nc = (tseg + L - 1) / L;
      const bool state_in = sgi > 0 || a.has_h0;
      const BufferBinding in = sgi == 0 ? h0 : carry[(sgi - 1) % 2];
      const BufferBinding out = sgi == segments - 1 ? inv->tensor("hT") : carry[sgi % 2];
      const std::vector<BufferBinding> bufs = {inv->tensor("x"), inv->tensor("dt"), inv->tensor("A"), inv->tensor("Bm"),
                                               inv->tensor("Cm"), dskip, bias, in, inv->tensor("y"), out, local, decay};
      const auto pcs = push(uint32_t(t0), uint32_t(L), uint32_t(nc), uint32_t(tseg));
      const uint64_t heads = uint64_t(a.batch * a.heads);
      Dispatch cs;
      cs.shader = shaders.chunk_state;
      cs.spec = spec(wg_state, 1, 1, state_in, uint32_t(L));
      cs.push = pcs;
      cs.buffers = bufs;
      cs.groups = inv->grid(heads * uint64_t(nc));
      inv->dispatch(std::move(cs));
      Dispatch sp;
      sp.shader = shaders.state_pass;
      sp.spec = spec(wg_state, 1, 1, state_in, uint32_t(L));
      sp.push = pcs;
      sp.buffers = bufs;
      sp.groups = inv->grid(ceil_div(heads * uint64_t(a.head_dim * a.state), wg_state));
      inv->dispatch(std::move(sp));
      Dispatch co;
      co.shader = shaders.chunk_out;
      co.spec = spec(wg_out, 1, 1, state_in, uint32_t(L));
      co.push = pcs;
      co.buffers = bufs;
      co.groups = inv->grid(heads * uint64_t(nc));
      inv->dispatch(std::move(co));
    }
    return inv;
  };
  return k;
}

const RegisterKernel subgroup(make_kernel("subgroup", true, 20,
                                          "sequential form: a team per state row, y summed by subgroup shuffles; "
                                          "chunked form for T >= chunk_from_T; f32 or f16 activations"));
const RegisterKernel thread(make_kernel("thread", false, 10,
                                        "sequential form: one invocation per state row; chunked form for T >= "
                                        "chunk_from_T; f32 or f16 activations"));

}  // namespace
}  // namespace ek
