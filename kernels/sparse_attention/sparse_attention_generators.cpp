// Halide generators of the CPU sparse_attention kernels. The math of flash
// attention lives here; the C++ driver (sparse_attention_cpu.cpp) only walks
// the block-sparse structure, widens f16 K/V for prefill and calls these
// pipelines once per (query tile, key chunk).
//
// Accumulation is fp32 throughout:
//
// - ek_sa_prefill_tile: one online-softmax step of a tile of `rows` query rows
//   (the query heads of a KV group times consecutive queries) against a chunk
//   of `kc` consecutive keys: S = scale * Q K^T (optionally soft-capped and
//   masked by the causal/window/sinks pattern), then
//     m' = max(m, rowmax S),  P = exp(S - m'),  l' = l e^{m-m'} + rowsum P,
//     acc' = acc e^{m-m'} + P V.
//   Both products are register-blocked FMA micro-kernels (measured on a Zen 5
//   core, AVX-512, f32 K/V in L2: ~200 GFLOP/s of a 268 GFLOP/s core peak).
// - ek_sa_decode_tile: the same step for 4 or 8 rows per KV head (decode,
//   Tq <= 8), for several KV heads at once, reading f32 or f16 K/V in place.
//   With so few rows Q K^T is vectorised along the head dimension and the
//   partial sums of a tile of keys x rows are reduced by one tree; P V runs
//   in key tiles, vectorised along Dv. f16 is converted in one instruction
//   per vector (vcvtph2ps, fcvtl: codegen/halide_f16.h) where the target
//   has one, else read raw (f16_bits_to_f32_raw).
// - ek_sa_merge: combines partial (m, l, acc) states of key splits by
//   log-sum-exp and writes normalised O rows and L = m + log(l) directly into
//   the caller's [B, Tq, Hq, Dv] and [B, Hq, Tq] tensors (strided outputs).
//
// Masking contract shared with the driver: the K and V buffers of a step
// always hold `kc` readable rows; rows >= n_keys are excluded by the mask. The
// unmasked specialisation is only used for chunks the driver proved fully
// allowed with n_keys == kc, so it carries no per-element test at all.
#include <Halide.h>

#include <cmath>

#include "codegen/halide_f16.h"
#include "codegen/halide_x86_math.h"

using namespace Halide;

namespace {

const float kNegInf = -INFINITY;

// exp that keeps NaN and +Inf: Halide 14's exp converts floor(x / ln 2) to an
// integer first and returns 0 for both (x86 turns NaN and +Inf into INT_MIN),
// which would hide a NaN score, or an Inf one (exp(Inf - Inf)), as an empty
// key instead of propagating it like the reference. The test is on the bits:
// Halide compiles float math with fast-math flags, so a float NaN test could
// be folded away. With `scalef` (AVX-512 targets, codegen/halide_x86_math.h)
// exp goes through vscalefps (exp_avx512), which keeps NaN and +Inf by itself
// (11 vector ops instead of ~24 with the test).
Expr exp_ieee(Expr x, bool scalef) {
  if (scalef) return ek::halide::exp_avx512(x);
  Expr bits = reinterpret<uint32_t>(x);
  Expr nan_or_inf = (bits & Internal::make_const(UInt(32), 0x7fffffffu)) > Internal::make_const(UInt(32), 0x7f800000u) ||
                    bits == Internal::make_const(UInt(32), 0x7f800000u);
  return select(nan_or_inf, x, exp(x));
}

// x == -inf, on the bits (a float compare with an infinity may be folded to
// false under fast-math flags, leaving -inf - -inf = NaN downstream).
Expr is_neg_inf(Expr x) { return reinterpret<uint32_t>(x) == Internal::make_const(UInt(32), 0xff800000u); }

// Scores of the chunk after scaling, the optional soft cap and the mask.
// `dot` is the raw q.k product; rows are query rows, `j` the key of the chunk.
Expr scored(Expr dot, Expr scale, Expr softcap, Expr capped, Expr masked, Expr qpos, Expr k_start, Expr j,
            Expr n_keys, Expr causal, Expr window, Expr sinks, bool scalef) {
  Expr x = dot * scale;
  // c * tanh(x / c) with tanh(y) = 1 - 2 / (e^{2y} + 1): vectorisable and
  // exact at the limits (+-c for +-inf).
  Expr capped_x = softcap * (1.f - 2.f / (exp_ieee(x * (2.f / softcap), scalef) + 1.f));
  x = select(capped != 0, capped_x, x);
  Expr key = k_start + j;
  Expr allowed = j < n_keys && (causal == 0 || key <= qpos) && (window == 0 || key < sinks || qpos - key < window);
  return select(masked != 0 && !allowed, kNegInf, x);
}

class PrefillTile : public Generator<PrefillTile> {
 public:
  GeneratorParam<int> rows{"rows", 64};       // query rows per tile (compile-time)
  GeneratorParam<int> kc{"kc", 64};           // keys per chunk
  GeneratorParam<int> s_rows{"s_rows", 64};   // Q K^T register tile: rows (vectorised) ...
  GeneratorParam<int> s_keys{"s_keys", 4};    // ... times keys (unrolled)
  GeneratorParam<int> pv_cols{"pv_cols", 64}; // P V register tile: Dv columns (vectorised) ...
  GeneratorParam<int> pv_rows{"pv_rows", 6};  // ... times rows (unrolled)

