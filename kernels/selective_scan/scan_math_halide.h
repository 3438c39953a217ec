// Halide expressions shared by the scan generators (selective_scan, ssd_scan):
// a vectorisable exp accurate to ~1 ulp (vscalefps on AVX-512), softplus with
// the ops.md threshold, SiLU, exact f16 -> f32 widening of f16 activations.
// Halide's own exp/log lower to scalar libm calls on x86, and fast_exp is
// only good to ~5 bits short of full precision, which a decay multiplied in
// over thousands of tokens amplifies; these stay within a few ulp.
#pragma once

#include <Halide.h>

#include "codegen/halide_f16.h"
#include "codegen/halide_x86_math.h"

namespace ek::halide_scan {

// How exp2_f32 computes 2^x on a generator's target: `portable` below, or
// `avx512_scalef` (codegen/halide_x86_math.ll.in: the same polynomial, 2^k by
// vscalefps; 10 vector ops instead of 14; the Mamba-1 decode step measured
// ~13 % faster with the state in cache).
enum class Exp2Impl { portable, avx512_scalef };
// Call from generate(): links the AVX-512 version into the module where the
// target has it.
inline Exp2Impl exp2_impl(Halide::GeneratorContext::ExternsMap& externs, const Halide::Target& target) {
  return ek::halide::link_avx512_exp2(externs, target) ? Exp2Impl::avx512_scalef : Exp2Impl::portable;
}

// 2^x: k = round(x), f = x - k in [-1/2, 1/2], 2^f by the degree-6 Cephes
// exp2f polynomial (peak relative error 1.7e-7, rms 4.7e-8), 2^k built in the
// exponent field. x is clamped to [-127, 128]: below, the result is 0 (2^-127
// flushed); above, inf. Adding 1.5*2^23 + 127 rounds x to an integer and
// leaves k + 127 (0..255) in the low mantissa bits, so one integer subtract
// gives k and one shift gives the bits of 2^k (8 vector ops besides the
// polynomial's 6 FMAs). The scans use it with A pre-scaled by log2(e), so the
// decay exp(dt*A) costs one multiply less than a Cody-Waite exp.
inline Halide::Expr exp2_f32(Halide::Expr x, Exp2Impl how) {
  using namespace Halide;
  using Internal::make_const;
  if (how == Exp2Impl::avx512_scalef) return ek::halide::exp2_avx512(x);
  x = clamp(x, -127.0f, 128.0f);
  Expr shifted = x + 12583039.0f;  // 1.5*2^23 + 127, bits 0x4b40007f
  Expr k = cast<float>(reinterpret<int32_t>(shifted) - 0x4b40007f);
  Expr f = x - k;
  Expr p = 1.535336188319500e-4f;
  p = p * f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  return p * reinterpret<float>(reinterpret<uint32_t>(shifted) << make_const(UInt(32), 23));
}

using ek::halide::kLog2e;

// exp(x) = 2^(x*log2(e)); ~2e-7 relative error over the float range.
inline Halide::Expr exp_f32(Halide::Expr x, Exp2Impl how) { return exp2_f32(x * kLog2e, how); }

// 1/a for a > 0 finite: the hardware reciprocal estimate plus one Newton step
// (relative error ~2^-22 from the 14-bit AVX-512 estimate; callers that need
// more keep a division).
inline Halide::Expr inverse_f32(Halide::Expr a) {
  using namespace Halide;
  Expr r = fast_inverse(a);
  r = r * (2.0f - a * r);
  return r * (2.0f - a * r);
}

// log1p(e) for e in [0, 1]: 2*atanh(s), s = e / (2 + e) in [0, 1/3]; the odd
// series to s^17 is exact to float precision there and has no cancellation
// for small e (where log(1 + e) would lose everything).
inline Halide::Expr log1p_unit(Halide::Expr e) {
  using namespace Halide;
  Expr s = e * inverse_f32(2.0f + e);
  Expr s2 = s * s;
  Expr q = 1.0f / 17;
  for (int k = 15; k >= 1; k -= 2) q = q * s2 + 1.0f / k;
  return 2.0f * s * q;
}

// softplus(x) = log(1 + exp(x)) for x <= 20, else x (ops.md). Written as
// max(x, 0) + log1p(exp(-|x|)) so neither tail overflows or cancels.
inline Halide::Expr softplus(Halide::Expr x, Exp2Impl how) {
  using namespace Halide;
  Expr sp = max(x, 0.0f) + log1p_unit(exp_f32(-abs(x), how));
  return select(x > 20.0f, x, sp);
}

// f16 bits (as uint16) to f32, exactly, in 9 vector ops (the conversion
// kernels/sparse_attention uses): the exponent/mantissa field is moved into
// place and rebiased by a multiply with 2^112 (exact, subnormals included as
// long as f32 subnormal inputs are not flushed, the IEEE default), Inf/NaN
// get an all-ones exponent, then the sign is OR'ed in. Halide 14's own
// Float(16) cast is emulated in ~17 ops and never uses F16C.
inline Halide::Expr f16_bits_to_f32(Halide::Expr h) {
  using namespace Halide;
  using Internal::make_const;
  Expr x = cast<uint32_t>(h);
  Expr em = (x & make_const(UInt(32), 0x7fff)) << make_const(UInt(32), 13);
  Expr inf_nan = em >= make_const(UInt(32), 0x7c00u << 13);
  Expr mag = select(inf_nan, reinterpret<float>(em | make_const(UInt(32), 0x7f800000u)),
                    reinterpret<float>(em) * 5.192296858534828e33f /* 2^112 */);
  Expr sign = (x & make_const(UInt(32), 0x8000)) << make_const(UInt(32), 16);
  return reinterpret<float>(reinterpret<uint32_t>(mag) | sign);
}

// Activation inputs of the scan generators (param act_f16): f32, or f16 bits
// as uint16, read through `widen`: converted in one instruction per vector
// (vcvtph2ps, fcvtl) where the target has one (codegen/halide_f16.h;
// `activation_read` links it into the generator's module), else by
// f16_bits_to_f32 above.
enum class ActivationRead { f32, f16_native, f16_exact_ops };
inline Halide::Type activation_type(bool f16) { return f16 ? Halide::UInt(16) : Halide::Float(32); }
inline ActivationRead activation_read(bool f16, Halide::GeneratorContext::ExternsMap& externs,
                                      const Halide::Target& target) {
  if (!f16) return ActivationRead::f32;
  return ek::halide::link_native_f16_to_f32(externs, target) ? ActivationRead::f16_native
                                                              : ActivationRead::f16_exact_ops;
}
inline Halide::Expr widen(const Halide::Expr& e, ActivationRead how) {
  switch (how) {
    case ActivationRead::f16_native: return ek::halide::f16_bits_to_f32(e);
    case ActivationRead::f16_exact_ops: return f16_bits_to_f32(e);
    default: return e;
  }
}

// silu(x) = x / (1 + exp(-x)).
// exp(-x) is capped at e^80 so the reciprocal stays finite (x * 1e-35 ~ 0).
inline Halide::Expr silu(Halide::Expr x, Exp2Impl how) {
  return x * inverse_f32(1.0f + exp_f32(Halide::min(-x, 80.0f), how));
}

}  // namespace ek::halide_scan
