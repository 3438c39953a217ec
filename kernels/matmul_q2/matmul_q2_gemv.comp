// matmul_q2 decode GEMV (T <= 8 per dispatch): Y[t, n] = sum_k X[t, k] W[n, k] + bias[n]
// on the GPU row layout (README.md): codes [N][K/16] u32 read as one uvec4 per
// 64-column chunk, scales [N][K/G] as f16 pairs (d, m), q2_k sub-block scale
// bytes [N][K/64] u32.
//
// A workgroup owns ROWS rows; its invocations stride over the row's chunks,
// decode each 16-code word into four vec4 of codes once and use it for all NT
// tokens, then reduce every (row, token) partial across the workgroup
// (subgroup arithmetic or shared memory, EK_REDUCE_SUBGROUP).
//
// Variants (matmul_q2_gemv.variants.json): Q2K (q2_k sub-block scales, else
// the affine family q2g64/q2g128/tq2_0), X_F16 (X read as f16 pairs),
// EK_REDUCE_SUBGROUP. Specialization: 0 = workgroup size, 1 = ROWS, 2 = NT
// (tokens of this dispatch). Push: N, K, group size G (affine), first token t0,
// has_bias. Bindings: 0 codes, 1 scales, 2 subscales (placeholder for affine),
// 3 X, 4 bias (placeholder), 5 Y.
#version 450

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 2;
layout(constant_id = 2) const uint NT = 1;

#include "ek_reduce.glsl"

layout(push_constant) uniform Push {
  uint N;
  uint K;
  uint G;
  uint t0;
  uint has_bias;
} pc;

layout(binding = 0) readonly buffer Codes { uvec4 codes[]; };
layout(binding = 1) readonly buffer Scales { uint scales[]; };
layout(binding = 2) readonly buffer Subs { uint subs[]; };
#if X_F16
layout(binding = 3) readonly buffer X { uvec2 x4[]; };  // four f16 per element
vec4 load_x4(uint i) { const uvec2 u = x4[i]; return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
#else
layout(binding = 3) readonly buffer X { vec4 x4[]; };
vec4 load_x4(uint i) { return x4[i]; }
#endif
layout(binding = 4) readonly buffer Bias { float bias[]; };
layout(binding = 5) writeonly buffer Y { float y[]; };

// Codes 4i..4i+3 of a word as floats (column 16w + j in bits 2j).
vec4 codes4(uint word, uint i) {
  return vec4((uvec4(word) >> (uvec4(0u, 2u, 4u, 6u) + 8u * i)) & 3u);
}

void main() {
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint row0 = wg * ROWS;
  if (row0 >= pc.N) return;  // whole workgroups only: barriers stay uniform
  const uint tid = gl_LocalInvocationID.x, nt = gl_WorkGroupSize.x;
  const uint chunks = pc.K / 64u;  // uvec4 code vectors per row
  const uint xq = pc.K / 4u;       // vec4 of X per token

  float acc[ROWS * NT];
  for (uint i = 0u; i < ROWS * NT; ++i) acc[i] = 0.0;

  for (uint c = tid; c < chunks; c += nt) {
    for (uint r = 0u; r < ROWS; ++r) {
      const uint row = min(row0 + r, pc.N - 1u);  // past N: recomputed, never stored
      const uvec4 cw = codes[row * chunks + c];
#if Q2K
      const vec2 dd = unpackHalf2x16(scales[row * (pc.K / 256u) + c / 4u]);
      const uint sb = subs[row * chunks + c];
#else
      const vec2 dm = unpackHalf2x16(scales[row * (pc.K / pc.G) + (c * 64u) / pc.G]);
#endif
      for (uint w = 0u; w < 4u; ++w) {
        const uint word = cw[w];
        const vec4 q0 = codes4(word, 0u), q1 = codes4(word, 1u), q2 = codes4(word, 2u), q3 = codes4(word, 3u);
#if Q2K
        const uint s8 = (sb >> (8u * w)) & 0xffu;
        const float scale = dd.x * float(s8 & 15u), offset = -dd.y * float(s8 >> 4u);
#else
        const float scale = dm.x, offset = dm.y;
#endif
        for (uint t = 0u; t < NT; ++t) {
          const uint base = (pc.t0 + t) * xq + c * 16u + w * 4u;
          const vec4 a0 = load_x4(base), a1 = load_x4(base + 1u), a2 = load_x4(base + 2u), a3 = load_x4(base + 3u);
          const float qx = dot(q0, a0) + dot(q1, a1) + dot(q2, a2) + dot(q3, a3);
          const float xs = dot(a0 + a1 + a2 + a3, vec4(1.0));
          acc[r * NT + t] += scale * qx + offset * xs;
        }
      }
    }
  }

  for (uint r = 0u; r < ROWS; ++r) {
    const uint row = row0 + r;
    for (uint t = 0u; t < NT; ++t) {
      const float total = ek_workgroup_sum(acc[r * NT + t]);
      if (tid == 0u && row < pc.N) y[(pc.t0 + t) * pc.N + row] = total + (pc.has_bias != 0u ? bias[row] : 0.0);
    }
  }
}
