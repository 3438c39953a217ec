// Bitcode embedded in a generator executable (codegen/halide.cmake,
// ek_halide_generator_f16: EK_HALIDE_F16 is defined when llvm-as was found
// and the files were embedded), linked into the module the generator is
// writing. Its functions are then called from pipelines as pure externs:
// Halide picks the vector versions <name>x<lanes> and LLVM inlines them.
#pragma once

#include <Halide.h>

#include <stdexcept>
#include <string>
#include <vector>

#ifdef EK_HALIDE_F16
#include "codegen/embedded.h"
#endif

namespace ek::halide {

// Adds embedded file `name` (assembled from `source`) to the generator's
// module. False when this build embeds no bitcode; throws when it does but
// `name` is missing (a build error, not a fallback).
inline bool link_embedded_bitcode(Halide::GeneratorContext::ExternsMap& externs, const Halide::Target& t,
                                  const std::string& name, const std::string& source) {
#ifdef EK_HALIDE_F16
  const ek::EmbeddedFile* bc = ek::find_embedded(name);
  if (!bc) throw std::runtime_error(name + " (" + source + ") is not embedded in this generator");
  std::vector<uint8_t> bytes(bc->data, bc->data + bc->size);
  externs.insert({"edgekernels." + name, Halide::ExternalCode::bitcode_wrapper(t, bytes, "edgekernels." + name)});
  return true;
#else
  (void)externs;
  (void)t;
  (void)name;
  (void)source;
  return false;
#endif
}

}  // namespace ek::halide