  Input<Buffer<float>> qt{"qt", 2};         // (r, d): query rows innermost, pre-transposed
  Input<Buffer<float>> k{"k", 2};           // (d, j)
  Input<Buffer<float>> v{"v", 2};           // (d, j)
  Input<Buffer<int32_t>> qpos{"qpos", 1};   // (r): absolute query positions
  Input<int32_t> n_keys{"n_keys"};
  Input<int32_t> k_start{"k_start"};
  Input<int32_t> masked{"masked"};
  Input<int32_t> causal{"causal"};
  Input<int32_t> window{"window"};
  Input<int32_t> sinks{"sinks"};
  Input<float> scale{"scale"};
  Input<float> softcap{"softcap"};
  Input<int32_t> capped{"capped"};
  Input<Buffer<float>> m_in{"m_in", 1};
  Input<Buffer<float>> l_in{"l_in", 1};
  Input<Buffer<float>> acc_in{"acc_in", 2};  // (d, r)
  Output<Buffer<float>> m_out{"m_out", 1};
  Output<Buffer<float>> l_out{"l_out", 1};
  Output<Buffer<float>> acc_out{"acc_out", 2};

  void generate() {
    const int R = rows, KC = kc;
    const bool scalef = ek::halide::link_avx512_exp2(*get_externs_map(), get_target());
    Var r("r"), d("d"), j("j");
    RDom rd(0, qt.dim(1).extent(), "rd");
    RDom rj(0, KC, "rj");

    Func dot("dot");
    dot(r, j) = 0.f;
    dot(r, j) += qt(r, rd) * k(rd, j);
    Func s("s");
    s(r, j) =
        scored(dot(r, j), scale, softcap, capped, masked, qpos(r), k_start, j, n_keys, causal, window, sinks, scalef);

    Func m_new("m_new");
    m_new(r) = m_in(r);
    m_new(r) = max(m_new(r), s(r, rj));
    // A row with no allowed key so far keeps m = -inf; subtracting 0 instead
    // keeps exp(-inf - m) = 0 rather than NaN.
    Func m_safe("m_safe");
    m_safe(r) = select(is_neg_inf(m_new(r)), 0.f, m_new(r));
    Func p("p");
    p(r, j) = exp_ieee(s(r, j) - m_safe(r), scalef);
    Func alpha("alpha");
    alpha(r) = exp_ieee(m_in(r) - m_safe(r), scalef);
    Func l_new("l_new");
    l_new(r) = l_in(r) * alpha(r);
    l_new(r) += p(r, rj);
    Func pv("pv");
    pv(d, r) = acc_in(d, r) * alpha(r);
    // In masked chunks a disallowed key must not reach the row even when its
    // V holds Inf/NaN (0 * Inf = NaN), so its product is selected away.
    pv(d, r) += select(masked != 0 && p(r, rj) == 0.f, 0.f, p(r, rj) * v(d, rj));

    m_out(r) = m_new(r);
    l_out(r) = l_new(r);
    acc_out(d, r) = pv(d, r);

    // Shapes: rows and chunk length are compile-time, head dims are not.
    qt.dim(0).set_bounds(0, R);
    qt.dim(1).set_min(0).set_stride(R);
    k.dim(0).set_min(0);
    k.dim(1).set_bounds(0, KC);
    v.dim(0).set_min(0);
    v.dim(1).set_bounds(0, KC);
    qpos.dim(0).set_bounds(0, R);
    for (auto* b : {&m_in, &l_in}) (*b).dim(0).set_bounds(0, R);
    m_out.dim(0).set_bounds(0, R);
    l_out.dim(0).set_bounds(0, R);
    acc_in.dim(0).set_min(0);
    acc_in.dim(1).set_bounds(0, R);
    acc_out.dim(0).set_min(0);
    acc_out.dim(1).set_bounds(0, R);
    Expr dv = acc_out.dim(0).extent();
    acc_in.dim(0).set_extent(dv);
    v.dim(0).set_extent(dv);
    k.dim(0).set_extent(qt.dim(1).extent());

    const int vec = natural_vector_size<float>();
    Var jo("jo"), ji("ji"), dO("dO"), di("di"), rO("rO"), ri("ri");

    // Q K^T: per tile of s_keys keys, all s_rows rows live in registers
    // (s_rows/vec vectors x s_keys accumulators); K elements are broadcast.
    s.compute_root()
        .store_in(MemoryType::Stack)
        .split(j, jo, ji, (int)s_keys)
        .split(r, rO, ri, (int)s_rows)
        .reorder(ri, ji, rO, jo)
        .vectorize(ri)
        .unroll(ji);
    dot.compute_at(s, rO).vectorize(r).unroll(j);
    dot.update().reorder(r, j, rd).vectorize(r).unroll(j);
    s.specialize(masked != 0).specialize(capped != 0);
    s.specialize(capped != 0);

    m_new.compute_root().vectorize(r, std::min(R, 4 * vec));
    m_new.update().reorder(r, rj).vectorize(r, std::min(R, 4 * vec));
    m_safe.compute_root().vectorize(r, vec);
    alpha.compute_root().vectorize(r, vec);
    p.compute_root().store_in(MemoryType::Stack).vectorize(r, std::min(R, 4 * vec));
    l_new.compute_root().vectorize(r, std::min(R, 4 * vec));
    l_new.update().reorder(r, rj).vectorize(r, std::min(R, 4 * vec));
    m_out.vectorize(r, vec);
    l_out.vectorize(r, vec);

    // P V: tiles of pv_cols x pv_rows accumulators over the chunk's keys; V
    // rows are vector loads, P elements broadcast. Head dims below pv_cols
    // take a one-vector-wide tile (the driver pads Dv to a multiple of 16).
    acc_out.specialize(dv >= (int)pv_cols)
        .tile(d, r, dO, rO, di, ri, (int)pv_cols, (int)pv_rows)
        .vectorize(di)
        .unroll(ri);
    acc_out.tile(d, r, dO, rO, di, ri, vec, (int)pv_rows).vectorize(di).unroll(ri);
    pv.compute_at(acc_out, dO).vectorize(d).unroll(r);
    pv.update().reorder(d, r, rj).vectorize(d).unroll(r);
    pv.update().specialize(masked != 0);
  }
};

// f16 bits (as uint16) to f32 *scaled by 2^-112*, in 5 vector ops: the
// sign-extended bits shifted left by 13 put sign, exponent and mantissa in
// place with the f16 exponent bias (15) left unchanged, i.e. the f32 value
// f16 * 2^(15 - 127); subnormal f16 land on subnormal f32, so this is exact
// for every finite f16 (FPUs that do not flush subnormal inputs, the IEEE
// default). Exponent 31 (Inf/NaN) gets an all-ones f32 exponent. The 2^112
// is folded into the unscale of q.k (scores) and into P (P V), which saves
// the multiply and the sign handling of a full conversion. Halide 14's
// own Float(16) cast takes ~17 ops and never uses F16C (checked: no
// vcvtph2ps even with the f16c target feature). Used where
// ek::halide::link_native_f16_to_f32 says no (SSE4.1: no F16C).
const float kF16RawScale = 5.192296858534828e33f;  // 2^112
Expr f16_bits_to_f32_raw(Expr h) {
  Expr t = reinterpret<uint32_t>(cast<int32_t>(reinterpret<int16_t>(h))) << Internal::make_const(UInt(32), 13);
  Expr raw = t & Internal::make_const(UInt(32), 0x8fffe000u);
  // Tested on the 16-bit lanes (half-width ops: ~12% faster on Zen 5 than
  // testing the shifted 32-bit value).
  Expr inf_nan = (h & Internal::make_const(UInt(16), 0x7c00)) == Internal::make_const(UInt(16), 0x7c00);
  return reinterpret<float>(select(inf_nan, raw | Internal::make_const(UInt(32), 0x7f800000u), raw));
}

class DecodeTile : public Generator<DecodeTile> {
 public:
  GeneratorParam<int> rows{"rows", 4};        // query rows per KV head (4 or 8)
  GeneratorParam<int> kc{"kc", 64};           // keys per chunk
  GeneratorParam<int> s_keys{"s_keys", 4};    // keys per Q K^T register tile (x rows accumulators)
  GeneratorParam<int> pv_cols{"pv_cols", 64}; // Dv columns per P V register tile (x rows accumulators)
  GeneratorParam<int> pv_keys{"pv_keys", 16}; // keys per P V tile (all heads of a tile, then the next)
  GeneratorParam<bool> kv_f16{"kv_f16", false};
  // Score tiles (s_keys keys) ahead to prefetch K; V is prefetched one P V
  // tile ahead. 0 = no prefetches.
  GeneratorParam<int> prefetch_tiles{"prefetch_tiles", 0};

