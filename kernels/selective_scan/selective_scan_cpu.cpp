// selective_scan on the CPU: Halide AOT pipelines per ISA (see
// selective_scan_generator.cpp) and the driver that walks groups and token
// segments.
//
// Driver: for each group of channels (Bm/Cm sliced to that group, so the
// pipelines see one B/C vector per token) the tokens are processed in
// segments of `chunk` tokens; each segment is one parallel pipeline call over
// all channels of the group, and the state is handed from segment to segment
// through two scratch buffers (h0 -> s0 -> s1 -> s0 ... -> hT). Within a
// segment each task keeps its channels' state trajectory in L1/L2. T = 1 runs
// the decode-step pipeline instead (state read and written once; for N = 16
// its constant-stride build on whole 128-channel tiles, the general one on the
// rest). f16
// activations run the act_f16 builds of both pipelines, which read them in
// place.
#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/selective_scan/scan_cpu_common.h"
#include "kernels/selective_scan/selective_scan.h"
#include "kernels/selective_scan/selective_scan_step_tile.h"

#if EK_SCAN_HAVE_avx512
#include "ek_selective_scan_chunk_avx512.h"
#include "ek_selective_scan_step_avx512.h"
#include "ek_selective_scan_chunk_f16_avx512.h"
#include "ek_selective_scan_step_f16_avx512.h"
#include "ek_selective_scan_step_n16_avx512.h"
#include "ek_selective_scan_step_f16_n16_avx512.h"
#endif
#if EK_SCAN_HAVE_avx2
#include "ek_selective_scan_chunk_avx2.h"
#include "ek_selective_scan_step_avx2.h"
#include "ek_selective_scan_chunk_f16_avx2.h"
#include "ek_selective_scan_step_f16_avx2.h"
#include "ek_selective_scan_step_n16_avx2.h"
#include "ek_selective_scan_step_f16_n16_avx2.h"
#endif
#if EK_SCAN_HAVE_sse41
#include "ek_selective_scan_chunk_sse41.h"
#include "ek_selective_scan_step_sse41.h"
#include "ek_selective_scan_chunk_f16_sse41.h"
#include "ek_selective_scan_step_f16_sse41.h"
#include "ek_selective_scan_step_n16_sse41.h"
#include "ek_selective_scan_step_f16_n16_sse41.h"
#endif
#if EK_SCAN_HAVE_neon
#include "ek_selective_scan_chunk_neon.h"
#include "ek_selective_scan_step_neon.h"
#include "ek_selective_scan_chunk_f16_neon.h"
#include "ek_selective_scan_step_f16_neon.h"
#include "ek_selective_scan_step_n16_neon.h"
#include "ek_selective_scan_step_f16_n16_neon.h"
#endif

namespace ek {
namespace {

using scan_cpu::IsaBuild;
using scan_cpu::tensor_view;
using scan_cpu::view;

constexpr const char* kOp = "selective_scan";

// Both pipelines: (user_context) u, delta, z, A, Bm, Cm, Dskip, delta_bias,
// h_in, has_z, delta_softplus -> y, hT.
using PipelineFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*,
                           halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, bool, bool,
                           halide_buffer_t*, halide_buffer_t*);
struct Pipelines {
  PipelineFn chunk, step;          // f32 activations
  PipelineFn chunk_f16, step_f16;  // f16 activations (as uint16 bits)
  PipelineFn step_n16, step_f16_n16;  // the decode step built for N = 16
};

class SelectiveScanCpu final : public Invocation {
 public:
  SelectiveScanCpu(Device& dev, const OpCall& call, const Tuning& tuning, Pipelines fns, std::string name)
      : dev_(dev), call_(call), a_(SelectiveScanArgs::parse(call)), fns_(fns), name_(std::move(name)) {
    auto it = tuning.find("chunk");
    chunk_ = it != tuning.end() ? it->second : kDefaultChunk;
    EK_CHECK_ARG(chunk_ >= 1, kOp, ": tunable chunk=", chunk_, " must be >= 1");
    const int64_t states = a_.batch * a_.channels * a_.state;
    if (!a_.has_dskip || !a_.has_delta_bias) zeros_d_.assign(static_cast<size_t>(a_.channels), 0.0f);
    if (!a_.has_h0) zero_state_.assign(static_cast<size_t>(states), 0.0f);
    const int64_t segments = a_.tokens == 1 ? 1 : (a_.tokens + chunk_ - 1) / chunk_;
    if (segments > 1) scratch_[0].resize(static_cast<size_t>(states));
    if (segments > 2) scratch_[1].resize(static_cast<size_t>(states));
  }

