// Halide generators of ssd_scan (Mamba-2) for the CPU. Both see the whole call
// (all heads, groups resolved per head: g = h / heads_per_group) and keep the
// state fp32. Decay exponents are carried in base 2 (A pre-scaled by log2 e).
//
// ssd_scan_seq: the sequential form over a few tokens (the driver's
//   segment). One task per head: the state trajectory S[n, p, 1..T] of the
//   segment lives in cache (the first token reads h_in itself), updated per
//   token with n vectorised (the contiguous dimension of h0/hT); y is a
//   16-lane partial dot product over n and one lane reduction per (token, p).
// ssd_scan_step: the decode step (T = 1): hT and y straight from h_in, state
//   read and written once.
// ssd_scan_chunk: the chunked (state-space-duality) form for one chunk of L
//   tokens. Per group: CB[s, l] = B[s] . C[l]. Per head, with
//   seg(s, l) = sum_{s < k <= l} dt[k] A (a running sum per s, so no large
//   cumulative sums are subtracted):
//     y[l]  = exp(seg(-1, l)) * C[l] . S_in        (the incoming state)
//           + sum_{s <= l} CB[s, l] exp(seg(s, l)) dt[s] x[s]   (within chunk)
//           + Dskip x[l]
//     S_out = exp(seg(-1, L-1)) S_in + sum_s (exp(seg(s, L-1)) dt[s] x[s]) (x) B[s]
//   three matrix products per head ([P x N][N x L], [P x L][L x L] causal,
//   [P x L][L x N]) with register-tiled micro-kernels; the state is carried
//   transposed (p innermost) between chunks. The driver runs the chunks in
//   order, handing S_out to the next call (the short sequential pass over
//   chunk states).
// ssd_state_transpose: per-head state transpose between the two layouts.
//
// act_f16 builds of the scan generators read the activations x, dt, Bm, Cm as
// f16 bits (uint16) and widen them exactly to f32: dt where it is loaded, x,
// B and C (which the inner loops reuse) once into f32 buffers per head (x)
// and per call (B, C) instead of once per use.
#include <Halide.h>

#include "kernels/selective_scan/scan_math_halide.h"

namespace {

using namespace Halide;
using ek::halide_scan::activation_type;
using ek::halide_scan::exp2_f32;
using ek::halide_scan::exp2_impl;
using ek::halide_scan::Exp2Impl;
using ek::halide_scan::kLog2e;
using ek::halide_scan::softplus;
using ek::halide_scan::activation_read;
using ek::halide_scan::ActivationRead;
using ek::halide_scan::widen;

// Shared inputs/outputs of both generators; x, dt, Bm, Cm are f32 or (act_f16)
// f16 bits as uint16.
#define EK_SSD_IO                                                                  \
  GeneratorParam<bool> act_f16{"act_f16", false};                                  \
  Input<Buffer<>> x{"x", 4};                  /* (p, h, t, b) */                   \
  Input<Buffer<>> dt{"dt", 3};                /* (h, t, b) */                      \
  Input<Buffer<float>> A{"A", 1};             /* (h) */                            \
  Input<Buffer<>> Bm{"Bm", 4};                /* (n, g, t, b) */                   \
  Input<Buffer<>> Cm{"Cm", 4};                /* (n, g, t, b) */                   \
  Input<Buffer<float>> Dskip{"Dskip", 1};     /* (h), zeros when absent */         \
  Input<Buffer<float>> dt_bias{"dt_bias", 1}; /* (h), zeros when absent */         \
  Input<Buffer<float>> h_in{"h_in", 4};       /* (n, p, h, b) */                   \
  Input<bool> dt_softplus{"dt_softplus"};                                          \
  Input<float> dt_min{"dt_min"};                                                   \
  Input<float> dt_max{"dt_max"};                                                   \
  Input<int> heads_per_group{"heads_per_group"};                                   \
  Output<Buffer<float>> y{"y", 4};            /* (p, h, t, b) */                   \
  Output<Buffer<float>> hT{"hT", 4};          /* (n, p, h, b) */                   \
  void configure() {                                                               \
    for (auto* in : {&x, &dt, &Bm, &Cm}) in->set_type(activation_type(act_f16));   \
  }

// The activations as f32 Funcs (inlined unless a schedule stages them).
struct Widened {
  Func x{"xf"}, dt{"dtf"}, Bm{"Bf"}, Cm{"Cf"};
};
inline Widened widened(const Func& x, const Func& dt, const Func& Bm, const Func& Cm, ActivationRead how) {
  Var p("p"), h("h"), t("t"), b("b"), n("n"), g("g");
  Widened w;
  w.x(p, h, t, b) = widen(x(p, h, t, b), how);
  w.dt(h, t, b) = widen(dt(h, t, b), how);
  w.Bm(n, g, t, b) = widen(Bm(n, g, t, b), how);
  w.Cm(n, g, t, b) = widen(Cm(n, g, t, b), how);
  return w;
}

// dt' = clamp(softplus(dt + bias)), as ops.md orders it.
inline Expr time_step(const Expr& raw, const Expr& use_softplus, const Expr& lo, const Expr& hi, Exp2Impl e2) {
  Expr v = select(use_softplus, softplus(raw, e2), raw);
  return min(max(v, lo), hi);
}

class SsdScanSeq : public Generator<SsdScanSeq> {
 public:
  EK_SSD_IO

