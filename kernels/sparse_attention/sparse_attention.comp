// sparse_attention: block-sparse flash attention, one workgroup per tile.
//
// A tile (host plan, sparse_attention_gpu.cpp) is ROWS query rows — the nh
// query heads h0.. of KV head kvh times nq consecutive queries i0.. of batch b
// (row r = head hi * nq + query qi) — and a list of key chunks: only chunks
// of allowed key ranges are listed, so work scales with the allowed blocks.
// Per chunk of <= BK keys the workgroup stages K and V once in shared memory
// (once for all the group's query heads: GQA), computes the ROWS x BK scores,
// then each row's TPR = WG / ROWS invocations run the online softmax and
// accumulate P V into their Dv columns (lane + i * TPR, held in registers).
// Chunks flagged "masked" test every pair against the causal/window/sinks
// pattern; the others are fully allowed and tested for nothing.
//
// Variants (sparse_attention.variants.json): Q_F16, KV_F16 (f16 tensors read
// as packed pairs with unpackHalf2x16: no 16-bit storage feature needed) and
// EK_SUBGROUP_DOT (q.k split over a row's TPR invocations and reduced with
// subgroup shuffles; else each invocation computes whole dot products from
// shared memory).
// Specialization: 0 WG, 1 ROWS, 2 BK, 3 DK, 4 DV, 5 DVT = ceil(DV / TPR),
// 6 WRITE_LSE. Bindings: 0 Q, 1 K, 2 V, 3 O, 4 L, 5 tiles, 6 chunks,
// 7 states (split tiles park (m, l, acc) there for sparse_attention_merge).
#version 450
#if EK_SUBGROUP_DOT
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint ROWS = 16;
layout(constant_id = 2) const uint BK = 32;
layout(constant_id = 3) const uint DK = 128;
layout(constant_id = 4) const uint DV = 128;
layout(constant_id = 5) const uint DVT = 16;
layout(constant_id = 6) const bool WRITE_LSE = false;

layout(push_constant) uniform Push {
  uint tq, tk, hq, hkv;
  int q_offset;
  uint causal;
  int window;
  int sinks;
  float scale;
  float softcap;
  uint n_tiles;
} pc;

#if Q_F16
layout(binding = 0) readonly buffer Q2 { uint q2[]; };
float load_q(uint i) { return unpackHalf2x16(q2[i >> 1])[i & 1u]; }
#else
layout(binding = 0) readonly buffer Q1 { float q1[]; };
float load_q(uint i) { return q1[i]; }
#endif
#if KV_F16
layout(binding = 1) readonly buffer K2 { uint k2[]; };
layout(binding = 2) readonly buffer V2 { uint v2[]; };
float load_k(uint i) { return unpackHalf2x16(k2[i >> 1])[i & 1u]; }
float load_v(uint i) { return unpackHalf2x16(v2[i >> 1])[i & 1u]; }
#else
layout(binding = 1) readonly buffer K1 { float k1[]; };
layout(binding = 2) readonly buffer V1 { float v1[]; };
float load_k(uint i) { return k1[i]; }
float load_v(uint i) { return v1[i]; }
#endif
layout(binding = 3) writeonly buffer O1 { float o1[]; };
layout(binding = 4) writeonly buffer L1 { float l1[]; };
layout(binding = 5) readonly buffer Tiles { int tiles[]; };
layout(binding = 6) readonly buffer Chunks { int chunks[]; };
layout(binding = 7) writeonly buffer States { float states[]; };

shared float Qs[ROWS * DK];
shared float Ks[BK * DK];
shared float Vs[BK * DV];
shared float Ss[ROWS * BK];

const uint TPR = gl_WorkGroupSize.x / ROWS;
#define NEG_INF uintBitsToFloat(0xff800000u)

