// CPU implementations of matmul_q2: Halide AOT kernels (matmul_q2_generator.cpp)
// per ISA and activation path, registered as KernelImpls.
//
// bind() repacks W once into the CPU tile layout and allocates the per-call
// activation scratch; execute() prepares the activations (int8 quantization
// or fp32 block sums), runs the GEMV kernel (T < gemm_min_tokens) or the GEMM
// kernel, and writes Y (through a padded scratch when N is not a multiple of
// the 16-row tile).
#include <HalideBuffer.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/halide_call.h"
#include "kernels/matmul_q2/matmul_q2.h"
#include "kernels/matmul_q2/matmul_q2_pack.h"

#include "ek_matmul_q2_act_int8_f16.h"
#include "ek_matmul_q2_act_int8_f32.h"
#include "ek_matmul_q2_act_sums_f16.h"
#include "ek_matmul_q2_act_sums_f32.h"
#include "ek_matmul_q2_act_f32_f16.h"

#if defined(EK_MATMUL_Q2_HAVE_INT8_AVX512)
#include "ek_matmul_q2_affine_int8_gemm_avx512.h"
#include "ek_matmul_q2_affine_int8_gemv_avx512.h"
#include "ek_matmul_q2_k_int8_gemm_avx512.h"
#include "ek_matmul_q2_k_int8_gemv_avx512.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_AVX512)
#include "ek_matmul_q2_affine_f32_gemm_avx512.h"
#include "ek_matmul_q2_affine_f32_gemv_avx512.h"
#include "ek_matmul_q2_k_f32_gemm_avx512.h"
#include "ek_matmul_q2_k_f32_gemv_avx512.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_INT8_AVX2)
#include "ek_matmul_q2_affine_int8_gemm_avx2.h"
#include "ek_matmul_q2_affine_int8_gemv_avx2.h"
#include "ek_matmul_q2_k_int8_gemm_avx2.h"
#include "ek_matmul_q2_k_int8_gemv_avx2.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_AVX2)
#include "ek_matmul_q2_affine_f32_gemm_avx2.h"
#include "ek_matmul_q2_affine_f32_gemv_avx2.h"
#include "ek_matmul_q2_k_f32_gemm_avx2.h"
#include "ek_matmul_q2_k_f32_gemv_avx2.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_SSE41)
#include "ek_matmul_q2_affine_f32_gemm_sse41.h"
#include "ek_matmul_q2_affine_f32_gemv_sse41.h"
#include "ek_matmul_q2_k_f32_gemm_sse41.h"
#include "ek_matmul_q2_k_f32_gemv_sse41.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_INT8_NEON)
#include "ek_matmul_q2_affine_int8_gemm_neon.h"
#include "ek_matmul_q2_affine_int8_gemv_neon.h"
#include "ek_matmul_q2_k_int8_gemm_neon.h"
#include "ek_matmul_q2_k_int8_gemv_neon.h"
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_NEON)
#include "ek_matmul_q2_affine_f32_gemm_neon.h"
#include "ek_matmul_q2_affine_f32_gemv_neon.h"
#include "ek_matmul_q2_k_f32_gemm_neon.h"
#include "ek_matmul_q2_k_f32_gemv_neon.h"
#endif