  void generate() {
    Var n("n"), p("p"), t("t"), h("h"), b("b"), k("k"), v("v");
    const Expr T = x.dim(2).extent();
    const Expr N = Bm.dim(0).extent();
    Expr g = h / heads_per_group;
    Widened in = widened(x, dt, Bm, Cm, activation_read(act_f16, *get_externs_map(), get_target()));
    const Exp2Impl e2 = exp2_impl(*get_externs_map(), get_target());

    Func dtp("dtp"), decay("decay"), S("S"), yc("yc");
    dtp(h, t, b) = time_step(in.dt(h, t, b) + dt_bias(h), dt_softplus, dt_min, dt_max, e2);
    decay(h, t, b) = exp2_f32(dtp(h, t, b) * (A(h) * kLog2e), e2);

    // S(k) = state after k tokens; the first token reads h_in itself (no copy).
    RDom r(1, T - 1, "r");
    S(n, p, k, h, b) = undef<float>();
    S(n, p, 1, h, b) = decay(h, 0, b) * h_in(n, p, h, b) + (dtp(h, 0, b) * in.x(p, h, 0, b)) * in.Bm(n, g, 0, b);
    S(n, p, r + 1, h, b) = decay(h, r, b) * S(n, p, r, h, b) + (dtp(h, r, b) * in.x(p, h, r, b)) * in.Bm(n, g, r, b);

    RDom rn(0, N, "rn");
    yc(p, h, t, b) = 0.0f;
    yc(p, h, t, b) += S(rn, p, t + 1, h, b) * in.Cm(rn, g, t, b);
    y(p, h, t, b) = yc(p, h, t, b) + Dskip(h) * in.x(p, h, t, b);
    hT(n, p, h, b) = S(n, p, T, h, b);

    // Schedule: one task per head (batch is an outer serial loop; fusing it
    // into the parallel loop makes compute_with lose hT's per-head bounds).
    const int V = natural_vector_size<float>();
    y.reorder(p, t, h, b).parallel(h).vectorize(p, V, TailStrategy::GuardWithIf);
    hT.reorder(n, p, h, b).parallel(h).vectorize(n, V, TailStrategy::GuardWithIf);
    hT.compute_with(y, h);
    S.compute_at(y, h);
    S.update(0).vectorize(n, V, TailStrategy::GuardWithIf);
    S.update(1).reorder(n, p, r).vectorize(n, V, TailStrategy::GuardWithIf);
    dtp.compute_at(y, h);
    decay.compute_at(y, h);
    // y: V lanes of partial sums over n per (t, p), then one lane reduction.
    yc.compute_at(y, t);
    RVar rno("rno"), rni("rni");
    Func ylanes = yc.update().specialize(N % V == 0).split(rn, rno, rni, V).rfactor(rni, v);
    ylanes.compute_at(y, t).reorder_storage(v, p).vectorize(v);
    ylanes.update().reorder(v, rno, p).vectorize(v);
    yc.update().specialize(N % V == 0).atomic().vectorize(rni);
    if (act_f16) {
      // The head's x and its group's B, C over the segment, widened once.
      Var pv = in.x.args()[0], nv = in.Bm.args()[0];
      in.x.compute_at(y, h).vectorize(pv, V, TailStrategy::GuardWithIf);
      in.Bm.compute_at(y, h).vectorize(nv, V, TailStrategy::GuardWithIf);
      in.Cm.compute_at(y, h).vectorize(nv, V, TailStrategy::GuardWithIf);
    }

    for (auto* buf : {&x, &Bm, &Cm}) (*buf).dim(0).set_stride(1);
    h_in.dim(0).set_stride(1);
    dt.dim(0).set_stride(1);
    y.dim(0).set_stride(1);
    hT.dim(0).set_stride(1);
  }
};

// The decode step (T = 1): hT and y both straight from h_in, so the state is
// read once and written once per head (y uses C.(a S + dx B) = a C.S + dx B.C).
class SsdScanStep : public Generator<SsdScanStep> {
 public:
  EK_SSD_IO