  Input<Buffer<float>> q{"q", 3};           // (d, r, h); Dk and Dv multiples of L (below)
  // K and V as (dl, dc, h, j) with d = dc * L + dl, L the elements of a
  // 64-byte cache line (32 f16, 16 f32): f32, or f16 bits as uint16. Halide
  // 14 splits a prefetch of a buffer with elements wider than a byte into
  // steps of 64 *elements*; a line-sized innermost dimension makes that one
  // prefetch per line, the other dimensions being walked exactly.
  Input<Buffer<>> k{"k", 4};
  Input<Buffer<>> v{"v", 4};
  Input<Buffer<int32_t>> qpos{"qpos", 1};   // (r), shared by the heads
  Input<int32_t> n_keys{"n_keys"};
  Input<int32_t> k_start{"k_start"};
  Input<int32_t> masked{"masked"};
  Input<int32_t> causal{"causal"};
  Input<int32_t> window{"window"};
  Input<int32_t> sinks{"sinks"};
  Input<float> scale{"scale"};
  Input<float> softcap{"softcap"};
  Input<int32_t> capped{"capped"};
  // Q comes scaled by 2^q_exp (0..112; the driver's choice, see
  // choose_q_exp in sparse_attention_cpu.cpp), undone here on the dot
  // product: by 2^-q_exp, or by 2^(112 - q_exp) when f16 is read raw
  // (f16_bits_to_f32_raw). How K/V are converted stays inside the kernel.
  Input<int32_t> q_exp{"q_exp"};
  Input<Buffer<float>> m_in{"m_in", 2};     // (r, h)
  Input<Buffer<float>> l_in{"l_in", 2};
  Input<Buffer<float>> acc_in{"acc_in", 3}; // (d, r, h)
  Output<Buffer<float>> m_out{"m_out", 2};
  Output<Buffer<float>> l_out{"l_out", 2};
  Output<Buffer<float>> acc_out{"acc_out", 3};

