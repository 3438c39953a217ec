// The OpenCL backend: one OpenCLDevice per (platform, device) the ICD loader
// reports, each with its own context, an in-order profiling queue, buffers, a
// program cache keyed by (source name, build options) and the microbenchmarks
// that measure its peaks. It knows nothing about operators: kernels/<op>/
// files embed their OpenCL C and build it through program()/kernel() with the
// -D options tuning explores, and usually run through ClInvocation
// (backends/opencl/opencl_invocation.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/common/device.h"
#include "backends/opencl/opencl_headers.h"
#include "kernels/common/error.h"

namespace ek {

// "CL_OUT_OF_RESOURCES" for -5; "CL error -9999" for codes it does not know.
std::string cl_error_name(cl_int err);

// Build options of one program, in the order given: -D definitions for the
// values tuning explores (tile sizes, dtypes, workgroup size) plus raw flags.
// The string is the program-cache key, so equal options give equal strings.
class BuildOptions {
 public:
  BuildOptions& define(const std::string& name, int64_t value);
  BuildOptions& define(const std::string& name, const std::string& value);
  BuildOptions& flag(const std::string& name, bool on) { return define(name, int64_t(on ? 1 : 0)); }
  BuildOptions& raw(const std::string& option);  // "-cl-std=CL3.0", "-cl-mad-enable"
  const std::string& str() const { return text_; }

 private:
  std::string text_;
};

// A __local kernel argument of `bytes` bytes (set_kernel_args).
struct ClLocalBytes {
  size_t bytes;
};

class OpenCLDevice : public Device {
 public:
  // Creates the context and queue and probes the profile. Throws DeviceError.
  OpenCLDevice(const cl::Platform& platform, const cl::Device& device);

  const cl::Platform& cl_platform() const { return platform_; }
  const cl::Device& cl_device() const { return device_; }
  const cl::Context& context() const { return context_; }
  const cl::CommandQueue& queue() const { return queue_; }
  bool has_extension(const std::string& name) const;
  // Highest OpenCL C version the compiler accepts: 120, 200, 300.
  int opencl_c_version() const { return opencl_c_version_; }
  // The option that makes sub-group built-ins (sub_group_reduce_add, ...)
  // available: "-cl-std=CL3.0", "-cl-std=CL2.0", or "" (cl_intel_subgroups
  // on OpenCL C 1.2). Meaningful only when the profile has "subgroup_arith".
  const std::string& subgroup_build_option() const { return subgroup_option_; }

  // ------------------------------------------------------------- memory
  // A read-write buffer. Zero bytes gives a small placeholder (OpenCL has no
  // empty buffers). Throws OutOfMemory beyond max_buffer_bytes or when the
  // driver cannot allocate; `what` names the buffer in the message.
  cl::Buffer alloc(size_t bytes, const std::string& what);
  // Blocking host <-> device copies; zero bytes do nothing.
  void upload(const cl::Buffer& dst, const void* src, size_t bytes, size_t offset = 0);
  void download(const cl::Buffer& src, void* dst, size_t bytes, size_t offset = 0);
  // Fills `bytes` bytes at `offset` with the 32-bit pattern (bytes % 4 == 0).
  void fill_u32(const cl::Buffer& dst, uint32_t pattern, size_t bytes, size_t offset = 0);

  // ------------------------------------------------------------- programs
  // The embedded OpenCL C source `source_name` ("rms_norm/rms_norm.cl", see
  // codegen/embedded.h) built with `options`, cached per (name, options).
  // A failed build throws DeviceError naming the device, the source, the
  // options and the compiler's log; failures are not cached.
  cl::Program program(const std::string& source_name, const std::string& options);
  // Same for source text that is not embedded (tests, generated code); the
  // cache key also covers the text.
  cl::Program program_from_source(const std::string& source_name, const std::string& source,
                                  const std::string& options);
  // A fresh kernel object (kernel objects hold their arguments, so each
  // invocation needs its own) from the cached program.
  cl::Kernel kernel(const std::string& source_name, const std::string& options, const std::string& kernel_name);
  cl::Kernel kernel(const cl::Program& program, const std::string& source_name, const std::string& kernel_name);
  // Builds `kernel_name` with options_for(wg) for the largest power-of-two
  // wg <= wanted that both the device and the compiled kernel accept (a GPU
  // kernel may allow fewer work items than the device maximum when it uses
  // many registers). Returns the kernel and its wg.
  std::pair<cl::Kernel, size_t> kernel_for_workgroup(const std::string& source_name,
                                                     const std::function<std::string(size_t)>& options_for,
                                                     const std::string& kernel_name, size_t wanted);
  // CL_KERNEL_WORK_GROUP_SIZE: the most work items per group this kernel allows.
  size_t kernel_workgroup_limit(const cl::Kernel& kernel) const;

