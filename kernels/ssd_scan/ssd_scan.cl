// ssd_scan (Mamba-2) on OpenCL: the same kernels as ssd_scan.comp.
//
// ek_ssd_seq (sequential form, also the T = 1 decode step): a team of TEAM
//   work items owns one (b, h, p) row of the state; lane i keeps n = i,
//   i + TEAM, ... (SPT values) in registers and walks the tokens
//   [t0, t0 + tseg): S = exp(dt A) S + dt x B, y = C.S (team sum by sub-group
//   shuffles with USE_SUBGROUPS) + Dskip x.
// The chunked form, per segment of nc chunks of L tokens:
// ek_ssd_chunk_state: a group per (b, h, chunk): the chunk's own state
//   contribution local[p, n] = sum_s exp(seg(s, L-1)) dt[s] x[s, p] B[s, n]
//   and its decay exp(seg(-1, L-1)), seg(s, l) = sum_{s<k<=l} dt[k] A.
// ek_ssd_state_pass: a work item per state element walks the chunks,
//   replacing local[c] by the state entering chunk c.
// ek_ssd_chunk_out: a group per (b, h, chunk), token by token:
//   y[l, p] = exp(seg(-1, l)) C[l].S_prev[p]
//           + sum_{s<=l} (C[l].B[s]) exp(seg(s, l)) dt[s] x[s, p] + Dskip x[l, p].
// Exponents in base 2 (A scaled by log2 e).
//
// Build options (-D): WG, TEAM, SPT, HAS_DSKIP, HAS_BIAS, HAS_STATE_IN,
// SOFTPLUS, LMAX (chunk length), NMAX (state size), USE_SUBGROUPS,
// INTEL_SHUFFLE, ACT_F16 (x, dt, Bm, Cm are f16, read exactly with
// vload_half: no cl_khr_fp16 needed).

// ACT, LOAD_ACT, EK_SHUFFLE_XOR and ek_softplus: scan_prelude.cl, embedded
// in front of this file.

#define LOG2E 1.44269504088896341f

// The call's shape and the segment, shared by every kernel.
typedef struct {
  uint B, T, H, P, N, G, hpg;  // T: tokens of the call (row strides)
  uint t0, L, nc, tseg;        // this segment: first token, chunk length, chunks, tokens
  float dt_min, dt_max;
} Shape;

// 2^x for decays, clamped at -127 (the result is 0 to float precision there).
inline float decay2(float v) { return exp2(fmax(v, -127.0f)); }

inline float time_step(const Shape* s, global const ACT* dt, global const float* dt_bias, uint b, uint t, uint h) {
  float v = LOAD_ACT(dt, (b * s->T + t) * s->H + h);
#if HAS_BIAS
  v += dt_bias[h];
#endif
#if SOFTPLUS
  v = ek_softplus(v);
#endif
  return fmin(fmax(v, s->dt_min), s->dt_max);
}

inline uint x_index(const Shape* s, uint b, uint t, uint h, uint p) { return ((b * s->T + t) * s->H + h) * s->P + p; }
inline uint bc_index(const Shape* s, uint b, uint t, uint g, uint n) { return ((b * s->T + t) * s->G + g) * s->N + n; }

#define SSD_ARGS                                                                                              \
  global const ACT *x, global const ACT *dt, global const float *A, global const ACT *Bm,                     \
      global const ACT *Cm, global const float *Dskip, global const float *dt_bias,                        \
      global const float *state_in, global float *y, global float *state_out, global float *local_state,     \
      global float *chunk_decay, uint B, uint T, uint H, uint P, uint N, uint G, uint hpg, uint t0, uint L,   \
      uint nc, uint tseg, float dt_min, float dt_max
#define SSD_SHAPE const Shape shp = {B, T, H, P, N, G, hpg, t0, L, nc, tseg, dt_min, dt_max}; const Shape* s = &shp

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_ssd_seq(SSD_ARGS) {
  SSD_SHAPE;
#if USE_SUBGROUPS
  const uint lin = get_sub_group_id() * get_max_sub_group_size() + get_sub_group_local_id();
#else
  const uint lin = get_local_id(0);
#endif
  const uint lane = lin % TEAM;
  const uint row = get_group_id(0) * (WG / TEAM) + lin / TEAM;  // (b * H + h) * P + p
  if (row >= B * H * P) return;  // whole teams leave together
  const uint p = row % P, bh = row / P, h = bh % H, b = bh / H;
  const uint g = h / hpg;
  float S[SPT];
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
#if HAS_STATE_IN
    S[i] = n < N ? state_in[row * N + n] : 0.0f;
#else
    S[i] = 0.0f;
#endif
  }
  const float a2 = A[h] * LOG2E;
#if HAS_DSKIP
  const float skip = Dskip[h];
#else
  const float skip = 0.0f;