void main() {
  const uint tile = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (tile >= pc.n_tiles) return;  // whole workgroups: barriers stay uniform
  const uint tb = tile * 9u;
  const uint b = uint(tiles[tb]), kvh = uint(tiles[tb + 1u]), h0 = uint(tiles[tb + 2u]), nh = uint(tiles[tb + 3u]);
  const uint i0 = uint(tiles[tb + 4u]), nq = uint(tiles[tb + 5u]);
  const int c_begin = tiles[tb + 6u], c_end = tiles[tb + 7u], state = tiles[tb + 8u];
  const uint t = gl_LocalInvocationID.x;
  const uint r = t / TPR, lane = t % TPR;
  const uint nrows = nh * nq;

  // Query rows into shared memory (padding rows are zero).
  for (uint e = t; e < ROWS * DK; e += gl_WorkGroupSize.x) {
    const uint rr = e / DK, d = e % DK;
    float val = 0.0;
    if (rr < nrows) val = load_q(((b * pc.tq + i0 + rr % nq) * pc.hq + h0 + rr / nq) * DK + d);
    Qs[e] = val;
  }

  float m = NEG_INF, l = 0.0;
  float acc[DVT];
  for (uint i = 0u; i < DVT; ++i) acc[i] = 0.0;

  for (int c = c_begin; c < c_end; ++c) {
    const uint k0 = uint(chunks[2 * c]);
    const uint n = uint(chunks[2 * c + 1]) & 0xffffu;
    const bool masked = (uint(chunks[2 * c + 1]) >> 16) != 0u;
    barrier();  // the previous chunk's Ks/Vs/Ss (and Qs on the first) are settled
    for (uint e = t; e < BK * DK; e += gl_WorkGroupSize.x) {
      const uint j = e / DK, d = e % DK;
      Ks[e] = j < n ? load_k(((b * pc.tk + k0 + j) * pc.hkv + kvh) * DK + d) : 0.0;
    }
    for (uint e = t; e < BK * DV; e += gl_WorkGroupSize.x) {
      const uint j = e / DV, d = e % DV;
      Vs[e] = j < n ? load_v(((b * pc.tk + k0 + j) * pc.hkv + kvh) * DV + d) : 0.0;
    }
    barrier();

    // Scores: scale, soft cap, mask.
#if EK_SUBGROUP_DOT
    for (uint j = 0u; j < BK; ++j) {
      float part = 0.0;
      for (uint d = lane; d < DK; d += TPR) part += Qs[r * DK + d] * Ks[j * DK + d];
      for (uint w = 1u; w < TPR; w <<= 1u) part += subgroupShuffleXor(part, w);
      if (lane == 0u) {
        const uint e = r * BK + j;
#else
    for (uint e = t; e < ROWS * BK; e += gl_WorkGroupSize.x) {
      const uint rr = e / BK, j = e % BK;
      {
        float part = 0.0;
        for (uint d = 0u; d < DK; ++d) part += Qs[rr * DK + d] * Ks[j * DK + d];
#endif
        float s = part * pc.scale;
        if (pc.softcap > 0.0) s = pc.softcap * tanh(s / pc.softcap);
#if EK_SUBGROUP_DOT
        const int qpos = pc.q_offset + int(i0 + r % nq);
#else
        const int qpos = pc.q_offset + int(i0 + rr % nq);
#endif
        const int key = int(k0 + j);
        bool allowed = j < n;
        if (masked) {
          if (pc.causal != 0u && key > qpos) allowed = false;
          if (pc.window > 0 && key >= pc.sinks && qpos - key >= pc.window) allowed = false;
        }
        Ss[e] = allowed ? s : NEG_INF;
      }
    }
    barrier();

    // Online softmax of row r over the chunk, and P V into this lane's columns.
    float mx = m;
    for (uint j = 0u; j < BK; ++j) mx = max(mx, Ss[r * BK + j]);
    const float ms = mx == NEG_INF ? 0.0 : mx;
    const float alpha = exp(m - ms);
    l *= alpha;
    for (uint i = 0u; i < DVT; ++i) acc[i] *= alpha;
    for (uint j = 0u; j < BK; ++j) {
      const float p = exp(Ss[r * BK + j] - ms);
      // A disallowed key (p == 0) must not reach the row even when its V
      // holds Inf/NaN.
      if (p == 0.0) continue;
      l += p;
      for (uint i = 0u; i < DVT; ++i) {
        const uint col = lane + i * TPR;
        if (col < DV) acc[i] += p * Vs[j * DV + col];
      }
    }
    m = mx;
  }

  if (r >= nrows) return;
  const uint hi = r / nq, qi = r % nq;
  if (state < 0) {
    const uint ob = ((b * pc.tq + i0 + qi) * pc.hq + h0 + hi) * DV;
    for (uint i = 0u; i < DVT; ++i) {
      const uint col = lane + i * TPR;
      if (col < DV) o1[ob + col] = l == 0.0 ? 0.0 : acc[i] / l;
    }
    if (WRITE_LSE && lane == 0u) l1[(b * pc.hq + h0 + hi) * pc.tq + i0 + qi] = l == 0.0 ? NEG_INF : m + log(l);
  } else {
    // Parked state: m [ROWS], l [ROWS], acc [ROWS][DV].
    const uint sb = uint(state) * ROWS * (DV + 2u);
    if (lane == 0u) {
      states[sb + r] = m;
      states[sb + ROWS + r] = l;
    }
    for (uint i = 0u; i < DVT; ++i) {
      const uint col = lane + i * TPR;
      if (col < DV) states[sb + 2u * ROWS + r * DV + col] = acc[i];
    }
  }
}