  void execute() override {
    scan_cpu::use_threads(dev_);
    const int64_t B = a_.batch, T = a_.tokens, D = a_.channels, N = a_.state, G = a_.groups;
    const int64_t cpg = a_.channels_per_group();
    const TensorRef& u = call_.get("u");
    const TensorRef& delta = call_.get("delta");
    const float* A = call_.get("A").as<float>();
    const TensorRef& Bm = call_.get("Bm");
    const TensorRef& Cm = call_.get("Cm");
    const TensorRef& z = a_.has_z ? call_.get("z") : u;  // not read without has_z
    const TensorRef& y = call_.get("y");
    const bool f16 = a_.activations == DType::f16;
    const PipelineFn chunk_fn = f16 ? fns_.chunk_f16 : fns_.chunk;
    const float* dskip = a_.has_dskip ? call_.get("Dskip").as<float>() : zeros_d_.data();
    const float* bias = a_.has_delta_bias ? call_.get("delta_bias").as<float>() : zeros_d_.data();
    const float* h0 = a_.has_h0 ? call_.get("h0").as<float>() : zero_state_.data();
    float* hT = call_.get("hT").as<float>();

    for (int64_t g = 0; g < G; ++g) {
      const int64_t d0 = g * cpg;
      auto A_v = view(A + d0 * N, {{N, 1}, {cpg, N}});
      auto dskip_v = view(dskip + d0, {{cpg, 1}});
      auto bias_v = view(bias + d0, {{cpg, 1}});
      auto state = [&](const float* base) { return view(base + d0 * N, {{N, 1}, {cpg, N}, {B, D * N}}); };
      if (T == 1) {
        // The N = 16 step is built for whole tiles of channels (constant
        // offsets throughout); the rest of a group, if any, takes the
        // general step.
        const int64_t whole = N == 16 ? cpg / selective_scan_step::kTileChannels * selective_scan_step::kTileChannels : 0;
        // Sequences [b0, b0 + nb) of channels [c0, c0 + count) of the group.
        auto run_step = [&](PipelineFn fn, int64_t c0, int64_t count, int64_t b0, int64_t nb) {
          const int64_t dc = d0 + c0;
          auto tok = [&](const TensorRef& t) { return tensor_view(t, b0 * D + dc, {{count, 1}, {nb, D}}); };
          auto bc = [&](const TensorRef& t) { return tensor_view(t, b0 * G * N + g * N, {{N, 1}, {nb, G * N}}); };
          auto rows = [&](const float* base) {
            return view(base + b0 * D * N + dc * N, {{N, 1}, {count, N}, {nb, D * N}});
          };
          auto u_v = tok(u), delta_v = tok(delta), z_v = tok(z), y_v = tok(y);
          auto B_v = bc(Bm), C_v = bc(Cm);
          auto A_rows = view(A + dc * N, {{N, 1}, {count, N}});
          auto dskip_c = view(dskip + dc, {{count, 1}});
          auto bias_c = view(bias + dc, {{count, 1}});
          auto hin_v = rows(h0), hT_v = rows(hT);
          cpu::halide_run(name_, fn, u_v.raw_buffer(), delta_v.raw_buffer(), z_v.raw_buffer(), A_rows.raw_buffer(),
                          B_v.raw_buffer(), C_v.raw_buffer(), dskip_c.raw_buffer(), bias_c.raw_buffer(),
                          hin_v.raw_buffer(), a_.has_z, a_.delta_softplus, y_v.raw_buffer(), hT_v.raw_buffer());
        };
        auto run_sequences = [&](int64_t b0, int64_t nb) {
          if (whole > 0) run_step(f16 ? fns_.step_f16_n16 : fns_.step_n16, 0, whole, b0, nb);
          if (whole < cpg) run_step(f16 ? fns_.step_f16 : fns_.step, whole, cpg - whole, b0, nb);
        };
        // A batch that divides evenly over the pool's threads runs whole
        // sequences per thread (the pipeline's own channel loop then runs
        // inline): each thread streams its own states, and the batch pays
        // one barrier instead of one per sequence.
        const int threads = cpu::pool_threads();
        if (threads > 1 && B >= threads && B % threads == 0) {
          cpu::parallel_for(static_cast<int>(B), [&](int b) { run_sequences(b, 1); });
        } else {
          run_sequences(0, B);
        }
        continue;
      }
      const int64_t segments = (T + chunk_ - 1) / chunk_;
      for (int64_t s = 0; s < segments; ++s) {
        const int64_t t0 = s * chunk_, len = std::min(chunk_, T - t0);
        auto tok = [&](const TensorRef& t) {
          return tensor_view(t, t0 * D + d0, {{cpg, 1}, {len, D}, {B, T * D}});
        };
        auto bc = [&](const TensorRef& t) {
          return tensor_view(t, t0 * G * N + g * N, {{N, 1}, {len, G * N}, {B, T * G * N}});
        };
        const float* in = s == 0 ? h0 : scratch_[(s - 1) % 2].data();
        float* out = s == segments - 1 ? hT : scratch_[s % 2].data();
        auto u_v = tok(u), delta_v = tok(delta), z_v = tok(z), y_v = tok(y);
        auto B_v = bc(Bm), C_v = bc(Cm);
        auto hin_v = state(in), hout_v = state(out);
        cpu::halide_run(name_, chunk_fn, u_v.raw_buffer(), delta_v.raw_buffer(), z_v.raw_buffer(),
                               A_v.raw_buffer(), B_v.raw_buffer(), C_v.raw_buffer(), dskip_v.raw_buffer(),
                               bias_v.raw_buffer(), hin_v.raw_buffer(), a_.has_z, a_.delta_softplus,
                               y_v.raw_buffer(), hout_v.raw_buffer());
      }
    }
  }

