// Vulkan kernels of matmul_q2. bind() repacks W once into the GPU row layout
// (README.md) and uploads it; X, bias and Y are the call's tensors.
//   T <  gemm_min_tokens: GEMV (matmul_q2_gemv.comp), ROWS rows per
//        workgroup, up to 8 tokens per dispatch sharing each decoded word;
//   T >= gemm_min_tokens: shared-memory tiled GEMM (matmul_q2_gemm.comp).
// Variants: "subgroup" (GEMV reductions with subgroup arithmetic), "shared"
// (shared-memory reductions, any device), "int8_dot" (activations quantized
// to int8 per call by matmul_q2_quant.comp, GEMV on 4x8-bit integer dot
// products; needs the int_dot_product feature and a glslc with
// GL_EXT_spirv_intrinsics; prefill uses the fp32 GEMM).
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/matmul_q2/matmul_q2.h"
#include "kernels/matmul_q2/matmul_q2_pack.h"

namespace ek {
namespace q2 {
namespace {

constexpr const char* kOp = "matmul_q2";
constexpr int64_t kMaxTokensPerGemv = 8;

enum class VkVariant { subgroup, shared, int8_dot };

const char* family(const OpCall& call) {
  return MatmulQ2Args::parse(call).format == Format::q2_k ? "q2k" : "affine";
}
const char* xtype(const OpCall& call) { return MatmulQ2Args::parse(call).x_dtype == DType::f16 ? "f16" : "f32"; }

std::string gemv_shader(VkVariant v, const OpCall& call) {
  if (v == VkVariant::int8_dot) return cat("matmul_q2/gemv_dot.", family(call), ".subgroup.spv");
  return cat("matmul_q2/gemv.", family(call), ".", xtype(call), v == VkVariant::shared ? ".shared" : ".subgroup", ".spv");
}
std::string dot_shader(const OpCall& call, bool subgroup) {
  return cat("matmul_q2/gemv_dot.", family(call), subgroup ? ".subgroup" : ".shared", ".spv");
}
std::string gemm_shader(const OpCall& call) { return cat("matmul_q2/gemm.", family(call), ".", xtype(call), ".spv"); }
std::string quant_shader(const OpCall& call) { return cat("matmul_q2/quant.", xtype(call), ".spv"); }

// The largest power of two <= min(want, device limit).
uint32_t pow2_at_most(int64_t want, int64_t limit) {
  uint32_t v = 1;
  while (int64_t(v) * 2 <= std::min(want, std::max<int64_t>(1, limit))) v *= 2;
  return v;
}

std::unique_ptr<Invocation> bind(VkVariant v, Device& d, const OpCall& call, const Tuning& t) {
  const MatmulQ2Args a = MatmulQ2Args::parse(call);
  // The invocation uploads X and bias and allocates Y; W goes up repacked.
  OpCall rest = call;
  rest.tensors.erase("W");
  auto inv = std::make_unique<VulkanOpInvocation>(d, rest);
  VulkanDevice& dev = inv->device();
  const GpuPackedWeights w = pack_gpu(a.format, call.get("W").as<uint8_t>(), a.N, a.K);
  auto upload = [&](const std::vector<uint32_t>& data) {
    BufferBinding b = inv->scratch(std::max<uint64_t>(16, data.size() * 4));
    if (!data.empty()) dev.upload(*b.buffer, 0, data.data(), data.size() * 4);
    return b;
  };
  const BufferBinding codes = upload(w.codes), scales = upload(w.scales);
  const BufferBinding subs = w.affine ? inv->tensor_or_dummy("__none") : upload(w.subscales);
  const BufferBinding bias = inv->tensor_or_dummy("bias");
  const int64_t max_wg = dev.profile().max_workgroup_size;
  const uint32_t N = static_cast<uint32_t>(a.N), K = static_cast<uint32_t>(a.K), G = static_cast<uint32_t>(w.group);
  const int64_t gemm_min = std::max<int64_t>(2, t.at("gemm_min_tokens"));

  if (a.T >= gemm_min) {
    const uint32_t tile_n = static_cast<uint32_t>(t.at("tile_n")), tile_t = static_cast<uint32_t>(t.at("tile_t"));
    const uint32_t rn = 4, rt = 4, threads = (tile_n / rn) * (tile_t / rt);
    if (threads > max_wg)
      throw Unsupported(cat(kOp, ": GEMM tile ", tile_n, "x", tile_t, " needs ", threads, " invocations, device allows ",
                            max_wg));
    Dispatch k;
    k.shader = gemm_shader(call);
    k.spec = {threads, tile_n, tile_t, rn, rt};
    k.push.u32(N).u32(K).u32(G).u32(static_cast<uint32_t>(a.T)).u32(a.has_bias ? 1 : 0);
    k.buffers = {codes, scales, subs, inv->tensor("X"), bias, inv->tensor("Y")};
    k.groups = inv->grid(ceil_div(a.N, tile_n) * ceil_div(a.T, tile_t));
    inv->dispatch(std::move(k));
    return inv;
  }

  // 0 = from the device. CPU implementations (lavapipe) run a workgroup's
  // invocations as one SIMD loop and pay for every barrier: one subgroup
  // per workgroup and 16 rows measured 3.4x faster there (2048x8192) than
  // the GPU-style 64 invocations x 2 rows.
  const bool cpu = dev.profile().device_class == "cpu";
  int64_t want_rows = t.at("rows"), want_block = t.at("block");
  if (want_rows <= 0) want_rows = cpu ? 16 : 2;
  if (want_block <= 0) {
    const auto& sg = dev.profile().subgroup_sizes;
    want_block = cpu ? (sg.empty() ? 8 : *std::max_element(sg.begin(), sg.end())) : 64;
  }
  const uint32_t rows = static_cast<uint32_t>(want_rows);
  const uint32_t block = pow2_at_most(want_block, max_wg);
  BufferBinding xq, xscale, xsum;
  if (v == VkVariant::int8_dot) {
    xq = inv->scratch(static_cast<uint64_t>(a.T) * a.K);
    xscale = inv->scratch(static_cast<uint64_t>(a.T) * (a.K / 64) * 4);
    xsum = inv->scratch(static_cast<uint64_t>(a.T) * (a.K / 16) * 4);
    Dispatch q;
    q.shader = quant_shader(call);
    const uint32_t qblock = pow2_at_most(64, max_wg);
    q.spec = {qblock};
    q.push.u32(K).u32(static_cast<uint32_t>(a.T));
    q.buffers = {inv->tensor("X"), xq, xscale, xsum};
    q.groups = inv->grid(ceil_div(static_cast<uint64_t>(a.T) * (a.K / 64), qblock));
    inv->dispatch(std::move(q));
  }
  const bool subgroup_reduce = v != VkVariant::shared && dev.profile().has("subgroup_arith");
  for (int64_t t0 = 0; t0 < a.T; t0 += kMaxTokensPerGemv) {
    const uint32_t nt = static_cast<uint32_t>(std::min<int64_t>(kMaxTokensPerGemv, a.T - t0));
    Dispatch k;
    k.spec = {block, rows, nt};
    k.push.u32(N).u32(K).u32(G).u32(static_cast<uint32_t>(t0)).u32(a.has_bias ? 1 : 0);
    if (v == VkVariant::int8_dot) {
      k.shader = dot_shader(call, subgroup_reduce);
      k.buffers = {codes, scales, subs, xq, xscale, xsum, bias, inv->tensor("Y")};
    } else {
      k.shader = gemv_shader(v, call);
      k.buffers = {codes, scales, subs, inv->tensor("X"), bias, inv->tensor("Y")};
    }
    k.groups = inv->grid(ceil_div(a.N, rows));
    inv->dispatch(std::move(k));
  }
  return inv;
}

KernelImpl make_kernel(VkVariant v) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "vulkan";
  k.variant = v == VkVariant::subgroup ? "subgroup" : v == VkVariant::shared ? "shared" : "int8_dot";
  k.doc = v == VkVariant::subgroup ? "GEMV: ROWS rows per workgroup, subgroupAdd reductions; GEMM: shared-memory tiles"
          : v == VkVariant::shared ? "GEMV: ROWS rows per workgroup, shared-memory reductions; GEMM: shared-memory tiles"
                                   : "GEMV on int8 activations with OpSDot 4x8-bit dot products; GEMM: fp32 tiles";
  // fp32 paths above the int8 one: without int_dot_product_accelerated (as on
  // lavapipe) emulated dot products are no faster; tuning can promote it.
  k.priority = v == VkVariant::subgroup ? 20 : v == VkVariant::shared ? 10 : 15;
  k.nmse_bound = v == VkVariant::int8_dot ? 5e-4 : 1e-7;
  k.tunables = {{"rows", {0, 1, 2, 4, 8, 16}, 0},  // 0: from the device class
                {"block", {0, 8, 16, 32, 64, 128, 256}, 0},
                {"gemm_min_tokens", {8, 16, 32, 64}, 16},
                {"tile_n", {32, 64, 128}, 64},
                {"tile_t", {16, 32, 64}, 32}};
  k.ineligible_reason = [v](const DeviceProfile& p, const OpCall& call) -> std::string {
    const MatmulQ2Args a = MatmulQ2Args::parse(call);
    if (v == VkVariant::int8_dot && a.act == ActPath::f32) return "act=f32 asks for fp32 activations";
    if (v != VkVariant::int8_dot && a.act == ActPath::int8) return "act=int8 asks for int8 activations";
    std::vector<std::string> features, shaders = {gemm_shader(call)};
    if (v == VkVariant::subgroup) features.push_back("subgroup_arith");
    if (v == VkVariant::int8_dot) {
      features.push_back("int_dot_product");
      shaders.push_back(quant_shader(call));
      shaders.push_back(dot_shader(call, p.has("subgroup_arith")));
    } else {
      shaders.push_back(gemv_shader(v, call));
    }
    // W is not uploaded as it is; its repacked form is ~ the same size.
    OpCall rest = call;
    rest.tensors.erase("W");
    std::string why = vulkan_ineligible(p, rest, features, shaders);
    if (!why.empty()) return why;
    const uint64_t code_bytes = static_cast<uint64_t>(a.N) * a.K / 4;
    if (p.max_buffer_bytes > 0 && code_bytes > static_cast<uint64_t>(p.max_buffer_bytes))
      return cat("repacked W codes are ", code_bytes, " bytes, more than the device's storage-buffer range");
    if (a.K % 64 != 0) return cat("K=", a.K, " is not a multiple of 64 (GPU row layout)");
    return "";
  };
  k.bind = [v](Device& d, const OpCall& call, const Tuning& t) { return bind(v, d, call, t); };
  return k;
}

const RegisterKernel reg_subgroup(make_kernel(VkVariant::subgroup));
const RegisterKernel reg_shared(make_kernel(VkVariant::shared));
const RegisterKernel reg_dot(make_kernel(VkVariant::int8_dot));

}  // namespace
}  // namespace q2
}  // namespace ek
