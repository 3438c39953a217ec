// matmul_q2 on OpenCL: Y[t, n] = sum_k X[t, k] W[n, k] + bias[n] on the GPU
// row layout (README.md): codes [N][K/16] u32 (one uint4 per 64-column
// chunk; column 16w + i in bits 2i of word w), scales [N][K/G] u32 = f16 d |
// f16 m << 16 (q2_k: d | dmin << 16 per 256 columns), q2_k sub-block scale
// bytes [N][K/64] u32.
//
// ek_matmul_q2_gemv: a work-group owns ROWS rows, its WG work items stride
// over the chunks, every decoded word serves the NT tokens of the launch,
// partials are reduced in local memory (or sub-groups). GPUs: WG 64-256; CPU
// drivers (PoCL): WG 1, one work item streaming ROWS rows.
// ek_matmul_q2_gemm: a work-group owns a TILE_N x TILE_T tile of Y, stages
// dequantized W and X in local memory 64 columns at a time, each work item
// accumulates RN x RT outputs.
//
// Build options (-D): Q2K, X_F16 (X is f16, read with vload_half*),
// GEMV: WG, ROWS, NT, VEC (4 or 16), USE_SUBGROUPS; GEMM: TILE_N, TILE_T, RN, RT.

#if USE_SUBGROUPS && defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif

#if X_F16
#define LOAD_X4(p, i) vload_half4((i), (p))
#define XT half
#else
#define LOAD_X4(p, i) vload4((i), (p))
#define XT float
#endif

// f16 bits -> float, exact (vload_half on a private copy: no cl_khr_fp16 needed).
float f16_bits(uint h) {
  ushort s = (ushort)h;
  return vload_half(0, (const __private half*)&s);
}

#ifdef ROWS
// VEC lanes of a 16-code word as floats and as X: VEC = 16 on CPU drivers
// (one AVX-512 vector per word; PoCL does not vectorise across a group's
// work items here), 4 on GPUs (float4 registers).
#define EK_CAT2(a, b) a##b
#define EK_CAT(a, b) EK_CAT2(a, b)
#define VT EK_CAT(float, VEC)
#define UT EK_CAT(uint, VEC)
#if X_F16
#define LOAD_XV(p, i) EK_CAT(vload_half, VEC)((i), (p))
#else
#define LOAD_XV(p, i) EK_CAT(vload, VEC)((i), (p))
#endif
#if VEC == 16
#define CODE_SHIFTS (UT)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define HSUM(v) (dot((v).s0123, (float4)(1.0f)) + dot((v).s4567, (float4)(1.0f)) + dot((v).s89ab, (float4)(1.0f)) + \
                 dot((v).scdef, (float4)(1.0f)))
#elif VEC == 4
#define CODE_SHIFTS (UT)(0, 2, 4, 6)
#define HSUM(v) dot((v), (float4)(1.0f))
#else
#error "VEC must be 4 or 16"
#endif

__kernel void ek_matmul_q2_gemv(__global const uint4* codes, __global const uint* scales, __global const uint* subs,
                                __global const XT* x, __global const float* bias, __global float* y, const uint N,
                                const uint K, const uint G, const uint t0, const uint has_bias) {
  const uint row0 = get_group_id(0) * ROWS;
  const uint lid = get_local_id(0);
  const uint chunks = K / 64u;
  // Per (row, token) a VEC-wide partial: dequantized weights times X, lanes
  // summed once at the end.
  VT vacc[ROWS * NT];
  for (uint i = 0; i < ROWS * NT; ++i) vacc[i] = (VT)(0.0f);

  for (uint c = lid; c < chunks; c += WG) {
    for (uint r = 0; r < ROWS; ++r) {
      const uint row = min(row0 + r, N - 1u);  // past N: recomputed, never stored
      const uint4 cw = codes[row * chunks + c];
#if Q2K
      const uint s = scales[row * (K / 256u) + c / 4u];
      const float d = f16_bits(s & 0xffffu), dmin = f16_bits(s >> 16);
      const uint sb = subs[row * chunks + c];
#else
      const uint s = scales[row * (K / G) + (c * 64u) / G];
      const float d = f16_bits(s & 0xffffu), m = f16_bits(s >> 16);
#endif
      const uint words[4] = {cw.x, cw.y, cw.z, cw.w};
      for (uint w = 0; w < 4u; ++w) {
#if Q2K
        const uint s8 = (sb >> (8u * w)) & 0xffu;
        const float scale = d * (float)(s8 & 15u), offset = -dmin * (float)(s8 >> 4);
#else
        const float scale = d, offset = m;
#endif
        for (uint v = 0; v < 16u / VEC; ++v) {
          // Codes 16w' + VEC v + i are bits 2 (VEC v + i) of the word.
          const VT q = EK_CAT(convert_float, VEC)(((UT)(words[w] >> (2u * VEC * v)) >> CODE_SHIFTS) & (UT)(3u));
          const VT wv = mad(q, (VT)(scale), (VT)(offset));
          for (uint t = 0; t < NT; ++t) {
            const uint xv = ((t0 + t) * K + c * 64u + w * 16u) / VEC + v;
            vacc[r * NT + t] = mad(wv, LOAD_XV(x, xv), vacc[r * NT + t]);
          }
        }
      }
    }
  }
  float acc[ROWS * NT];
  for (uint i = 0; i < ROWS * NT; ++i) acc[i] = HSUM(vacc[i]);

#if WG == 1
  for (uint r = 0; r < ROWS; ++r)
    for (uint t = 0; t < NT; ++t)
      if (row0 + r < N) y[(t0 + t) * N + row0 + r] = acc[r * NT + t] + (has_bias ? bias[row0 + r] : 0.0f);
#else
  __local float partial[WG];
  for (uint r = 0; r < ROWS; ++r) {
    for (uint t = 0; t < NT; ++t) {
      float v = acc[r * NT + t];
#if USE_SUBGROUPS
      v = sub_group_reduce_add(v);
      if (get_sub_group_local_id() == 0) partial[get_sub_group_id()] = v;
      barrier(CLK_LOCAL_MEM_FENCE);
      if (lid == 0) {
        float total = 0.0f;
        for (uint i = 0; i < get_num_sub_groups(); ++i) total += partial[i];
        if (row0 + r < N) y[(t0 + t) * N + row0 + r] = total + (has_bias ? bias[row0 + r] : 0.0f);
      }
#else
      partial[lid] = v;
      barrier(CLK_LOCAL_MEM_FENCE);
      for (uint s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
      }
      if (lid == 0 && row0 + r < N) y[(t0 + t) * N + row0 + r] = partial[0] + (has_bias ? bias[row0 + r] : 0.0f);
#endif
      barrier(CLK_LOCAL_MEM_FENCE);
    }
  }
#endif
}
#endif  // ROWS

