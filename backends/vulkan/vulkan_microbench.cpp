// VulkanDevice::measure_peaks: streaming read and copy bandwidth over buffers
// well beyond the last-level cache, fp32 FMA and packed int8 dot throughput,
// timed with timestamps (host wall time where the queue has none). Each rate
// is the best of repeated runs, since a shared machine only makes things slower.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <vector>

#include "backends/vulkan/vulkan_device.h"
#include "backends/vulkan/vulkan_kernel.h"
#include "codegen/embedded.h"

namespace ek {
namespace {

using Clock = std::chrono::steady_clock;

struct Bench {
  VulkanDevice& dev;
  uint32_t wg;

  // Seconds one run of `seq` takes.
  double time(VulkanSequence& seq) {
    const auto t0 = Clock::now();
    seq.run();
    const double host = std::chrono::duration<double>(Clock::now() - t0).count();
    const double device = seq.last_seconds();
    return device > 0 ? device : host;
  }

  // Builds a sequence of `reps` identical dispatches made by make(scale) and
  // returns the best work/second over the budget. `scale` (iterations per
  // invocation, or 1 for bandwidth kernels) and `reps` grow until one run takes
  // `target` seconds, so launch overhead and timer resolution do not count.
  double best_rate(const std::function<Dispatch(uint32_t scale)>& make, const std::function<double(uint32_t)>& work,
                   bool scalable, double budget) {
    const double target = std::clamp(budget / 8, 0.002, 0.05);
    const auto until = Clock::now() + std::chrono::duration<double>(budget);
    uint32_t scale = scalable ? 16 : 1, reps = 1;
    double best = 0;
    for (int attempt = 0; attempt < 12; ++attempt) {
      VulkanSequence seq(dev);
      for (uint32_t r = 0; r < reps; ++r) seq.add(make(scale));
      seq.run();  // warm-up: first touch, pipeline upload
      double t = time(seq);
      if (t <= 0) t = 1e-9;
      if (t < target && Clock::now() < until) {
        const double grow = std::clamp(target / t, 2.0, 64.0);
        if (scalable && scale < (1u << 20)) {
          scale = static_cast<uint32_t>(std::min<double>(scale * grow, 1u << 20));
        } else if (reps < 64) {
          reps = static_cast<uint32_t>(std::min<double>(reps * grow, 64));
        } else {
          best = std::max(best, work(scale) * reps / t);
          break;
        }
        continue;
      }
      best = std::max(best, work(scale) * reps / t);
      for (int rep = 0; rep < 5 && Clock::now() < until; ++rep) best = std::max(best, work(scale) * reps / time(seq));
      break;
    }
    return best;
  }
};

// Fills a buffer with a constant so every page is really backed (lavapipe maps
// untouched memory to one shared zero page, which reads from cache).
void fill(VulkanDevice& dev, const VulkanBuffer& b, float value) {
  const uint64_t chunk = std::min<uint64_t>(b.allocated(), 8u << 20);
  std::vector<float> host(chunk / 4, value);
  for (uint64_t off = 0; off < b.allocated(); off += chunk)
    dev.upload(b, off, host.data(), std::min(chunk, b.allocated() - off));
}

}  // namespace

void VulkanDevice::measure_peaks(double seconds_budget) {
  DeviceProfile& p = profile_;
  // CPU implementations of Vulkan (lavapipe) also get the CPU-style access
  // pattern; the better of the two is the device's peak.
  const bool cpu_device = p.device_class == "cpu";
  const double each = std::max(0.05, seconds_budget / (cpu_device ? 6 : 4));
  Bench bench{*this, static_cast<uint32_t>(std::min(256, std::max(32, p.max_workgroup_size)))};
  const uint32_t wg = bench.wg;
  const uint32_t max_groups = max_group_count(0);
  // GPU-style kernels: ~16 vec4 per invocation; CPU-style: a few workgroups per core.
  auto strided_groups = [&](uint64_t n_vec4) {
    return static_cast<uint32_t>(std::clamp<uint64_t>(n_vec4 / (wg * 16ull), 1, max_groups));
  };
  const uint32_t blocked_groups = static_cast<uint32_t>(std::clamp(2 * std::max(1, p.compute_units), 1, 64));

  // ---- bandwidth: 256 MiB (beyond any GPU L2) or the largest bindable range.
  uint64_t bytes = std::min<uint64_t>(uint64_t(256) << 20, max_storage_range());
  if (p.memory_bytes > 0) bytes = std::min<uint64_t>(bytes, static_cast<uint64_t>(p.memory_bytes) / 4);
  bytes = bytes / 64 * 64;
  auto src = create_buffer(bytes);
  fill(*this, *src, 1.0f);
  auto stream = [&](const char* shader, const std::shared_ptr<VulkanBuffer>& in, uint64_t in_range,
                    const std::shared_ptr<VulkanBuffer>& out, uint32_t n_vec4, uint32_t groups, double bytes_moved) {
    PushConstants push;
    push.u32(n_vec4).f32(-12345.678f).f32(0).f32(0);
    return bench.best_rate(
               [&](uint32_t) {
                 Dispatch d;
                 d.shader = shader;
                 d.spec = {wg};
                 d.push = push;
                 d.buffers = {{in, 0, in_range}, {out, 0, 0}};
                 d.groups = {{groups, 1, 1}};
                 return d;
               },
               [&](uint32_t) { return bytes_moved; }, false, each) /
           1e9;
  };
  const uint32_t n_vec4 = static_cast<uint32_t>(bytes / 16);
  {
    auto sink = create_buffer(uint64_t(std::max(strided_groups(n_vec4), blocked_groups)) * wg * 16);
    p.peak_read_gbps = stream("vulkan/microbench.read.spv", src, 0, sink, n_vec4, strided_groups(n_vec4), bytes);
    if (cpu_device)
      p.peak_read_gbps = std::max(
          p.peak_read_gbps, stream("vulkan/microbench.read_blocked.spv", src, 0, sink, n_vec4, blocked_groups, bytes));
  }
  {
    // Copy half the bytes each way; bytes moved = read + written.
    const uint64_t half = bytes / 2 / 16 * 16;
    auto dst = create_buffer(half);
    const uint32_t copy_vec4 = static_cast<uint32_t>(half / 16);
    p.peak_copy_gbps =
        stream("vulkan/microbench.copy.spv", src, half, dst, copy_vec4, strided_groups(copy_vec4), 2.0 * half);
    if (cpu_device)
      p.peak_copy_gbps = std::max(p.peak_copy_gbps, stream("vulkan/microbench.copy_blocked.spv", src, half, dst,
                                                           copy_vec4, blocked_groups, 2.0 * half));
  }
  src.reset();

  // ---- compute: enough invocations to fill a big GPU (a CPU device needs few).
  const uint32_t groups = cpu_device ? blocked_groups * 2 : 2048;
  auto out = create_buffer(uint64_t(groups) * wg * 16);
  auto dummy = create_buffer(16);
  auto compute = [&](const char* shader, bool int8) {
    return bench.best_rate(
        [&](uint32_t iters) {
          Dispatch d;
          d.shader = shader;
          d.spec = {wg};
          d.push.u32(iters).f32(-12345.678f);
          if (int8) {
            d.push.u32(0x01ff02fdu).f32(0);  // packed int8 operand (1, -1, 2, -3)
          } else {
            d.push.f32(0.999f).f32(0.001f);
          }
          d.buffers = {{dummy, 0, 0}, {out, 0, 0}};
          d.groups = {{groups, 1, 1}};
          return d;
        },
        // 8 chains x (vec4 FMA | 4-wide dot) x 2 ops per multiply-add
        [&](uint32_t iters) { return double(groups) * wg * iters * 8 * 4 * 2.0; }, true, each);
  };
  p.peak_fp32_gflops = compute("vulkan/microbench.fma.spv", false) / 1e9;
  p.peak_int8_gops = 0;
  if (p.has("int_dot_product") && find_embedded("vulkan/microbench.int8_dot.spv"))
    p.peak_int8_gops = compute("vulkan/microbench.int8_dot.spv", true) / 1e9;
  p.measured = true;
}

}  // namespace ek
