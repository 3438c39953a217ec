// rms_norm: y = x / sqrt(mean(x^2) + eps) * w, and the gated form used by
// Mamba-2, rms_norm(x * silu(z)) * w. Contract in ops.md ("Supporting ops").
#pragma once

#include "kernels/common/op.h"

namespace ek {

// Validated view of an rms_norm call. x is [..., dim] (rows = product of the
// leading dims), f32 or f16; w is [dim] f32; z (optional, gated form) has x's
// shape and dtype; y is f32 with x's shape.
struct RmsNormArgs {
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-5f;
  bool gated = false;
  DType x_dtype = DType::f32;

  static RmsNormArgs parse(const OpCall& call);  // throws InvalidArgument
};

}  // namespace ek