  struct ProgramCacheStats {
    int64_t hits = 0;
    int64_t builds = 0;
    size_t entries = 0;
  };
  ProgramCacheStats program_cache_stats() const;

  // ------------------------------------------------------------- dispatch
  // Enqueues an ND-range on the in-order profiling queue. Enqueues nothing and
  // returns an empty event when a global dimension is zero. `local` may be
  // cl::NullRange; with a local size, each global size must be a multiple of
  // it (the kernel guards the tail: some drivers have no non-uniform groups).
  cl::Event enqueue(const cl::Kernel& kernel, const cl::NDRange& global, const cl::NDRange& local);
  void finish();
  // Device time from the start of `first` to the end of `last`, in seconds
  // (profiling counters of completed events).
  double elapsed_seconds(const cl::Event& first, const cl::Event& last) const;

  void measure_peaks(double seconds_budget) override;

  // Throws when err != CL_SUCCESS: OutOfMemory for allocation failures, else
  // DeviceError "opencl:<device>: <what>: CL_... (code)".
  void check(cl_int err, const std::string& what) const;

 private:
  cl::Program build(const std::string& key, const std::string& source_name, const std::string& source,
                    const std::string& options);

  cl::Platform platform_;
  cl::Device device_;
  cl::Context context_;
  cl::CommandQueue queue_;
  std::vector<std::string> extensions_;
  int opencl_c_version_ = 120;
  std::string subgroup_option_;

  mutable std::mutex cache_mutex_;
  std::map<std::string, cl::Program> programs_;
  ProgramCacheStats stats_;
};

// Multiples for uniform ND-ranges (global a multiple of local).
inline size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }
inline size_t round_down(size_t n, size_t multiple) { return n / multiple * multiple; }

// The OpenCL device behind a Device&, or InvalidArgument when it is another
// backend's device (a kernel bound to the wrong device).
OpenCLDevice& as_opencl(Device& device, const std::string& what);

// Reads the profile of an OpenCL device (exposed for tests and the CLI).
DeviceProfile probe_opencl_profile(const cl::Platform& platform, const cl::Device& device);

namespace detail {
void set_kernel_arg_checked(const OpenCLDevice& dev, cl::Kernel& kernel, cl_uint index, size_t size,
                            const void* value);
inline void set_one(const OpenCLDevice& dev, cl::Kernel& k, cl_uint i, const cl::Buffer& b) {
  cl_mem m = b();
  set_kernel_arg_checked(dev, k, i, sizeof(cl_mem), &m);
}
inline void set_one(const OpenCLDevice& dev, cl::Kernel& k, cl_uint i, const ClLocalBytes& l) {
  set_kernel_arg_checked(dev, k, i, l.bytes, nullptr);
}
template <class T>
void set_one(const OpenCLDevice& dev, cl::Kernel& k, cl_uint i, const T& v) {
  // Scalars and cl_<type>N vectors by value. Pass the exact OpenCL C type
  // (cl_int for int, cl_uint for uint, cl_float for float, cl_long for long):
  // a size mismatch is reported as CL_INVALID_ARG_SIZE naming the argument.
  static_assert(std::is_trivially_copyable<T>::value && !std::is_pointer<T>::value,
                "kernel arguments are cl::Buffer, ClLocalBytes or plain scalars/vectors");
  set_kernel_arg_checked(dev, k, i, sizeof(T), &v);
}
}  // namespace detail

// Sets the kernel's arguments 0, 1, 2, ... in order; an error names the
// kernel, the argument index and the device.
template <class... A>
void set_kernel_args(const OpenCLDevice& dev, cl::Kernel& kernel, const A&... args) {
  cl_uint index = 0;
  (void)index;
  (detail::set_one(dev, kernel, index++, args), ...);
}

}  // namespace ek