  void read_outputs() override {}  // the pipelines write the call's outputs in place

  static constexpr int64_t kDefaultChunk = 64;

 private:
  Device& dev_;
  OpCall call_;
  SelectiveScanArgs a_;
  Pipelines fns_;
  std::string name_;  // "selective_scan/cpu/halide_avx512" for error messages
  int64_t chunk_ = kDefaultChunk;
  std::vector<float> zeros_d_, zero_state_;
  std::vector<float> scratch_[2];
};

void register_isa(const IsaBuild& isa, Pipelines fns) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "cpu";
  k.variant = cat("halide_", isa.name);
  k.doc = "Halide: channels vectorised, state trajectory per tile kept in cache over a segment of `chunk` tokens; "
          "dedicated decode-step pipeline for T = 1; f32 or f16 activations (f16 read in place, widened exactly)";
  k.priority = isa.priority;
  k.nmse_bound = 1e-7;  // fp32 state and arithmetic; f16 activations are read exactly
  k.tunables = {{"chunk", {16, 32, 64, 128, 256}, SelectiveScanCpu::kDefaultChunk}};
  k.ineligible_reason = [isa](const DeviceProfile& p, const OpCall&) { return scan_cpu::missing_features(p, isa); };
  const std::string name = k.id();
  k.bind = [fns, name](Device& dev, const OpCall& call, const Tuning& tuning) -> std::unique_ptr<Invocation> {
    return std::make_unique<SelectiveScanCpu>(dev, call, tuning, fns, name);
  };
  Registry::instance().add_kernel(std::move(k));
}

#define EK_SCAN_REGISTER(isa)                                                                              \
  register_isa(scan_cpu::isa_build(#isa), {ek_selective_scan_chunk_##isa, ek_selective_scan_step_##isa,       \
                                           ek_selective_scan_chunk_f16_##isa, ek_selective_scan_step_f16_##isa, \
                                           ek_selective_scan_step_n16_##isa, ek_selective_scan_step_f16_n16_##isa})

const bool registered = [] {
#if EK_SCAN_HAVE_avx512
  EK_SCAN_REGISTER(avx512);
#endif
#if EK_SCAN_HAVE_avx2
  EK_SCAN_REGISTER(avx2);
#endif
#if EK_SCAN_HAVE_sse41
  EK_SCAN_REGISTER(sse41);
#endif
#if EK_SCAN_HAVE_neon
  EK_SCAN_REGISTER(neon);
#endif
  return true;
}();

}  // namespace
}  // namespace ek
