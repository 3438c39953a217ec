// ssd_scan on the CPU: Halide AOT pipelines per ISA (see
// ssd_scan_generator.cpp) and the driver that picks the form by T and walks
// the tokens in segments, handing the state from call to call through two
// scratch buffers (h0 -> s0 -> s1 -> s0 ... -> hT).
//
// Forms (tunable "form": 0 = by T, 1 = sequential, 2 = chunked):
//   sequential  segments of `seq_tokens` tokens, per-token state update with
//               the state in cache; T = 1 (decode) is one such call.
//   chunked     segments of `chunk` tokens, each one SSD chunk (matrix form).
// By T: sequential when T < `chunk_from_T`, else chunked. The default
// crossover is the measured one (docs/scan.md). f16 activations run the
// act_f16 builds of the scan pipelines, which read them in place.
#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/selective_scan/scan_cpu_common.h"
#include "kernels/ssd_scan/ssd_scan.h"

#if EK_SSD_HAVE_avx512 || EK_SSD_HAVE_avx2 || EK_SSD_HAVE_sse41 || EK_SSD_HAVE_neon
#include "ek_ssd_scan_chunk_generic.h"
#include "ek_ssd_scan_chunk_generic_f16.h"
#endif
#if EK_SSD_HAVE_avx512
#include "ek_ssd_scan_chunk_avx512.h"
#include "ek_ssd_scan_seq_avx512.h"
#include "ek_ssd_scan_step_avx512.h"
#include "ek_ssd_state_transpose_avx512.h"
#include "ek_ssd_scan_chunk_f16_avx512.h"
#include "ek_ssd_scan_seq_f16_avx512.h"
#include "ek_ssd_scan_step_f16_avx512.h"
#endif
#if EK_SSD_HAVE_avx2
#include "ek_ssd_scan_chunk_avx2.h"
#include "ek_ssd_scan_seq_avx2.h"
#include "ek_ssd_scan_step_avx2.h"
#include "ek_ssd_state_transpose_avx2.h"
#include "ek_ssd_scan_chunk_f16_avx2.h"
#include "ek_ssd_scan_seq_f16_avx2.h"
#include "ek_ssd_scan_step_f16_avx2.h"
#endif
#if EK_SSD_HAVE_sse41
#include "ek_ssd_scan_chunk_sse41.h"
#include "ek_ssd_scan_seq_sse41.h"
#include "ek_ssd_scan_step_sse41.h"
#include "ek_ssd_state_transpose_sse41.h"
#include "ek_ssd_scan_chunk_f16_sse41.h"
#include "ek_ssd_scan_seq_f16_sse41.h"
#include "ek_ssd_scan_step_f16_sse41.h"
#endif
#if EK_SSD_HAVE_neon
#include "ek_ssd_scan_chunk_neon.h"
#include "ek_ssd_scan_seq_neon.h"
#include "ek_ssd_scan_step_neon.h"
#include "ek_ssd_state_transpose_neon.h"
#include "ek_ssd_scan_chunk_f16_neon.h"
#include "ek_ssd_scan_seq_f16_neon.h"
#include "ek_ssd_scan_step_f16_neon.h"
#endif