  void configure() {
    const Type t = kv_f16 ? UInt(16) : Float(32);
    k.set_type(t);
    v.set_type(t);
  }

  void generate() {
    const int R = rows, KC = kc;
    const int vec = natural_vector_size<float>();
    const bool scalef = ek::halide::link_avx512_exp2(*get_externs_map(), get_target());
    Var r("r"), d("d"), j("j"), h("h"), lane("lane");
    Expr dk = q.dim(0).extent();
    // f16 K/V: converted in one instruction per vector where the target
    // has it (vcvtph2ps, fcvtl), else read as raw f32 (value * 2^-112): the
    // raw product is rebiased with the unscale of Q, P is scaled by 2^112.
    const bool native_f16 = kv_f16 && ek::halide::link_native_f16_to_f32(*get_externs_map(), get_target());
    auto load = [&](const Expr& e) {
      if (!kv_f16) return e;
      return native_f16 ? ek::halide::f16_bits_to_f32(e) : f16_bits_to_f32_raw(e);
    };
    const bool raw_f16 = kv_f16 && !native_f16;
    const float p_scale = raw_f16 ? kF16RawScale : 1.f;
    // 2^e for e in -127..127 (a normal float for e > -127), built in the bits.
    auto pow2 = [](const Expr& e) { return reinterpret<float>(cast<uint32_t>(e + 127) << Internal::make_const(UInt(32), 23)); };
    const Expr q_unscale = pow2((raw_f16 ? 112 : 0) - clamp(q_exp, 0, 112));

    // All KV heads of a key tile are processed together, so K and V stream
    // through memory in address order (a key row holds every head).
    // q.k in vec-wide partial sums along d, then one reduction tree per tile
    // of s_keys keys x rows (see dot's schedule). vf: V as f32 (inlined).
    const int L = kv_f16 ? 32 : 16;
    Func vf("vf");
    vf(d, h, j) = load(v(d % L, d / L, h, j));
    // d = rc.y * L + rc.x * vec + lane: lines outer, vectors of a line
    // inner (unrolled), so K addresses need no div/mod per vector.
    RDom rc(0, L / vec, 0, dk / L, "rc");
    Func part("part");
    part(lane, j, r, h) = 0.f;
    Expr dq = rc.y * L + rc.x * vec + lane;
    part(lane, j, r, h) += q(dq, r, h) * load(k(rc.x * vec + lane, rc.y, h, j));
    RDom rl(0, vec, "rl");
    Func dot("dot");
    dot(j, r, h) = 0.f;
    dot(j, r, h) += part(rl, j, r, h);
    Func s("s");
    s(j, r, h) = scored(dot(j, r, h) * q_unscale, scale, softcap, capped, masked, qpos(r), k_start, j, n_keys, causal, window,
                        sinks, scalef);

    RDom rj(0, KC, "rj");
    Func m_new("m_new");
    m_new(r, h) = m_in(r, h);
    m_new(r, h) = max(m_new(r, h), s(rj, r, h));
    Func m_safe("m_safe");
    m_safe(r, h) = select(is_neg_inf(m_new(r, h)), 0.f, m_new(r, h));
    // p holds exp(s - m) * p_scale (exact: a power of two, at most 2^112).
    Func p("p");
    p(j, r, h) = exp_ieee(s(j, r, h) - m_safe(r, h), scalef) * p_scale;
    Func alpha("alpha");
    alpha(r, h) = exp_ieee(m_in(r, h) - m_safe(r, h), scalef);
    Func l_new("l_new");
    l_new(r, h) = l_in(r, h) * alpha(r, h);
    l_new(r, h) += p(rj, r, h) * (1.f / p_scale);
    // P V, accumulated straight into acc_out.
    m_out(r, h) = m_new(r, h);
    l_out(r, h) = l_new(r, h);
    // P V per key tile of pv_keys keys (pv_tile, a register tile), added to
    // the rescaled accumulator tile after tile.
    const int PK = pv_keys;
    Var t("t");
    RDom rk(0, PK, "rk"), rt(0, KC / PK, "rt");
    Func pv_tile("pv_tile");
    pv_tile(d, r, h, t) = 0.f;
    Expr key = t * PK + rk;
    pv_tile(d, r, h, t) += select(masked != 0 && p(key, r, h) == 0.f, 0.f, p(key, r, h) * vf(d, h, key));
    acc_out(d, r, h) = acc_in(d, r, h) * alpha(r, h);
    acc_out(d, r, h) += pv_tile(d, r, h, rt);

    Expr nh = q.dim(2).extent();
    q.dim(0).set_min(0);
    q.dim(1).set_bounds(0, R);
    q.dim(2).set_min(0);
    Expr dv = acc_out.dim(0).extent();
    for (auto* b : {&k, &v}) {
      (*b).dim(0).set_bounds(0, L).set_stride(1);
      (*b).dim(1).set_min(0);  // stride L, left unknown: Halide would fuse dl and dc again
      (*b).dim(2).set_min(0).set_extent(nh);
      (*b).dim(3).set_bounds(0, KC);
    }
    k.dim(1).set_extent(dk / L);
    v.dim(1).set_extent(dv / L);
    qpos.dim(0).set_bounds(0, R);
    for (auto* b : {&m_in, &l_in}) {
      (*b).dim(0).set_bounds(0, R);
      (*b).dim(1).set_min(0).set_extent(nh);
    }
    for (auto* b : {&m_out, &l_out}) {
      (*b).dim(0).set_bounds(0, R);
      (*b).dim(1).set_min(0).set_extent(nh);
    }
    acc_in.dim(0).set_min(0).set_extent(dv);
    acc_in.dim(1).set_bounds(0, R);
    acc_in.dim(2).set_min(0).set_extent(nh);
    acc_out.dim(0).set_min(0);
    acc_out.dim(1).set_bounds(0, R);
    acc_out.dim(2).set_min(0).set_extent(nh);

    Var jo("jo"), ji("ji"), dO("dO"), di("di"), dl("dl"), dc("dc");
    s.compute_root()
        .store_in(MemoryType::Stack)
        .bound_storage(h, 64)
        .split(j, jo, ji, (int)s_keys)
        .reorder(ji, r, h, jo)
        .vectorize(ji);
    // All s_keys x rows dot products of a tile in one vector reduction:
    // Halide lowers it as a tree of even/odd deinterleaves and adds over the
    // whole set of partial vectors (about 3 ops per partial vector), instead
    // of one short reduction per row.
    dot.compute_at(s, h).vectorize(j).vectorize(r);
    dot.update().atomic().vectorize(rl).vectorize(j).vectorize(r);
    // K tiles prefetch_tiles ahead (decode is memory-bound: measured ~20%
    // less time per key from DRAM with 2), one head's lines per head step:
    // a whole tile's lines at once (64 back to back) cost ~13% from DRAM
    // and ~12% in L3 (docs/attention.md, session 6).
    if (prefetch_tiles > 0) s.prefetch(k, h, jo, (int)prefetch_tiles, PrefetchBoundStrategy::NonFaulting);
    part.compute_at(s, h).vectorize(lane).unroll(j).unroll(r);
    part.update().reorder(lane, j, r, rc.x, rc.y).vectorize(lane).unroll(j).unroll(r).unroll(rc.x);
    // The common head dim as a constant: the K prefetch becomes straight-line
    // code (no bound-checked loops) and the Q K^T line loop a fixed count.
    s.specialize(masked == 0 && capped == 0 && dk == 128);
    s.specialize(masked != 0).specialize(capped != 0);
    s.specialize(capped != 0);

    m_new.compute_root();
    m_new.update().reorder(rj, r, h).atomic().vectorize(rj, vec);
    m_safe.compute_root();
    alpha.compute_root();
    p.compute_root().store_in(MemoryType::Stack).bound_storage(h, 64).vectorize(j, vec);
    l_new.compute_root();
    l_new.update().reorder(rj, r, h).atomic().vectorize(rj, vec);

    // P V: tiles of pv_keys keys outermost, so V streams through memory in
    // address order like K; V of the tile after next is prefetched head by
    // head, spread like K's (a prefetch inside the register-tile loop makes
    // LLVM keep pv_tile in memory). Per head, pv_cols x rows accumulators (pv_tile).
    // The prefetch comes before the specialisation so that it is copied.
    acc_out.vectorize(d, vec);
    Stage pv = acc_out.update();
    if (prefetch_tiles > 0) pv.prefetch(v, h, rt, 2, PrefetchBoundStrategy::NonFaulting);
    auto pv_col_tiles = [&](Stage st) {
      st.split(d, dO, di, (int)pv_cols).reorder(di, r, dO, h, rt).vectorize(di, vec).unroll(di).unroll(r);
    };
    pv_col_tiles(pv.specialize(dv == 128));  // the common head dim as a constant
    pv_col_tiles(pv.specialize(dv % (int)pv_cols == 0));
    pv.split(d, dO, di, L).reorder(di, r, dO, h, rt).vectorize(di, vec).unroll(di).unroll(r);
    // Native vectors (never across a line of V: dense loads, see k/v) of
    // the same width in every access, so LLVM keeps the tile in registers.
    // Masked chunks select disallowed keys away (see the prefill tile); the
    // unmasked specialisation carries no per-element test.
    pv_tile.compute_at(acc_out, dO).split(d, dc, dl, vec).vectorize(dl).unroll(dc).unroll(r);
    pv_tile.update().reorder(d, r, rk).split(d, dc, dl, vec).vectorize(dl).unroll(dc).unroll(r);
    pv_tile.update().specialize(masked != 0);
  }
};

// Log-sum-exp merge of the partial states of S key splits, normalisation, and
// the strided write of O and L rows (row = head hi, query qi).
class Merge : public Generator<Merge> {
 public:
  Input<Buffer<float>> acc{"acc", 4};  // (d, qi, hi, split)
  Input<Buffer<float>> m{"m", 3};      // (qi, hi, split)
  Input<Buffer<float>> l{"l", 3};      // (qi, hi, split)
  Output<Buffer<float>> o{"o", 3};     // (d, qi, hi)
  Output<Buffer<float>> lse{"lse", 2}; // (qi, hi)

