// CPU kernels of causal_conv1d: the Halide AOT libraries built from
// causal_conv1d_generator.cpp (kernels/causal_conv1d/CMakeLists.txt), one
// KernelImpl per ISA and schedule; each holds an f32 and an f16 instantiation,
// and the hand-scheduled ones a decode build besides (chosen for T <= 4).
// The call's host tensors are wrapped without copies; a missing bias or s0 is
// passed as zeros allocated once per binding.
#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/causal_conv1d/causal_conv1d.h"

#if defined(__x86_64__)
#include "ek_causal_conv1d_decode_f16_avx2.h"
#include "ek_causal_conv1d_decode_f16_avx512.h"
#include "ek_causal_conv1d_decode_f16_sse41.h"
#include "ek_causal_conv1d_decode_f32_avx2.h"
#include "ek_causal_conv1d_decode_f32_avx512.h"
#include "ek_causal_conv1d_decode_f32_sse41.h"
#include "ek_causal_conv1d_f16_auto_avx2.h"
#include "ek_causal_conv1d_f16_auto_avx512.h"
#include "ek_causal_conv1d_f16_avx2.h"
#include "ek_causal_conv1d_f16_avx512.h"
#include "ek_causal_conv1d_f16_sse41.h"
#include "ek_causal_conv1d_f32_auto_avx2.h"
#include "ek_causal_conv1d_f32_auto_avx512.h"
#include "ek_causal_conv1d_f32_avx2.h"
#include "ek_causal_conv1d_f32_avx512.h"
#include "ek_causal_conv1d_f32_sse41.h"
#elif defined(__aarch64__)
#include "ek_causal_conv1d_decode_f16_neon.h"
#include "ek_causal_conv1d_decode_f32_neon.h"
#include "ek_causal_conv1d_f16_auto_neon.h"
#include "ek_causal_conv1d_f16_neon.h"
#include "ek_causal_conv1d_f32_auto_neon.h"
#include "ek_causal_conv1d_f32_neon.h"
#endif