namespace ek {
namespace {

using scan_cpu::IsaBuild;
using scan_cpu::tensor_view;
using scan_cpu::view;

constexpr const char* kOp = "ssd_scan";

// The scan pipelines: (user_context) x, dt, A, Bm, Cm, Dskip, dt_bias, h_in,
// dt_softplus, dt_min, dt_max, heads_per_group -> y, hT.
using PipelineFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, halide_buffer_t*,
                           halide_buffer_t*, halide_buffer_t*, halide_buffer_t*, bool, float, float, int,
                           halide_buffer_t*, halide_buffer_t*);
using TransposeFn = int (*)(const void*, halide_buffer_t*, halide_buffer_t*);
// The scan pipelines of one activation dtype.
struct ScanFns {
  PipelineFn step;           // T = 1
  PipelineFn seq;            // a few tokens, state in cache
  PipelineFn chunk;          // one SSD chunk, register-tiled (shape limits below)
  PipelineFn chunk_generic;  // one SSD chunk, any shape
};
struct Pipelines {
  ScanFns f32, f16;          // f32 activations; f16 activations (as uint16 bits)
  TransposeFn transpose;     // per-head state transpose
  // The fast chunk build's accumulator tile (CMakeLists.txt: tile_vectors x
  // tile_rows per ISA). Its tiles shift inwards at the edges, so they must
  // fit the shape.
  int tile_vectors, tile_rows;
  // Default tokens per chunk (CMakeLists.txt): 32 where the tile is 2 x 6
  // (Zen 3, AVX2: 1-11 % faster than 64 at T = 2048, docs/scan.md), 64 else.
  int64_t default_chunk;
  int vector_width;          // floats per vector of the ISA build
};

struct Defaults {
  static constexpr int64_t form = 0;
  static constexpr int64_t seq_tokens = 8;
  static constexpr int64_t chunk_from_T = 8;  // docs/scan.md: sequential wins at T <= 4 on an idle machine
};

int64_t tuned(const Tuning& t, const char* key, int64_t def) {
  auto it = t.find(key);
  return it == t.end() ? def : it->second;
}

class SsdScanCpu final : public Invocation {
 public:
  SsdScanCpu(Device& dev, const OpCall& call, const Tuning& tuning, Pipelines fns, std::string name)
      : dev_(dev), call_(call), a_(SsdScanArgs::parse(call)), fns_(fns), name_(std::move(name)) {
    const int64_t form = tuned(tuning, "form", Defaults::form);
    EK_CHECK_ARG(form >= 0 && form <= 2, kOp, ": tunable form=", form, " is not 0 (by T), 1 (sequential) or 2 (chunked)");
    chunk_ = tuned(tuning, "chunk", fns_.default_chunk);
    seq_tokens_ = tuned(tuning, "seq_tokens", Defaults::seq_tokens);
    EK_CHECK_ARG(chunk_ >= 1, kOp, ": tunable chunk=", chunk_, " must be >= 1");
    EK_CHECK_ARG(seq_tokens_ >= 1, kOp, ": tunable seq_tokens=", seq_tokens_, " must be >= 1");
    const int64_t from_T = tuned(tuning, "chunk_from_T", Defaults::chunk_from_T);
    chunked_ = form == 2 || (form == 0 && a_.tokens >= from_T);
    segment_ = chunked_ ? chunk_ : seq_tokens_;
    const int64_t states = a_.batch * a_.heads * a_.head_dim * a_.state;
    if (!a_.has_dskip || !a_.has_dt_bias) zeros_h_.assign(static_cast<size_t>(a_.heads), 0.0f);
    const int64_t segments = (a_.tokens + segment_ - 1) / segment_;
    if (chunked_) {
      // The chunked form carries the state transposed (p innermost).
      scratch_[0].assign(static_cast<size_t>(states), 0.0f);
      scratch_[1].resize(static_cast<size_t>(states));
    } else {
      if (!a_.has_h0) zero_state_.assign(static_cast<size_t>(states), 0.0f);
      if (segments > 1) scratch_[0].resize(static_cast<size_t>(states));
      if (segments > 2) scratch_[1].resize(static_cast<size_t>(states));
    }
  }

  void execute() override {
    scan_cpu::use_threads(dev_);
    const int64_t B = a_.batch, T = a_.tokens, H = a_.heads, P = a_.head_dim, N = a_.state, G = a_.groups;
    const TensorRef& x = call_.get("x");
    const TensorRef& dt = call_.get("dt");
    const float* A = call_.get("A").as<float>();
    const TensorRef& Bm = call_.get("Bm");
    const TensorRef& Cm = call_.get("Cm");
    const ScanFns& fns = a_.activations == DType::f16 ? fns_.f16 : fns_.f32;
    const float* dskip = a_.has_dskip ? call_.get("Dskip").as<float>() : zeros_h_.data();
    const float* bias = a_.has_dt_bias ? call_.get("dt_bias").as<float>() : zeros_h_.data();
    const float* h0 = a_.has_h0 ? call_.get("h0").as<float>() : zero_state_.data();  // sequential form
    const TensorRef& y = call_.get("y");
    float* hT = call_.get("hT").as<float>();

    auto A_v = view(A, {{H, 1}});
    auto dskip_v = view(dskip, {{H, 1}});
    auto bias_v = view(bias, {{H, 1}});
    // The state, as (n, p, h, b) (contract layout) or transposed (p, n, h, b).
    auto state = [&](const float* base) { return view(base, {{N, 1}, {P, N}, {H, P * N}, {B, H * P * N}}); };
    auto state_t = [&](const float* base) { return view(base, {{P, 1}, {N, P}, {H, P * N}, {B, H * P * N}}); };
    const int64_t segments = (T + segment_ - 1) / segment_;
    int cur = 0;  // chunked form: scratch_[cur] holds the transposed state
    if (chunked_ && a_.has_h0) {
      auto in = state(h0), out = state_t(scratch_[0].data());
      cpu::halide_run(name_, fns_.transpose, in.raw_buffer(), out.raw_buffer());
    }
    for (int64_t s = 0; s < segments; ++s) {
      const int64_t t0 = s * segment_, len = std::min(segment_, T - t0);
      auto x_v = tensor_view(x, t0 * H * P, {{P, 1}, {H, P}, {len, H * P}, {B, T * H * P}});
      auto y_v = tensor_view(y, t0 * H * P, {{P, 1}, {H, P}, {len, H * P}, {B, T * H * P}});
      auto dt_v = tensor_view(dt, t0 * H, {{H, 1}, {len, H}, {B, T * H}});
      auto B_v = tensor_view(Bm, t0 * G * N, {{N, 1}, {G, N}, {len, G * N}, {B, T * G * N}});
      auto C_v = tensor_view(Cm, t0 * G * N, {{N, 1}, {G, N}, {len, G * N}, {B, T * G * N}});
      PipelineFn fn;
      Halide::Runtime::Buffer<float> hin_v, hout_v;
      if (chunked_) {
        const bool fits = P >= fns_.tile_vectors * fns_.vector_width && N >= fns_.tile_rows && len >= fns_.tile_rows;
        fn = fits ? fns.chunk : fns.chunk_generic;
        hin_v = state_t(scratch_[cur].data());
        hout_v = state_t(scratch_[1 - cur].data());
        cur = 1 - cur;
      } else {
        fn = len == 1 ? fns.step : fns.seq;
        hin_v = state(s == 0 ? h0 : scratch_[(s - 1) % 2].data());
        hout_v = state(s == segments - 1 ? hT : scratch_[s % 2].data());
      }
      cpu::halide_run(name_, fn, x_v.raw_buffer(), dt_v.raw_buffer(), A_v.raw_buffer(), B_v.raw_buffer(),
                             C_v.raw_buffer(), dskip_v.raw_buffer(), bias_v.raw_buffer(), hin_v.raw_buffer(),
                             a_.dt_softplus, a_.dt_min, a_.dt_max, static_cast<int>(a_.heads_per_group()),
                             y_v.raw_buffer(), hout_v.raw_buffer());
    }
    if (chunked_) {
      auto in = state_t(scratch_[cur].data()), out = state(hT);
      cpu::halide_run(name_, fns_.transpose, in.raw_buffer(), out.raw_buffer());
    }
  }

