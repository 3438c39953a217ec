// causal_conv1d: depthwise causal convolution in front of the Mamba scan.
// y[b,t,d] = bias[d] + sum_{j<W} w[d,j] * xx[b,t+j,d], xx = s0 ++ x along time,
// then SiLU if asked; sT = last W-1 rows of xx. Contract in ops.md.
#pragma once

#include "kernels/common/op.h"

namespace ek {

// Validated view of a causal_conv1d call. x [B,T,D] f32|f16, w [D,W] f32 with
// W in 2..4, bias [D] f32, s0 [B,W-1,D] with x's dtype; y [B,T,D] f32 and
// sT [B,W-1,D] f32.
struct CausalConv1dArgs {
  int64_t batch = 0, tokens = 0, channels = 0, width = 0;
  bool silu = false, has_bias = false, has_state = false;
  DType x_dtype = DType::f32;

  static CausalConv1dArgs parse(const OpCall& call);  // throws InvalidArgument
};

}  // namespace ek
