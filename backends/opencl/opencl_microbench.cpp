// OpenCLDevice::measure_peaks: streaming read and copy bandwidth, fp32 FMA
// and int8 dot-product throughput, timed with profiling events
// (kernels in backends/opencl/microbench.cl).
#include <algorithm>
#include <chrono>

#include "backends/opencl/opencl_device.h"

namespace ek {
namespace {

constexpr const char* kSource = "opencl/microbench.cl";

// Runs `run` (which enqueues one kernel and returns its event) until about
// `seconds` of wall time have passed (at least twice), and returns the best
// rate work / device-seconds seen; the first run doubles as warm-up.
template <class Run>
double best_rate(OpenCLDevice& dev, double work, double seconds, Run run) {
  const auto t0 = std::chrono::steady_clock::now();
  double best = 0;
  for (int i = 0;; ++i) {
    cl::Event e = run();
    dev.check(e.wait(), "waiting for a microbenchmark");
    const double s = dev.elapsed_seconds(e, e);
    if (s > 0) best = std::max(best, work / s);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (i >= 1 && (wall >= seconds || i >= 200)) break;
  }
  return best;
}

}  // namespace

void OpenCLDevice::measure_peaks(double seconds_budget) {
  const double each = std::max(0.05, seconds_budget / 4);
  const DeviceProfile& p = profile_;
  const size_t units = static_cast<size_t>(std::max(1, p.compute_units));
  const bool cpu = p.device_class == "cpu";
  cl_uint preferred = 1;
  clGetDeviceInfo(device_(), CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof(preferred), &preferred, nullptr);
  size_t vec = 1;
  while (vec * 2 <= std::min<cl_uint>(preferred, 16)) vec *= 2;
  const std::string options = BuildOptions().define("VEC", int64_t(vec)).flag("CHUNKED", cpu).str();

  // Bandwidth: 4x the device cache, at least 256 MiB so the stream comes from
  // memory, within the largest allocation and a quarter of device memory.
  int64_t bytes = std::max<int64_t>(int64_t(256) << 20, 4 * p.cache_bytes);
  if (p.max_buffer_bytes > 0) bytes = std::min(bytes, p.max_buffer_bytes);
  if (p.memory_bytes > 0) bytes = std::min(bytes, p.memory_bytes / 4);
  const size_t vec_bytes = 4 * vec, block = 1024;
  bytes = bytes / int64_t(vec_bytes * block) * int64_t(vec_bytes * block);
  const size_t n_vec = static_cast<size_t>(bytes) / vec_bytes;

  cl::Buffer src = alloc(static_cast<size_t>(bytes), "microbench.src");
  cl::Buffer dst = alloc(static_cast<size_t>(bytes), "microbench.dst");
  fill_u32(src, 0, static_cast<size_t>(bytes));
  fill_u32(dst, 0, static_cast<size_t>(bytes));

  // GPUs: enough 256-item groups to fill every compute unit several times
  // over. CPU drivers run one group per thread: a few groups per core.
  auto fitted_local = [&](const cl::Kernel& k, size_t wanted) {
    size_t l = 1;
    while (l * 2 <= std::min(wanted, kernel_workgroup_limit(k))) l *= 2;
    return l;
  };
  const size_t gpu_grid = units * 8 * 256;
  cl::Buffer sink = alloc(std::max(gpu_grid, units * 512) * 4, "microbench.sink");

  {
    cl::Kernel k = kernel(kSource, options, "ek_read_bw");
    const size_t l = cpu ? 1 : fitted_local(k, 256);
    const size_t items = cpu ? units * 8 : gpu_grid;  // divides n_vec (a multiple of 1024)
    set_kernel_args(*this, k, src, static_cast<cl_uint>(n_vec), sink);
    profile_.peak_read_gbps = best_rate(*this, static_cast<double>(bytes) * 1e-9, each, [&] {
      return enqueue(k, cl::NDRange(items), cl::NDRange(l));
    });
  }
  {
    cl::Kernel k = kernel(kSource, options, "ek_copy_bw");
    const size_t l = fitted_local(k, 256);
    const size_t items = round_down(n_vec, l);
    set_kernel_args(*this, k, src, dst);
    profile_.peak_copy_gbps = best_rate(*this, 2.0 * vec_bytes * static_cast<double>(items) * 1e-9, each, [&] {
      return enqueue(k, cl::NDRange(items), cl::NDRange(l));
    });
  }
  // The big buffers are not needed by the compute benchmarks.
  src = cl::Buffer();
  dst = cl::Buffer();

  // Compute: iterations sized so one run takes ~20 ms (measured at 256 first).
  auto compute_rate = [&](cl::Kernel k, double ops_per_item_iter, auto set_args) {
    const size_t l = fitted_local(k, cpu ? 64 : 256);
    const size_t items = cpu ? units * 512 : round_down(gpu_grid, l);
    cl_uint iters = 256;
    set_args(k, iters);
    cl::Event e = enqueue(k, cl::NDRange(items), cl::NDRange(l));
    check(e.wait(), "waiting for a microbenchmark");
    const double t = std::max(elapsed_seconds(e, e), 1e-6);
    iters = static_cast<cl_uint>(std::clamp(256.0 * 0.02 / t, 64.0, 1048576.0));
    set_args(k, iters);
    const double work = ops_per_item_iter * static_cast<double>(items) * iters * 1e-9;
    return best_rate(*this, work, each, [&] { return enqueue(k, cl::NDRange(items), cl::NDRange(l)); });
  };
  profile_.peak_fp32_gflops =
      compute_rate(kernel(kSource, options, "ek_fp32_fma"), 16.0 * vec, [&](cl::Kernel& k, cl_uint iters) {
        set_kernel_args(*this, k, sink, iters, cl_float(0.999f), cl_float(1e-4f));
      });

  // int8: the packed dot built-in (one lane per work item) where the device
  // has it, else the char arithmetic in VEC lanes.
  std::string int8_options = options;
  size_t int8_vec = vec;
  if (p.has("int_dot_product")) {
    const std::string packed = BuildOptions()
                                   .define("VEC", 1)
                                   .flag("USE_PACKED_DOT", true)
                                   .raw(opencl_c_version_ >= 300 ? "-cl-std=CL3.0" : "")
                                   .str();
    try {
      program(kSource, packed);
      int8_options = packed;
      int8_vec = 1;
    } catch (const DeviceError&) {
      profile_.quirks.push_back("integer_dot_product_advertised_but_unbuildable");
    }
  }
  profile_.peak_int8_gops = compute_rate(kernel(kSource, int8_options, "ek_int8_dot"), 64.0 * int8_vec,
                                         [&](cl::Kernel& k, cl_uint iters) {
                                           set_kernel_args(*this, k, sink, iters, cl_uint(0x01ff7f03u));
                                         });
  profile_.measured = true;
}

}  // namespace ek
