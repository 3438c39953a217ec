// ssd_scan (Mamba-2) on Vulkan. One template, five variants (KERNEL):
//
// SEQ (sequential form, also the T = 1 decode step): a team of TEAM
//   invocations owns one (b, h, p) row of the state; lane i keeps n = i,
//   i + TEAM, ... (SPT values) in registers and walks the segment's tokens:
//   S = exp(dt A) S + dt x B, y = C.S (team sum by subgroupShuffleXor with
//   EK_TEAM_SUBGROUP, teams formed from subgroup invocation ids) + Dskip x.
//
// The chunked form, per segment of `nc` chunks of L tokens (three dispatches):
// CHUNK_STATE: a workgroup per (b, h, chunk): the chunk's own state
//   contribution local[p, n] = sum_s exp(seg(s, L-1)) dt[s] x[s, p] B[s, n]
//   and its total decay exp(seg(-1, L-1)), seg(s, l) = sum_{s<k<=l} dt[k] A.
// STATE_PASS: an invocation per state element: walks the chunks in order,
//   replacing each local[c] by the state entering chunk c and carrying
//   S = decay[c] S + local[c]; the last S is the segment's output state.
// CHUNK_OUT: a workgroup per (b, h, chunk), token by token:
//   y[l, p] = exp(seg(-1, l)) C[l].S_prev[p]
//           + sum_{s<=l} (C[l].B[s]) exp(seg(s, l)) dt[s] x[s, p] + Dskip x[l, p],
//   lane s keeping seg(s, l) as a running sum (no differences of large sums).
// Exponents are base 2 (A scaled by log2 e).
//
// Specialization: 0 workgroup size, 1 TEAM, 2 SPT, 3 HAS_DSKIP, 4 HAS_BIAS,
// 5 HAS_STATE_IN, 6 SOFTPLUS, 7 LMAX (chunk length), 8 NMAX (state size),
// 9 RUNS (CHUNK_OUT: chunk tokens per invocation).
// Bindings: 0 x, 1 dt, 2 A, 3 Bm, 4 Cm, 5 Dskip, 6 dt_bias, 7 state in,
// 8 y, 9 state out, 10 local chunk states [B, H, nc, P, N], 11 chunk decays
// [B, H, nc] (unused ones are placeholders).
//
// ACT_F16 builds (".f16") read the activations x, dt, Bm, Cm as f16, in
// packed pairs with unpackHalf2x16 (exact; no 16-bit storage feature needed:
// buffers are allocated in 16-byte units, so the pair holding an odd
// tensor's last element is inside the allocation). STATE_PASS reads none.
#version 450

#if EK_TEAM_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint TEAM = 1;
layout(constant_id = 2) const uint SPT = 1;
layout(constant_id = 3) const bool HAS_DSKIP = false;
layout(constant_id = 4) const bool HAS_BIAS = false;
layout(constant_id = 5) const bool HAS_STATE_IN = false;
layout(constant_id = 6) const bool SOFTPLUS = false;
layout(constant_id = 7) const uint LMAX = 64;
layout(constant_id = 8) const uint NMAX = 128;
layout(constant_id = 9) const uint RUNS = 1;  // CHUNK_OUT: tokens s per invocation, ceil(LMAX / workgroup size)

