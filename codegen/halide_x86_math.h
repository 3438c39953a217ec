// x86 instructions that Halide 14 does not emit, for generator pipelines:
// exp2 with vscalefps on AVX-512 (codegen/halide_x86_math.ll.in), linked into
// the module as bitcode the same way as the f16 conversion (halide_f16.h).
#pragma once

#include <Halide.h>

#include "codegen/halide_bitcode.h"

namespace ek::halide {

// True when the target has AVX-512 (F, VL, DQ: Halide's AVX512_Skylake set or
// later) and this build embeds the bitcode; then also adds that bitcode to the
// generator's module, so exp2_avx512 below may be used. Call from generate().
inline bool link_avx512_exp2(Halide::GeneratorContext::ExternsMap& externs, const Halide::Target& t) {
  if (t.arch != Halide::Target::X86 || t.bits != 64 || t.os != Halide::Target::Linux) return false;
  if (!t.has_feature(Halide::Target::AVX512_Skylake)) return false;
  return link_embedded_bitcode(externs, t, "halide/x86_math_x86_64.bc", "codegen/halide_x86_math.ll.in");
}

// 2^x (Float(32) of any lanes) through ek_exp2_f32 of halide_x86_math.ll.in.
inline Halide::Expr exp2_avx512(Halide::Expr x) {
  return Halide::Internal::Call::make(x.type(), "ek_exp2_f32", {x}, Halide::Internal::Call::PureExtern);
}

// log2(e): exp as 2^(x log2 e), here and in the scans' exp2-based math.
constexpr float kLog2e = 1.44269504088896341f;

// e^x = 2^(x log2 e) through the same function.
inline Halide::Expr exp_avx512(const Halide::Expr& x) { return exp2_avx512(x * kLog2e); }

}  // namespace ek::halide
