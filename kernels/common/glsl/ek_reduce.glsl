// Workgroup-wide reductions for compute shaders of any subgroup size (8 on
// lavapipe, 32 on NVIDIA, 64 on AMD/Adreno...) and any workgroup size.
//
//   #define EK_REDUCE_SUBGROUP 1   // 1: subgroup arithmetic (needs the device's
//                                  //    subgroup_arith feature), 0: shared memory only
//   #include "ek_reduce.glsl"      // after `layout(local_size_x_id = 0) in;`
//
//   float total = ek_workgroup_sum(partial);  // every invocation gets the sum
//
// Every invocation of the workgroup must call these in uniform control flow.
// They end with a barrier, so they can be called back to back.
#ifndef EK_REDUCE_GLSL
#define EK_REDUCE_GLSL

#ifndef EK_REDUCE_SUBGROUP
#error "define EK_REDUCE_SUBGROUP to 0 or 1 before including ek_reduce.glsl"
#endif

#if EK_REDUCE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

// One slot per invocation: enough for the shared tree and for one partial per
// subgroup at any subgroup size.
shared float ek_reduce_buf[gl_WorkGroupSize.x];

#if EK_REDUCE_SUBGROUP

float ek_workgroup_sum(float v) {
  v = subgroupAdd(v);
  if (subgroupElect()) ek_reduce_buf[gl_SubgroupID] = v;
  barrier();
  // Every invocation adds the few partials itself (broadcast reads): no second
  // barrier round, and correct when the last subgroup is only partly filled.
  float s = 0.0;
  for (uint i = 0u; i < gl_NumSubgroups; ++i) s += ek_reduce_buf[i];
  barrier();
  return s;
}

float ek_workgroup_max(float v) {
  v = subgroupMax(v);
  if (subgroupElect()) ek_reduce_buf[gl_SubgroupID] = v;
  barrier();
  float s = ek_reduce_buf[0];
  for (uint i = 1u; i < gl_NumSubgroups; ++i) s = max(s, ek_reduce_buf[i]);
  barrier();
  return s;
}

#else

// Tree over the next power of two; workgroup sizes need not be powers of two.
uint ek_reduce_top() {
  uint n = gl_WorkGroupSize.x;
  uint p = 1u;
  while (p < n) p <<= 1u;
  return p >> 1u;
}

float ek_workgroup_sum(float v) {
  const uint i = gl_LocalInvocationIndex;
  const uint n = gl_WorkGroupSize.x;
  ek_reduce_buf[i] = v;
  barrier();
  for (uint s = ek_reduce_top(); s > 0u; s >>= 1u) {
    if (i < s && i + s < n) ek_reduce_buf[i] += ek_reduce_buf[i + s];
    barrier();
  }
  const float r = ek_reduce_buf[0];
  barrier();
  return r;
}

float ek_workgroup_max(float v) {
  const uint i = gl_LocalInvocationIndex;
  const uint n = gl_WorkGroupSize.x;
  ek_reduce_buf[i] = v;
  barrier();
  for (uint s = ek_reduce_top(); s > 0u; s >>= 1u) {
    if (i < s && i + s < n) ek_reduce_buf[i] = max(ek_reduce_buf[i], ek_reduce_buf[i + s]);
    barrier();
  }
  const float r = ek_reduce_buf[0];
  barrier();
  return r;
}

#endif
#endif  // EK_REDUCE_GLSL
