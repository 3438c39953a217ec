// Calling Halide AOT pipelines from CPU kernels: views of host tensors as
// halide_buffer_t (no copies), a per-call context that collects the Halide
// runtime's error messages (the libraries are built with the user_context
// feature, see codegen/halide.cmake), and bounds queries that tell whether a
// pipeline's schedule fits a shape. Plumbing only, no operator math.
#pragma once

#include <HalideBuffer.h>
#include <HalideRuntime.h>

#include <mutex>
#include <string>
#include <vector>

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/cpu_thread_pool.h"
#include "kernels/common/error.h"
#include "kernels/common/tensor.h"

namespace ek::cpu {

inline halide_type_t halide_type_of(DType t) {
  switch (t) {
    case DType::f32: return halide_type_t(halide_type_float, 32);
    case DType::f16: return halide_type_t(halide_type_float, 16);
    case DType::i8: return halide_type_t(halide_type_int, 8);
    case DType::u8: return halide_type_t(halide_type_uint, 8);
    case DType::i32: return halide_type_t(halide_type_int, 32);
    case DType::i64: return halide_type_t(halide_type_int, 64);
  }
  throw InvalidArgument("halide_type_of: unknown dtype");
}

// A dense Halide view of `t`'s memory with the given extents, innermost first
// (Halide order: the reverse of the tensor's shape, possibly flattened). The
// product of `extents` must equal t.numel(); extents must fit in int32.
inline Halide::Runtime::Buffer<void> halide_view(const TensorRef& t, const std::vector<int64_t>& extents) {
  std::vector<int> sizes;
  int64_t n = 1;
  for (int64_t e : extents) {
    if (e < 0 || e > INT32_MAX) throw InvalidArgument(cat("halide_view: extent ", e, " does not fit in int32"));
    sizes.push_back(static_cast<int>(e));
    n *= e;
  }
  if (n != t.numel()) throw InvalidArgument(cat("halide_view: ", n, " elements for a tensor of ", t.numel()));
  return Halide::Runtime::Buffer<void>(halide_type_of(t.dtype), t.data, sizes);
}

// A buffer in bounds-query mode (no memory): after a pipeline call its dims
// hold the region the pipeline would touch.
inline Halide::Runtime::Buffer<void> halide_query(DType dtype, const std::vector<int64_t>& extents) {
  std::vector<int> sizes(extents.begin(), extents.end());
  return Halide::Runtime::Buffer<void>(halide_type_of(dtype), nullptr, sizes);
}

namespace detail {
void install_halide_error_handler();
}  // namespace detail

// Collects the messages the Halide runtime reports during one call; pass its
// address as the pipeline's user_context. Without it, Halide's default
// handler would print and abort the process.
struct HalideCallContext {
  HalideCallContext() { detail::install_halide_error_handler(); }
  std::string error;
};

namespace detail {
inline void halide_error_to_context(void* user_context, const char* msg) {
  if (user_context) {
    auto* ctx = static_cast<HalideCallContext*>(user_context);
    if (!ctx->error.empty()) ctx->error += "; ";
    ctx->error += msg;
  } else {
    // Libraries built without user_context: keep Halide's default behaviour.
    fprintf(stderr, "Halide error: %s\n", msg);
  }
}
inline void install_halide_error_handler() {
  static std::once_flag once;
  std::call_once(once, [] { halide_set_error_handler(&halide_error_to_context); });
}
}  // namespace detail

// Runs pipeline(&ctx, args...) and throws DeviceError naming `what` with the
// runtime's message when it fails.
template <class Fn, class... Args>
void halide_run(const std::string& what, Fn pipeline, Args&&... args) {
  HalideCallContext ctx;
  const int rc = pipeline(&ctx, std::forward<Args>(args)...);
  if (rc != 0) throw DeviceError(cat(what, ": Halide pipeline failed (code ", rc, "): ", ctx.error));
}

// After a bounds-query call: "" when every buffer's region lies inside the
// extents it was created with; else which buffer the schedule would overrun.
// Used for autoscheduled variants, whose tiling may assume extents at least
// as large as its tiles (a query that fails outright, e.g. on a constraint,
// means the same).
inline std::string halide_query_overrun(const std::vector<std::pair<std::string, const Halide::Runtime::Buffer<void>*>>& bufs,
                                        const std::vector<std::vector<int64_t>>& extents) {
  for (size_t i = 0; i < bufs.size(); ++i) {
    const auto& b = *bufs[i].second;
    for (int d = 0; d < b.dimensions(); ++d) {
      const int64_t lo = b.dim(d).min(), hi = lo + b.dim(d).extent();
      if (lo < 0 || hi > extents[i][d])
        return cat("schedule touches ", bufs[i].first, " dim ", d, " over [", lo, ", ", hi, "), tensor has [0, ",
                   extents[i][d], ")");
    }
  }
  return "";
}

// Why a CPU kernel built for `features` cannot run on profile `p` ("" if it
// can): the first ISA feature the profile lacks.
template <class Features>
std::string missing_cpu_feature(const DeviceProfile& p, const Features& features) {
  for (const auto& f : features)
    if (!p.has(f)) return cat("needs CPU feature ", f);
  return "";
}

// The CPU device a kernel is being bound to; `kernel` names it in the error
// when the device is of another backend.
inline CpuDevice& cpu_device_for(Device& dev, const std::string& kernel) {
  auto* cpu = dynamic_cast<CpuDevice*>(&dev);
  if (!cpu) throw InvalidArgument(cat(kernel, ": device ", dev.profile().label(), " is not a CPU"));
  return *cpu;
}

// Threads of the pool behind Halide's parallel loops for the device a kernel
// was bound to (all Halide kernels share one pool, see cpu_thread_pool.h; the
// device's count wins at each call).
inline void use_device_threads(int threads) {
  if (threads > 0) set_pool_threads(threads);
}

}  // namespace ek::cpu
