// f16 -> f32 conversion inside Halide pipelines with F16C's vcvtph2ps.
//
// Halide 14 emulates Float(16) casts with integer ops on every x86 target.
// Generators that read f16 data call f16_bits_to_f32 instead: with the
// bitcode of codegen/halide_f16c.ll linked into the module (EK_HALIDE_F16C,
// set by ek_halide_generator_f16c in codegen/halide.cmake), Halide uses its
// vector versions and LLVM emits one vcvtph2ps per vector, exact for every
// f16 (subnormals, Inf, NaN). Without it (no llvm-as at build time, or a
// target without F16C) has_native_f16_to_f32 is false and the generator keeps
// its own conversion.
#pragma once

#include <Halide.h>

#include <string>
#include <vector>

#ifdef EK_HALIDE_F16C
#include "codegen/embedded.h"
#endif

namespace ek::halide {

inline bool has_native_f16_to_f32(const Halide::Target& t) {
#ifdef EK_HALIDE_F16C
  return t.arch == Halide::Target::X86 && t.bits == 64 && t.has_feature(Halide::Target::F16C);
#else
  (void)t;
  return false;
#endif
}

// Adds the conversion's bitcode to the generator's module. Call from
// generate() when has_native_f16_to_f32(get_target()).
inline void link_f16_to_f32(Halide::GeneratorContext::ExternsMap& externs, const Halide::Target& t) {
#ifdef EK_HALIDE_F16C
  const ek::EmbeddedFile* bc = ek::find_embedded("halide/f16c.bc");
  if (!bc) throw std::runtime_error("codegen/halide_f16c.ll bitcode is not embedded in this generator");
  std::vector<uint8_t> bytes(bc->data, bc->data + bc->size);
  externs.insert({"edgekernels.halide_f16c", Halide::ExternalCode::bitcode_wrapper(t, bytes, "edgekernels.halide_f16c")});
#else
  (void)externs;
  (void)t;
#endif
}

// f32 value of f16 bits (a UInt(16) or Int(16) Expr of any lanes).
inline Halide::Expr f16_bits_to_f32(Halide::Expr bits) {
  if (bits.type().is_int()) bits = Halide::reinterpret(Halide::UInt(16, bits.type().lanes()), bits);
  return Halide::Internal::Call::make(Halide::Float(32, bits.type().lanes()), "ek_f16_bits_to_f32", {bits},
                                      Halide::Internal::Call::PureExtern);
}

}  // namespace ek::halide