namespace ek {
namespace q2 {
namespace {

constexpr const char* kOp = "matmul_q2";
// The GEMM kernels' register block is 8 tokens (generator param `tokens`);
// they need at least that many.
constexpr int64_t kGemmTokenBlock = 8;
// GEMV software prefetch distance along the code stream (tunable
// "prefetch_bytes"). Zen 5 host, cold weights, 1 thread: K=14336 rows went
// from ~24 to ~31 GB/s with 4 KiB ahead; short rows (K=4096) gain less.
constexpr int64_t kDefaultPrefetchBytes = 4096;

// The pipelines take a leading user_context (FEATURES user_context): a
// HalideCallContext that collects the runtime's error messages.
using AffineFn = int (*)(const void* user_context, halide_buffer_t* codes, halide_buffer_t* scales, halide_buffer_t* x,
                         halide_buffer_t* xscale, halide_buffer_t* xsum, halide_buffer_t* bias, int32_t group_size,
                         bool normal_scales, int32_t prefetch_groups, halide_buffer_t* y);
using KFn = int (*)(const void* user_context, halide_buffer_t* codes, halide_buffer_t* subscales, halide_buffer_t* superscales,
                    halide_buffer_t* x, halide_buffer_t* xscale, halide_buffer_t* xsum, halide_buffer_t* bias,
                    bool normal_scales, int32_t prefetch_groups, halide_buffer_t* y);
using ActFn = int (*)(const void* user_context, halide_buffer_t* xq_view, halide_buffer_t* xs_view, halide_buffer_t* out_x,
                      halide_buffer_t* out_scale, halide_buffer_t* out_sum);

struct CpuVariant {
  const char* variant;
  const char* doc;
  bool int8;
  int priority;
  std::vector<const char*> features;  // DeviceProfile features the code needs
  AffineFn affine_gemv, affine_gemm;
  KFn k_gemv, k_gemm;
};

template <class T>
using HBuf = Halide::Runtime::Buffer<T>;


class CpuMatmulQ2Invocation : public Invocation {
 public:
  CpuMatmulQ2Invocation(const CpuVariant& v, CpuDevice& dev, const OpCall& call, const Tuning& tuning)
      : v_(v), call_(call), a_(MatmulQ2Args::parse(call)), threads_(dev.threads()) {
    auto tuned = [&](const char* key, int64_t def) { return tuning.count(key) ? tuning.at(key) : def; };
    gemm_min_tokens_ = std::max<int64_t>(kGemmTokenBlock, tuned("gemm_min_tokens", 16));
    token_panel_ = std::max<int64_t>(kGemmTokenBlock, tuned("token_panel", 256));
    prefetch_bytes_ = std::max<int64_t>(0, tuned("prefetch_bytes", kDefaultPrefetchBytes));
    w_ = pack_cpu(a_.format, call.get("W").as<uint8_t>(), a_.N, a_.K, dev.threads());
    n_pad_ = w_.tiles * kTileRows;
    quant_block_ = w_.affine ? w_.group : 256;
    sum_block_ = w_.affine ? w_.group : 16;
    if (v_.int8) {
      xq_ = HostTensor(DType::i8, {a_.T, a_.K});
      xscale_ = HostTensor(DType::f32, {a_.T, a_.K / quant_block_});
    } else {
      xscale_ = HostTensor(DType::f32, {1, 1});
      if (a_.x_dtype == DType::f16) x32_ = HostTensor(DType::f32, {a_.T, a_.K});
    }
    xsum_ = HostTensor(DType::f32, {a_.T, a_.K / sum_block_});
    bias_ = HostTensor(DType::f32, {n_pad_});
    if (const TensorRef* b = call.find("bias")) std::memcpy(bias_.data(), b->data, static_cast<size_t>(a_.N) * 4);
    if (n_pad_ != a_.N) y_pad_ = HostTensor(DType::f32, {a_.T, n_pad_});
    unused_ = HostTensor(DType::f32, {1, 1});
  }

