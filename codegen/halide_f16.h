// f16 -> f32 conversion inside Halide pipelines in one instruction per
// vector: vcvtph2ps (x86-64 with F16C) or fcvtl/fcvtl2 (AArch64).
//
// Halide 14 emulates Float(16) casts with integer ops on every target.
// Generators that read f16 data call f16_bits_to_f32 instead: with the
// bitcode of codegen/halide_f16.ll.in linked into the module (EK_HALIDE_F16,
// set by ek_halide_generator_f16 in codegen/halide.cmake), Halide uses its
// vector versions and LLVM emits the conversion instruction, exact for every
// f16 (subnormals, Inf, NaN). Without it (no llvm-as at build time, or an
// x86 target without F16C) link_native_f16_to_f32 returns false and the
// generator keeps its own conversion.
#pragma once

#include <Halide.h>

#include "codegen/halide_bitcode.h"

namespace ek::halide {

// True when the target converts f16 in one instruction and this build
// embeds the conversion's bitcode; then also adds that bitcode (for the
// target's architecture) to the generator's module, so f16_bits_to_f32 below
// may be used. Call from generate(); false means: keep your own conversion.
inline bool link_native_f16_to_f32(Halide::GeneratorContext::ExternsMap& externs, const Halide::Target& t) {
  if (t.bits != 64 || t.os != Halide::Target::Linux) return false;
  const bool x86 = t.arch == Halide::Target::X86 && t.has_feature(Halide::Target::F16C);
  if (!x86 && t.arch != Halide::Target::ARM) return false;
  return link_embedded_bitcode(externs, t, x86 ? "halide/f16_x86_64.bc" : "halide/f16_aarch64.bc",
                               "codegen/halide_f16.ll.in");
}

// f32 value of f16 bits (a UInt(16) or Int(16) Expr of any lanes).
inline Halide::Expr f16_bits_to_f32(Halide::Expr bits) {
  if (bits.type().is_int()) bits = Halide::reinterpret(Halide::UInt(16, bits.type().lanes()), bits);
  return Halide::Internal::Call::make(Halide::Float(32, bits.type().lanes()), "ek_f16_bits_to_f32", {bits},
                                      Halide::Internal::Call::PureExtern);
}

}  // namespace ek::halide
