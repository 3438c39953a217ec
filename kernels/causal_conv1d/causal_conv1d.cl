// causal_conv1d on OpenCL: y[b,t,d] = bias[d] + sum_{j<W} w[d,j] * xx[b,t+j,d]
// with xx = s0 ++ x along time, then SiLU; sT = the last W-1 rows of xx.
//
// Work item (channel vector, token tile, batch): VEC neighbouring channels
// (neighbouring work items read neighbouring channels: coalesced) over TT
// consecutive tokens, with the W-1 previous inputs in a sliding register
// window, so every input is loaded once per tile plus W-1 rows of overlap.
// Items of tile 0 also write sT.
//
// Build options (-D):
//   W          filter width, 2..4
//   VEC        channels per work item: 1, 2, 4, 8 or 16 (D % VEC == 0)
//   TT         tokens per work item
//   WG         work items per group along channels
//   X_F16      x and s0 are f16 (vload_half: no cl_khr_fp16 needed)
//   HAS_BIAS, HAS_STATE, SILU

#define S (W - 1)
#define EK_CAT2(a, b) a##b
#define EK_CAT(a, b) EK_CAT2(a, b)

#if VEC == 1
#define VT float
#define VLOADF(p) (*(p))
#define VSTOREF(v, p) (*(p) = (v))
#if X_F16
#define VLOADX(p) vload_half(0, (p))
#endif
#else
#define VT EK_CAT(float, VEC)
#define VLOADF(p) EK_CAT(vload, VEC)(0, (p))
#define VSTOREF(v, p) EK_CAT(vstore, VEC)((v), 0, (p))
#if X_F16
#define VLOADX(p) EK_CAT(vload_half, VEC)(0, (p))
#endif
#endif

#if X_F16
#define XT half
#else
#define XT float
#define VLOADX(p) VLOADF(p)
#endif

// Lane l of a weight vector: w[(d + l) * W + j].
inline VT load_weights(const global float* w, size_t d, int j) {
#if VEC == 1
  return w[d * W + j];
#else
  float lanes[VEC];
  for (int l = 0; l < VEC; ++l) lanes[l] = w[(d + l) * W + j];
  return EK_CAT(vload, VEC)(0, lanes);
#endif
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void ek_causal_conv1d(
    const global XT* restrict x, const global float* restrict w, const global float* restrict bias,
    const global XT* restrict s0, global float* restrict y, global float* restrict sT, int T, int D) {
  const size_t d = get_global_id(0) * VEC;
  if (d >= (size_t)D) return;  // the range is rounded up to whole groups
  const int t0 = (int)get_global_id(1) * TT;
  const size_t b = get_global_id(2);
  const size_t dim = (size_t)D;
  const global XT* xb = x + b * (size_t)T * dim + d;
  const global XT* sb = s0 + b * (size_t)S * dim + d;

  // Row r of xx for this batch and these channels.
#if HAS_STATE
#define XX(r) ((r) < S ? VLOADX(sb + (size_t)(r) * dim) : VLOADX(xb + (size_t)((r) - S) * dim))
#else
#define XX(r) ((r) < S ? (VT)(0.0f) : VLOADX(xb + (size_t)((r) - S) * dim))
#endif

  VT wt[W];
  for (int j = 0; j < W; ++j) wt[j] = load_weights(w, d, j);
#if HAS_BIAS
  const VT bv = VLOADF(bias + d);
#else
  const VT bv = (VT)(0.0f);
#endif

  // win[j] = xx row t + j for the token t about to be computed.
  VT win[S];
  for (int j = 0; j < S; ++j) win[j] = XX(t0 + j);
  const int t1 = min(t0 + TT, T);
  for (int t = t0; t < t1; ++t) {
    const VT xt = VLOADX(xb + (size_t)t * dim);
    VT acc = bv;
    for (int j = 0; j < S; ++j) acc = fma(wt[j], win[j], acc);
    acc = fma(wt[S], xt, acc);
#if SILU
    acc = acc / (1.0f + exp(-acc));
#endif
    VSTOREF(acc, y + (b * (size_t)T + t) * dim + d);
    for (int j = 0; j + 1 < S; ++j) win[j] = win[j + 1];
    win[S - 1] = xt;
  }

  if (t0 == 0) {
    for (int r = 0; r < S; ++r) VSTOREF(XX(T + r), sT + (b * (size_t)S + r) * dim + d);
  }
}
