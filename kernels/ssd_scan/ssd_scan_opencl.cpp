// ssd_scan on OpenCL (kernels/ssd_scan/ssd_scan.cl). Two variants differ in
// the sequential form's reduction: "subgroup" (a team of work items per state
// row, sub-group shuffles; devices with cl_khr_subgroup_shuffle or
// cl_intel_subgroups) and "thread" (one work item per row). Both use the same
// three-kernel chunked form for long T. The form follows T (tunable "form":
// 0 = by T, 1 = sequential, 2 = chunked; "chunk_from_T"). f16 activations are read with vload_half
// (ACT_F16), which needs no cl_khr_fp16.
#include <algorithm>

#include "backends/opencl/opencl_invocation.h"
#include "kernels/ssd_scan/ssd_scan.h"

namespace ek {
namespace {

constexpr const char* kSource = "ssd_scan/ssd_scan.cl";

size_t pow2_floor(size_t v) {
  size_t p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

struct Defaults {
  static constexpr int64_t chunk = 64;
  static constexpr int64_t chunk_from_T = 64;
};

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning, bool subgroups) {
  const SsdScanArgs a = SsdScanArgs::parse(call);
  auto inv = std::make_unique<ClInvocation>(device, call);
  OpenCLDevice& dev = inv->device();
  const DeviceProfile& prof = dev.profile();
  const int64_t form = tuning_or(tuning, "form", 0);
  EK_CHECK_ARG(form >= 0 && form <= 2, "ssd_scan/opencl: tunable form=", form, " is not 0, 1 or 2");
  const bool chunked = form == 2 || (form == 0 && a.tokens >= tuning_or(tuning, "chunk_from_T", Defaults::chunk_from_T));
  const int64_t L = chunked ? tuning_or(tuning, "chunk", Defaults::chunk) : 1;
  EK_CHECK_ARG(L >= 1 && L <= 256, "ssd_scan/opencl: tunable chunk=", L, " is not in 1..256");
  const bool cpu = prof.device_class == "cpu";
  const bool intel = subgroups && !dev.has_extension("cl_khr_subgroup_shuffle") && dev.has_extension("cl_intel_subgroups");

  // Options shared by every kernel of the program; per kernel: WG, TEAM,
  // SPT, HAS_STATE_IN, USE_SUBGROUPS.
  auto options = [&](size_t wg, size_t team, size_t spt, bool state_in, bool use_subgroups) {
    return BuildOptions()
        .define("WG", int64_t(wg))
        .define("TEAM", int64_t(team))
        .define("SPT", int64_t(spt))
        .define("LMAX", L)
        .define("NMAX", a.state)
        .flag("HAS_DSKIP", a.has_dskip)
        .flag("HAS_BIAS", a.has_dt_bias)
        .flag("HAS_STATE_IN", state_in)
        .flag("SOFTPLUS", a.dt_softplus)
        .flag("USE_SUBGROUPS", use_subgroups)
        .flag("INTEL_SHUFFLE", intel && use_subgroups)
        .flag("ACT_F16", a.activations == DType::f16)
        .raw(use_subgroups ? dev.subgroup_build_option() : "")
        .str();
  };
  const cl::Buffer& dskip = inv->buffer_or_placeholder("Dskip");
  const cl::Buffer& bias = inv->buffer_or_placeholder("dt_bias");
  const cl::Buffer& h0 = inv->buffer_or_placeholder("h0");
  const cl::Buffer& none = inv->buffer_or_placeholder("");
  auto set_args = [&](cl::Kernel& k, const cl::Buffer& in, const cl::Buffer& out, const cl::Buffer& local,
                      const cl::Buffer& decay, int64_t t0, int64_t nc, int64_t tseg) {
    set_kernel_args(dev, k, inv->buffer("x"), inv->buffer("dt"), inv->buffer("A"), inv->buffer("Bm"), inv->buffer("Cm"),
                    dskip, bias, in, inv->buffer("y"), out, local, decay, cl_uint(a.batch), cl_uint(a.tokens),
                    cl_uint(a.heads), cl_uint(a.head_dim), cl_uint(a.state), cl_uint(a.groups),
                    cl_uint(a.heads_per_group()), cl_uint(t0), cl_uint(L), cl_uint(nc), cl_uint(tseg),
                    cl_float(a.dt_min), cl_float(a.dt_max));
  };

  if (!chunked) {
    size_t team = 1;
    if (subgroups) {
      const int sg_min = prof.subgroup_sizes.empty() ? 8 : *std::min_element(prof.subgroup_sizes.begin(), prof.subgroup_sizes.end());
      const int64_t want = tuning_or(tuning, "TEAM", 0);
      team = pow2_floor(size_t(std::max<int64_t>(1, std::min<int64_t>(want > 0 ? want : 32, sg_min))));
      while (team > 1 && int64_t(team / 2) >= a.state) team /= 2;
    }
    const size_t spt = (size_t(a.state) + team - 1) / team;
    int64_t want_wg = tuning_or(tuning, "WG", 0);
    if (want_wg <= 0) want_wg = cpu ? 16 : 128;
    auto [k, wg] = dev.kernel_for_workgroup(
        kSource, [&](size_t w) { return options(w, team, spt, a.has_h0, subgroups); }, "ek_ssd_seq",
        std::max(team, pow2_floor(size_t(want_wg))));
    if (wg < team) throw Unsupported(cat("ssd_scan/opencl: work-group limit ", wg, " is below the team size ", team));
    set_args(k, h0, inv->buffer("hT"), none, none, 0, 0, a.tokens);
    const size_t rows = size_t(a.batch * a.heads * a.head_dim);
    inv->add_step(k, cl::NDRange(((rows + wg / team - 1) / (wg / team)) * wg), cl::NDRange(wg));
    return inv;
  }

  // Chunked: segments of `segc` chunks bound the chunk-state scratch; the
  // state passes from segment to segment through two carry buffers.
  const size_t state_bytes = size_t(a.batch * a.heads * a.head_dim * a.state) * 4;
  const size_t budget = std::min<size_t>(size_t(std::max<int64_t>(prof.max_buffer_bytes, 1 << 20)), 256u << 20) / 2;
  const int64_t chunks = (a.tokens + L - 1) / L;
  const int64_t segc = std::max<int64_t>(1, std::min<int64_t>(chunks, int64_t(budget / state_bytes)));
  const int64_t segments = (chunks + segc - 1) / segc;
  const cl::Buffer& local = inv->add_buffer("local_state", size_t(segc) * state_bytes);
  const cl::Buffer& decay = inv->add_buffer("chunk_decay", size_t(a.batch * a.heads * segc) * 4);
  const cl::Buffer* carry[2] = {&none, &none};
  if (segments > 1) carry[0] = &inv->add_buffer("carry0", state_bytes);
  if (segments > 2) carry[1] = &inv->add_buffer("carry1", state_bytes);
  // Work-group sizes: CPU drivers run a group's work items as SIMD lanes, so
  // 16; GPUs 128 (chunk_out at most 64, as on Vulkan).
  int64_t want_wg = tuning_or(tuning, "WG", 0);
  if (want_wg <= 0) want_wg = cpu ? 16 : 128;
  const size_t heads = size_t(a.batch * a.heads);
  for (int64_t sgi = 0; sgi < segments; ++sgi) {
    const int64_t t0 = sgi * segc * L, tseg = std::min<int64_t>(segc * L, a.tokens - t0);
    const int64_t nc = (tseg + L - 1) / L;
    const bool state_in = sgi > 0 || a.has_h0;
    const cl::Buffer& in = sgi == 0 ? h0 : *carry[(sgi - 1) % 2];
    const cl::Buffer& out = sgi == segments - 1 ? inv->buffer("hT") : *carry[sgi % 2];
    for (const char* name : {"ek_ssd_chunk_state", "ek_ssd_state_pass", "ek_ssd_chunk_out"}) {
      const bool pass = std::string(name) == "ek_ssd_state_pass";
      const size_t want = std::string(name) == "ek_ssd_chunk_out" ? std::min<size_t>(size_t(want_wg), 64) : size_t(want_wg);
      auto [k, wg] = dev.kernel_for_workgroup(
          kSource, [&](size_t w) { return options(w, 1, 1, state_in, false); }, name, pow2_floor(want));
      set_args(k, in, out, local, decay, t0, nc, tseg);
      const size_t groups = pass ? (heads * size_t(a.head_dim * a.state) + wg - 1) / wg : heads * size_t(nc);
      inv->add_step(k, cl::NDRange(groups * wg), cl::NDRange(wg));
    }
  }
  return inv;
}

std::vector<TunableParam> tunables(bool subgroups) {
  std::vector<TunableParam> t = {{"form", {0, 1, 2}, 0},
                                 {"chunk", {16, 32, 64, 128, 256}, Defaults::chunk},
                                 {"chunk_from_T", {8, 16, 32, 64, 128, 256}, Defaults::chunk_from_T},
                                 {"WG", {1, 4, 8, 16, 32, 64, 128, 256}, 0}};
  if (subgroups) t.push_back({"TEAM", {2, 4, 8, 16, 32}, 0});
  return t;
}

const RegisterKernel reg_thread(KernelImpl{
    "ssd_scan", "opencl", "thread",
    "sequential form: one work item per state row; three-kernel chunked form for T >= chunk_from_T; f32 or f16 "
    "activations",
    10, 1e-7 /* fp32 state and arithmetic; f16 activations are read exactly */, tunables(false),
    [](const DeviceProfile& p, const OpCall& call) { return cl_buffers_ineligible(p, call); },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, false); }});

const RegisterKernel reg_subgroup(KernelImpl{
    "ssd_scan", "opencl", "subgroup",
    "sequential form: a team of work items per state row, y summed by sub-group shuffles; chunked form for "
    "T >= chunk_from_T; f32 or f16 activations",
    20, 1e-7, tunables(true),
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      if (!p.has("subgroup_shuffle")) return "device has no OpenCL sub-group shuffles (subgroup_shuffle)";
      return cl_buffers_ineligible(p, call);
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, true); }});

}  // namespace
}  // namespace ek