layout(push_constant) uniform Push {
  uint B;
  uint T;     // tokens of the call (row strides of x, dt, Bm, Cm, y)
  uint H;
  uint P;
  uint N;
  uint G;
  uint hpg;   // heads per group
  uint t0;    // first token of this dispatch's segment
  uint L;     // chunked: chunk length
  uint nc;    // chunked: chunks in this segment
  uint tseg;  // tokens in this segment
  float dt_min;
  float dt_max;
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

ACTIVATION(0, X, x)
ACTIVATION(1, DT, dt)
layout(binding = 2) readonly buffer AH { float A[]; };
ACTIVATION(3, BM, Bm)
ACTIVATION(4, CM, Cm)
layout(binding = 5) readonly buffer DS { float Dskip[]; };
layout(binding = 6) readonly buffer DB { float dt_bias[]; };
layout(binding = 7) readonly buffer SI { float state_in[]; };
layout(binding = 8) writeonly buffer Y { float y[]; };
layout(binding = 9) writeonly buffer SO { float state_out[]; };
layout(binding = 10) buffer LS { float local_state[]; };
layout(binding = 11) buffer DC { float chunk_decay[]; };

const float LOG2E = 1.44269504088896341;

float softplus(float v) {
  if (v > 20.0) return v;
  const float e = exp(-abs(v));
  const float l = e < 1e-4 ? e * (1.0 - 0.5 * e) : log(1.0 + e);
  return max(v, 0.0) + l;
}

// dt' = clamp(softplus(dt + bias)) of token t, head h.
float time_step(uint b, uint t, uint h) {
  float v = load_dt((b * pc.T + t) * pc.H + h) + (HAS_BIAS ? dt_bias[h] : 0.0);
  if (SOFTPLUS) v = softplus(v);
  return min(max(v, pc.dt_min), pc.dt_max);
}

// 2^x for the decays (x <= 0 in practice): clamped at -127, where the result
// is below every normal float anyway, because drivers' exp2 may wrap for
// arguments far outside the float exponent range (lavapipe did at ~-550).
float decay2(float v) { return exp2(max(v, -127.0)); }

uint x_index(uint b, uint t, uint h, uint p) { return ((b * pc.T + t) * pc.H + h) * pc.P + p; }
uint bc_index(uint b, uint t, uint g, uint n) { return ((b * pc.T + t) * pc.G + g) * pc.N + n; }

uint linear_group() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

#if KERNEL_SEQ

void main() {
#if EK_TEAM_SUBGROUP
  const uint lin = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
#else
  const uint lin = gl_LocalInvocationIndex;
#endif
  const uint lane = lin % TEAM;
  const uint row = linear_group() * (gl_WorkGroupSize.x / TEAM) + lin / TEAM;  // (b * H + h) * P + p
  if (row >= pc.B * pc.H * pc.P) return;  // whole teams leave together
  const uint p = row % pc.P, bh = row / pc.P, h = bh % pc.H, b = bh / pc.H;
  const uint g = h / pc.hpg;
  float S[SPT];
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    S[i] = (HAS_STATE_IN && n < pc.N) ? state_in[row * pc.N + n] : 0.0;
  }
  const float a2 = A[h] * LOG2E;
  const float skip = HAS_DSKIP ? Dskip[h] : 0.0;
  for (uint t = pc.t0; t < pc.t0 + pc.tseg; ++t) {
    const float d = time_step(b, t, h);
    const float decay = decay2(d * a2);
    const float xv = load_x(x_index(b, t, h, p));
    const float dx = d * xv;
    const uint bc = bc_index(b, t, g, 0);
    float acc = 0.0;
    for (uint i = 0; i < SPT; ++i) {
      const uint n = lane + i * TEAM;
      if (n < pc.N) {
        S[i] = decay * S[i] + dx * load_Bm(bc + n);
        acc += S[i] * load_Cm(bc + n);
      }
    }
#if EK_TEAM_SUBGROUP
    for (uint m = TEAM / 2; m > 0; m /= 2) acc += subgroupShuffleXor(acc, m);
#endif
    if (lane == 0) y[x_index(b, t, h, p)] = acc + skip * xv;
  }
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    if (n < pc.N) state_out[row * pc.N + n] = S[i];
  }
}

#elif KERNEL_CHUNK_STATE

shared float sh_dt[LMAX];
shared float sh_la[LMAX];
shared float sh_w[LMAX];

void main() {
  const uint wg = linear_group();  // (b * H + h) * nc + c
  if (wg >= pc.B * pc.H * pc.nc) return;
  const uint c = wg % pc.nc, bh = wg / pc.nc, h = bh % pc.H, b = bh / pc.H;
  const uint g = h / pc.hpg;
  const uint tc = pc.t0 + c * pc.L;
  const uint lc = min(pc.L, pc.tseg - c * pc.L);
  const uint lid = gl_LocalInvocationIndex, nt = gl_WorkGroupSize.x;
  const float a2 = A[h] * LOG2E;
  for (uint s = lid; s < lc; s += nt) {
    const float d = time_step(b, tc + s, h);
    sh_dt[s] = d;
    sh_la[s] = d * a2;
  }
  barrier();
  for (uint s = lid; s < lc; s += nt) {
    float run = 0.0;  // seg(s, lc-1)
    for (uint k = s + 1; k < lc; ++k) run += sh_la[k];
    sh_w[s] = sh_dt[s] * decay2(run);
  }
  if (lid == 0) {
    float run = 0.0;
    for (uint k = 0; k < lc; ++k) run += sh_la[k];
    chunk_decay[wg] = decay2(run);
  }
  barrier();
  const uint PN = pc.P * pc.N;
  for (uint e = lid; e < PN; e += nt) {
    const uint p = e / pc.N, n = e % pc.N;
    float acc = 0.0;
    for (uint s = 0; s < lc; ++s) acc += sh_w[s] * load_x(x_index(b, tc + s, h, p)) * load_Bm(bc_index(b, tc + s, g, n));
    local_state[wg * PN + e] = acc;
  }
}

