// CPU kernels of rms_norm: the Halide AOT libraries built from
// rms_norm_generator.cpp (kernels/rms_norm/CMakeLists.txt), one KernelImpl per
// ISA and schedule. Each variant holds four instantiations: {plain, gated} x
// {f32, f16} input. The call's host tensors are wrapped without copies.
#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/rms_norm/rms_norm.h"

#if defined(__x86_64__)
#include "ek_rms_norm_f16_auto_avx2.h"
#include "ek_rms_norm_f16_auto_avx512.h"
#include "ek_rms_norm_f16_avx2.h"
#include "ek_rms_norm_f16_avx512.h"
#include "ek_rms_norm_f16_sse41.h"
#include "ek_rms_norm_f32_auto_avx2.h"
#include "ek_rms_norm_f32_auto_avx512.h"
#include "ek_rms_norm_f32_avx2.h"
#include "ek_rms_norm_f32_avx512.h"
#include "ek_rms_norm_f32_sse41.h"
#include "ek_rms_norm_gated_f16_auto_avx2.h"
#include "ek_rms_norm_gated_f16_auto_avx512.h"
#include "ek_rms_norm_gated_f16_avx2.h"
#include "ek_rms_norm_gated_f16_avx512.h"
#include "ek_rms_norm_gated_f16_sse41.h"
#include "ek_rms_norm_gated_f32_auto_avx2.h"
#include "ek_rms_norm_gated_f32_auto_avx512.h"
#include "ek_rms_norm_gated_f32_avx2.h"
#include "ek_rms_norm_gated_f32_avx512.h"
#include "ek_rms_norm_gated_f32_sse41.h"
#elif defined(__aarch64__)
#include "ek_rms_norm_f16_auto_neon.h"
#include "ek_rms_norm_f16_neon.h"
#include "ek_rms_norm_f32_auto_neon.h"
#include "ek_rms_norm_f32_neon.h"
#include "ek_rms_norm_gated_f16_auto_neon.h"
#include "ek_rms_norm_gated_f16_neon.h"
#include "ek_rms_norm_gated_f32_auto_neon.h"
#include "ek_rms_norm_gated_f32_neon.h"
#endif