#ifdef TILE_N
#define BK 64u
__kernel void ek_matmul_q2_gemm(__global const uint* codes, __global const uint* scales, __global const uint* subs,
                                __global const XT* x, __global const float* bias, __global float* y, const uint N,
                                const uint K, const uint G, const uint T, const uint has_bias) {
  __local float w_tile[BK * TILE_N];  // [k][n]
  __local float x_tile[BK * TILE_T];  // [k][t]
  const uint n0 = get_group_id(0) * TILE_N, t0 = get_group_id(1) * TILE_T;
  const uint lid = get_local_id(0), nthreads = (TILE_N / RN) * (TILE_T / RT);
  const uint tn = lid % (TILE_N / RN), tt = lid / (TILE_N / RN);
  const uint words = K / 16u;
  float acc[RN * RT];
  for (uint i = 0; i < RN * RT; ++i) acc[i] = 0.0f;

  for (uint k0 = 0; k0 < K; k0 += BK) {
    for (uint i = lid; i < TILE_N * 4u; i += nthreads) {
      const uint r = i / 4u, w = i % 4u;
      const uint row = min(n0 + r, N - 1u);
      const uint word = codes[row * words + k0 / 16u + w];
#if Q2K
      const uint s = scales[row * (K / 256u) + k0 / 256u];
      const uint s8 = (subs[row * (K / 64u) + k0 / 64u] >> (8u * w)) & 0xffu;
      const float scale = f16_bits(s & 0xffffu) * (float)(s8 & 15u), offset = -f16_bits(s >> 16) * (float)(s8 >> 4);
#else
      const uint s = scales[row * (K / G) + k0 / G];
      const float scale = f16_bits(s & 0xffffu), offset = f16_bits(s >> 16);
#endif
      for (uint j = 0; j < 16u; ++j) w_tile[(w * 16u + j) * TILE_N + r] = scale * (float)((word >> (2u * j)) & 3u) + offset;
    }
    for (uint i = lid; i < TILE_T * 16u; i += nthreads) {
      const uint t = i / 16u, v = i % 16u;
      const float4 a = LOAD_X4(x, min(t0 + t, T - 1u) * (K / 4u) + k0 / 4u + v);
      x_tile[(v * 4u + 0u) * TILE_T + t] = a.x;
      x_tile[(v * 4u + 1u) * TILE_T + t] = a.y;
      x_tile[(v * 4u + 2u) * TILE_T + t] = a.z;
      x_tile[(v * 4u + 3u) * TILE_T + t] = a.w;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint k = 0; k < BK; ++k) {
      float a[RN], b[RT];
      for (uint i = 0; i < RN; ++i) a[i] = w_tile[k * TILE_N + tn * RN + i];
      for (uint j = 0; j < RT; ++j) b[j] = x_tile[k * TILE_T + tt * RT + j];
      for (uint i = 0; i < RN; ++i)
        for (uint j = 0; j < RT; ++j) acc[i * RT + j] = fma(a[i], b[j], acc[i * RT + j]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }

  for (uint i = 0; i < RN; ++i) {
    const uint n = n0 + tn * RN + i;
    if (n >= N) continue;
    const float bv = has_bias ? bias[n] : 0.0f;
    for (uint j = 0; j < RT; ++j) {
      const uint t = t0 + tt * RT + j;
      if (t < T) y[t * N + n] = acc[i * RT + j] + bv;
    }
  }
}
#endif  // TILE_N
