// Plumbing shared by the CPU (Halide) scan kernels of selective_scan and
// ssd_scan: strided Halide views of host memory (slices of the call's
// tensors, f32 or f16 activations, scratch states), and the per-ISA builds with the profile features
// each needs. Calls go through backends/cpu/halide_call.h (user_context error
// capture). No operator math.
#pragma once

#include <HalideBuffer.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/common/error.h"
#include "kernels/common/op.h"

namespace ek::scan_cpu {

// One dimension of a view: extent and stride in elements (Halide order:
// innermost first).
struct Dim {
  int64_t extent;
  int64_t stride;
};

// A Halide view of `base` with the given dims (mins 0). The op contracts
// bound every extent and offset below 2^31.
inline Halide::Runtime::Buffer<float> view(const float* base, std::initializer_list<Dim> dims) {
  std::vector<halide_dimension_t> shape;
  for (const Dim& d : dims)
    shape.push_back(halide_dimension_t(0, static_cast<int32_t>(d.extent), static_cast<int32_t>(d.stride)));
  return Halide::Runtime::Buffer<float>(const_cast<float*>(base), static_cast<int>(shape.size()), shape.data());
}

// A Halide view of a call tensor, f32 or f16 (as uint16 bits: the act_f16
// pipelines' input type), starting `offset` elements into it.
inline Halide::Runtime::Buffer<void> tensor_view(const TensorRef& t, int64_t offset, std::initializer_list<Dim> dims) {
  std::vector<halide_dimension_t> shape;
  for (const Dim& d : dims)
    shape.push_back(halide_dimension_t(0, static_cast<int32_t>(d.extent), static_cast<int32_t>(d.stride)));
  const halide_type_t type = t.dtype == DType::f16 ? halide_type_t(halide_type_uint, 16) : halide_type_t(halide_type_float, 32);
  char* base = static_cast<char*>(t.data) + offset * static_cast<int64_t>(dtype_size(t.dtype));
  return Halide::Runtime::Buffer<void>(type, base, static_cast<int>(shape.size()), shape.data());
}

// An ISA build of codegen/halide.cmake (EK_HALIDE_ISAS): its name (variant
// "halide_<name>"), the profile features its Halide target needs, and the
// floats per vector it was scheduled for.
struct IsaBuild {
  const char* name;
  std::vector<std::string> features;
  int vector_width;
  int priority;
};

inline IsaBuild isa_build(const std::string& name) {
  if (name == "avx512") return {"avx512", {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"}, 16, 30};
  if (name == "avx2") return {"avx2", {"avx2", "fma", "f16c"}, 8, 20};
  if (name == "sse41") return {"sse41", {"sse41"}, 4, 10};
  if (name == "neon") return {"neon", {"neon"}, 4, 10};
  throw InvalidArgument(cat("scan kernels: unknown ISA build ", name));
}

// "" when the profile has every feature the build needs, else which one is
// missing.
inline std::string missing_features(const DeviceProfile& p, const IsaBuild& isa) {
  if (p.backend != "cpu") return "not a CPU device";
  return cpu::missing_cpu_feature(p, isa.features);
}

// Worker threads of the device the kernel was bound to.
inline void use_threads(Device& dev) {
  if (auto* cpu = dynamic_cast<CpuDevice*>(&dev)) cpu::use_device_threads(cpu->threads());
}

}  // namespace ek::scan_cpu
