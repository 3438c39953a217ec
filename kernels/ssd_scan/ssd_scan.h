// ssd_scan: the Mamba-2 state-space-duality scan (ops.md).
//
// Tensors (names as ops.md). The per-token activations x, dt, Bm, Cm are f32
// or f16, all the same dtype (x's); A, Dskip, dt_bias and h0 are f32. f16
// values are read exactly (widened to f32); the state, all arithmetic and the
// outputs are f32.
//   x        [B, T, H, P]   input per head
//   dt       [B, T, H]      time step before bias/softplus/clamp
//   A        [H]            one scalar per head
//   Bm, Cm   [B, T, G, N]   head h reads group g = h / (H / G), H % G == 0
//   Dskip    [H]            optional,  y += Dskip[h] * x
//   dt_bias  [H]            optional,  dt' = dt + dt_bias
//   h0       [B, H, P, N]   optional initial state (zeros when absent)
// Outputs:
//   y        [B, T, H, P]
//   hT       [B, H, P, N]   final state, a separate tensor (outputs may not
//                           overlap inputs; decode loops ping-pong two buffers)
// Params:
//   dt_softplus  bool (default 0): dt' = softplus(dt'), softplus(x) = x for x > 20
//   dt_min, dt_max  optional clamp applied after softplus (default: none);
//                   dt_min <= dt_max.
// Per token: dt' = clamp(softplus(dt + dt_bias)),
//   S = exp(dt' * A[h]) * S + dt' * outer(x[:], Bm[g, :])     (S is [P, N])
//   y[p] = sum_n S[p, n] * Cm[g, n] + Dskip[h] * x[p]
// Limits: B, T, H, P >= 1, 1 <= N <= 256, element counts below 2^31.
//
// Implementations provide a sequential form (per-token state update, also the
// T = 1 decode step) and the chunked form (within-chunk work as matrix
// products, a short sequential pass over chunk states), chosen by T.
#pragma once

#include <cmath>

#include "kernels/common/op.h"

namespace ek {

struct SsdScanArgs {
  int64_t batch = 0;    // B
  int64_t tokens = 0;   // T
  int64_t heads = 0;    // H
  int64_t head_dim = 0; // P
  int64_t state = 0;    // N
  int64_t groups = 0;   // G
  bool has_dskip = false, has_dt_bias = false, has_h0 = false;
  bool dt_softplus = false;
  float dt_min = -INFINITY, dt_max = INFINITY;  // clamp after softplus (infinite = none)
  DType activations = DType::f32;  // dtype of x, dt, Bm, Cm (f32 or f16)

  int64_t heads_per_group() const { return heads / groups; }
  static SsdScanArgs parse(const OpCall& call);  // throws InvalidArgument
};

constexpr int64_t kSsdScanMaxState = 256;

}  // namespace ek
