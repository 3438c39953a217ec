// Vulkan kernels of sparse_attention (shaders: sparse_attention.comp,
// sparse_attention_merge.comp). The host plan (sparse_attention_gpu.cpp) lists
// the tiles and their allowed key chunks; one workgroup runs one tile, and a
// second dispatch merges the tiles whose chunk lists were split across
// workgroups (decode against long caches). Two variants differ in how q.k is
// reduced: "subgroup" splits each dot product over a row's invocations and
// reduces with subgroup shuffles, "shared" computes whole dot products from
// shared memory (any device).
#include <algorithm>

#include "backends/vulkan/vulkan_kernel.h"
#include "kernels/sparse_attention/sparse_attention.h"

namespace ek {
namespace sparse_attention {
namespace {

std::string shader_for(const char* reduce, const OpCall& call) {
  const TensorRef* q = call.find("Q");
  const TensorRef* k = call.find("K");
  const bool q16 = q && q->dtype == DType::f16, kv16 = k && k->dtype == DType::f16;
  return cat("sparse_attention/sparse_attention.", reduce, q16 ? ".q16" : ".q32", kv16 ? ".kv16" : ".kv32", ".spv");
}
constexpr const char* kMergeShader = "sparse_attention/sparse_attention_merge.spv";

int min_subgroup_size(const DeviceProfile& p) {
  return p.subgroup_sizes.empty() ? 0 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
}

// Power of two; with subgroup dot products a row's invocations (wg / rows)
// must fit in the smallest subgroup.
uint32_t workgroup_size(const DeviceProfile& p, int64_t want, int64_t rows, bool subgroup) {
  int64_t limit = std::max<int64_t>(rows, std::min<int64_t>(want, std::max(1, p.max_workgroup_size)));
  if (subgroup && min_subgroup_size(p) > 0) limit = std::min<int64_t>(limit, rows * min_subgroup_size(p));
  uint32_t wg = 1;
  while (int64_t(wg) * 2 <= limit) wg *= 2;
  return static_cast<uint32_t>(std::max<int64_t>(wg, rows));
}

// Why a call cannot run on this device with this variant ("" = it can).
std::string shape_ineligible(const DeviceProfile& p, const Args& a, bool subgroup, int64_t wg_want) {
  const int64_t rows = gpu_tile_rows(a);
  if (gpu_chunk_keys(a, rows, p.shared_memory_bytes) == 0)
    return cat("head dims Dk=", a.dk, " Dv=", a.dv, " need more than the device's ", p.shared_memory_bytes,
               " bytes of shared memory");
  const int64_t wg = workgroup_size(p, wg_want, rows, subgroup);
  if (wg > p.max_workgroup_size) return cat("needs ", wg, " invocations per workgroup");
  const int64_t tpr = wg / rows;
  if ((a.dv + tpr - 1) / tpr > 64) return cat("Dv=", a.dv, " needs more than 64 accumulators per invocation");
  if (subgroup) {
    const int min_sg = min_subgroup_size(p);
    if (min_sg < tpr) return cat("a row's ", tpr, " invocations do not fit in one subgroup (", min_sg, ")");
  }
  return "";
}

// Chunks one workgroup may take. llvmpipe (lavapipe) bounds the loop
// iterations of a shader invocation at 65535 in total (gallivm's loop
// limiter keeps one counter for every loop of the program) and silently
// leaves loops early past it, so a workgroup's loop count is kept below that
// there. Elsewhere 256 chunks, which also keeps long lists spread over
// workgroups.
int64_t max_chunks_per_tile(const DeviceProfile& p, const Args& a, int64_t rows, int64_t bk, int64_t wg, bool subgroup) {
  const bool llvmpipe = p.device_name.find("llvmpipe") != std::string::npos || p.driver_name.find("llvmpipe") != std::string::npos;
  if (!llvmpipe) return 256;
  const int64_t tpr = wg / rows, dvt = (a.dv + tpr - 1) / tpr;
  int64_t log_tpr = 0;
  while ((int64_t(1) << log_tpr) < tpr) ++log_tpr;
  const int64_t per_chunk = 1 + ceil_div(bk * a.dk, wg) + ceil_div(bk * a.dv, wg) +
                            (subgroup ? bk * (ceil_div(a.dk, tpr) + log_tpr + 1) : ceil_div(rows * bk, wg) * (a.dk + 1)) +
                            bk + dvt + bk * (1 + dvt);
  const int64_t budget = 60000 - ceil_div(rows * a.dk, wg) - 2 * dvt;
  return std::max<int64_t>(1, budget / per_chunk);
}

std::unique_ptr<Invocation> bind(Device& d, const OpCall& call, const Tuning& t, const char* reduce, bool subgroup) {
  const Args a = Args::parse(call);
  auto inv = std::make_unique<VulkanOpInvocation>(d, call);
  VulkanDevice& dev = inv->device();
  const DeviceProfile& p = dev.profile();
  const std::string why = shape_ineligible(p, a, subgroup, t.at("wg"));
  if (!why.empty()) throw Unsupported(cat(kOp, "/vulkan/", reduce, ": ", why));
  const int64_t rows = gpu_tile_rows(a);
  const int64_t bk = gpu_chunk_keys(a, rows, p.shared_memory_bytes);
  const uint32_t wg = workgroup_size(p, t.at("wg"), rows, subgroup);
  const int64_t tpr = wg / rows;
  const GpuPlan plan =
      plan_gpu_tiles(a, rows, bk, std::max(8, 4 * p.compute_units), max_chunks_per_tile(p, a, rows, bk, wg, subgroup));

  auto upload_ints = [&](const std::vector<int32_t>& v) {
    BufferBinding buf = inv->scratch(std::max<uint64_t>(16, v.size() * sizeof(int32_t)));
    if (!v.empty()) dev.upload(*buf.buffer, 0, v.data(), v.size() * sizeof(int32_t));
    return buf;
  };
  const BufferBinding tiles = upload_ints(plan.tiles);
  const BufferBinding chunks = upload_ints(plan.chunks);
  const BufferBinding states =
      inv->scratch(std::max<uint64_t>(16, static_cast<uint64_t>(plan.n_states * rows * (a.dv + 2)) * sizeof(float)));
  const BufferBinding lse = inv->tensor_or_dummy("L");

  Dispatch k;
  k.shader = shader_for(reduce, call);
  k.spec = {wg,
            static_cast<uint32_t>(rows),
            static_cast<uint32_t>(bk),
            static_cast<uint32_t>(a.dk),
            static_cast<uint32_t>(a.dv),
            static_cast<uint32_t>((a.dv + tpr - 1) / tpr),
            spec_bool(a.want_lse)};
  k.push.u32(static_cast<uint32_t>(a.tq))
      .u32(static_cast<uint32_t>(a.tk))
      .u32(static_cast<uint32_t>(a.hq))
      .u32(static_cast<uint32_t>(a.hkv))
      .i32(static_cast<int32_t>(a.q_offset))
      .u32(a.pattern.causal ? 1u : 0u)
      .i32(static_cast<int32_t>(a.pattern.window))
      .i32(static_cast<int32_t>(std::min<int64_t>(a.pattern.sinks, a.tk)))
      .f32(static_cast<float>(a.scale))
      .f32(static_cast<float>(a.softcap))
      .u32(static_cast<uint32_t>(plan.n_tiles));
  k.buffers = {inv->tensor("Q"), inv->tensor("K"), inv->tensor("V"), inv->tensor("O"), lse, tiles, chunks, states};
  k.groups = inv->grid(static_cast<uint64_t>(plan.n_tiles));
  inv->dispatch(std::move(k));

  if (plan.n_merges > 0) {
    Dispatch m;
    m.shader = kMergeShader;
    m.spec = {std::min<uint32_t>(wg, 256), static_cast<uint32_t>(rows), static_cast<uint32_t>(a.dv),
              spec_bool(a.want_lse)};
    m.push.u32(static_cast<uint32_t>(a.tq)).u32(static_cast<uint32_t>(a.hq)).u32(static_cast<uint32_t>(plan.n_merges));
    m.buffers = {states, upload_ints(plan.merges), inv->tensor("O"), lse};
    m.groups = inv->grid(static_cast<uint64_t>(plan.n_merges));
    inv->dispatch(std::move(m));
  }
  return inv;
}

KernelImpl make_kernel(const char* reduce, int priority, bool subgroup, const char* doc) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "vulkan";
  k.variant = reduce;
  k.doc = doc;
  k.priority = priority;
  k.nmse_bound = 1e-7;  // fp32 accumulation; f16 inputs are read exactly
  k.tunables = {{"wg", {32, 64, 128, 256}, 128}};
  k.ineligible_reason = [reduce, subgroup](const DeviceProfile& p, const OpCall& call) -> std::string {
    std::vector<std::string> features;
    if (subgroup) features = {"subgroup_basic", "subgroup_shuffle"};
    std::string why = vulkan_ineligible(p, call, features, {shader_for(reduce, call), kMergeShader});
    if (!why.empty()) return why;
    return shape_ineligible(p, Args::parse(call), subgroup, 128);
  };
  k.bind = [reduce, subgroup](Device& d, const OpCall& call, const Tuning& t) {
    return bind(d, call, t, reduce, subgroup);
  };
  return k;
}

const RegisterKernel subgroup_kernel(make_kernel(
    "subgroup", 20, true,
    "tiles of <= 16 query rows x allowed key chunks in shared memory, q.k reduced with subgroup shuffles"));
const RegisterKernel shared_kernel(make_kernel(
    "shared", 10, false, "tiles of <= 16 query rows x allowed key chunks in shared memory, whole dot products"));

}  // namespace
}  // namespace sparse_attention
}  // namespace ek
