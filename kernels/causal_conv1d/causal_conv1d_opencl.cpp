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
  // Vector lanes must not straddle rows: the largest power of two <= VEC
  // that divides D.
  int64_t vec = 1;
  while (vec * 2 <= std::min<int64_t>(tuning_or(tuning, "VEC", 4), 16) && a.channels % (vec * 2) == 0) vec *= 2;
  const int64_t tt = std::max<int64_t>(1, std::min(tuning_or(tuning, "TT", 16), a.tokens));
  const size_t items = static_cast<size_t>(a.channels / vec);
  const size_t wanted = std::min<size_t>(static_cast<size_t>(tuning_or(tuning, "WG", 64)), next_pow2(items));
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
    {{"VEC", {1, 2, 4, 8, 16}, 4}, {"TT", {1, 4, 8, 16, 32, 64}, 16}, {"WG", {32, 64, 128, 256}, 64}},
    [](const DeviceProfile& p, const OpCall& call) { return cl_buffers_ineligible(p, call); },
    bind});

}  // namespace
}  // namespace ek