  void execute() override {
    cpu::use_device_threads(threads_);  // the Halide pool is shared: this device's count wins
    const TensorRef& X = call_.get("X");
    const int T = static_cast<int>(a_.T), K = static_cast<int>(a_.K);
    // 1. Activations.
    const bool f16 = a_.x_dtype == DType::f16;
    HBuf<float> xsum(xsum_.as<float>(), static_cast<int>(a_.K / sum_block_), T);
    HBuf<float> xscale(xscale_.as<float>(), static_cast<int>(v_.int8 ? a_.K / quant_block_ : 1), v_.int8 ? T : 1);
    const int QB = quant_block_, SB = sum_block_;
    const halide_type_t x_type = f16 ? halide_type_t(halide_type_uint, 16) : halide_type_t(halide_type_float, 32);
    // X as [QB, K/QB, T] and [SB, K/SB, T] views (README: no divisions in the kernel).
    HBuf<void> xq_view(x_type, X.data, QB, K / QB, T), xs_view(x_type, X.data, SB, K / SB, T);
    HBuf<void> x_kernel;
    if (v_.int8) {
      HBuf<int8_t> xq(xq_.as<int8_t>(), QB, K / QB, T);
      ActFn act = f16 ? ek_matmul_q2_act_int8_f16 : ek_matmul_q2_act_int8_f32;
      cpu::halide_run("matmul_q2: activation quantization", act, xq_view.raw_buffer(), xs_view.raw_buffer(),
                      xq.raw_buffer(), xscale.raw_buffer(), xsum.raw_buffer());
      x_kernel = HBuf<void>(halide_type_t(halide_type_int, 8), xq_.data(), K, T);
    } else if (f16) {
      HBuf<float> x32(x32_.as<float>(), QB, K / QB, T);
      HBuf<float> scale_unused(unused_.as<float>(), 1, 1);
      cpu::halide_run("matmul_q2: activation conversion", ek_matmul_q2_act_f32_f16, xq_view.raw_buffer(),
                      xs_view.raw_buffer(), x32.raw_buffer(), scale_unused.raw_buffer(), xsum.raw_buffer());
      x_kernel = HBuf<void>(halide_type_t(halide_type_float, 32), x32_.data(), K, T);
    } else {
      HBuf<float> x_unused(unused_.as<float>(), 1, 1, 1), scale_unused(unused_.as<float>(), 1, 1);
      cpu::halide_run("matmul_q2: activation sums", ek_matmul_q2_act_sums_f32, xq_view.raw_buffer(),
                      xs_view.raw_buffer(), x_unused.raw_buffer(), scale_unused.raw_buffer(), xsum.raw_buffer());
      x_kernel = HBuf<void>(halide_type_t(halide_type_float, 32), X.data, K, T);
    }

    // 2. The matmul, into Y or its padded scratch. GEMM runs on token panels
    // of about token_panel tokens (each >= the 8-token register block), so a
    // panel's activations stay cache-resident while the weights stream by.
    const bool padded = n_pad_ != a_.N;
    float* y_data = padded ? y_pad_.as<float>() : call_.get("Y").as<float>();
    const int tiles = static_cast<int>(w_.tiles), chunks = K / kChunkCols;
    // int8 kernels read the chunks as bytes, fp32 kernels as one u32 per row.
    HBuf<void> codes = v_.int8 ? HBuf<void>(halide_type_t(halide_type_uint, 8), w_.codes.data(), 64, chunks, tiles)
                               : HBuf<void>(halide_type_t(halide_type_uint, 32), w_.codes.data(), kTileRows, chunks, tiles);
    HBuf<float> bias(bias_.as<float>(), static_cast<int>(n_pad_));
    const bool gemm = a_.T >= gemm_min_tokens_;
    const int64_t panels = gemm ? (a_.T + token_panel_ - 1) / token_panel_ : 1;
    const uint8_t* xk = static_cast<const uint8_t*>(x_kernel.data());
    const size_t x_elem = x_kernel.type().bytes();
    const int xs_cols = v_.int8 ? static_cast<int>(a_.K / quant_block_) : 1;
    // A group of a tile holds 16 rows x group/4 bytes of codes (q2_k: 256 columns).
    const int32_t prefetch_groups =
        static_cast<int32_t>(std::max<int64_t>(1, prefetch_bytes_ / (4 * (w_.affine ? w_.group : 256))));
    const int sum_cols = static_cast<int>(a_.K / sum_block_);
    for (int64_t p = 0; p < panels; ++p) {
      const int64_t t0 = a_.T * p / panels, t1 = a_.T * (p + 1) / panels;
      const int tn = static_cast<int>(t1 - t0);
      HBuf<void> xp(x_kernel.type(), const_cast<uint8_t*>(xk) + t0 * K * x_elem, K, tn);
      HBuf<float> xsp(xscale_.as<float>() + (v_.int8 ? t0 * xs_cols : 0), xs_cols, v_.int8 ? tn : 1);
      HBuf<float> sump(xsum_.as<float>() + t0 * sum_cols, sum_cols, tn);
      HBuf<float> yp(y_data + t0 * n_pad_, static_cast<int>(n_pad_), tn);
      if (w_.affine) {
        HBuf<uint16_t> scales(w_.scales.as<uint16_t>(), kTileRows, 2, K / w_.group, tiles);
        AffineFn fn = gemm ? v_.affine_gemm : v_.affine_gemv;
        cpu::halide_run(gemm ? "matmul_q2: gemm" : "matmul_q2: gemv", fn, codes.raw_buffer(), scales.raw_buffer(),
                        xp.raw_buffer(), xsp.raw_buffer(), sump.raw_buffer(), bias.raw_buffer(), int32_t(w_.group),
                        w_.normal_scales, prefetch_groups, yp.raw_buffer());
      } else {
        HBuf<uint8_t> sub(w_.subscales.as<uint8_t>(), kTileRows, chunks, tiles);
        HBuf<uint16_t> super(w_.scales.as<uint16_t>(), kTileRows, 2, K / 256, tiles);
        KFn fn = gemm ? v_.k_gemm : v_.k_gemv;
        cpu::halide_run(gemm ? "matmul_q2: gemm" : "matmul_q2: gemv", fn, codes.raw_buffer(), sub.raw_buffer(),
                        super.raw_buffer(), xp.raw_buffer(), xsp.raw_buffer(), sump.raw_buffer(), bias.raw_buffer(),
                        w_.normal_scales, prefetch_groups, yp.raw_buffer());
      }
    }

    // 3. Padded rows out.
    if (padded) {
      float* Y = call_.get("Y").as<float>();
      for (int64_t t = 0; t < a_.T; ++t)
        std::memcpy(Y + t * a_.N, y_pad_.as<float>() + t * n_pad_, static_cast<size_t>(a_.N) * 4);
    }
  }

