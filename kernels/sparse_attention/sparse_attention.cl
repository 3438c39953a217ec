// sparse_attention on OpenCL: block-sparse flash attention, one work-group
// per tile, the same algorithm as sparse_attention.comp (see there): the host
// plan lists each tile's rows (nh query heads of one KV head x nq queries,
// row r = hi * nq + qi) and its allowed key chunks; per chunk the group stages
// K and V in local memory once for all its rows, computes ROWS x BK scores,
// and each row's TPR = WG / ROWS work items run the online softmax and keep
// DVT output columns (lane + i * TPR) in registers. Split tiles park their
// state for ek_sparse_attention_merge.
//
// Build options (-D): WG, ROWS, BK, DK, DV, DVT, WRITE_LSE, Q_F16, KV_F16
// (f16 read with vload_half: no cl_khr_fp16 needed), USE_SUBGROUPS (q.k split
// over a row's work items and reduced with sub_group_shuffle_xor; needs
// cl_khr_subgroup_shuffle and rows aligned to sub-groups, else whole dot
// products from local memory).

#if USE_SUBGROUPS
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#pragma OPENCL EXTENSION cl_khr_subgroup_shuffle : enable
#endif

#define TPR (WG / ROWS)

#if Q_F16
#define QT half
#define LOAD_Q(p, i) vload_half((i), (p))
#else
#define QT float
#define LOAD_Q(p, i) ((p)[i])
#endif
#if KV_F16
#define KVT half
#define LOAD_KV(p, i) vload_half((i), (p))
#else
#define KVT float
#define LOAD_KV(p, i) ((p)[i])
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_sparse_attention(
    const global QT* q, const global KVT* k, const global KVT* v, global float* o, global float* lse,
    const global int* tiles, const global int* chunks, global float* states, uint tq, uint tk, uint hq, uint hkv,
    int q_offset, uint causal, int window, int sinks, float scale, float softcap, uint n_tiles) {
  local float Qs[ROWS * DK];
  local float Ks[BK * DK];
  local float Vs[BK * DV];
  local float Ss[ROWS * BK];

  const uint tile = get_group_id(0);
  if (tile >= n_tiles) return;  // whole work-groups: barriers stay uniform
  const uint tb = tile * 9u;
  const uint b = (uint)tiles[tb], kvh = (uint)tiles[tb + 1], h0 = (uint)tiles[tb + 2], nh = (uint)tiles[tb + 3];
  const uint i0 = (uint)tiles[tb + 4], nq = (uint)tiles[tb + 5];
  const int c_begin = tiles[tb + 6], c_end = tiles[tb + 7], state = tiles[tb + 8];
  const uint t = get_local_id(0);
  const uint r = t / TPR, lane = t % TPR;
  const uint nrows = nh * nq;

  for (uint e = t; e < ROWS * DK; e += WG) {
    const uint rr = e / DK, d = e % DK;
    Qs[e] = rr < nrows ? LOAD_Q(q, ((b * tq + i0 + rr % nq) * hq + h0 + rr / nq) * DK + d) : 0.0f;
  }

  float m = -INFINITY, l = 0.0f;
  float acc[DVT];
  for (uint i = 0; i < DVT; ++i) acc[i] = 0.0f;

  for (int c = c_begin; c < c_end; ++c) {
    const uint k0 = (uint)chunks[2 * c];
    const uint n = (uint)chunks[2 * c + 1] & 0xffffu;
    const bool masked = ((uint)chunks[2 * c + 1] >> 16) != 0u;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint e = t; e < BK * DK; e += WG) {
      const uint j = e / DK, d = e % DK;
      Ks[e] = j < n ? LOAD_KV(k, ((b * tk + k0 + j) * hkv + kvh) * DK + d) : 0.0f;
    }
    for (uint e = t; e < BK * DV; e += WG) {
      const uint j = e / DV, d = e % DV;
      Vs[e] = j < n ? LOAD_KV(v, ((b * tk + k0 + j) * hkv + kvh) * DV + d) : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

#if USE_SUBGROUPS
    for (uint j = 0; j < BK; ++j) {
      float part = 0.0f;
      for (uint d = lane; d < DK; d += TPR) part += Qs[r * DK + d] * Ks[j * DK + d];
      for (uint w = 1; w < TPR; w <<= 1) part += sub_group_shuffle_xor(part, w);
      const uint rr = r, e = r * BK + j;
      if (lane == 0) {
#else
    for (uint e = t; e < ROWS * BK; e += WG) {
      const uint rr = e / BK, j = e % BK;
      {
        float part = 0.0f;
        for (uint d = 0; d < DK; ++d) part += Qs[rr * DK + d] * Ks[j * DK + d];
#endif
        float s = part * scale;
        if (softcap > 0.0f) s = softcap * tanh(s / softcap);
        const int qpos = q_offset + (int)(i0 + rr % nq);
        const int key = (int)(k0 + j);
        bool allowed = j < n;
        if (masked) {
          if (causal != 0u && key > qpos) allowed = false;
          if (window > 0 && key >= sinks && qpos - key >= window) allowed = false;
        }
        Ss[e] = allowed ? s : -INFINITY;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    float mx = m;
    for (uint j = 0; j < BK; ++j) mx = fmax(mx, Ss[r * BK + j]);
    const float ms = mx == -INFINITY ? 0.0f : mx;
    const float alpha = exp(m - ms);
    l *= alpha;
    for (uint i = 0; i < DVT; ++i) acc[i] *= alpha;
    for (uint j = 0; j < BK; ++j) {
      const float p = exp(Ss[r * BK + j] - ms);
      if (p == 0.0f) continue;  // a disallowed key never reaches the row, even with Inf/NaN in V
      l += p;
      for (uint i = 0; i < DVT; ++i) {
        const uint col = lane + i * TPR;
        if (col < DV) acc[i] += p * Vs[j * DV + col];
      }
    }
    m = mx;
  }

  if (r >= nrows) return;
  const uint hi = r / nq, qi = r % nq;
  if (state < 0) {
    const uint ob = ((b * tq + i0 + qi) * hq + h0 + hi) * DV;
    for (uint i = 0; i < DVT; ++i) {
      const uint col = lane + i * TPR;
      if (col < DV) o[ob + col] = l == 0.0f ? 0.0f : acc[i] / l;
    }
#if WRITE_LSE
    if (lane == 0) lse[(b * hq + h0 + hi) * tq + i0 + qi] = l == 0.0f ? -INFINITY : m + log(l);
#endif
  } else {
    const uint sb = (uint)state * ROWS * (DV + 2u);
    if (lane == 0) {
      states[sb + r] = m;
      states[sb + ROWS + r] = l;
    }
    for (uint i = 0; i < DVT; ++i) {
      const uint col = lane + i * TPR;
      if (col < DV) states[sb + 2u * ROWS + r * DV + col] = acc[i];
    }
  }
}

// Merges the parked states of a split tile (b, h0, nh, i0, nq, first state,
// splits) by log-sum-exp and writes O and L.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_sparse_attention_merge(
    const global float* states, const global int* merges, global float* o, global float* lse, uint tq, uint hq,
    uint n_merges) {
  const uint item = get_group_id(0);
  if (item >= n_merges) return;
  const uint mb = item * 7u;
  const uint b = (uint)merges[mb], h0 = (uint)merges[mb + 1], nh = (uint)merges[mb + 2];
  const uint i0 = (uint)merges[mb + 3], nq = (uint)merges[mb + 4];
  const uint first = (uint)merges[mb + 5], splits = (uint)merges[mb + 6];
  const uint stride = ROWS * (DV + 2u);
  for (uint e = get_local_id(0); e < nh * nq * DV; e += WG) {
    const uint r = e / DV, col = e % DV;
    float mx = -INFINITY;
    for (uint s = 0; s < splits; ++s) mx = fmax(mx, states[(first + s) * stride + r]);
    const float ms = mx == -INFINITY ? 0.0f : mx;
    float den = 0.0f, num = 0.0f;
    for (uint s = 0; s < splits; ++s) {
      const uint sb = (first + s) * stride;
      const float w = exp(states[sb + r] - ms);
      den += states[sb + ROWS + r] * w;
      num += states[sb + 2u * ROWS + r * DV + col] * w;
    }
    const uint hi = r / nq, qi = r % nq;
    o[((b * tq + i0 + qi) * hq + h0 + hi) * DV + col] = den == 0.0f ? 0.0f : num / den;
#if WRITE_LSE
    if (col == 0) lse[(b * hq + h0 + hi) * tq + i0 + qi] = den == 0.0f ? -INFINITY : ms + log(den);
#endif
  }
}
