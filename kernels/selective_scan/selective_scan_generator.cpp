// Halide generators of selective_scan (Mamba-1) for the CPU.
//
// Both pipelines see one group of channels at a time (the driver slices Bm/Cm
// to that group, so B and C are per-token vectors shared by every channel of
// the call) and keep the state fp32.
//
// selective_scan_chunk: a run of tokens (the driver's segment, "chunk"
//   tokens) for every channel. Channels are vectorised; a task owns a tile of
//   tile_vectors vectors of channels, and per tile the state trajectory
//   h[d, n, 0..T] of the segment is kept in a small buffer (L1/L2) by an
//   update definition whose RDom walks the tokens serially, with the state
//   dimension n as the middle loop (unrolled for N = 16), so each token costs
//   one vector exp2 per (vector of channels, n). dt/softplus are computed per
//   token inside that loop (the token rows are strided; prefetched 8 ahead).
//   y reads the trajectory; hT (the last slice) is fused into the same
//   per-tile loop with compute_with, so both outputs come from one pass.
// selective_scan_step: the decode step (T = 1). The state is read and written
//   once, vectorised along n (the contiguous dimension of h0/hT); softplus and
//   the gate are vectorised across a 128-channel tile; y comes from one
//   reduction tree per vector of channels. The state_size build (N = 16)
//   takes whole tiles only (RoundUp, mins 0): its per-vector state rows then
//   sit at constant stack offsets, which LLVM keeps in registers (with
//   guarded tails they went through memory, ~30 % slower).
//
// act_f16 builds read the activations u, delta, z, Bm, Cm as f16 bits
// (uint16) and widen them exactly to f32. The chunk pipeline widens each
// tile's share of the segment once into small f32 buffers before the scan
// (widening inside the strided per-token loop cost ~35 % at T = 512, now
// ~5 %); the step widens B and C once per call, u, delta, z where loaded.
#include <Halide.h>

#include "kernels/selective_scan/scan_math_halide.h"
#include "kernels/selective_scan/selective_scan_step_tile.h"

namespace {

using namespace Halide;
using ek::halide_scan::activation_type;
using ek::halide_scan::exp2_f32;
using ek::halide_scan::exp2_impl;
using ek::halide_scan::Exp2Impl;
using ek::halide_scan::exp_f32;
using ek::halide_scan::kLog2e;
using ek::halide_scan::silu;
using ek::halide_scan::softplus;
using ek::halide_scan::activation_read;
using ek::halide_scan::ActivationRead;
using ek::halide_scan::widen;

class SelectiveScanChunk : public Generator<SelectiveScanChunk> {
 public:
  // Channels per task, in vectors: wider tiles make each token's row access
  // longer (fewer, better-prefetched cache lines per token).
  GeneratorParam<int> tile_vectors{"tile_vectors", 8};
  GeneratorParam<bool> act_f16{"act_f16", false};  // u, delta, z, Bm, Cm: f16 bits (uint16) instead of f32
  Input<Buffer<>> u{"u", 3};                  // (d, t, b)
  Input<Buffer<>> delta{"delta", 3};          // (d, t, b)
  Input<Buffer<>> z{"z", 3};                  // (d, t, b), ignored unless has_z
  Input<Buffer<float>> A{"A", 2};             // (n, d)
  Input<Buffer<>> Bm{"Bm", 3};                // (n, t, b) of this group
  Input<Buffer<>> Cm{"Cm", 3};                // (n, t, b) of this group
  Input<Buffer<float>> Dskip{"Dskip", 1};     // (d), zeros when absent
  Input<Buffer<float>> delta_bias{"delta_bias", 1};  // (d), zeros when absent
  Input<Buffer<float>> h_in{"h_in", 3};       // (n, d, b)
  Input<bool> has_z{"has_z"};
  Input<bool> delta_softplus{"delta_softplus"};
  Output<Buffer<float>> y{"y", 3};            // (d, t, b)
  Output<Buffer<float>> hT{"hT", 3};          // (n, d, b)

  void configure() {
    for (auto* in : {&u, &delta, &z, &Bm, &Cm}) in->set_type(activation_type(act_f16));
  }

