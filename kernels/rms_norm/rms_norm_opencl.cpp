// rms_norm on OpenCL (kernels/rms_norm/rms_norm.cl): one work-group per row,
// reduced through local memory ("workgroup_reduce") or sub-group built-ins
// ("subgroup", where the device has them).
#include "backends/opencl/opencl_invocation.h"
#include "kernels/rms_norm/rms_norm.h"

namespace ek {
namespace {

constexpr const char* kSource = "rms_norm/rms_norm.cl";

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning, bool subgroups) {
  const RmsNormArgs a = RmsNormArgs::parse(call);
  auto inv = std::make_unique<ClInvocation>(device, call);
  OpenCLDevice& dev = inv->device();
  // 0 = from the device. CPU drivers (PoCL) run a group's work items one
  // after another and do not vectorise this loop across them: one work item
  // per row streaming 16-wide vectors measured ~4x faster there than 256
  // work items. GPUs: 256 work items with float4 loads.
  const bool cpu = dev.profile().device_class == "cpu";
  int64_t want_vec = tuning_or(tuning, "VEC", 0), want_wg = tuning_or(tuning, "WG", 0);
  if (want_vec <= 0) want_vec = cpu ? 16 : 4;
  if (want_wg <= 0) want_wg = cpu ? 1 : 256;
  // Vectors must not straddle rows; dims without such a factor go narrower.
  const int64_t vec = vector_width_for(a.dim, want_vec);
  // No more work items than the row has vectors.
  const size_t wanted = std::min<size_t>(static_cast<size_t>(want_wg), next_pow2(static_cast<size_t>(a.dim / vec)));
  auto options = [&](size_t wg) {
    return BuildOptions()
        .define("WG", int64_t(wg))
        .define("VEC", vec)
        .flag("X_F16", a.x_dtype == DType::f16)
        .flag("GATED", a.gated)
        .flag("USE_SUBGROUPS", subgroups)
        .raw(subgroups ? dev.subgroup_build_option() : "")
        .str();
  };
  auto [kernel, wg] = dev.kernel_for_workgroup(kSource, options, "ek_rms_norm", wanted);
  set_kernel_args(dev, kernel, inv->buffer("x"), inv->buffer_or_placeholder("z"), inv->buffer("w"), inv->buffer("y"),
                  cl_int(a.dim), cl_float(a.eps));
  inv->add_step(kernel, cl::NDRange(static_cast<size_t>(a.rows) * wg), cl::NDRange(wg));
  return inv;
}

// Default 0: chosen from the device profile at bind (see bind()).
const std::vector<TunableParam> kTunables = {
    {"WG", {1, 4, 16, 32, 64, 128, 256, 512, 1024}, 0},
    {"VEC", {1, 2, 4, 8, 16}, 0},
};

const RegisterKernel reg_workgroup(KernelImpl{
    "rms_norm", "opencl", "workgroup_reduce",
    "one work-group per row, fp32 sum of squares reduced in local memory; f32/f16 x, gated form",
    10, 1e-7, kTunables,
    [](const DeviceProfile& p, const OpCall& call) { return cl_buffers_ineligible(p, call); },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, false); }});

const RegisterKernel reg_subgroup(KernelImpl{
    "rms_norm", "opencl", "subgroup",
    "one work-group per row, reduced with sub_group_reduce_add then across sub-groups; f32/f16 x, gated form",
    20, 1e-7, kTunables,
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      if (!p.has("subgroup_arith")) return "device has no OpenCL sub-group reductions (subgroup_arith)";
      return cl_buffers_ineligible(p, call);
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, true); }});

}  // namespace
}  // namespace ek
