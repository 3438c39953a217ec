// Shared by the scan kernels' Vulkan files: how many tokens one dispatch may
// walk. llvmpipe (lavapipe) bounds the loop iterations of one shader
// invocation (65535 in total over all its loops; past that, loops exit
// early and results are silently wrong), so long scans there are cut into
// segments whose state is handed from dispatch to dispatch. Other drivers
// take the whole token range at once.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backends/common/device.h"

namespace ek::scan_gpu {

inline bool bounds_shader_loops(const DeviceProfile& p) { return p.driver_name == "llvmpipe"; }

// Tokens per dispatch for a shader doing `iterations_per_token` loop
// iterations per token (with some slack for its other loops).
inline int64_t tokens_per_dispatch(const DeviceProfile& p, int64_t tokens, int64_t iterations_per_token) {
  if (!bounds_shader_loops(p)) return tokens;
  return std::max<int64_t>(1, std::min<int64_t>(tokens, 32768 / std::max<int64_t>(1, iterations_per_token)));
}

}  // namespace ek::scan_gpu