  // execute() writes the call's Y directly.
  void read_outputs() override {}

 private:
  const CpuVariant& v_;
  OpCall call_;
  MatmulQ2Args a_;
  int threads_ = 0;
  int64_t gemm_min_tokens_ = 16, token_panel_ = 256, prefetch_bytes_ = kDefaultPrefetchBytes;
  CpuPackedWeights w_;
  int64_t n_pad_ = 0;
  int quant_block_ = 0, sum_block_ = 0;
  HostTensor xq_, xscale_, xsum_, x32_, bias_, y_pad_, unused_;
};

void register_variant(const CpuVariant& v) {
  KernelImpl k;
  k.op = kOp;
  k.backend = "cpu";
  k.variant = v.variant;
  k.doc = v.doc;
  k.priority = v.priority;
  k.nmse_bound = v.int8 ? 5e-4 : 1e-7;
  k.tunables = {{"gemm_min_tokens", {8, 12, 16, 24, 32, 64}, 16},
                {"token_panel", {32, 64, 128, 256, 512, 1024}, 256},
                {"prefetch_bytes", {1024, 2048, 4096, 8192, 16384}, kDefaultPrefetchBytes}};
  static std::deque<CpuVariant> variants;  // stable addresses, live as long as the registry
  variants.push_back(v);
  const CpuVariant* vp = &variants.back();
  k.ineligible_reason = [vp](const DeviceProfile& p, const OpCall& call) -> std::string {
    const std::string why = cpu::missing_cpu_feature(p, vp->features);
    if (!why.empty()) return why;
    const MatmulQ2Args a = MatmulQ2Args::parse(call);
    if (vp->int8 && a.act == ActPath::f32) return "act=f32 asks for fp32 activations";
    if (!vp->int8 && a.act == ActPath::int8) return "act=int8 asks for int8 activations";
    return "";
  };
  k.bind = [vp](Device& dev, const OpCall& call, const Tuning& tuning) -> std::unique_ptr<Invocation> {
    CpuDevice& cpu = cpu::cpu_device_for(dev, cat(kOp, "/cpu/", vp->variant));
    return std::make_unique<CpuMatmulQ2Invocation>(*vp, cpu, call, tuning);
  };
  Registry::instance().add_kernel(std::move(k));
}

// Priorities: int8 paths above fp32 (ops.md admits 5e-4 for the 2-bit fast
// paths; act=f32 forces fp32), wider ISAs above narrower.
const bool registered = [] {
#if defined(EK_MATMUL_Q2_HAVE_INT8_AVX512)
  register_variant({"halide_avx512vnni_int8",
                    "int8 activations, AVX-512 VNNI (vpdpbusd) on 16-row tiles; GEMV T<16, GEMM T>=16",
                    true, 50, {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"},
                    ek_matmul_q2_affine_int8_gemv_avx512, ek_matmul_q2_affine_int8_gemm_avx512,
                    ek_matmul_q2_k_int8_gemv_avx512, ek_matmul_q2_k_int8_gemm_avx512});
#endif
#if defined(EK_MATMUL_Q2_HAVE_INT8_AVX2)
  register_variant({"halide_avx2_int8", "int8 activations, AVX2 (vpmaddubsw pairs, i16 sums per 64 columns)", true, 40,
                    {"avx2", "fma", "f16c"}, ek_matmul_q2_affine_int8_gemv_avx2, ek_matmul_q2_affine_int8_gemm_avx2,
                    ek_matmul_q2_k_int8_gemv_avx2, ek_matmul_q2_k_int8_gemm_avx2});
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_AVX512)
  register_variant({"halide_avx512_f32", "fp32 activations, AVX-512 FMA", false, 30,
                    {"avx512f", "avx512bw", "avx512dq", "avx512vl"}, ek_matmul_q2_affine_f32_gemv_avx512,
                    ek_matmul_q2_affine_f32_gemm_avx512, ek_matmul_q2_k_f32_gemv_avx512,
                    ek_matmul_q2_k_f32_gemm_avx512});
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_AVX2)
  register_variant({"halide_avx2_f32", "fp32 activations, AVX2 FMA", false, 20, {"avx2", "fma", "f16c"},
                    ek_matmul_q2_affine_f32_gemv_avx2, ek_matmul_q2_affine_f32_gemm_avx2,
                    ek_matmul_q2_k_f32_gemv_avx2, ek_matmul_q2_k_f32_gemm_avx2});
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_SSE41)
  register_variant({"halide_sse41_f32", "fp32 activations, SSE4.1 baseline", false, 10, {"sse41"},
                    ek_matmul_q2_affine_f32_gemv_sse41, ek_matmul_q2_affine_f32_gemm_sse41,
                    ek_matmul_q2_k_f32_gemv_sse41, ek_matmul_q2_k_f32_gemm_sse41});
#endif
#if defined(EK_MATMUL_Q2_HAVE_INT8_NEON)
  register_variant({"halide_dotprod_int8", "int8 activations, NEON dot product (sdot)", true, 50, {"dotprod"},
                    ek_matmul_q2_affine_int8_gemv_neon, ek_matmul_q2_affine_int8_gemm_neon,
                    ek_matmul_q2_k_int8_gemv_neon, ek_matmul_q2_k_int8_gemm_neon});
#endif
#if defined(EK_MATMUL_Q2_HAVE_F32_NEON)
  register_variant({"halide_neon_f32", "fp32 activations, NEON", false, 20, {"neon"},
                    ek_matmul_q2_affine_f32_gemv_neon, ek_matmul_q2_affine_f32_gemm_neon,
                    ek_matmul_q2_k_f32_gemv_neon, ek_matmul_q2_k_f32_gemm_neon});
#endif
  return true;
}();

}  // namespace
}  // namespace q2
}  // namespace ek