  void generate() {
    Var d("d"), n("n"), t("t"), b("b"), k("k");
    const Expr T = u.dim(1).extent();
    const Expr N = A.dim(0).extent();
    const Expr t0 = u.dim(1).min();

    // The activations as f32 (inlined unless scheduled below).
    Func uf("uf"), deltaf("deltaf"), zf("zf"), Bf("Bf"), Cf("Cf");
    const ActivationRead act = activation_read(act_f16, *get_externs_map(), get_target());
    const Exp2Impl e2 = exp2_impl(*get_externs_map(), get_target());
    uf(d, t, b) = widen(u(d, t, b), act);
    deltaf(d, t, b) = widen(delta(d, t, b), act);
    zf(d, t, b) = widen(z(d, t, b), act);
    Bf(n, t, b) = widen(Bm(n, t, b), act);
    Cf(n, t, b) = widen(Cm(n, t, b), act);

    Func dt("dt"), dtu("dtu"), At("At"), h("h"), yc("yc");
    Expr draw = deltaf(d, t, b) + delta_bias(d);
    dt(d, t, b) = select(delta_softplus, softplus(draw, e2), draw);
    dtu(d, t, b) = dt(d, t, b) * uf(d, t, b);
    // Per tile, transposed so the scan loads it contiguously along d, and in
    // base 2 so the decay is exp2(dt * A2).
    At(d, n) = A(n, d) * kLog2e;

    // h(d, n, k, b): state after k tokens of this segment (k = 0: h_in).
    RDom r(0, T, "r");
    h(d, n, k, b) = undef<float>();
    h(d, n, 0, b) = h_in(n, d, b);
    h(d, n, r + 1, b) =
        exp2_f32(dt(d, t0 + r, b) * At(d, n), e2) * h(d, n, r, b) + dtu(d, t0 + r, b) * Bf(n, t0 + r, b);

    RDom rn(0, N, "rn");
    yc(d, t, b) = 0.0f;
    yc(d, t, b) += h(d, rn, t - t0 + 1, b) * Cf(rn, t, b);
    Expr yv = yc(d, t, b) + Dskip(d) * uf(d, t, b);
    y(d, t, b) = select(has_z, yv * silu(zf(d, t, b), e2), yv);
    hT(n, d, b) = h(d, n, T, b);

    // Schedule. One task = one vector of channels of one sequence.
    const int V = natural_vector_size<float>();
    const int TW = V * tile_vectors;
    Var dO("dO"), dI("dI");
    y.split(d, dO, dI, TW, TailStrategy::GuardWithIf).reorder(dI, t, dO, b).parallel(dO).vectorize(dI, V, TailStrategy::GuardWithIf);
    hT.split(d, dO, dI, TW, TailStrategy::GuardWithIf).reorder(dI, n, dO, b).parallel(dO).vectorize(dI, V, TailStrategy::GuardWithIf);
    hT.compute_with(y, dO);
    const Var tile = dO;

    // Constant row pitch (one tile of channels) so the state rows of a token
    // are reached with immediate offsets.
    h.compute_at(y, tile).bound_storage(d, TW);
    h.update(0).vectorize(d, V, TailStrategy::GuardWithIf);
    // Per token: for each vector of the tile, its N states (unrolled for N =
    // 16). A loop over the vectors keeps the token body ~2.5 KB of code;
    // unrolled across the tile (LLVM did, with d innermost) it was ~10 KB
    // and its speed depended on where the linker put it (docs/scan.md).
    Var dv("dv"), dvo("dvo");
    h.update(1).split(d, dvo, dv, V, TailStrategy::GuardWithIf).reorder(dv, n, dvo, r).vectorize(dv);
    h.update(1).specialize(N == 16).unroll(n, 16);
    // The token inputs of the tile are strided rows (one cache line per
    // token): compute them per token inside the scan, and prefetch ahead.
    dt.compute_at(h, r).vectorize(d, V, TailStrategy::GuardWithIf).bound_storage(d, TW).store_in(MemoryType::Stack);
    dtu.compute_at(h, r).vectorize(d, V, TailStrategy::GuardWithIf).bound_storage(d, TW).store_in(MemoryType::Stack);
    h.update(1).prefetch(delta, r, r, 8).prefetch(u, r, r, 8);
    At.compute_at(y, tile).vectorize(d, V, TailStrategy::GuardWithIf).bound_storage(d, TW);
    yc.compute_at(y, t).vectorize(d, V, TailStrategy::GuardWithIf);
    // rn innermost: the accumulator stays in a register across the state.
    yc.update().reorder(rn, d).vectorize(d, V, TailStrategy::GuardWithIf);
    yc.update().specialize(N == 16).unroll(rn, 16);
    y.prefetch(z, t, t, 8).prefetch(u, t, t, 8);
    y.specialize(has_z);
    if (act_f16) {
      // The segment's B and C rows (chunk x N) and the tile's u, delta, z
      // (chunk x tile channels), widened once per tile.
      Bf.compute_at(y, tile).vectorize(n, V, TailStrategy::GuardWithIf);
      Cf.compute_at(y, tile).vectorize(n, V, TailStrategy::GuardWithIf);
      for (Func* f : {&uf, &deltaf, &zf})
        f->compute_at(y, tile).bound_storage(d, TW).vectorize(d, V, TailStrategy::GuardWithIf);
    }

    // Dense innermost dimensions; everything else is free (slices, crops).
    for (auto* buf : {&u, &delta, &z, &Bm, &Cm}) (*buf).dim(0).set_stride(1);
    for (auto* buf : {&A, &h_in}) (*buf).dim(0).set_stride(1);
    y.dim(0).set_stride(1);
    hT.dim(0).set_stride(1);
  }
};

class SelectiveScanStep : public Generator<SelectiveScanStep> {
 public:
  GeneratorParam<bool> act_f16{"act_f16", false};  // u, delta, z, Bm, Cm: f16 bits (uint16) instead of f32
  // 0: any state size N; > 0: a build for exactly this N (the driver picks
  // it when N matches), so every stride of the state rows is a constant.
  GeneratorParam<int> state_size{"state_size", 0};
  Input<Buffer<>> u{"u", 2};                  // (d, b) of the one token
  Input<Buffer<>> delta{"delta", 2};
  Input<Buffer<>> z{"z", 2};
  Input<Buffer<float>> A{"A", 2};             // (n, d)
  Input<Buffer<>> Bm{"Bm", 2};                // (n, b) of this group
  Input<Buffer<>> Cm{"Cm", 2};
  Input<Buffer<float>> Dskip{"Dskip", 1};
  Input<Buffer<float>> delta_bias{"delta_bias", 1};
  Input<Buffer<float>> h_in{"h_in", 3};       // (n, d, b)
  Input<bool> has_z{"has_z"};
  Input<bool> delta_softplus{"delta_softplus"};
  Output<Buffer<float>> y{"y", 2};            // (d, b)
  Output<Buffer<float>> hT{"hT", 3};          // (n, d, b)

