// matmul_q2 decode GEMV on int8 activations with 4x8-bit integer dot products
// (VK_KHR_shader_integer_dot_product's OpSDot, emitted through
// GL_EXT_spirv_intrinsics: Debian's glslc has no GL_EXT_integer_dot_product).
// Activations come from matmul_q2_quant.comp (int8 per 64 columns, permuted so
// that (codes >> 2j) & 0x03030303 lines up with u32 (w, j)); otherwise as
// matmul_q2_gemv.comp: ROWS rows per workgroup, NT tokens per dispatch,
// workgroup reduction per (row, token).
//
// Per 64-column chunk: affine y += d * sx * isum + m * xsum; q2_k per 16
// columns: y += d * sc * sx * isum - dmin * mn * xsum16.
//
// Variants: Q2K, EK_REDUCE_SUBGROUP. Specialization: 0 = workgroup size,
// 1 = ROWS, 2 = NT. Push: N, K, G, t0, has_bias. Bindings: 0 codes (uvec4),
// 1 scales, 2 subscales, 3 xq (uvec4 per 16-column word), 4 xscale, 5 xsum
// (per 16 columns), 6 bias, 7 Y.
#version 450
#extension GL_EXT_spirv_intrinsics : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 2;
layout(constant_id = 2) const uint NT = 1;

#include "ek_reduce.glsl"

// OpSDot (4450) on two 4x8-bit packed vectors (PackedVectorFormat4x8Bit = 0);
// capabilities DotProductInput4x8BitPacked (6018), DotProduct (6019).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int ek_sdot4x8(int a, int b, spirv_literal int fmt);

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
layout(binding = 3) readonly buffer XQ { uvec4 xq[]; };
layout(binding = 4) readonly buffer XS { float xscale[]; };
layout(binding = 5) readonly buffer XSum { float xsum[]; };
layout(binding = 6) readonly buffer Bias { float bias[]; };
layout(binding = 7) writeonly buffer Y { float y[]; };

int word_dot(uint word, uvec4 a) {
  int s = ek_sdot4x8(int(word & 0x03030303u), int(a.x), 0);
  s += ek_sdot4x8(int((word >> 2u) & 0x03030303u), int(a.y), 0);
  s += ek_sdot4x8(int((word >> 4u) & 0x03030303u), int(a.z), 0);
  s += ek_sdot4x8(int((word >> 6u) & 0x03030303u), int(a.w), 0);
  return s;
}

void main() {
  const uint wg = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint row0 = wg * ROWS;
  if (row0 >= pc.N) return;
  const uint tid = gl_LocalInvocationID.x, nt = gl_WorkGroupSize.x;
  const uint chunks = pc.K / 64u, words = pc.K / 16u;

  float acc[ROWS * NT];
  for (uint i = 0u; i < ROWS * NT; ++i) acc[i] = 0.0;

  for (uint c = tid; c < chunks; c += nt) {
    for (uint r = 0u; r < ROWS; ++r) {
      const uint row = min(row0 + r, pc.N - 1u);
      const uvec4 cw = codes[row * chunks + c];
#if Q2K
      const vec2 dd = unpackHalf2x16(scales[row * (pc.K / 256u) + c / 4u]);
      const uint sb = subs[row * chunks + c];
#else
      const vec2 dm = unpackHalf2x16(scales[row * (pc.K / pc.G) + (c * 64u) / pc.G]);
#endif
      for (uint t = 0u; t < NT; ++t) {
        const uint tok = pc.t0 + t;
        const float sx = xscale[tok * chunks + c];
        const uint xw = tok * words + c * 4u;
#if Q2K
        float part = 0.0;
        for (uint w = 0u; w < 4u; ++w) {
          const uint s8 = (sb >> (8u * w)) & 0xffu;
          part += dd.x * float(s8 & 15u) * sx * float(word_dot(cw[w], xq[xw + w])) -
                  dd.y * float(s8 >> 4u) * xsum[xw + w];
        }
        acc[r * NT + t] += part;
#else
        int isum = 0;
        for (uint w = 0u; w < 4u; ++w) isum += word_dot(cw[w], xq[xw + w]);
        const float xs = xsum[xw] + xsum[xw + 1u] + xsum[xw + 2u] + xsum[xw + 3u];
        acc[r * NT + t] += dm.x * sx * float(isum) + dm.y * xs;
#endif
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