  void generate() {
    const bool scalef = ek::halide::link_avx512_exp2(*get_externs_map(), get_target());
    Var d("d"), qi("qi"), hi("hi"), sp("sp");
    RDom rs(0, m.dim(2).extent(), "rs");
    Func m_max("m_max");
    m_max(qi, hi) = kNegInf;
    m_max(qi, hi) = max(m_max(qi, hi), m(qi, hi, rs));
    Func m_safe("m_safe");
    m_safe(qi, hi) = select(is_neg_inf(m_max(qi, hi)), 0.f, m_max(qi, hi));
    Func w("w");
    w(qi, hi, sp) = exp_ieee(m(qi, hi, sp) - m_safe(qi, hi), scalef);
    Func den("den");
    den(qi, hi) = 0.f;
    den(qi, hi) += l(qi, hi, rs) * w(qi, hi, rs);
    Func inv("inv");
    inv(qi, hi) = 1.f / den(qi, hi);
    Func num("num");
    num(d, qi, hi) = 0.f;
    num(d, qi, hi) += acc(d, qi, hi, rs) * w(qi, hi, rs);
    // A row without any allowed key has l = 0: O = 0 and L = -inf. NaN from
    // the data still propagates (NaN != 0).
    o(d, qi, hi) = select(den(qi, hi) == 0.f, 0.f, num(d, qi, hi) * inv(qi, hi));
    lse(qi, hi) = select(den(qi, hi) == 0.f, kNegInf, m_safe(qi, hi) + log(den(qi, hi)));

    for (int i = 0; i < 3; ++i) {
      acc.dim(i).set_min(0);
      m.dim(i).set_min(0);
      l.dim(i).set_min(0);
      o.dim(i).set_min(0);
    }
    acc.dim(3).set_min(0);
    lse.dim(0).set_min(0);
    lse.dim(1).set_min(0);

    const int vec = natural_vector_size<float>();
    m_max.compute_root();
    m_safe.compute_root();
    w.compute_root();
    den.compute_root();
    inv.compute_root();
    o.specialize(o.dim(0).extent() >= vec).vectorize(d, vec);
    num.compute_at(o, qi);
    num.specialize(o.dim(0).extent() >= vec).vectorize(d, vec);
    num.update().reorder(d, rs).specialize(o.dim(0).extent() >= vec).vectorize(d, vec);
  }
};

}  // namespace

HALIDE_REGISTER_GENERATOR(PrefillTile, ek_sa_prefill_tile)
HALIDE_REGISTER_GENERATOR(DecodeTile, ek_sa_decode_tile)
HALIDE_REGISTER_GENERATOR(Merge, ek_sa_merge)