namespace ek {
namespace {

constexpr const char* kOp = "causal_conv1d";

using ConvFn = int (*)(const void*, halide_buffer_t* x, halide_buffer_t* w, halide_buffer_t* bias,
                       halide_buffer_t* s0, bool silu, halide_buffer_t* y, halide_buffer_t* sT);

// Calls of at most this many tokens use the decode build.
constexpr int64_t kDecodeMaxTokens = 4;

struct Pipelines {
  ConvFn f32, f16;                // prefill build
  ConvFn decode_f32, decode_f16;  // decode build (the same ones when there is none)
};

struct Variant {
  const char* name;
  int priority;
  bool autoscheduled;
  std::vector<std::string> features;  // profile features the Halide target needs
  Pipelines fns;
};

#define EK_CONV_PIPELINES(isa)                                                                     \
  Pipelines {                                                                                      \
    ek_causal_conv1d_f32_##isa, ek_causal_conv1d_f16_##isa, ek_causal_conv1d_decode_f32_##isa,     \
        ek_causal_conv1d_decode_f16_##isa                                                          \
  }
#define EK_CONV_AUTO_PIPELINES(isa)                                                                \
  Pipelines {                                                                                      \
    ek_causal_conv1d_f32_auto_##isa, ek_causal_conv1d_f16_auto_##isa, ek_causal_conv1d_f32_auto_##isa, \
        ek_causal_conv1d_f16_auto_##isa                                                            \
  }

// Priorities: the widest hand-scheduled ISA the CPU has wins; autoscheduled
// variants rank below every hand variant (pick them by force or tuning).
std::vector<Variant> variants() {
#if defined(__x86_64__)
  const std::vector<std::string> avx2 = {"avx2", "fma", "f16c"};
  const std::vector<std::string> avx512 = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"};
  return {
      {"halide_avx512", 30, false, avx512, EK_CONV_PIPELINES(avx512)},
      {"halide_avx2", 20, false, avx2, EK_CONV_PIPELINES(avx2)},
      {"halide_sse41", 10, false, {"sse41"}, EK_CONV_PIPELINES(sse41)},
      {"halide_auto_avx512", 3, true, avx512, EK_CONV_AUTO_PIPELINES(avx512)},
      {"halide_auto_avx2", 2, true, avx2, EK_CONV_AUTO_PIPELINES(avx2)},
  };
#elif defined(__aarch64__)
  return {
      {"halide_neon", 10, false, {"neon"}, EK_CONV_PIPELINES(neon)},
      {"halide_auto_neon", 2, true, {"neon"}, EK_CONV_AUTO_PIPELINES(neon)},
  };
#else
  return {};
#endif
}

// Halide extents (innermost first) of the call's tensors.
struct Extents {
  std::vector<int64_t> x, w, bias, state;
  explicit Extents(const CausalConv1dArgs& a)
      : x{a.channels, a.tokens, a.batch},
        w{a.width, a.channels},
        bias{a.channels},
        state{a.channels, a.width - 1, a.batch} {}
};

struct Views {
  Halide::Runtime::Buffer<void> x, w, bias, s0, y, sT;
};

int run_pipeline(const Pipelines& p, const CausalConv1dArgs& a, void* ctx, Views& v) {
  const bool f16 = a.x_dtype == DType::f16;
  const ConvFn fn = a.tokens <= kDecodeMaxTokens ? (f16 ? p.decode_f16 : p.decode_f32) : (f16 ? p.f16 : p.f32);
  return fn(ctx, v.x.raw_buffer(), v.w.raw_buffer(), v.bias.raw_buffer(),
                v.s0.raw_buffer(), a.silu, v.y.raw_buffer(), v.sT.raw_buffer());
}

// Autoscheduled pipelines may tile with extents larger than small tensors:
// ask the pipeline (bounds query) which region it would touch.
std::string autoschedule_fits(const Pipelines& p, const CausalConv1dArgs& a) {
  const Extents e(a);
  Views q;
  q.x = cpu::halide_query(a.x_dtype, e.x);
  q.w = cpu::halide_query(DType::f32, e.w);
  q.bias = cpu::halide_query(DType::f32, e.bias);
  q.s0 = cpu::halide_query(a.x_dtype, e.state);
  q.y = cpu::halide_query(DType::f32, e.x);
  q.sT = cpu::halide_query(DType::f32, e.state);
  cpu::HalideCallContext ctx;
  if (run_pipeline(p, a, &ctx, q) != 0) return "autoscheduled tiling does not fit this shape: " + ctx.error;
  const std::string overrun = cpu::halide_query_overrun(
      {{"x", &q.x}, {"w", &q.w}, {"bias", &q.bias}, {"s0", &q.s0}, {"y", &q.y}, {"sT", &q.sT}},
      {e.x, e.w, e.bias, e.state, e.x, e.state});
  return overrun.empty() ? "" : "autoscheduled tiling does not fit this shape: " + overrun;
}

class CausalConv1dInvocation : public Invocation {
 public:
  CausalConv1dInvocation(const Variant& v, const OpCall& call, int threads)
      : variant_(v), args_(CausalConv1dArgs::parse(call)), threads_(threads) {
    const Extents e(args_);
    views_.x = cpu::halide_view(call.get("x"), e.x);
    views_.w = cpu::halide_view(call.get("w"), e.w);
    if (const TensorRef* b = call.find("bias")) {
      views_.bias = cpu::halide_view(*b, e.bias);
    } else {
      zero_bias_ = HostTensor(DType::f32, {args_.channels});
      views_.bias = cpu::halide_view(zero_bias_.ref(), e.bias);
    }
    if (const TensorRef* s = call.find("s0")) {
      views_.s0 = cpu::halide_view(*s, e.state);
    } else {
      zero_state_ = HostTensor(args_.x_dtype, {args_.batch, args_.width - 1, args_.channels});
      views_.s0 = cpu::halide_view(zero_state_.ref(), e.state);
    }
    views_.y = cpu::halide_view(call.get("y"), e.x);
    views_.sT = cpu::halide_view(call.get("sT"), e.state);
  }

  void execute() override {
    cpu::use_device_threads(threads_);
    cpu::halide_run(cat(kOp, "/cpu/", variant_.name),
                    [&](void* ctx) { return run_pipeline(variant_.fns, args_, ctx, views_); });
  }
  void read_outputs() override {}  // y and sT are written in place

 private:
  const Variant& variant_;
  CausalConv1dArgs args_;
  HostTensor zero_bias_, zero_state_;
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
                  " (d vectorised, taps unrolled per W, (b, t, d) blocks parallel)");
      k.priority = v.priority;
      k.nmse_bound = 1e-7;  // f32 arithmetic; f16 inputs are exact in f32
      k.ineligible_reason = [&v](const DeviceProfile& p, const OpCall& call) -> std::string {
        if (std::string why = cpu::missing_cpu_feature(p, v.features); !why.empty()) return why;
        const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
        if (a.x_dtype != DType::f32 && a.x_dtype != DType::f16)
          return cat("x dtype ", dtype_name(a.x_dtype), " not supported");
        if (v.autoscheduled) return autoschedule_fits(v.fns, a);
        return "";
      };
      k.bind = [&v](Device& dev, const OpCall& call, const Tuning&) -> std::unique_ptr<Invocation> {
        CpuDevice& cpu = cpu::cpu_device_for(dev, cat(kOp, "/cpu/", v.name));
        return std::make_unique<CausalConv1dInvocation>(v, call, cpu.threads());
      };
      RegisterKernel{std::move(k)};
    }
  }
};
const Registrar registrar;

}  // namespace
}  // namespace ek