  void generate() {
    Var n("n"), p("p"), t("t"), h("h"), b("b"), g("g"), v("v");
    const Expr N = Bm.dim(0).extent();
    Expr gh = h / heads_per_group;
    Widened in = widened(x, dt, Bm, Cm, activation_read(act_f16, *get_externs_map(), get_target()));
    const Exp2Impl e2 = exp2_impl(*get_externs_map(), get_target());

    Func dtp("dtp"), decay("decay"), BC("BC"), yc("yc");
    dtp(h, b) = time_step(in.dt(h, 0, b) + dt_bias(h), dt_softplus, dt_min, dt_max, e2);
    decay(h, b) = exp2_f32(dtp(h, b) * (A(h) * kLog2e), e2);
    RDom rn(0, N, "rn");
    BC(g, b) = 0.0f;
    BC(g, b) += in.Bm(rn, g, 0, b) * in.Cm(rn, g, 0, b);
    yc(p, h, b) = 0.0f;
    yc(p, h, b) += h_in(rn, p, h, b) * in.Cm(rn, gh, 0, b);
    Expr dx = dtp(h, b) * in.x(p, h, 0, b);
    y(p, h, t, b) = decay(h, b) * yc(p, h, b) + dx * BC(gh, b) + Dskip(h) * in.x(p, h, 0, b);  // t: the one token
    hT(n, p, h, b) = decay(h, b) * h_in(n, p, h, b) + (dtp(h, b) * in.x(p, h, 0, b)) * in.Bm(n, gh, 0, b);

    const int V = natural_vector_size<float>();
    const auto G = TailStrategy::GuardWithIf;
    BC.compute_root();
    dtp.compute_root();
    decay.compute_root();
    // One task per head; y's dot products and hT's update run over the same
    // state rows back to back (compute_with), the second pass from L1/L2.
    y.reorder(p, t, h, b).parallel(h).vectorize(p, V, G);
    hT.reorder(n, p, h, b).parallel(h).vectorize(n, V, G);
    hT.compute_with(y, h);
    yc.compute_at(y, h);
    RVar rno("rno"), rni("rni");
    Func lanes = yc.update().specialize(N % V == 0).split(rn, rno, rni, V).rfactor(rni, v);
    lanes.compute_at(y, h).reorder_storage(v, p).vectorize(v);
    lanes.update().reorder(v, rno, p).vectorize(v);
    yc.update().specialize(N % V == 0).atomic().vectorize(rni);
    if (act_f16) {
      // The token's B and C (every group), widened once per call.
      Var nv = in.Bm.args()[0];
      in.Bm.compute_root().vectorize(nv, V, G);
      in.Cm.compute_root().vectorize(nv, V, G);
    }

    for (auto* buf : {&x, &Bm, &Cm}) (*buf).dim(0).set_stride(1);
    h_in.dim(0).set_stride(1);
    dt.dim(0).set_stride(1);
    y.dim(0).set_stride(1);
    hT.dim(0).set_stride(1);
  }
};

class SsdScanChunk : public Generator<SsdScanChunk> {
 public:
  // As EK_SSD_IO, except that the state is carried transposed, p innermost
  // ((p, n, h, b)), between chunks: both products that touch it then read
  // or write whole p-vectors. The driver transposes h0 in and hT out once
  // per call (ssd_state_transpose). x, dt, Bm, Cm are f32 or (act_f16) f16
  // bits as uint16.
  GeneratorParam<bool> act_f16{"act_f16", false};
  Input<Buffer<>> x{"x", 4};                  // (p, h, t, b)
  Input<Buffer<>> dt{"dt", 3};                // (h, t, b)
  Input<Buffer<float>> A{"A", 1};             // (h)
  Input<Buffer<>> Bm{"Bm", 4};                // (n, g, t, b)
  Input<Buffer<>> Cm{"Cm", 4};                // (n, g, t, b)
  Input<Buffer<float>> Dskip{"Dskip", 1};     // (h), zeros when absent
  Input<Buffer<float>> dt_bias{"dt_bias", 1}; // (h), zeros when absent
  Input<Buffer<float>> h_in{"h_in", 4};       // (p, n, h, b): transposed state
  Input<bool> dt_softplus{"dt_softplus"};
  Input<float> dt_min{"dt_min"};
  Input<float> dt_max{"dt_max"};
  Input<int> heads_per_group{"heads_per_group"};
  Output<Buffer<float>> y{"y", 4};            // (p, h, t, b)
  Output<Buffer<float>> hT{"hT", 4};          // (p, n, h, b): transposed state