#elif KERNEL_STATE_PASS

void main() {
  const uint e = linear_group() * gl_WorkGroupSize.x + gl_LocalInvocationIndex;  // ((b * H + h) * P + p) * N + n
  const uint PN = pc.P * pc.N;
  if (e >= pc.B * pc.H * PN) return;
  const uint bh = e / PN, pn = e % PN;
  float S = HAS_STATE_IN ? state_in[e] : 0.0;
  for (uint c = 0; c < pc.nc; ++c) {
    const uint i = (bh * pc.nc + c) * PN + pn;
    const float mine = local_state[i];
    local_state[i] = S;  // the state entering chunk c
    S = chunk_decay[bh * pc.nc + c] * S + mine;
  }
  state_out[e] = S;
}

#elif KERNEL_CHUNK_OUT

shared float sh_dt[LMAX];
shared float sh_la[LMAX];
shared float sh_coef[LMAX];
shared float sh_C[NMAX];

void main() {
  const uint wg = linear_group();  // (b * H + h) * nc + c
  if (wg >= pc.B * pc.H * pc.nc) return;  // whole workgroups: barriers stay uniform
  const uint c = wg % pc.nc, bh = wg / pc.nc, h = bh % pc.H, b = bh / pc.H;
  const uint g = h / pc.hpg;
  const uint tc = pc.t0 + c * pc.L;
  const uint lc = min(pc.L, pc.tseg - c * pc.L);
  const uint lid = gl_LocalInvocationIndex, nt = gl_WorkGroupSize.x;
  const float a2 = A[h] * LOG2E;
  const float skip = HAS_DSKIP ? Dskip[h] : 0.0;
  for (uint s = lid; s < lc; s += nt) {
    const float d = time_step(b, tc + s, h);
    sh_dt[s] = d;
    sh_la[s] = d * a2;
  }
  barrier();
  const uint PN = pc.P * pc.N;
  // Invocation lid owns the tokens s = lid + k * nt and keeps seg(s, l) for
  // each as a running sum.
  float run_s[RUNS];
  for (uint k = 0; k < RUNS; ++k) run_s[k] = 0.0;
  float run_in = 0.0;  // seg(-1, l)
  for (uint l = 0; l < lc; ++l) {
    for (uint n = lid; n < pc.N; n += nt) sh_C[n] = load_Cm(bc_index(b, tc + l, g, n));
    barrier();
    run_in += sh_la[l];
    for (uint k = 0; k < RUNS; ++k) {
      const uint s = lid + k * nt;
      if (s < l) run_s[k] += sh_la[l];
      if (s <= l) {
        float cb = 0.0;
        const uint bs = bc_index(b, tc + s, g, 0);
        for (uint n = 0; n < pc.N; ++n) cb += sh_C[n] * load_Bm(bs + n);
        sh_coef[s] = cb * decay2(run_s[k]) * sh_dt[s];
      }
    }
    barrier();
    const float decay_in = decay2(run_in);
    for (uint p = lid; p < pc.P; p += nt) {
      float off = 0.0;
      const uint sp = wg * PN + p * pc.N;
      for (uint n = 0; n < pc.N; ++n) off += sh_C[n] * local_state[sp + n];
      float diag = 0.0;
      for (uint s = 0; s <= l; ++s) diag += sh_coef[s] * load_x(x_index(b, tc + s, h, p));
      const uint xi = x_index(b, tc + l, h, p);
      y[xi] = decay_in * off + diag + skip * load_x(xi);
    }
    barrier();
  }
}

#endif
