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
  // float4 loads need whole vectors per row; other dims take the scalar path.
  const int64_t vec = tuning_or(tuning, "VEC", 4) == 4 && a.dim % 4 == 0 ? 4 : 1;
  // No more work items than the row has vectors: a dim=16 row gets 4 or 16.
  const size_t wanted = std::min<size_t>(static_cast<size_t>(tuning_or(tuning, "WG", 256)),
                                         next_pow2(static_cast<size_t>((a.dim + vec - 1) / vec)));
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

const std::vector<TunableParam> kTunables = {
    {"WG", {32, 64, 128, 256, 512, 1024}, 256},
    {"VEC", {1, 4}, 4},
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