  // false: the fast build, register-tiled products whose tiles shift inwards
  //   at the edges; needs P >= V*tile_vectors, N >= tile_rows and
  //   T >= tile_rows (the driver checks, see ssd_scan_cpu.cpp).
  // true: any shape; the same algebra with guarded loops.
  GeneratorParam<bool> generic{"generic", false};
  // Accumulator tile of the matrix products: tile_vectors vectors x tile_rows rows.
  GeneratorParam<int> tile_vectors{"tile_vectors", 4};
  GeneratorParam<int> tile_rows{"tile_rows", 4};

  void configure() {
    for (auto* in : {&x, &dt, &Bm, &Cm}) in->set_type(activation_type(act_f16));
  }

  void generate() {
    Var n("n"), p("p"), s("s"), l("l"), h("h"), b("b"), g("g");
    const Expr T = x.dim(2).extent();  // tokens of this chunk
    const Expr N = Bm.dim(0).extent();
    Expr gh = h / heads_per_group;
    const int RT = tile_rows;
    Widened in = widened(x, dt, Bm, Cm, activation_read(act_f16, *get_externs_map(), get_target()));
    const Exp2Impl e2 = exp2_impl(*get_externs_map(), get_target());

    Func dtp("dtp"), la("la"), seg("seg"), BT("BT"), CB("CB"), M("M"), xw("xw"), decay_in("decay_in");
    Func Yoff("Yoff"), Ydiag("Ydiag"), Sout("Sout");
    dtp(h, l, b) = time_step(in.dt(h, l, b) + dt_bias(h), dt_softplus, dt_min, dt_max, e2);
    la(h, l, b) = dtp(h, l, b) * (A(h) * kLog2e);

    // seg(s, l) = sum_{s < k <= l} la(k) for s in [-1, T), l in [0, T); 0 for l <= s.
    RDom rl(1, T - 1, "rl");
    seg(s, l, h, b) = select(l == s + 1, la(h, clamp(l, 0, T - 1), b), 0.0f);
    seg(s, rl, h, b) = select(s + 1 < rl, seg(s, rl - 1, h, b) + la(h, rl, b), seg(s, rl, h, b));
    decay_in(l, h, b) = exp2_f32(seg(-1, l, h, b), e2);

    // CB[s, l] per group, from B transposed so s is contiguous.
    RDom rn(0, N, "rn");
    BT(s, n, g, b) = in.Bm(n, g, s, b);
    CB(s, l, g, b) = 0.0f;
    CB(s, l, g, b) += BT(s, rn, g, b) * in.Cm(rn, g, l, b);

    M(s, l, h, b) = select(s <= l, CB(s, l, gh, b) * exp2_f32(seg(s, l, h, b), e2) * dtp(h, s, b), 0.0f);
    xw(p, s, h, b) = in.x(p, h, s, b) * (dtp(h, s, b) * exp2_f32(seg(s, T - 1, h, b), e2));

    // Yoff[p, l] = C[l] . S_in[p].
    Yoff(p, l, h, b) = 0.0f;
    Yoff(p, l, h, b) += h_in(p, rn, h, b) * in.Cm(rn, gh, l, b);
    // Ydiag[p, l] = sum_{s <= l} x[p, s] M[s, l]: the full columns left of the
    // row tile's diagonal block, then the block itself, causal only (no
    // 0 * x terms, so a NaN/Inf in x reaches no earlier token).
    Expr block_start = generic ? Expr(0) : max((l / RT) * RT, 0);
    RDom rb(0, T, "rb");
    rb.where(rb < block_start);
    RDom rd(0, T, "rd");
    rd.where(rd >= block_start);
    rd.where(rd <= l);
    Ydiag(p, l, h, b) = 0.0f;
    Ydiag(p, l, h, b) += in.x(p, h, rb, b) * M(rb, l, h, b);
    Ydiag(p, l, h, b) += in.x(p, h, rd, b) * M(rd, l, h, b);
    y(p, h, l, b) = Yoff(p, l, h, b) * decay_in(l, h, b) + Ydiag(p, l, h, b) + Dskip(h) * in.x(p, h, l, b);

    // S_out[p, n] = exp(seg(-1, T-1)) S_in[p, n] + sum_s xw[p, s] B[s, n].
    RDom rs(0, T, "rs");
    Sout(p, n, h, b) = exp2_f32(seg(-1, T - 1, h, b), e2) * h_in(p, n, h, b);
    Sout(p, n, h, b) += xw(p, rs, h, b) * in.Bm(n, gh, rs, b);
    hT(p, n, h, b) = Sout(p, n, h, b);

    // ---------------------------------------------------------- schedule
    const int V = natural_vector_size<float>();
    const int PT = tile_vectors;
    const auto G = TailStrategy::GuardWithIf;
    // Per group, before the heads.
    BT.compute_root().reorder(s, n, g, b).vectorize(s, V, G);
    CB.compute_root().reorder(s, l, g, b).parallel(l).vectorize(s, V, G);
    CB.update().reorder(s, rn, l, g, b).parallel(l).vectorize(s, V, G);

    // One task per head.
    y.reorder(p, l, h, b).parallel(h);
    hT.reorder(p, n, h, b).parallel(h);
    hT.compute_with(y, h);
    dtp.compute_at(y, h);
    la.compute_at(y, h);
    seg.compute_at(y, h).vectorize(s, V, G);
    seg.update().reorder(s, rl).vectorize(s, V, G);
    decay_in.compute_at(y, h);
    M.compute_at(y, h).vectorize(s, V, G);
    xw.compute_at(y, h).vectorize(p, V, G);
    if (act_f16) {
      // x of the head (P x chunk) and B, C of the chunk (every group) widened
      // once, before the products reuse them.
      Var pv = in.x.args()[0], nv = in.Bm.args()[0];
      in.x.compute_at(y, h).vectorize(pv, V, G);
      in.Bm.compute_root().vectorize(nv, V, G);
      in.Cm.compute_root().vectorize(nv, V, G);
    }

    if (generic) {
      y.vectorize(p, V, G);
      hT.vectorize(p, V, G);
      for (Func* f : {&Yoff, &Ydiag, &Sout}) {
        f->compute_at(y, h).vectorize(p, V, G);
        for (int u = 0; u < f->num_update_definitions(); ++u) f->update(u).vectorize(p, V, G);
      }
    } else {
      // Register-blocked products: the consumers (y, hT) walk tiles of
      // V*PT x RT that shift inwards at the edges, so every accumulator tile
      // is whole (constant size: it lives in registers across the reduction).
      const auto S = TailStrategy::ShiftInwards;
      Var po("po"), pi("pi"), lo("lo"), li("li"), no("no"), ni("ni");
      y.tile(p, l, po, lo, pi, li, V * PT, RT, S).vectorize(pi, V).unroll(pi).unroll(li);
      hT.tile(p, n, po, no, pi, ni, V * PT, RT, S).vectorize(pi, V).unroll(pi).unroll(ni);
      for (Func* f : {&Yoff, &Ydiag}) {
        f->compute_at(y, po).bound_extent(p, V * PT).bound_extent(l, RT);
        f->vectorize(p, V).unroll(p).unroll(l);
        for (int u = 0; u < f->num_update_definitions(); ++u) f->update(u).vectorize(p, V).unroll(p).unroll(l);
      }
      Yoff.update(0).reorder(p, l, rn);
      Ydiag.update(0).reorder(p, l, rb);
      Ydiag.update(1).reorder(p, l, rd);
      Sout.compute_at(hT, po).bound_extent(p, V * PT).bound_extent(n, RT);
      Sout.vectorize(p, V).unroll(p).unroll(n);
      Sout.update().reorder(p, n, rs).vectorize(p, V).unroll(p).unroll(n);
    }

    for (auto* buf : {&x, &Bm, &Cm}) (*buf).dim(0).set_stride(1);
    h_in.dim(0).set_stride(1);
    dt.dim(0).set_stride(1);
    y.dim(0).set_stride(1);
    hT.dim(0).set_stride(1);
  }
};

// Per head, (a, b) -> (b, a): the state between the contract layout
// (p, n: n innermost) and the chunked form's (n, p: p innermost).
class SsdStateTranspose : public Generator<SsdStateTranspose> {
 public:
  Input<Buffer<float>> in{"in", 4};    // (i, j, h, b)
  Output<Buffer<float>> out{"out", 4}; // (j, i, h, b)

  void generate() {
    Var i("i"), j("j"), h("h"), b("b"), io("io"), jo("jo"), ii("ii"), ji("ji"), hb("hb");
    out(j, i, h, b) = in(i, j, h, b);
    const int V = natural_vector_size<float>();
    out.tile(j, i, jo, io, ji, ii, V, V, TailStrategy::GuardWithIf)
        .vectorize(ji)
        .unroll(ii)
        .fuse(h, b, hb)
        .parallel(hb);
    in.dim(0).set_stride(1);
    out.dim(0).set_stride(1);
  }
};

}  // namespace

HALIDE_REGISTER_GENERATOR(SsdScanSeq, ssd_scan_seq)
HALIDE_REGISTER_GENERATOR(SsdScanStep, ssd_scan_step)
HALIDE_REGISTER_GENERATOR(SsdScanChunk, ssd_scan_chunk)
HALIDE_REGISTER_GENERATOR(SsdStateTranspose, ssd_state_transpose)