namespace ek {
namespace {

constexpr const char* kOp = "rms_norm";

using PlainFn = int (*)(const void*, halide_buffer_t* x, halide_buffer_t* w, float eps, halide_buffer_t* y);
using GatedFn = int (*)(const void*, halide_buffer_t* x, halide_buffer_t* z, halide_buffer_t* w, float eps,
                        halide_buffer_t* y);

struct Pipelines {
  PlainFn plain_f32, plain_f16;
  GatedFn gated_f32, gated_f16;
};

struct Variant {
  const char* name;
  int priority;
  bool autoscheduled;
  std::vector<std::string> features;  // profile features the Halide target needs
  Pipelines fns;
};

#define EK_RMS_NORM_PIPELINES(sched)                                                               \
  Pipelines {                                                                                      \
    ek_rms_norm_f32_##sched, ek_rms_norm_f16_##sched, ek_rms_norm_gated_f32_##sched,               \
        ek_rms_norm_gated_f16_##sched                                                              \
  }

// Priorities: the widest hand-scheduled ISA the CPU has wins; autoscheduled
// variants rank below every hand variant (pick them by force or tuning).
std::vector<Variant> variants() {
#if defined(__x86_64__)
  const std::vector<std::string> avx2 = {"avx2", "fma", "f16c"};
  const std::vector<std::string> avx512 = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"};
  return {
      {"halide_avx512", 30, false, avx512, EK_RMS_NORM_PIPELINES(avx512)},
      {"halide_avx2", 20, false, avx2, EK_RMS_NORM_PIPELINES(avx2)},
      {"halide_sse41", 10, false, {"sse41"}, EK_RMS_NORM_PIPELINES(sse41)},
      {"halide_auto_avx512", 3, true, avx512, EK_RMS_NORM_PIPELINES(auto_avx512)},
      {"halide_auto_avx2", 2, true, avx2, EK_RMS_NORM_PIPELINES(auto_avx2)},
  };
#elif defined(__aarch64__)
  return {
      {"halide_neon", 10, false, {"neon"}, EK_RMS_NORM_PIPELINES(neon)},
      {"halide_auto_neon", 2, true, {"neon"}, EK_RMS_NORM_PIPELINES(auto_neon)},
  };
#else
  return {};
#endif
}

// The call's tensors as Halide buffers: x and z flattened to [rows, dim].
struct Views {
  Halide::Runtime::Buffer<void> x, z, w, y;
};

Views make_views(const OpCall& call, const RmsNormArgs& a) {
  Views v;
  v.x = cpu::halide_view(call.get("x"), {a.dim, a.rows});
  if (a.gated) v.z = cpu::halide_view(call.get("z"), {a.dim, a.rows});
  v.w = cpu::halide_view(call.get("w"), {a.dim});
  v.y = cpu::halide_view(call.get("y"), {a.dim, a.rows});
  return v;
}

int run_pipeline(const Pipelines& p, const RmsNormArgs& a, void* ctx, Views& v) {
  const bool f16 = a.x_dtype == DType::f16;
  if (a.gated)
    return (f16 ? p.gated_f16 : p.gated_f32)(ctx, v.x.raw_buffer(), v.z.raw_buffer(), v.w.raw_buffer(), a.eps,
                                             v.y.raw_buffer());
  return (f16 ? p.plain_f16 : p.plain_f32)(ctx, v.x.raw_buffer(), v.w.raw_buffer(), a.eps, v.y.raw_buffer());
}

// Autoscheduled pipelines may tile with extents larger than small tensors:
// ask the pipeline (bounds query) which region it would touch.
std::string autoschedule_fits(const Pipelines& p, const RmsNormArgs& a) {
  if (a.rows == 0) return "";
  Views q;
  q.x = cpu::halide_query(a.x_dtype, {a.dim, a.rows});
  if (a.gated) q.z = cpu::halide_query(a.x_dtype, {a.dim, a.rows});
  q.w = cpu::halide_query(DType::f32, {a.dim});
  q.y = cpu::halide_query(DType::f32, {a.dim, a.rows});
  cpu::HalideCallContext ctx;
  if (run_pipeline(p, a, &ctx, q) != 0) return "autoscheduled tiling does not fit this shape: " + ctx.error;
  std::vector<std::pair<std::string, const Halide::Runtime::Buffer<void>*>> bufs = {
      {"x", &q.x}, {"w", &q.w}, {"y", &q.y}};
  std::vector<std::vector<int64_t>> extents = {{a.dim, a.rows}, {a.dim}, {a.dim, a.rows}};
  if (a.gated) {
    bufs.push_back({"z", &q.z});
    extents.push_back({a.dim, a.rows});
  }
  const std::string overrun = cpu::halide_query_overrun(bufs, extents);
  return overrun.empty() ? "" : "autoscheduled tiling does not fit this shape: " + overrun;
}

class RmsNormInvocation : public Invocation {
 public:
  RmsNormInvocation(const Variant& v, const OpCall& call, int threads)
      : variant_(v), args_(RmsNormArgs::parse(call)), views_(make_views(call, args_)), threads_(threads) {}

  void execute() override {
    if (args_.rows == 0) return;  // no elements: Halide would treat null buffers as a bounds query
    cpu::use_device_threads(threads_);
    cpu::halide_run(cat(kOp, "/cpu/", variant_.name), [&](void* ctx) { return run_pipeline(variant_.fns, args_, ctx, views_); });
  }
  void read_outputs() override {}  // y is written in place

 private:
  const Variant& variant_;
  RmsNormArgs args_;
  Views views_;
  int threads_;
};

const std::vector<Variant>& all_variants() {
  static const std::vector<Variant> v = variants();
  return v;
}

struct Registrar {
  Registrar() {
    for (const Variant& v : all_variants()) {
      KernelImpl k;
      k.op = kOp;
      k.backend = "cpu";
      k.variant = v.name;
      k.doc = cat("Halide AOT, ", v.autoscheduled ? "Adams2019 autoschedule" : "hand schedule",
                  " (rows parallel, dim vectorised, f32 accumulation)");
      k.priority = v.priority;
      k.nmse_bound = 1e-7;  // f32 accumulation; f16 input is exact in f32
      k.ineligible_reason = [&v](const DeviceProfile& p, const OpCall& call) -> std::string {
        if (std::string why = cpu::missing_cpu_feature(p, v.features); !why.empty()) return why;
        const RmsNormArgs a = RmsNormArgs::parse(call);
        if (a.x_dtype != DType::f32 && a.x_dtype != DType::f16)
          return cat("x dtype ", dtype_name(a.x_dtype), " not supported");
        if (v.autoscheduled) return autoschedule_fits(v.fns, a);
        return "";
      };
      k.bind = [&v](Device& dev, const OpCall& call, const Tuning&) -> std::unique_ptr<Invocation> {
        CpuDevice& cpu = cpu::cpu_device_for(dev, cat(kOp, "/cpu/", v.name));
        return std::make_unique<RmsNormInvocation>(v, call, cpu.threads());
      };
      RegisterKernel{std::move(k)};
    }
  }
};
const Registrar registrar;

}  // namespace
}  // namespace ek