  void read_outputs() override {}  // the pipelines write the call's outputs in place

 private:
  Device& dev_;
  OpCall call_;
  SsdScanArgs a_;
  Pipelines fns_;
  std::string name_;  // "ssd_scan/cpu/halide_avx512" for error messages
  int64_t chunk_ = 0, seq_tokens_ = Defaults::seq_tokens, segment_ = 1;
  bool chunked_ = false;
  std::vector<float> zeros_h_, zero_state_;
  std::vector<float> scratch_[2];
};

void register_isa(const IsaBuild& isa, Pipelines fns) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "cpu";
  k.variant = cat("halide_", isa.name);
  k.doc = "Halide: decode step (T = 1) and sequential form (per-token update, state in cache) for short T, chunked "
          "SSD form (register-tiled matrix products per head and chunk) from T >= chunk_from_T; f32 or f16 "
          "activations (f16 read in place, widened exactly)";
  k.priority = isa.priority;
  k.nmse_bound = 1e-7;  // fp32 state and arithmetic; f16 activations are read exactly
  k.tunables = {{"form", {0, 1, 2}, Defaults::form},
                {"chunk", {32, 64, 128}, fns.default_chunk},
                {"seq_tokens", {1, 4, 8, 16}, Defaults::seq_tokens},
                {"chunk_from_T", {2, 4, 8, 16, 32}, Defaults::chunk_from_T}};
  k.ineligible_reason = [isa](const DeviceProfile& p, const OpCall&) { return scan_cpu::missing_features(p, isa); };
  fns.vector_width = isa.vector_width;
  const std::string name = k.id();
  k.bind = [fns, name](Device& dev, const OpCall& call, const Tuning& tuning) -> std::unique_ptr<Invocation> {
    return std::make_unique<SsdScanCpu>(dev, call, tuning, fns, name);
  };
  Registry::instance().add_kernel(std::move(k));
}

#define EK_SSD_REGISTER(isa)                                                                                  \
  register_isa(scan_cpu::isa_build(#isa),                                                                    \
               {{ek_ssd_scan_step_##isa, ek_ssd_scan_seq_##isa, ek_ssd_scan_chunk_##isa, ek_ssd_scan_chunk_generic}, \
                {ek_ssd_scan_step_f16_##isa, ek_ssd_scan_seq_f16_##isa, ek_ssd_scan_chunk_f16_##isa,                 \
                 ek_ssd_scan_chunk_generic_f16},                                                               \
                ek_ssd_state_transpose_##isa, EK_SSD_TILE_VECTORS_##isa, EK_SSD_TILE_ROWS_##isa,     \
                EK_SSD_CHUNK_##isa, 0})

const bool registered = [] {
#if EK_SSD_HAVE_avx512
  EK_SSD_REGISTER(avx512);
#endif
#if EK_SSD_HAVE_avx2
  EK_SSD_REGISTER(avx2);
#endif
#if EK_SSD_HAVE_sse41
  EK_SSD_REGISTER(sse41);
#endif
#if EK_SSD_HAVE_neon
  EK_SSD_REGISTER(neon);
#endif
  return true;
}();

}  // namespace
}  // namespace ek
