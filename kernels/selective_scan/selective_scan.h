// selective_scan: the Mamba-1 selective state-space scan (ops.md).
//
// Tensors (names as ops.md; token-major, channel innermost). The per-token
// activations u, delta, Bm, Cm, z are f32 or f16, all the same dtype (u's);
// A, Dskip, delta_bias and h0 are f32. f16 values are read exactly (widened
// to f32); the state, all arithmetic and the outputs are f32.
//   u          [B, T, D]      input
//   delta      [B, T, D]      time step before bias/softplus
//   A          [D, N]         state matrix (diagonal per channel)
//   Bm, Cm     [B, T, G, N]   input/output projections; channel d reads group
//                             g = d / (D / G), D % G == 0
//   Dskip      [D]            optional skip term,   y += Dskip[d] * u
//   z          [B, T, D]      optional gate,        y *= silu(z)
//   delta_bias [D]            optional,             dt = delta + delta_bias
//   h0         [B, D, N]      optional initial state (zeros when absent)
// Outputs:
//   y          [B, T, D]
//   hT         [B, D, N]      final state, always a separate tensor: outputs may
//                             not overlap inputs (validate_call), so a decode
//                             loop ping-pongs two state buffers (h0 <- hT of the
//                             previous step) instead of updating in place.
// Params:
//   delta_softplus  bool (default 0): dt = softplus(dt), softplus(x) = x for x > 20.
// Limits: 1 <= N <= 256, B, T, D >= 1, element counts below 2^31.
//
// T = 1 with h0 is the decode step; every backend has a dedicated path for it.
// State and accumulation are fp32 regardless of the activations' dtype.
#pragma once

#include "kernels/common/op.h"

namespace ek {

struct SelectiveScanArgs {
  int64_t batch = 0;     // B
  int64_t tokens = 0;    // T
  int64_t channels = 0;  // D
  int64_t state = 0;     // N
  int64_t groups = 0;    // G
  bool has_dskip = false, has_z = false, has_delta_bias = false, has_h0 = false;
  bool delta_softplus = false;
  DType activations = DType::f32;  // dtype of u, delta, Bm, Cm, z (f32 or f16)

  int64_t channels_per_group() const { return channels / groups; }
  static SelectiveScanArgs parse(const OpCall& call);  // throws InvalidArgument
};

constexpr int64_t kSelectiveScanMaxState = 256;

}  // namespace ek
