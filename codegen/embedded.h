// Files embedded in the library at build time (SPIR-V binaries, OpenCL C
// sources), looked up by name, e.g. "rms_norm/rms_norm.f32.spv".
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ek {

struct EmbeddedFile {
  const char* name;
  const unsigned char* data;
  size_t size;
};

// nullptr when absent.
const EmbeddedFile* find_embedded(const std::string& name);
std::vector<const EmbeddedFile*> embedded_files(const std::string& prefix = "");

// Called by the generated tables; not for use elsewhere.
void register_embedded(const EmbeddedFile* files, size_t count);

}  // namespace ek
