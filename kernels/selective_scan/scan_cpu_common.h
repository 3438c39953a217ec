// Plumbing shared by the CPU (Halide) scan kernels: strided Halide views of
// host tensors, calling an AOT pipeline with its error turned into an
// exception, and the per-ISA variant table. No operator math.
#pragma once

#include <HalideBuffer.h>
#include <HalideRuntime.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "backends/cpu/cpu_device.h"
#include "kernels/common/error.h"
#include "kernels/common/op.h"

namespace ek::scan_cpu {

// One dimension of a view: extent and stride in elements (Halide order:
// innermost first).
struct Dim {
  int64_t extent;
  int64_t stride;
};

// A Halide view of `base` with the given dims (mins 0). Extents and strides
// were validated against 2^31 by the op contracts.
inline Halide::Runtime::Buffer<float> view(const float* base, std::initializer_list<Dim> dims) {
  std::vector<halide_dimension_t> shape;
  for (const Dim& d : dims)
    shape.push_back(halide_dimension_t(0, static_cast<int32_t>(d.extent), static_cast<int32_t>(d.stride)));
  return Halide::Runtime::Buffer<float>(const_cast<float*>(base), static_cast<int>(shape.size()), shape.data());
}

namespace detail {
// The Halide runtime's default error handler aborts the process. This one
// keeps the message for the failing thread's call; the pipelines are built
// without user_context, so a thread-local is how it reaches run_pipeline.
inline thread_local std::string last_halide_error;
inline void record_halide_error(void*, const char* msg) {
  if (!last_halide_error.empty()) last_halide_error += "; ";
  last_halide_error += msg;
}
}  // namespace detail

// Calls an AOT pipeline; a non-zero return (a violated Halide assertion,
// which validation should have made impossible) becomes DeviceError.
template <class Fn, class... Args>
void run_pipeline(const char* what, Fn fn, Args&&... args) {
  static const bool handler_installed = [] {
    halide_set_error_handler(&detail::record_halide_error);
    return true;
  }();
  (void)handler_installed;
  detail::last_halide_error.clear();
  const int rc = fn(std::forward<Args>(args)...);
  if (rc != 0)
    throw DeviceError(cat(what, ": Halide pipeline failed with code ", rc, ": ", detail::last_halide_error));
}

// The ISA builds (codegen targets of the top CMakeLists) and the profile
// features each needs.
enum class Isa { avx512, avx2, base };
inline std::vector<const char*> isa_features(Isa isa) {
  switch (isa) {
    case Isa::avx512: return {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma", "f16c"};
    case Isa::avx2: return {"avx2", "fma", "f16c"};
    case Isa::base: break;
  }
  return {};
}
inline const char* isa_name(Isa isa) {
  return isa == Isa::avx512 ? "avx512" : isa == Isa::avx2 ? "avx2" : "base";
}

// "" when the profile has every feature the ISA build needs, else which one
// is missing.
inline std::string missing_features(const DeviceProfile& p, Isa isa) {
  if (p.backend != "cpu") return "not a CPU device";
  for (const char* f : isa_features(isa))
    if (!p.has(f)) return cat("needs CPU feature ", f);
  return "";
}

// The CPU device a kernel was bound to; its thread count drives Halide's pool.
inline void use_threads(Device& dev) {
  if (auto* cpu = dynamic_cast<CpuDevice*>(&dev)) halide_set_num_threads(cpu->threads());
}

}  // namespace ek::scan_cpu
