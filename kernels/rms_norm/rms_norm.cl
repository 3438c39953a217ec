// rms_norm on OpenCL: y = v / sqrt(mean(v^2) + eps) * w with v = x, or
// v = x * silu(z) in the gated form. One work-group per row: each work item
// accumulates the squares of a strided slice of the row in fp32, the group
// reduces them, then each work item scales its slice.
//
// Build options (-D):
//   WG             work items per group (power of two; the group size)
//   VEC            elements per load: 1, 2, 4, 8 or 16 (dim % VEC == 0).
//                  GPUs: 4 (16-byte loads, neighbouring work items
//                  neighbouring vectors); CPU drivers: 16 with WG 1, where a
//                  work item streaming its row in wide vectors is what
//                  reaches the SIMD units
//   X_F16          x and z are f16 (read with vload_half: no cl_khr_fp16 needed)
//   GATED          z is present
//   USE_SUBGROUPS  reduce with sub_group_reduce_add (needs sub-group built-ins:
//                  OpenCL C 3.0 __opencl_c_subgroups, cl_khr_subgroups or
//                  cl_intel_subgroups), else a local-memory tree

#if USE_SUBGROUPS && defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif

#define EK_CAT2(a, b) a##b
#define EK_CAT(a, b) EK_CAT2(a, b)

#if X_F16
#define XT half
#else
#define XT float
#endif

// VT: VEC floats; LOADX/LOADW/STOREY move vector i of a row; HSUM adds its lanes.
#if VEC == 1
#define VT float
#define LOADW(p, i) ((p)[i])
#define STOREY(v, p, i) ((p)[i] = (v))
#define HSUM(v) (v)
#if X_F16
#define LOADX(p, i) vload_half((i), (p))
#else
#define LOADX(p, i) ((p)[i])
#endif
#else
#define VT EK_CAT(float, VEC)
#define LOADW(p, i) EK_CAT(vload, VEC)((i), (p))
#define STOREY(v, p, i) EK_CAT(vstore, VEC)((v), (i), (p))
#if X_F16
#define LOADX(p, i) EK_CAT(vload_half, VEC)((i), (p))
#else
#define LOADX LOADW
#endif
#define HSUM2(v) ((v).s0 + (v).s1)
#define HSUM4(v) HSUM2((v).lo + (v).hi)
#define HSUM8(v) HSUM4((v).lo + (v).hi)
#define HSUM16(v) HSUM8((v).lo + (v).hi)
#define HSUM(v) EK_CAT(HSUM, VEC)(v)
#endif

// The value being normalised at vector index i of the row.
inline VT row_value(const global XT* x, const global XT* z, size_t i) {
  VT v = LOADX(x, i);
#if GATED
  const VT g = LOADX(z, i);
  v *= g / (1.0f + exp(-g));
#endif
  return v;
}

// Sum of `v` over the work-group; every work item gets the result.
inline float group_sum(float v, local float* scratch) {
#if USE_SUBGROUPS
  v = sub_group_reduce_add(v);
  if (get_sub_group_local_id() == 0) scratch[get_sub_group_id()] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  const uint groups = get_num_sub_groups();
  float total = 0.0f;
  for (uint s = 0; s < groups; ++s) total += scratch[s];
  return total;
#else
  const uint lid = get_local_id(0);
  scratch[lid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) scratch[lid] += scratch[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  return scratch[0];
#endif
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_rms_norm(
    const global XT* restrict x, const global XT* restrict z, const global float* restrict w,
    global float* restrict y, int dim, float eps) {
  local float scratch[WG];
  const size_t base = get_group_id(0) * (size_t)dim;
  const uint lid = get_local_id(0);
  const uint n = (uint)dim / VEC;
  const global XT* xr = x + base;
  const global XT* zr = z + base;
  global float* yr = y + base;

  VT ss = (VT)(0.0f);
  for (uint i = lid; i < n; i += WG) {
    const VT v = row_value(xr, zr, i);
    ss = fma(v, v, ss);
  }
  const float inv = rsqrt(group_sum(HSUM(ss), scratch) / (float)dim + eps);
  for (uint i = lid; i < n; i += WG) STOREY(row_value(xr, zr, i) * inv * LOADW(w, i), yr, i);
}
