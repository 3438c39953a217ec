// Peak microbenchmarks of the OpenCL backend (OpenCLDevice::measure_peaks).
// Each kernel keeps its result alive with a store the compiler cannot prove
// dead, and does the work it is credited with.
//
// Options:
//   VEC          lanes per work item (1, 2, 4, 8, 16): the device's preferred
//                float vector width. GPUs spread lanes over work items (1);
//                CPU drivers such as PoCL do not vectorise these loops across
//                work items, so explicit vectors are what reaches their SIMD.
//   CHUNKED      1: each work item streams its own contiguous chunk (CPU
//                drivers run a group's work items one after another, so
//                interleaving would make every item stride through memory);
//                0: grid-stride, neighbouring work items read neighbouring
//                vectors (coalesced on GPUs).
//   USE_PACKED_DOT  1: cl_khr_integer_dot_product's dot_4x8packed_ss_int.

#ifndef VEC
#define VEC 1
#endif
#define EK_CAT2(a, b) a##b
#define EK_CAT(a, b) EK_CAT2(a, b)
#if VEC == 1
#define floatV float
#define uintV uint
#define intV int
#define FIRST(v) (v)
#else
#define floatV EK_CAT(float, VEC)
#define uintV EK_CAT(uint, VEC)
#define intV EK_CAT(int, VEC)
#define FIRST(v) ((v).s0)
#endif

// Streaming read of n_vec floatV elements (the source is zero-filled, so the
// store never happens, but the compiler cannot know that).
kernel void ek_read_bw(global const floatV* restrict src, uint n_vec, global float* restrict sink) {
  floatV acc = (floatV)(0.0f);
#if CHUNKED
  const uint per = n_vec / get_global_size(0);
  const global floatV* p = src + get_global_id(0) * per;
  for (uint i = 0; i < per; ++i) acc += p[i];
#else
  const uint stride = get_global_size(0);
  for (uint i = get_global_id(0); i < n_vec; i += stride) acc += src[i];
#endif
  const float s = FIRST(acc);
  if (s == -1.0f) sink[get_global_id(0)] = s;
}

// Copy: one floatV per work item; bytes moved = 2 * size.
kernel void ek_copy_bw(global const floatV* restrict src, global floatV* restrict dst) {
  dst[get_global_id(0)] = src[get_global_id(0)];
}

// fp32 FMA: 8 independent loop-carried chains of VEC lanes per work item, to
// hide FMA latency. FLOPs = 2 * 8 * VEC * iters per work item.
#define FMA8(a, b)                                                                \
  x0 = fma(x0, a, b); x1 = fma(x1, a, b); x2 = fma(x2, a, b); x3 = fma(x3, a, b); \
  x4 = fma(x4, a, b); x5 = fma(x5, a, b); x6 = fma(x6, a, b); x7 = fma(x7, a, b);

kernel void ek_fp32_fma(global float* restrict sink, uint iters, float a, float b) {
  const floatV s = (floatV)((float)get_global_id(0) * 1e-7f);
  floatV x0 = s, x1 = s + 1, x2 = s + 2, x3 = s + 3, x4 = s + 4, x5 = s + 5, x6 = s + 6, x7 = s + 7;
  const floatV av = (floatV)(a), bv = (floatV)(b);
  for (uint i = 0; i < iters; ++i) {
    FMA8(av, bv)
  }
  const floatV r = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
  if (FIRST(r) == -1.0f) sink[get_global_id(0)] = FIRST(r);
}

// int8 dot: 8 independent chains of 4-way int8 dot products accumulated in
// 32 bits; ops = 8 (4 multiplies + 4 adds) per dot. Each chain's packed input
// is its own accumulator, so no dot can be hoisted out of the loop. Without
// the packed built-in the dot is the sign-extend/multiply/add sequence an
// int8 kernel on such a device runs. Unsigned accumulators: wrap-around is
// defined, signed overflow is not.
#if USE_PACKED_DOT
#define DOT4(p) dot_4x8packed_ss_int(p, q)
#else
#define SEXT(v, byte) (as_intV((v) << (24 - 8 * (byte))) >> 24)
#define as_intV EK_CAT(as_, intV)
#define DOT4(p) (SEXT(p, 0) * q0 + SEXT(p, 1) * q1 + SEXT(p, 2) * q2 + SEXT(p, 3) * q3)
#endif
#define STEP(acc) acc += as_uintV(DOT4(acc));
#define as_uintV EK_CAT(as_, uintV)

kernel void ek_int8_dot(global uint* restrict sink, uint iters, uint q) {
#if !USE_PACKED_DOT
  const intV q0 = (intV)((int)(q << 24) >> 24), q1 = (intV)((int)(q << 16) >> 24);
  const intV q2 = (intV)((int)(q << 8) >> 24), q3 = (intV)((int)q >> 24);
#endif
  const uintV s = (uintV)((uint)get_global_id(0));
  uintV a0 = s, a1 = s + 1, a2 = s + 2, a3 = s + 3, a4 = s + 4, a5 = s + 5, a6 = s + 6, a7 = s + 7;
  for (uint i = 0; i < iters; ++i) {
    STEP(a0) STEP(a1) STEP(a2) STEP(a3) STEP(a4) STEP(a5) STEP(a6) STEP(a7)
  }
  const uintV r = ((a0 ^ a1) + (a2 ^ a3)) + ((a4 ^ a5) + (a6 ^ a7));
  if (FIRST(r) == 0x7fffffffu) sink[get_global_id(0)] = FIRST(r);
}