  void configure() {
    for (auto* in : {&u, &delta, &z, &Bm, &Cm}) in->set_type(activation_type(act_f16));
  }

  void generate() {
    Var d("d"), n("n"), b("b");
    const int fixed_n = state_size;
    const Expr N = fixed_n > 0 ? Expr(fixed_n) : A.dim(0).extent();

    // The activations as f32 (inlined unless scheduled below).
    Func uf("uf"), deltaf("deltaf"), zf("zf"), Bf("Bf"), Cf("Cf");
    const ActivationRead act = activation_read(act_f16, *get_externs_map(), get_target());
    const Exp2Impl e2 = exp2_impl(*get_externs_map(), get_target());
    uf(d, b) = widen(u(d, b), act);
    deltaf(d, b) = widen(delta(d, b), act);
    zf(d, b) = widen(z(d, b), act);
    Bf(n, b) = widen(Bm(n, b), act);
    Cf(n, b) = widen(Cm(n, b), act);

    Func dt("dt"), dt2("dt2"), dtu("dtu"), hn("hn"), yc("yc");
    Expr draw = deltaf(d, b) + delta_bias(d);
    dt(d, b) = select(delta_softplus, softplus(draw, e2), draw);
    dt2(d, b) = dt(d, b) * kLog2e;  // the decay in base 2: exp2(dt2 * A)
    dtu(d, b) = dt(d, b) * uf(d, b);
    hn(n, d, b) = exp2_f32(dt2(d, b) * A(n, d), e2) * h_in(n, d, b) + dtu(d, b) * Bf(n, b);
    RDom rn(0, N, "rn");
    yc(d, b) = 0.0f;
    yc(d, b) += hn(rn, d, b) * Cf(rn, b);
    Expr yv = yc(d, b) + Dskip(d) * uf(d, b);
    y(d, b) = select(has_z, yv * silu(zf(d, b), e2), yv);
    hT(n, d, b) = hn(n, d, b);

    // Schedule. A task owns a tile of tile_channels channels; within it the
    // channels go by vectors of V (y's vector), and for each such vector the
    // new state rows hn (V channels x N, vectorised along n, the contiguous
    // dimension of A, h0 and hT) are computed once, stored to hT and reduced
    // against C into V values of y by one tree over the V x N products (a
    // per-channel lane reduction costs about twice the ops). Everything per
    // channel (softplus, the gate) is vectorised across channels.
    const int V = natural_vector_size<float>();
    const int tile_channels = ek::selective_scan_step::kTileChannels;
    // (Fusing b into the parallel loop would make compute_with lose the
    // per-tile bounds of hT; batch stays an outer serial loop.)
    Var dO("dO"), dI("dI"), dv("dv"), dl("dl");
    const TailStrategy tail = fixed_n > 0 ? TailStrategy::RoundUp : TailStrategy::GuardWithIf;
    y.split(d, dO, dI, tile_channels, tail)
        .split(dI, dv, dl, V, tail)
        .reorder(dl, dv, dO, b)
        .parallel(dO)
        .vectorize(dl);
    hT.split(d, dO, dI, tile_channels, tail)
        .split(dI, dv, dl, V, tail)
        .reorder(n, dl, dv, dO, b)
        .parallel(dO)
        .vectorize(n, V, tail)
        .unroll(dl);
    hT.compute_with(y, dv);
    // State rows and A four channel vectors (4 KiB of each) ahead: a thread's
    // tiles are consecutive (cpu_thread_pool), so this runs across tiles too.
    // Measured B=8 from DRAM, alternated: 145-159 us against 156-175 without.
    y.prefetch(h_in, dv, dv, 4, PrefetchBoundStrategy::NonFaulting).prefetch(A, dv, dv, 4, PrefetchBoundStrategy::NonFaulting);
    // The state rows of V channels, one vector per (channel, V states); at
    // most V x 256 floats (N <= 256), on the stack.
    Var dh("dh"), dd("dd");
    hn.compute_at(y, dv)
        .bound_storage(d, V)
        .store_in(MemoryType::Stack)
        .split(d, dh, dd, V, tail)
        .vectorize(n, V, tail)
        .unroll(dd);
    // dt once per channel (softplus is the costly part), then dt * log2(e)
    // and dt * u, all vectors across the tile's channels.
    for (Func* f : {&dt, &dt2, &dtu})
      f->compute_at(y, dO).vectorize(d, V, tail).bound_storage(d, tile_channels).store_in(MemoryType::Stack);
    // y's reduction over n for V channels at once: a V x V tree per vector of n.
    RVar rno("rno"), rni("rni");
    yc.compute_at(y, dv).bound_storage(d, V).store_in(MemoryType::Stack).vectorize(d, V, TailStrategy::GuardWithIf);
    yc.update().specialize(N % V == 0).split(rn, rno, rni, V).reorder(rni, d, rno).atomic().vectorize(rni).vectorize(d, V, TailStrategy::GuardWithIf);
    if (act_f16) {
      // B and C of the token (N per sequence), widened once per call.
      Bf.compute_root().vectorize(n, V, TailStrategy::GuardWithIf);
      Cf.compute_root().vectorize(n, V, TailStrategy::GuardWithIf);
    }

    for (auto* buf : {&u, &delta, &z, &Bm, &Cm}) (*buf).dim(0).set_stride(1);
    for (auto* buf : {&A, &h_in}) (*buf).dim(0).set_stride(1);
    y.dim(0).set_stride(1);
    hT.dim(0).set_stride(1);
    if (fixed_n > 0) {  // dense rows of exactly N states: constant strides
      for (auto* buf : {&Bm, &Cm}) (*buf).dim(0).set_bounds(0, fixed_n);
      for (auto* buf : {&A, &h_in}) (*buf).dim(0).set_bounds(0, fixed_n).dim(1).set_stride(fixed_n);
      hT.dim(0).set_bounds(0, fixed_n).dim(1).set_stride(fixed_n);
      // y and hT cover the same channels and sequences from 0: the stack
      // rows of hn then sit at constant offsets (LLVM keeps them in registers).
      y.dim(0).set_min(0);
      y.dim(1).set_min(0);
      y.dim(0).set_extent((y.dim(0).extent() / tile_channels) * tile_channels);
      hT.dim(1).set_bounds(0, y.dim(0).extent());
      hT.dim(2).set_bounds(0, y.dim(1).extent());
    }
  }
};

}  // namespace

HALIDE_REGISTER_GENERATOR(SelectiveScanChunk, selective_scan_chunk)
HALIDE_REGISTER_GENERATOR(SelectiveScanStep, selective_scan_step)
