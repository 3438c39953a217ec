// OpenCL kernels of sparse_attention (kernels/sparse_attention/sparse_attention.cl),
// over the same host plan as the Vulkan kernels (sparse_attention_gpu.cpp):
// one work-group per tile of query rows x allowed key chunks, plus a merge
// pass for tiles split across work-groups. "local" computes whole dot
// products from local memory (any device, PoCL included); "subgroup" splits
// them over a row's work items and reduces with sub_group_shuffle_xor.
#include <algorithm>

#include "backends/opencl/opencl_invocation.h"
#include "kernels/sparse_attention/sparse_attention.h"

namespace ek {
namespace sparse_attention {
namespace {

constexpr const char* kSource = "sparse_attention/sparse_attention.cl";

int min_subgroup_size(const DeviceProfile& p) {
  return p.subgroup_sizes.empty() ? 0 : *std::min_element(p.subgroup_sizes.begin(), p.subgroup_sizes.end());
}

// Work items per group: a power of two >= rows; with sub-group dot products a
// row's work items must fit in one sub-group.
size_t group_size(const DeviceProfile& p, int64_t want, int64_t rows, bool subgroup) {
  int64_t limit = std::max<int64_t>(rows, std::min<int64_t>(want, std::max(1, p.max_workgroup_size)));
  if (subgroup && min_subgroup_size(p) > 0) limit = std::min<int64_t>(limit, rows * min_subgroup_size(p));
  size_t wg = 1;
  while (static_cast<int64_t>(wg) * 2 <= limit) wg *= 2;
  return std::max<size_t>(wg, static_cast<size_t>(rows));
}

std::string shape_ineligible(const DeviceProfile& p, const Args& a, bool subgroup) {
  const int64_t rows = gpu_tile_rows(a);
  if (gpu_chunk_keys(a, rows, p.shared_memory_bytes) == 0)
    return cat("head dims Dk=", a.dk, " Dv=", a.dv, " need more than the device's ", p.shared_memory_bytes,
               " bytes of local memory");
  const int64_t wg = static_cast<int64_t>(group_size(p, 128, rows, subgroup));
  if (wg > p.max_workgroup_size) return cat("needs ", wg, " work items per group");
  const int64_t tpr = wg / rows;
  if ((a.dv + tpr - 1) / tpr > 64) return cat("Dv=", a.dv, " needs more than 64 accumulators per work item");
  if (subgroup && min_subgroup_size(p) < tpr)
    return cat("a row's ", tpr, " work items do not fit in one sub-group (", min_subgroup_size(p), ")");
  return "";
}

std::unique_ptr<Invocation> bind(Device& device, const OpCall& call, const Tuning& tuning, bool subgroup) {
  const Args a = Args::parse(call);
  auto inv = std::make_unique<ClInvocation>(device, call);
  OpenCLDevice& dev = inv->device();
  const DeviceProfile& p = dev.profile();
  const std::string why = shape_ineligible(p, a, subgroup);
  if (!why.empty()) throw Unsupported(cat(kOp, "/opencl/", subgroup ? "subgroup" : "local", ": ", why));
  const int64_t rows = gpu_tile_rows(a);
  const int64_t bk = gpu_chunk_keys(a, rows, p.shared_memory_bytes);
  const size_t wg = group_size(p, tuning_or(tuning, "WG", 128), rows, subgroup);
  const int64_t tpr = static_cast<int64_t>(wg) / rows;
  const GpuPlan plan = plan_gpu_tiles(a, rows, bk, std::max(8, 4 * p.compute_units), 256);

  const std::string options = BuildOptions()
                                  .define("WG", static_cast<int64_t>(wg))
                                  .define("ROWS", rows)
                                  .define("BK", bk)
                                  .define("DK", a.dk)
                                  .define("DV", a.dv)
                                  .define("DVT", (a.dv + tpr - 1) / tpr)
                                  .flag("WRITE_LSE", a.want_lse)
                                  .flag("Q_F16", a.q_dtype == DType::f16)
                                  .flag("KV_F16", a.kv_dtype == DType::f16)
                                  .flag("USE_SUBGROUPS", subgroup)
                                  .raw(subgroup ? dev.subgroup_build_option() : "")
                                  .str();
  // Tables are padded to at least 16 bytes (no zero-size buffers); the upload
  // must read no more than the vector holds.
  auto ints = [&](const std::string& name, std::vector<int32_t> v) -> const cl::Buffer& {
    v.resize(std::max<size_t>(v.size(), 4), 0);
    return inv->add_buffer(name, v.size() * sizeof(int32_t), v.data());
  };
  const cl::Buffer& tiles = ints("tiles", plan.tiles);
  const cl::Buffer& chunks = ints("chunks", plan.chunks);
  const cl::Buffer& states =
      inv->add_buffer("states", std::max<size_t>(16, static_cast<size_t>(plan.n_states * rows * (a.dv + 2)) * sizeof(float)));
  const cl::Buffer& lse = inv->buffer_or_placeholder("L");

  cl::Kernel k = dev.kernel(kSource, options, "ek_sparse_attention");
  set_kernel_args(dev, k, inv->buffer("Q"), inv->buffer("K"), inv->buffer("V"), inv->buffer("O"), lse, tiles, chunks,
                  states, cl_uint(a.tq), cl_uint(a.tk), cl_uint(a.hq), cl_uint(a.hkv), cl_int(a.q_offset),
                  cl_uint(a.pattern.causal ? 1 : 0), cl_int(a.pattern.window),
                  cl_int(std::min<int64_t>(a.pattern.sinks, a.tk)), cl_float(a.scale), cl_float(a.softcap),
                  cl_uint(plan.n_tiles));
  inv->add_step(k, cl::NDRange(static_cast<size_t>(plan.n_tiles) * wg), cl::NDRange(wg));
  if (plan.n_merges > 0) {
    cl::Kernel mk = dev.kernel(kSource, options, "ek_sparse_attention_merge");
    set_kernel_args(dev, mk, states, ints("merges", plan.merges), inv->buffer("O"), lse, cl_uint(a.tq), cl_uint(a.hq),
                    cl_uint(plan.n_merges));
    inv->add_step(mk, cl::NDRange(static_cast<size_t>(plan.n_merges) * wg), cl::NDRange(wg));
  }
  return inv;
}

const std::vector<TunableParam> kTunables = {{"WG", {32, 64, 128, 256}, 128}};

const RegisterKernel reg_local(KernelImpl{
    kOp, "opencl", "local",
    "tiles of <= 16 query rows x allowed key chunks staged in local memory, whole dot products; f32/f16 Q and K/V",
    10, 1e-7, kTunables,
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      std::string why = cl_buffers_ineligible(p, call);
      return why.empty() ? shape_ineligible(p, Args::parse(call), false) : why;
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, false); }});

const RegisterKernel reg_subgroup(KernelImpl{
    kOp, "opencl", "subgroup",
    "tiles of <= 16 query rows x allowed key chunks in local memory, q.k reduced with sub_group_shuffle_xor",
    20, 1e-7, kTunables,
    [](const DeviceProfile& p, const OpCall& call) -> std::string {
      if (!p.has("subgroup_shuffle")) return "device has no OpenCL sub-group shuffles (subgroup_shuffle)";
      std::string why = cl_buffers_ineligible(p, call);
      return why.empty() ? shape_ineligible(p, Args::parse(call), true) : why;
    },
    [](Device& d, const OpCall& call, const Tuning& t) { return bind(d, call, t, true); }});

}  // namespace
}  // namespace sparse_attention
}  // namespace ek
