// sparse_attention, second pass for tiles whose key chunks were split across
// workgroups: one workgroup per split tile merges the parked (m, l, acc)
// states of its splits by log-sum-exp, normalises, and writes O and L.
// Specialization: 0 WG, 1 ROWS, 2 DV, 3 WRITE_LSE. Bindings: 0 states,
// 1 merges (b, h0, nh, i0, nq, first state, splits per tile), 2 O, 3 L.
#version 450

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 16;
layout(constant_id = 2) const uint DV = 128;
layout(constant_id = 3) const bool WRITE_LSE = false;

layout(push_constant) uniform Push {
  uint tq, hq, n_merges;
} pc;

layout(binding = 0) readonly buffer States { float states[]; };
layout(binding = 1) readonly buffer Merges { int merges[]; };
layout(binding = 2) writeonly buffer O1 { float o1[]; };
layout(binding = 3) writeonly buffer L1 { float l1[]; };

#define NEG_INF uintBitsToFloat(0xff800000u)

void main() {
  const uint item = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (item >= pc.n_merges) return;
  const uint mb = item * 7u;
  const uint b = uint(merges[mb]), h0 = uint(merges[mb + 1u]), nh = uint(merges[mb + 2u]);
  const uint i0 = uint(merges[mb + 3u]), nq = uint(merges[mb + 4u]);
  const uint first = uint(merges[mb + 5u]), splits = uint(merges[mb + 6u]);
  const uint stride = ROWS * (DV + 2u);
  for (uint e = gl_LocalInvocationID.x; e < nh * nq * DV; e += gl_WorkGroupSize.x) {
    const uint r = e / DV, col = e % DV;
    float mx = NEG_INF;
    for (uint s = 0u; s < splits; ++s) mx = max(mx, states[(first + s) * stride + r]);
    const float ms = mx == NEG_INF ? 0.0 : mx;
    float den = 0.0, num = 0.0;
    for (uint s = 0u; s < splits; ++s) {
      const uint sb = (first + s) * stride;
      const float w = exp(states[sb + r] - ms);
      den += states[sb + ROWS + r] * w;
      num += states[sb + 2u * ROWS + r * DV + col] * w;
    }
    const uint hi = r / nq, qi = r % nq;
    o1[((b * pc.tq + i0 + qi) * pc.hq + h0 + hi) * DV + col] = den == 0.0 ? 0.0 : num / den;
    if (WRITE_LSE && col == 0u) l1[(b * pc.hq + h0 + hi) * pc.tq + i0 + qi] = den == 0.0 ? NEG_INF : ms + log(den);
  }
}
