// matmul_q2 int8 activations for the integer-dot GEMV: one invocation per
// (token, 64-column block) quantizes the block with sx = max|x| / 127,
// xq = round(x / sx), and writes fp32 sums per 16 columns (exact x, for the
// offset / min terms).
//
// xq is stored permuted for the dot products of matmul_q2_gemv_dot.comp: for
// the 16-column word w of a row and j in 0..3, u32 (w, j) packs the int8 of
// columns 16w + j, 16w + 4 + j, 16w + 8 + j, 16w + 12 + j (bytes 0..3) - the
// columns that (codes >> 2j) & 0x03030303 puts in bytes 0..3.
//
// Variants: X_F16. Specialization: 0 = workgroup size. Push: K, T.
// Bindings: 0 X, 1 xq [T][K/16][4] u32, 2 xscale [T][K/64] f32, 3 xsum [T][K/16] f32.
#version 450

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint K;
  uint T;
} pc;

#if X_F16
layout(binding = 0) readonly buffer X { uvec2 x4[]; };
vec4 load_x4(uint i) { const uvec2 u = x4[i]; return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
#else
layout(binding = 0) readonly buffer X { vec4 x4[]; };
vec4 load_x4(uint i) { return x4[i]; }
#endif
layout(binding = 1) writeonly buffer XQ { uint xq[]; };
layout(binding = 2) writeonly buffer XS { float xscale[]; };
layout(binding = 3) writeonly buffer XSum { float xsum[]; };

void main() {
  const uint id = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * gl_WorkGroupSize.x +
                  gl_LocalInvocationID.x;
  const uint blocks = pc.K / 64u;
  if (id >= blocks * pc.T) return;
  const uint t = id / blocks, b = id % blocks;
  const uint base = t * (pc.K / 4u) + b * 16u;
  vec4 v[16];
  float amax = 0.0;
  for (uint i = 0u; i < 16u; ++i) {
    v[i] = load_x4(base + i);
    const vec4 a = abs(v[i]);
    amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
  }
  // NaN/Inf blocks: the sums carry them into every output of the token.
  const float inv = amax > 0.0 ? 127.0 / amax : 0.0;
  xscale[t * blocks + b] = amax / 127.0;
  for (uint w = 0u; w < 4u; ++w) {
    // Columns 16w .. 16w+15 are v[4w .. 4w+3].
    const vec4 c0 = v[4u * w], c1 = v[4u * w + 1u], c2 = v[4u * w + 2u], c3 = v[4u * w + 3u];
    xsum[t * (pc.K / 16u) + b * 4u + w] = dot(c0 + c1 + c2 + c3, vec4(1.0));
    const ivec4 q0 = ivec4(clamp(roundEven(c0 * inv), -127.0, 127.0));
    const ivec4 q1 = ivec4(clamp(roundEven(c1 * inv), -127.0, 127.0));
    const ivec4 q2 = ivec4(clamp(roundEven(c2 * inv), -127.0, 127.0));
    const ivec4 q3 = ivec4(clamp(roundEven(c3 * inv), -127.0, 127.0));
    for (uint j = 0u; j < 4u; ++j) {
      const uint packed = (uint(q0[j]) & 0xffu) | ((uint(q1[j]) & 0xffu) << 8) | ((uint(q2[j]) & 0xffu) << 16) |
                          ((uint(q3[j]) & 0xffu) << 24);
      xq[(t * (pc.K / 16u) + b * 4u + w) * 4u + j] = packed;
    }
  }
}
