#include "codegen/embedded.h"

#include <map>

namespace ek {
namespace {
std::map<std::string, const EmbeddedFile*>& table() {
  static std::map<std::string, const EmbeddedFile*> t;
  return t;
}
}  // namespace

void register_embedded(const EmbeddedFile* files, size_t count) {
  for (size_t i = 0; i < count; ++i) table()[files[i].name] = &files[i];
}

const EmbeddedFile* find_embedded(const std::string& name) {
  auto it = table().find(name);
  return it == table().end() ? nullptr : it->second;
}

std::vector<const EmbeddedFile*> embedded_files(const std::string& prefix) {
  std::vector<const EmbeddedFile*> out;
  for (const auto& kv : table())
    if (kv.first.compare(0, prefix.size(), prefix) == 0) out.push_back(kv.second);
  return out;
}

}  // namespace ek
