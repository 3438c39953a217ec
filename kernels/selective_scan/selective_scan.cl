// selective_scan (Mamba-1) on OpenCL: the whole token range in one launch,
// the state in registers. A team of TEAM work items owns one channel (b, d);
// lane i keeps the states n = i, i + TEAM, ... (SPT of them) and walks the
// tokens: dt (bias, softplus), h = exp(dt A) h + dt B u, and its share of
// y = C.h, which the team sums with sub-group shuffles (USE_SUBGROUPS; teams
// are formed from sub-group local ids and TEAM divides every sub-group size
// the device uses). Without sub-groups TEAM = 1. Then y += Dskip u,
// y *= silu(z). T = 1 (decode) is the same single pass.
//
// Build options (-D): WG (work items per group), TEAM, SPT = ceil(N / TEAM),
// HAS_DSKIP, HAS_Z, HAS_BIAS, HAS_H0, SOFTPLUS, USE_SUBGROUPS,
// INTEL_SHUFFLE (use intel_sub_group_shuffle_xor, cl_intel_subgroups), and
// ACT_F16 (u, delta, Bm, Cm, z are f16, read exactly with vload_half: no
// cl_khr_fp16 needed).

// ACT, LOAD_ACT, EK_SHUFFLE_XOR and ek_softplus: scan_prelude.cl, embedded
// in front of this file.

kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void ek_selective_scan(global const ACT* u, global const ACT* delta, global const float* A,
                       global const ACT* Bm, global const ACT* Cm, global const float* Dskip,
                       global const ACT* z, global const float* delta_bias, global const float* h0,
                       global float* y, global float* hT, uint B, uint T, uint D, uint N, uint G, uint cpg) {
#if USE_SUBGROUPS
  const uint lin = get_sub_group_id() * get_max_sub_group_size() + get_sub_group_local_id();
#else
  const uint lin = get_local_id(0);
#endif
  const uint lane = lin % TEAM;
  const uint channel = get_group_id(0) * (WG / TEAM) + lin / TEAM;  // b * D + d
  if (channel >= B * D) return;  // whole teams leave together
  const uint b = channel / D, d = channel % D;
  const uint g = d / cpg;

  float h[SPT];
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
#if HAS_H0
    h[i] = n < N ? h0[channel * N + n] : 0.0f;
#else
    h[i] = 0.0f;
#endif
  }
#if HAS_BIAS
  const float bias = delta_bias[d];
#else
  const float bias = 0.0f;
#endif
  for (uint t = 0; t < T; ++t) {
    const uint td = (b * T + t) * D + d;
    float dt = LOAD_ACT(delta, td) + bias;
#if SOFTPLUS
    dt = ek_softplus(dt);
#endif
    const float ut = LOAD_ACT(u, td);
    const uint bc = ((b * T + t) * G + g) * N;
    float acc = 0.0f;
    for (uint i = 0; i < SPT; ++i) {
      const uint n = lane + i * TEAM;
      if (n < N) {
        h[i] = exp(dt * A[d * N + n]) * h[i] + (dt * LOAD_ACT(Bm, bc + n)) * ut;
        acc += h[i] * LOAD_ACT(Cm, bc + n);
      }
    }
#if USE_SUBGROUPS
    for (uint m = TEAM / 2; m > 0; m /= 2) acc += EK_SHUFFLE_XOR(acc, m);
#endif
    if (lane == 0) {
#if HAS_DSKIP
      acc += Dskip[d] * ut;
#endif
#if HAS_Z
      const float zt = LOAD_ACT(z, td);
      acc *= zt / (1.0f + exp(-zt));
#endif
      y[td] = acc;
    }
  }
  for (uint i = 0; i < SPT; ++i) {
    const uint n = lane + i * TEAM;
    if (n < N) hT[channel * N + n] = h[i];
  }
}
