// selective_scan (Mamba-1) on Vulkan: the whole token range in one dispatch,
// the state in registers. A team of TEAM invocations owns one channel (b, d);
// lane i keeps the states n = i, i + TEAM, ... (SPT of them) and walks the
// tokens: dt (bias, softplus) per token, h = exp(dt A) h + dt B u, and its
// share of y = C.h, which the team sums by subgroupShuffleXor butterflies
// (EK_TEAM_SUBGROUP; TEAM must not exceed the smallest subgroup size, and
// teams are formed from subgroup invocation ids, so no assumption about the
// subgroup size or how it maps to local ids is made). Without subgroups
// (TEAM = 1) one invocation owns a channel. Then y += Dskip u, y *= silu(z).
// T = 1 with h0 (decode) is the same single pass: the state is read once
// and written once; gate and skip are fused. A dispatch covers the tokens
// [t0, t0 + tseg): one segment, all of T except on drivers that bound a
// shader's loop iterations (llvmpipe), where the host chains segments.
//
// Specialization: 0 workgroup size (a multiple of the largest subgroup
// size), 1 TEAM, 2 SPT = ceil(N / TEAM), 3 HAS_DSKIP, 4 HAS_Z, 5 HAS_BIAS,
// 6 HAS_H0, 7 SOFTPLUS.
// Bindings: 0 u, 1 delta, 2 A, 3 Bm, 4 Cm, 5 Dskip, 6 z, 7 delta_bias, 8 h0,
// 9 y, 10 hT (absent optionals are placeholders, never read).
//
// Variants (selective_scan.variants.json): ACT_F16 reads the activations u,
// delta, Bm, Cm, z as f16, in packed pairs with unpackHalf2x16 (exact; no
// 16-bit storage feature needed: buffers are allocated in 16-byte units, so
// the pair holding an odd tensor's last element is inside the allocation).
#version 450

#if EK_TEAM_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TEAM = 1;
layout(constant_id = 2) const uint SPT = 16;
layout(constant_id = 3) const bool HAS_DSKIP = false;
layout(constant_id = 4) const bool HAS_Z = false;
layout(constant_id = 5) const bool HAS_BIAS = false;
layout(constant_id = 6) const bool HAS_H0 = false;
layout(constant_id = 7) const bool SOFTPLUS = false;

layout(push_constant) uniform Push {
  uint B;
  uint T;
  uint D;
  uint N;
  uint G;
  uint cpg;  // channels per group, D / G
  uint t0;   // first token of this dispatch's segment
  uint tseg; // tokens in this segment
} pc;

// An activation buffer and its reader load_<name>(i) -> float.
#if ACT_F16
#define ACTIVATION(bind, block, name)                                        \
  layout(binding = bind) readonly buffer block { uint name##_pairs[]; };     \
  float load_##name(uint i) { return unpackHalf2x16(name##_pairs[i >> 1])[i & 1u]; }
#else
#define ACTIVATION(bind, block, name)                                        \
  layout(binding = bind) readonly buffer block { float name[]; };            \
  float load_##name(uint i) { return name[i]; }
#endif

ACTIVATION(0, U, u)
ACTIVATION(1, Delta, delta)
layout(binding = 2) readonly buffer AM { float A[]; };
ACTIVATION(3, BM, Bm)
ACTIVATION(4, CM, Cm)
layout(binding = 5) readonly buffer DS { float Dskip[]; };
ACTIVATION(6, Z, z)
layout(binding = 7) readonly buffer DB { float delta_bias[]; };
layout(binding = 8) readonly buffer H0 { float h0[]; };
layout(binding = 9) writeonly buffer Y { float y[]; };
layout(binding = 10) writeonly buffer HT { float hT[]; };

// softplus(x) = log(1 + exp(x)) for x <= 20, else x; log1p written out so
// the small-exp tail keeps its precision.
float softplus(float x) {
  if (x > 20.0) return x;
  const float e = exp(-abs(x));
  const float l = e < 1e-4 ? e * (1.0 - 0.5 * e) : log(1.0 + e);
  return max(x, 0.0) + l;
}

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
#if EK_TEAM_SUBGROUP
  const uint lin = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
#else
  const uint lin = gl_LocalInvocationIndex;
#endif
  const uint lane = lin % TEAM;
  const uint channel = group * (gl_WorkGroupSize.x / TEAM) + lin / TEAM;  // = b * D + d
  if (channel >= pc.B * pc.D) return;  // whole teams leave together
  const uint b = channel / pc.D, d = channel % pc.D;
  const uint g = d / pc.cpg;

  float h[SPT];
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    h[i] = (HAS_H0 && n < pc.N) ? h0[channel * pc.N + n] : 0.0;
  }
  const float bias = HAS_BIAS ? delta_bias[d] : 0.0;
  const float skip = HAS_DSKIP ? Dskip[d] : 0.0;
  for (uint t = pc.t0; t < pc.t0 + pc.tseg; ++t) {
    const uint td = (b * pc.T + t) * pc.D + d;
    float dt = load_delta(td) + bias;
    if (SOFTPLUS) dt = softplus(dt);
    const float ut = load_u(td);
    const uint bc = ((b * pc.T + t) * pc.G + g) * pc.N;
    float acc = 0.0;
    for (uint i = 0; i < SPT; ++i) {
      const uint n = lane + i * TEAM;
      if (n < pc.N) {
        h[i] = exp(dt * A[d * pc.N + n]) * h[i] + (dt * load_Bm(bc + n)) * ut;
        acc += h[i] * load_Cm(bc + n);
      }
    }
#if EK_TEAM_SUBGROUP
    for (uint m = TEAM / 2; m > 0; m /= 2) acc += subgroupShuffleXor(acc, m);
#endif
    if (lane == 0) {
      acc += skip * ut;
      if (HAS_Z) {
        const float zt = load_z(td);
        acc *= zt / (1.0 + exp(-zt));
      }
      y[td] = acc;
    }
  }
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    if (n < pc.N) hT[channel * pc.N + n] = h[i];
  }
}
