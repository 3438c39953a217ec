// matmul_q2 prefill GEMM: Y[t, n] = sum_k X[t, k] W[n, k] + bias[n], tiled
// through shared memory. A workgroup owns a TILE_N x TILE_T tile of Y; per
// 64-column step it dequantizes its TILE_N rows of W (GPU row layout,
// README.md) and stages TILE_T rows of X in shared memory, then every
// invocation accumulates an RN x RT register block.
//
// Variants: Q2K, X_F16 (as in matmul_q2_gemv.comp). Specialization:
// 0 = workgroup size (must be (TILE_N/RN) * (TILE_T/RT)), 1 = TILE_N,
// 2 = TILE_T, 3 = RN, 4 = RT. Push: N, K, G, T, has_bias.
// Bindings: 0 codes, 1 scales, 2 subscales, 3 X, 4 bias, 5 Y.
#version 450

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TILE_N = 64;
layout(constant_id = 2) const uint TILE_T = 32;
layout(constant_id = 3) const uint RN = 4;
layout(constant_id = 4) const uint RT = 4;

layout(push_constant) uniform Push {
  uint N;
  uint K;
  uint G;
  uint T;
  uint has_bias;
} pc;

layout(binding = 0) readonly buffer Codes { uint codes[]; };
layout(binding = 1) readonly buffer Scales { uint scales[]; };
layout(binding = 2) readonly buffer Subs { uint subs[]; };
#if X_F16
layout(binding = 3) readonly buffer X { uvec2 x4[]; };
vec4 load_x4(uint i) { const uvec2 u = x4[i]; return vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)); }
#else
layout(binding = 3) readonly buffer X { vec4 x4[]; };
vec4 load_x4(uint i) { return x4[i]; }
#endif
layout(binding = 4) readonly buffer Bias { float bias[]; };
layout(binding = 5) writeonly buffer Y { float y[]; };

const uint BK = 64u;  // columns per step: one code chunk, never straddling a scale group
shared float w_tile[BK * TILE_N];  // [k][n]
shared float x_tile[BK * TILE_T];  // [k][t]

void main() {
  const uint tiles_n = (pc.N + TILE_N - 1u) / TILE_N;
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint n0 = (wg % tiles_n) * TILE_N, t0 = (wg / tiles_n) * TILE_T;
  if (t0 >= pc.T) return;  // whole workgroups only
  const uint tid = gl_LocalInvocationID.x, nthreads = gl_WorkGroupSize.x;
  const uint tn = tid % (TILE_N / RN), tt = tid / (TILE_N / RN);
  const uint words = pc.K / 16u, xq = pc.K / 4u;

  float acc[RN * RT];
  for (uint i = 0u; i < RN * RT; ++i) acc[i] = 0.0;

  for (uint k0 = 0u; k0 < pc.K; k0 += BK) {
    // Dequantize TILE_N rows x 4 code words (16 columns each).
    for (uint i = tid; i < TILE_N * 4u; i += nthreads) {
      const uint r = i / 4u, w = i % 4u;
      const uint row = min(n0 + r, pc.N - 1u);
      const uint word = codes[row * words + k0 / 16u + w];
#if Q2K
      const vec2 dd = unpackHalf2x16(scales[row * (pc.K / 256u) + k0 / 256u]);
      const uint s8 = (subs[row * (pc.K / 64u) + k0 / 64u] >> (8u * w)) & 0xffu;
      const float scale = dd.x * float(s8 & 15u), offset = -dd.y * float(s8 >> 4u);
#else
      const vec2 dm = unpackHalf2x16(scales[row * (pc.K / pc.G) + k0 / pc.G]);
      const float scale = dm.x, offset = dm.y;
#endif
      for (uint j = 0u; j < 16u; ++j)
        w_tile[(w * 16u + j) * TILE_N + r] = scale * float((word >> (2u * j)) & 3u) + offset;
    }
    // Stage TILE_T rows of X (16 vec4 each).
    for (uint i = tid; i < TILE_T * 16u; i += nthreads) {
      const uint t = i / 16u, v = i % 16u;
      const vec4 a = load_x4(min(t0 + t, pc.T - 1u) * xq + k0 / 4u + v);
      x_tile[(v * 4u + 0u) * TILE_T + t] = a.x;
      x_tile[(v * 4u + 1u) * TILE_T + t] = a.y;
      x_tile[(v * 4u + 2u) * TILE_T + t] = a.z;
      x_tile[(v * 4u + 3u) * TILE_T + t] = a.w;
    }
    barrier();
    for (uint k = 0u; k < BK; ++k) {
      float a[RN], b[RT];
      for (uint i = 0u; i < RN; ++i) a[i] = w_tile[k * TILE_N + tn * RN + i];
      for (uint j = 0u; j < RT; ++j) b[j] = x_tile[k * TILE_T + tt * RT + j];
      for (uint i = 0u; i < RN; ++i)
        for (uint j = 0u; j < RT; ++j) acc[i * RT + j] += a[i] * b[j];
    }
    barrier();
  }

  for (uint i = 0u; i < RN; ++i) {
    const uint n = n0 + tn * RN + i;
    if (n >= pc.N) continue;
    const float b = pc.has_bias != 0u ? bias[n] : 0.0;
    for (uint j = 0u; j < RT; ++j) {
      const uint t = t0 + tt * RT + j;
      if (t < pc.T) y[t * pc.N + n] = acc[i * RT + j] + b;
    }
  }
}
