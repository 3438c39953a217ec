// OpenCL kernels of matmul_q2 (kernels/matmul_q2/matmul_q2.cl). bind()
// repacks W once into the GPU row layout (README.md) and uploads it; X, bias
// and Y are the call's tensors. T < gemm_min_tokens runs the GEMV (ROWS rows
// per work-group, up to 8 tokens per launch), larger T the local-memory tiled
// GEMM. Variants: "workgroup_reduce" (local-memory reductions) and "subgroup"
// (sub_group_reduce_add, where the device has sub-group built-ins). Tile
// sizes, rows and work-group size are -D build options; 0 = chosen from the
// device class at bind time.
#include <algorithm>
#include <limits>

#include "backends/opencl/opencl_invocation.h"
#include "kernels/matmul_q2/matmul_q2.h"
#include "kernels/matmul_q2/matmul_q2_pack.h"

namespace ek {
namespace q2 {
namespace {

constexpr const char* kSource = "matmul_q2/matmul_q2.cl";
constexpr int64_t kMaxTokensPerGemv = 8;

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning, bool subgroups) {
  const MatmulQ2Args a = MatmulQ2Args::parse(call);
  OpCall rest = call;
  rest.tensors.erase("W");
  auto inv = std::make_unique<ClInvocation>(device, rest);
  OpenCLDevice& dev = inv->device();
  const GpuPackedWeights w = pack_gpu(a.format, call.get("W").as<uint8_t>(), a.N, a.K);
  const cl::Buffer& codes = inv->add_buffer("codes", w.codes.size() * 4, w.codes.data());
  const cl::Buffer& scales = inv->add_buffer("scales", w.scales.size() * 4, w.scales.data());
  const cl::Buffer& subs =
      w.affine ? inv->buffer_or_placeholder("__none") : inv->add_buffer("subscales", w.subscales.size() * 4, w.subscales.data());
  const cl::Buffer& bias = inv->buffer_or_placeholder("bias");
  const bool cpu = dev.profile().device_class == "cpu";
  const bool f16 = a.x_dtype == DType::f16;
  const cl_uint N = static_cast<cl_uint>(a.N), K = static_cast<cl_uint>(a.K), G = static_cast<cl_uint>(w.group);
  const cl_uint has_bias = a.has_bias ? 1 : 0;

  // 0 = from the device: CPU drivers never take the tiled GEMM (PoCL: the
  // GEMV with 8 tokens per launch measured 5x faster at T=128).
  int64_t gemm_min = tuning_or(tuning, "gemm_min_tokens", 0);
  if (gemm_min <= 0) gemm_min = cpu ? std::numeric_limits<int64_t>::max() : 16;
  if (a.T >= std::max<int64_t>(2, gemm_min)) {
    const int64_t tile_n = tuning_or(tuning, "TILE_N", 64), tile_t = tuning_or(tuning, "TILE_T", 32);
    const int64_t rn = 4, rt = 4;
    const size_t threads = static_cast<size_t>((tile_n / rn) * (tile_t / rt));
    const std::string opts = BuildOptions()
                                 .define("TILE_N", tile_n)
                                 .define("TILE_T", tile_t)
                                 .define("RN", rn)
                                 .define("RT", rt)
                                 .flag("Q2K", !w.affine)
                                 .flag("X_F16", f16)
                                 .str();
    cl::Kernel k = dev.kernel(kSource, opts, "ek_matmul_q2_gemm");
    if (dev.kernel_workgroup_limit(k) < threads)
      throw Unsupported(cat("matmul_q2: GEMM tile ", tile_n, "x", tile_t, " needs ", threads, " work items, ",
                            dev.profile().device_name, " allows ", dev.kernel_workgroup_limit(k)));
    set_kernel_args(dev, k, codes, scales, subs, inv->buffer("X"), bias, inv->buffer("Y"), N, K, G,
                    static_cast<cl_uint>(a.T), has_bias);
    const size_t groups_n = static_cast<size_t>((a.N + tile_n - 1) / tile_n);
    const size_t groups_t = static_cast<size_t>((a.T + tile_t - 1) / tile_t);
    inv->add_step(k, cl::NDRange(groups_n * threads, groups_t), cl::NDRange(threads, 1));
    return inv;
  }

  // GEMV. CPU drivers run a group's work items one after another: one work
  // item per ROWS rows streaming whole rows is what reaches their SIMD units.
  int64_t want_wg = tuning_or(tuning, "WG", 0), rows = tuning_or(tuning, "ROWS", 0);
  if (want_wg <= 0) want_wg = cpu ? 1 : 64;
  if (rows <= 0) rows = 2;  // PoCL measured best at 2 (5.8 GB/s vs 2.5 at 4, 4096x14336)
  for (int64_t t0 = 0; t0 < a.T; t0 += kMaxTokensPerGemv) {
    const int64_t nt = std::min<int64_t>(kMaxTokensPerGemv, a.T - t0);
    auto options = [&](size_t wg) {
      return BuildOptions()
          .define("WG", int64_t(wg))
          .define("ROWS", rows)
          .define("NT", nt)
          .define("VEC", cpu ? 16 : 4)
          .flag("Q2K", !w.affine)
          .flag("X_F16", f16)
          .flag("USE_SUBGROUPS", subgroups && wg > 1)
          .raw(subgroups && wg > 1 ? dev.subgroup_build_option() : "")
          .str();
    };
    auto [k, wg] = dev.kernel_for_workgroup(kSource, options, "ek_matmul_q2_gemv", static_cast<size_t>(want_wg));
    set_kernel_args(dev, k, codes, scales, subs, inv->buffer("X"), bias, inv->buffer("Y"), N, K, G,
                    static_cast<cl_uint>(t0), has_bias);
    const size_t groups = static_cast<size_t>((a.N + rows - 1) / rows);
    inv->add_step(k, cl::NDRange(groups * wg), cl::NDRange(wg));
  }
  return inv;
}

const std::vector<TunableParam> kTunables = {
    {"WG", {1, 16, 32, 64, 128, 256}, 0},
    {"ROWS", {1, 2, 4, 8}, 0},
    {"gemm_min_tokens", {0, 8, 16, 32, 64}, 0},
    {"TILE_N", {32, 64, 128}, 64},
    {"TILE_T", {16, 32, 64}, 32},
};

std::string ineligible(const DeviceProfile& p, const OpCall& call) {
  const MatmulQ2Args a = MatmulQ2Args::parse(call);
  if (a.act == ActPath::int8) return "act=int8 asks for int8 activations";
  OpCall rest = call;
  rest.tensors.erase("W");
  std::string why = cl_buffers_ineligible(p, rest);
  if (!why.empty()) return why;
  const int64_t code_bytes = a.N * a.K / 4;
  if (p.max_buffer_bytes > 0 && code_bytes > p.max_buffer_bytes)
    return cat("repacked W codes are ", code_bytes, " bytes, more than the device's largest buffer");
  return "";
}

const RegisterKernel reg_workgroup(KernelImpl{
    "matmul_q2", "opencl", "workgroup_reduce",
    "GEMV: ROWS rows per work-group, local-memory reductions (CPU drivers: one work item per ROWS rows); "
    "GEMM: local-memory tiles, RN x RT outputs per work item",
    10, 1e-7, kTunables, ineligible,
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, false); }});

const RegisterKernel reg_subgroup(KernelImpl{
    "matmul_q2", "opencl", "subgroup",
    "GEMV reduced with sub_group_reduce_add; GEMM: local-memory tiles", 20, 1e-7, kTunables,
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      if (!p.has("subgroup_arith")) return "device has no OpenCL sub-group reductions (subgroup_arith)";
      return ineligible(p, call);
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, true); }});

}  // namespace
}  // namespace q2
}  // namespace ek
