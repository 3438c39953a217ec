// The decode-step pipeline's channel tile, shared by its generator and the
// CPU driver: a task owns this many channels, and the N = 16 build handles
// only whole tiles (the driver sends the rest of a group to the general step).
#pragma once

namespace ek::selective_scan_step {
constexpr int kTileChannels = 128;
}  // namespace ek::selective_scan_step
