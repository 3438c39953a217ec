// causal_conv1d on OpenCL (kernels/causal_conv1d/causal_conv1d.cl): each work
// item runs VEC channels over a tile of TT tokens with a sliding register
// window; one kernel writes y and sT.
#include "backends/opencl/opencl_invocation.h"
#include "kernels/causal_conv1d/causal_conv1d.h"

namespace ek {
namespace {

constexpr const char* kSource = "causal_conv1d/causal_conv1d.cl";

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning) {
  const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
  auto inv = std::make_unique<ClInvocation>(device, call);
  OpenCLDevice& dev = inv->device();
  // 0 = from the device. CPU drivers (PoCL) do not vectorise across work
  // items, so 16 channels per work item and long token tiles; GPUs: float4
  // per work item and 16-token tiles keep tens of thousands of work items in
  // flight for prefill.
  const bool cpu = dev.profile().device_class == "cpu";
  int64_t want_vec = tuning_or(tuning, "VEC", 0), want_tt = tuning_or(tuning, "TT", 0),
          want_wg = tuning_or(tuning, "WG", 0);
  if (want_vec <= 0) want_vec = cpu ? 16 : 4;
  if (want_tt <= 0) want_tt = cpu ? 64 : 16;
  if (want_wg <= 0) want_wg = cpu ? 8 : 64;
  // Vector lanes must not straddle rows.
  const int64_t vec = vector_width_for(a.channels, want_vec);
  const int64_t tt = std::min(want_tt, a.tokens);
  const size_t items = static_cast<size_t>(a.channels / vec);
  const size_t wanted = std::min<size_t>(static_cast<size_t>(want_wg), next_pow2(items));
  auto options = [&](size_t wg) {
    return BuildOptions()
        .define("W", a.width)
        .define("VEC", vec)
        .define("TT", tt)
        .define("WG", int64_t(wg))
        .flag("X_F16", a.x_dtype == DType::f16)
        .flag("HAS_BIAS", a.has_bias)
        .flag("HAS_STATE", a.has_state)
        .flag("SILU", a.silu)
        .str();
  };
  auto [kernel, wg] = dev.kernel_for_workgroup(kSource, options, "ek_causal_conv1d", wanted);
  set_kernel_args(dev, kernel, inv->buffer("x"), inv->buffer("w"), inv->buffer_or_placeholder("bias"),
                  inv->buffer_or_placeholder("s0"), inv->buffer("y"), inv->buffer("sT"), cl_int(a.tokens),
                  cl_int(a.channels));
  const size_t tiles = static_cast<size_t>((a.tokens + tt - 1) / tt);
  inv->add_step(kernel, cl::NDRange(round_up(items, wg), tiles, static_cast<size_t>(a.batch)),
                cl::NDRange(wg, 1, 1));
  return inv;
}

const RegisterKernel reg(KernelImpl{
    "causal_conv1d", "opencl", "token_tile",
    "VEC channels x TT tokens per work item with a sliding register window; f32/f16 x, W 2..4, bias, state, SiLU",
    10, 1e-7,
    // Defaults 0: chosen from the device profile at bind (see bind()).
    {{"VEC", {1, 2, 4, 8, 16}, 0}, {"TT", {1, 4, 16, 64, 256}, 0}, {"WG", {8, 32, 64, 128, 256}, 0}},
    [](const DeviceProfile& p, const OpCall& call) { return cl_buffers_ineligible(p, call); },
    bind});

}  // namespace
}  // namespace ek