#endif
  for (uint t = t0; t < t0 + tseg; ++t) {
    const float d = time_step(s, dt, dt_bias, b, t, h);
    const float decay = decay2(d * a2);
    const float xv = LOAD_ACT(x, x_index(s, b, t, h, p));
    const float dx = d * xv;
    const uint bc = bc_index(s, b, t, g, 0);
    float acc = 0.0f;
    for (uint i = 0; i < SPT; ++i) {
      const uint n = lane + i * TEAM;
      if (n < N) {
        S[i] = decay * S[i] + dx * LOAD_ACT(Bm, bc + n);
        acc += S[i] * LOAD_ACT(Cm, bc + n);
      }
    }
#if USE_SUBGROUPS
    for (uint m = TEAM / 2; m > 0; m /= 2) acc += EK_SHUFFLE_XOR(acc, m);
#endif
    if (lane == 0) y[x_index(s, b, t, h, p)] = acc + skip * xv;
  }
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    if (n < N) state_out[row * N + n] = S[i];
  }
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_ssd_chunk_state(SSD_ARGS) {
  SSD_SHAPE;
  local float sh_dt[LMAX], sh_la[LMAX], sh_w[LMAX];
  const uint wg = get_group_id(0);  // (b * H + h) * nc + c
  const uint c = wg % nc, bh = wg / nc, h = bh % H, b = bh / H;
  const uint g = h / hpg;
  const uint tc = t0 + c * L;
  const uint lc = min(L, tseg - c * L);
  const uint lid = get_local_id(0);
  const float a2 = A[h] * LOG2E;
  for (uint k = lid; k < lc; k += WG) {
    const float d = time_step(s, dt, dt_bias, b, tc + k, h);
    sh_dt[k] = d;
    sh_la[k] = d * a2;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint k = lid; k < lc; k += WG) {
    float run = 0.0f;  // seg(k, lc-1)
    for (uint j = k + 1; j < lc; ++j) run += sh_la[j];
    sh_w[k] = sh_dt[k] * decay2(run);
  }
  if (lid == 0) {
    float run = 0.0f;
    for (uint j = 0; j < lc; ++j) run += sh_la[j];
    chunk_decay[wg] = decay2(run);
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint PN = P * N;
  for (uint e = lid; e < PN; e += WG) {
    const uint p = e / N, n = e % N;
    float acc = 0.0f;
    for (uint k = 0; k < lc; ++k)
      acc += sh_w[k] * LOAD_ACT(x, x_index(s, b, tc + k, h, p)) * LOAD_ACT(Bm, bc_index(s, b, tc + k, g, n));
    local_state[wg * PN + e] = acc;
  }
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_ssd_state_pass(SSD_ARGS) {
  SSD_SHAPE;
  const uint e = get_global_id(0);  // ((b * H + h) * P + p) * N + n
  const uint PN = P * N;
  if (e >= B * H * PN) return;
  const uint bh = e / PN, pn = e % PN;
#if HAS_STATE_IN
  float S = state_in[e];
#else
  float S = 0.0f;
#endif
  for (uint c = 0; c < nc; ++c) {
    const uint i = (bh * nc + c) * PN + pn;
    const float mine = local_state[i];
    local_state[i] = S;  // the state entering chunk c
    S = chunk_decay[bh * nc + c] * S + mine;
  }
  state_out[e] = S;
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_ssd_chunk_out(SSD_ARGS) {
  SSD_SHAPE;
  local float sh_dt[LMAX], sh_la[LMAX], sh_coef[LMAX], sh_C[NMAX];
  const uint wg = get_group_id(0);  // (b * H + h) * nc + c
  const uint c = wg % nc, bh = wg / nc, h = bh % H, b = bh / H;
  const uint g = h / hpg;
  const uint tc = t0 + c * L;
  const uint lc = min(L, tseg - c * L);
  const uint lid = get_local_id(0);
  const float a2 = A[h] * LOG2E;
#if HAS_DSKIP
  const float skip = Dskip[h];
#else
  const float skip = 0.0f;
#endif
  for (uint k = lid; k < lc; k += WG) {
    const float d = time_step(s, dt, dt_bias, b, tc + k, h);
    sh_dt[k] = d;
    sh_la[k] = d * a2;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint PN = P * N;
  // Work item lid owns the tokens k = lid + r * WG, each with seg(k, l) as a
  // running sum.
#define RUNS ((LMAX + WG - 1) / WG)
  float run_s[RUNS];
  for (uint r = 0; r < RUNS; ++r) run_s[r] = 0.0f;
  float run_in = 0.0f;  // seg(-1, l)
  for (uint l = 0; l < lc; ++l) {
    for (uint n = lid; n < N; n += WG) sh_C[n] = LOAD_ACT(Cm, bc_index(s, b, tc + l, g, n));
    barrier(CLK_LOCAL_MEM_FENCE);
    run_in += sh_la[l];
    for (uint r = 0; r < RUNS; ++r) {
      const uint k = lid + r * WG;
      if (k < l) run_s[r] += sh_la[l];
      if (k <= l) {
        float cb = 0.0f;
        const uint bs = bc_index(s, b, tc + k, g, 0);
        for (uint n = 0; n < N; ++n) cb += sh_C[n] * LOAD_ACT(Bm, bs + n);
        sh_coef[k] = cb * decay2(run_s[r]) * sh_dt[k];
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const float decay_in = decay2(run_in);
    for (uint p = lid; p < P; p += WG) {
      float off = 0.0f;
      const uint sp = wg * PN + p * N;
      for (uint n = 0; n < N; ++n) off += sh_C[n] * local_state[sp + n];
      float diag = 0.0f;
      for (uint k = 0; k <= l; ++k) diag += sh_coef[k] * LOAD_ACT(x, x_index(s, b, tc + k, h, p));
      const uint xi = x_index(s, b, tc + l, h, p);
      y[xi] = decay_in * off + diag + skip * LOAD_ACT(x, xi);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}
