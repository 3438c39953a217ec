// Peak-rate microbenchmarks of the Vulkan profile (VulkanDevice::measure_peaks).
// One template, one variant per MODE: streaming read and copy (GPU-style: the
// invocations of a workgroup read neighbouring vec4s; CPU-style "blocked": each
// invocation streams its own contiguous block, which CPU Vulkan drivers such as
// lavapipe run several times faster), fp32 FMA, packed int8 dot.
// Results are written only when an impossible value shows up, with the value
// from a push constant the compiler cannot see, so no work is optimised away.
#version 450
#if MODE_INT8_DOT
#include "ek_int_dot.glsl"
#endif

layout(local_size_x_id = 0) in;

layout(push_constant) uniform Push {
  uint n;       // READ/COPY: vec4 elements; FMA/DOT: iterations per invocation
  float magic;  // never equal to a result in practice
  float m;      // FMA multiplier
  float k;      // FMA addend
} pc;

layout(binding = 0) readonly buffer Src { vec4 src[]; };
layout(binding = 1) writeonly buffer Dst { vec4 dst[]; };

void main() {
  const uint gid = gl_GlobalInvocationID.x;
  const uint threads = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
#if MODE_READ
  // Four loads in flight per invocation per iteration.
  vec4 a0 = vec4(0), a1 = vec4(0), a2 = vec4(0), a3 = vec4(0);
  uint i = gid;
  for (; i + 3 * threads < pc.n; i += 4 * threads) {
    a0 += src[i];
    a1 += src[i + threads];
    a2 += src[i + 2 * threads];
    a3 += src[i + 3 * threads];
  }
  for (; i < pc.n; i += threads) a0 += src[i];
  vec4 s = (a0 + a1) + (a2 + a3);
  if (s.x == pc.magic) dst[gid] = s;
#elif MODE_READ_BLOCKED
  // Each invocation streams its own contiguous block (CPU-style access).
  const uint per = (pc.n + threads - 1) / threads;
  const uint lo = gid * per, hi = min(lo + per, pc.n);
  vec4 a0 = vec4(0), a1 = vec4(0), a2 = vec4(0), a3 = vec4(0);
  uint i = lo;
  for (; i + 3 < hi; i += 4) { a0 += src[i]; a1 += src[i + 1]; a2 += src[i + 2]; a3 += src[i + 3]; }
  for (; i < hi; ++i) a0 += src[i];
  vec4 s = (a0 + a1) + (a2 + a3);
  if (s.x == pc.magic) dst[gid] = s;
#elif MODE_COPY
  for (uint i = gid; i < pc.n; i += threads) dst[i] = src[i];
#elif MODE_COPY_BLOCKED
  const uint per = (pc.n + threads - 1) / threads;
  const uint lo = gid * per, hi = min(lo + per, pc.n);
  for (uint i = lo; i < hi; ++i) dst[i] = src[i];
#elif MODE_FMA
  // 8 independent vec4 chains: 32 FMAs per iteration, enough ILP for any GPU.
  const float f = float(gid & 255u) * 1e-3;
  vec4 a0 = vec4(f), a1 = vec4(f + 1), a2 = vec4(f + 2), a3 = vec4(f + 3);
  vec4 a4 = vec4(f + 4), a5 = vec4(f + 5), a6 = vec4(f + 6), a7 = vec4(f + 7);
  const vec4 m = vec4(pc.m), k = vec4(pc.k);
  for (uint it = 0; it < pc.n; ++it) {
    a0 = fma(a0, m, k); a1 = fma(a1, m, k); a2 = fma(a2, m, k); a3 = fma(a3, m, k);
    a4 = fma(a4, m, k); a5 = fma(a5, m, k); a6 = fma(a6, m, k); a7 = fma(a7, m, k);
  }
  vec4 s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
  if (s.x == pc.magic) dst[gid] = s;
#elif MODE_INT8_DOT
  // 8 independent chains; each step is one packed dot (4 multiply-adds) whose
  // input is the previous result, so nothing can be hoisted out of the loop.
  const int b = int(floatBitsToUint(pc.m));
  int a0 = int(gid), a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6, a7 = a0 + 7;
  for (uint it = 0; it < pc.n; ++it) {
    a0 += ek_sdot4x8(a0, b); a1 += ek_sdot4x8(a1, b); a2 += ek_sdot4x8(a2, b); a3 += ek_sdot4x8(a3, b);
    a4 += ek_sdot4x8(a4, b); a5 += ek_sdot4x8(a5, b); a6 += ek_sdot4x8(a6, b); a7 += ek_sdot4x8(a7, b);
  }
  int s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
  if (float(s) == pc.magic) dst[gid] = vec4(float(s));
#endif
}
