// selective_scan on OpenCL (kernels/selective_scan/selective_scan.cl): a
// team of work items per channel with the y sum by sub-group shuffles
// ("subgroup", devices with cl_khr_subgroup_shuffle or cl_intel_subgroups),
// or one work item per channel ("thread"). One launch covers every token;
// T = 1 (decode) is the same single pass. f16 activations are read with
// vload_half (ACT_F16), which needs no cl_khr_fp16.
#include <algorithm>

#include "backends/opencl/opencl_invocation.h"
#include "kernels/selective_scan/selective_scan.h"

namespace ek {
namespace {

constexpr const char* kSource = "selective_scan/selective_scan.cl";

size_t pow2_floor(size_t v) {
  size_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning, bool subgroups) {
  const SelectiveScanArgs a = SelectiveScanArgs::parse(call);
  auto inv = std::make_unique<ClInvocation>(device, call);
  OpenCLDevice& dev = inv->device();
  const DeviceProfile& p = dev.profile();
  // Team: a power of two dividing every sub-group size (the smallest one the
  // device reports; 8 when it reports none), no wider than the state count.
  size_t team = 1;
  if (subgroups) {
    const int sg_min = p.subgroup_sizes.empty() ? 8 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
    const int64_t want = tuning_or(tuning, "TEAM", 0);
    team = pow2_floor(static_cast<size_t>(std::max<int64_t>(1, std::min<int64_t>(want > 0 ? want : 32, sg_min))));
    while (team > 1 && int64_t(team / 2) >= a.state) team /= 2;
  }
  // Work items per group: CPU drivers (PoCL) vectorise across work items, so
  // 16 (one AVX-512 vector of channels); GPUs 128.
  int64_t want_wg = tuning_or(tuning, "WG", 0);
  if (want_wg <= 0) want_wg = p.device_class == "cpu" ? 16 : 128;
  const size_t wanted = std::max(team, pow2_floor(static_cast<size_t>(want_wg)));
  const size_t spt = (static_cast<size_t>(a.state) + team - 1) / team;
  const bool intel = subgroups && !dev.has_extension("cl_khr_subgroup_shuffle") && dev.has_extension("cl_intel_subgroups");
  auto options = [&](size_t wg) {
    return BuildOptions()
        .define("WG", int64_t(wg))
        .define("TEAM", int64_t(team))
        .define("SPT", int64_t(spt))
        .flag("HAS_DSKIP", a.has_dskip)
        .flag("HAS_Z", a.has_z)
        .flag("HAS_BIAS", a.has_delta_bias)
        .flag("HAS_H0", a.has_h0)
        .flag("SOFTPLUS", a.delta_softplus)
        .flag("USE_SUBGROUPS", subgroups)
        .flag("INTEL_SHUFFLE", intel)
        .flag("ACT_F16", a.activations == DType::f16)
        .raw(subgroups ? dev.subgroup_build_option() : "")
        .str();
  };
  auto [kernel, wg] = dev.kernel_for_workgroup(kSource, options, "ek_selective_scan", wanted);
  if (wg < team) throw Unsupported(cat("selective_scan/opencl: work-group limit ", wg, " is below the team size ", team));
  set_kernel_args(dev, kernel, inv->buffer("u"), inv->buffer("delta"), inv->buffer("A"), inv->buffer("Bm"),
                  inv->buffer("Cm"), inv->buffer_or_placeholder("Dskip"), inv->buffer_or_placeholder("z"),
                  inv->buffer_or_placeholder("delta_bias"), inv->buffer_or_placeholder("h0"), inv->buffer("y"),
                  inv->buffer("hT"), cl_uint(a.batch), cl_uint(a.tokens), cl_uint(a.channels), cl_uint(a.state),
                  cl_uint(a.groups), cl_uint(a.channels_per_group()));
  const size_t channels = static_cast<size_t>(a.batch * a.channels);
  const size_t groups = (channels + wg / team - 1) / (wg / team);
  inv->add_step(kernel, cl::NDRange(groups * wg), cl::NDRange(wg));
  return inv;
}

const RegisterKernel reg_thread(KernelImpl{
    "selective_scan", "opencl", "thread",
    "one work item per channel, states in registers over all tokens; f32 or f16 activations",
    10, 1e-7 /* fp32 state and arithmetic; f16 activations are read exactly */, {{"WG", {1, 4, 8, 16, 32, 64, 128, 256}, 0}},
    [](const DeviceProfile& p, const OpCall& call) { return cl_buffers_ineligible(p, call); },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, false); }});

const RegisterKernel reg_subgroup(KernelImpl{
    "selective_scan", "opencl", "subgroup",
    "team of work items per channel, states in registers over all tokens, y summed by sub-group shuffles; f32 or "
    "f16 activations",
    20, 1e-7, {{"WG", {16, 32, 64, 128, 256}, 0}, {"TEAM", {2, 4, 8, 16, 32}, 0}},
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      if (!p.has("subgroup_shuffle")) return "device has no OpenCL sub-group shuffles (subgroup_shuffle)";
      return cl_buffers_ineligible(p, call);
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, true); }});

}  // namespace
}  // namespace ek
