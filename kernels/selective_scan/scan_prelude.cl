// Shared head of the scan family's OpenCL sources (selective_scan.cl,
// ssd_scan.cl): the embedder puts it in front of each file (codegen/
// embed_files: NAME=PRELUDE+FILE), since an embedded source has no
// directory for #include.
//
// ACT_F16: activations are f16, read exactly with vload_half (no
// cl_khr_fp16 needed). USE_SUBGROUPS / INTEL_SHUFFLE: the team reduction's
// shuffle.

#if ACT_F16
#define ACT half
#define LOAD_ACT(p, i) vload_half((i), (p))
#else
#define ACT float
#define LOAD_ACT(p, i) ((p)[i])
#endif

#if USE_SUBGROUPS && defined(cl_khr_subgroups)
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif
#if USE_SUBGROUPS && defined(cl_khr_subgroup_shuffle)
#pragma OPENCL EXTENSION cl_khr_subgroup_shuffle : enable
#endif
#if USE_SUBGROUPS && INTEL_SHUFFLE
#define EK_SHUFFLE_XOR(v, m) intel_sub_group_shuffle_xor((v), (m))
#else
#define EK_SHUFFLE_XOR(v, m) sub_group_shuffle_xor((v), (m))
#endif

// softplus(x) = log(1 + exp(x)) for x <= 20, else x, with log1p's small tail.
inline float ek_softplus(float x) {
  if (x > 20.0f) return x;
  const float e = exp(-fabs(x));
  const float l = e < 1e-4f ? e * (1.0f - 0.5f * e) : log(1.0f + e);
  return fmax(x, 0.0f) + l;
}
