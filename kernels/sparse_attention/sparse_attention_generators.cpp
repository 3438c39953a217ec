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
//   With so few rows Q K^T is vectorised along the head dimension and
//   reduced across lanes four keys at a time; P V is vectorised along Dv.
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

using namespace Halide;

namespace {

const float kNegInf = -INFINITY;

// Scores of the chunk after scaling, the optional soft cap and the mask.
// `dot` is the raw q.k product; rows are query rows, `j` the key of the chunk.
Expr scored(Expr dot, Expr scale, Expr softcap, Expr capped, Expr masked, Expr qpos, Expr k_start, Expr j,
            Expr n_keys, Expr causal, Expr window, Expr sinks) {
  Expr x = dot * scale;
  // c * tanh(x / c) with tanh(y) = 1 - 2 / (e^{2y} + 1): vectorisable and
  // exact at the limits (+-c for +-inf).
  Expr capped_x = softcap * (1.f - 2.f / (exp(x * (2.f / softcap)) + 1.f));
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
    Var r("r"), d("d"), j("j");
    RDom rd(0, qt.dim(1).extent(), "rd");
    RDom rj(0, KC, "rj");

    Func dot("dot");
    dot(r, j) = 0.f;
    dot(r, j) += qt(r, rd) * k(rd, j);
    Func s("s");
    s(r, j) = scored(dot(r, j), scale, softcap, capped, masked, qpos(r), k_start, j, n_keys, causal, window, sinks);

    Func m_new("m_new");
    m_new(r) = m_in(r);
    m_new(r) = max(m_new(r), s(r, rj));
    // A row with no allowed key so far keeps m = -inf; subtracting 0 instead
    // keeps exp(-inf - m) = 0 rather than NaN.
    Func m_safe("m_safe");
    m_safe(r) = select(m_new(r) == kNegInf, 0.f, m_new(r));
    Func p("p");
    p(r, j) = exp(s(r, j) - m_safe(r));
    Func alpha("alpha");
    alpha(r) = exp(m_in(r) - m_safe(r));
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

// f16 bits (as uint16) to f32 in 9 vector ops: the exponent/mantissa field is
// moved into place and rebiased by a multiply with 2^112 (exact, and exact
// for subnormals as long as the FPU does not flush f32 subnormal inputs, the
// IEEE default), Inf/NaN get an all-ones exponent, then the sign is OR'ed in.
// Halide 14's own Float(16) cast is emulated in ~17 ops and never uses F16C.
Expr f16_bits_to_f32(Expr h) {
  Expr x = cast<uint32_t>(h);
  Expr em = (x & Internal::make_const(UInt(32), 0x7fff)) << Internal::make_const(UInt(32), 13);
  Expr inf_nan = em >= Internal::make_const(UInt(32), 0x7c00u << 13);
  Expr mag = select(inf_nan, reinterpret<float>(em | Internal::make_const(UInt(32), 0x7f800000u)),
                    reinterpret<float>(em) * 5.192296858534828e33f /* 2^112 */);
  Expr sign = (x & Internal::make_const(UInt(32), 0x8000)) << Internal::make_const(UInt(32), 16);
  return reinterpret<float>(reinterpret<uint32_t>(mag) | sign);
}

class DecodeTile : public Generator<DecodeTile> {
 public:
  GeneratorParam<int> rows{"rows", 4};        // query rows per KV head (4 or 8)
  GeneratorParam<int> kc{"kc", 64};           // keys per chunk
  GeneratorParam<int> s_keys{"s_keys", 4};    // keys per Q K^T register tile (x rows accumulators)
  GeneratorParam<int> pv_cols{"pv_cols", 64}; // Dv columns per P V register tile (x rows accumulators)
  GeneratorParam<bool> kv_f16{"kv_f16", false};
  GeneratorParam<int> prefetch_tiles{"prefetch_tiles", 0};  // key tiles ahead to prefetch K and V (0 = none)

  Input<Buffer<float>> q{"q", 3};           // (d, r, h); Dk a multiple of the vector width
  Input<Buffer<>> k{"k", 3};                // (d, h, j): f32, or f16 bits as uint16
  Input<Buffer<>> v{"v", 3};                // (d, h, j)
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
    Var r("r"), d("d"), j("j"), h("h"), lane("lane");
    Expr dk = q.dim(0).extent();
    auto load = [&](const Expr& e) { return kv_f16 ? f16_bits_to_f32(e) : e; };

    // All KV heads of a key tile are processed together, so K and V stream
    // through memory in address order (a key row holds every head).
    // q.k in vec-wide partial sums along d, then a cross-lane reduction that
    // LLVM turns into a transpose-and-add tree over the unrolled keys.
    // Widened K and V (f32 views of the inputs; inlined).
    Func kf("kf"), vf("vf");
    kf(d, h, j) = load(k(d, h, j));
    vf(d, h, j) = load(v(d, h, j));
    RDom rc(0, dk / vec, "rc");
    Func part("part");
    part(lane, j, r, h) = 0.f;
    part(lane, j, r, h) += q(rc * vec + lane, r, h) * kf(rc * vec + lane, h, j);
    RDom rl(0, vec, "rl");
    Func dot("dot");
    dot(j, r, h) = 0.f;
    dot(j, r, h) += part(rl, j, r, h);
    Func s("s");
    s(j, r, h) = scored(dot(j, r, h), scale, softcap, capped, masked, qpos(r), k_start, j, n_keys, causal, window, sinks);

    RDom rj(0, KC, "rj");
    Func m_new("m_new");
    m_new(r, h) = m_in(r, h);
    m_new(r, h) = max(m_new(r, h), s(rj, r, h));
    Func m_safe("m_safe");
    m_safe(r, h) = select(m_new(r, h) == kNegInf, 0.f, m_new(r, h));
    Func p("p");
    p(j, r, h) = exp(s(j, r, h) - m_safe(r, h));
    Func alpha("alpha");
    alpha(r, h) = exp(m_in(r, h) - m_safe(r, h));
    Func l_new("l_new");
    l_new(r, h) = l_in(r, h) * alpha(r, h);
    l_new(r, h) += p(rj, r, h);
    // P V per head: pv_cols x rows accumulators over all the chunk's keys,
    // f16 V widened once per head into an f32 tile. (A key-tile-major order,
    // streaming V in address order like K, measured ~2x slower in compute.)
    Func pv("pv");
    pv(d, r, h) = acc_in(d, r, h) * alpha(r, h);
    pv(d, r, h) += select(masked != 0 && p(rj, r, h) == 0.f, 0.f, p(rj, r, h) * vf(d, h, rj));
    m_out(r, h) = m_new(r, h);
    l_out(r, h) = l_new(r, h);
    acc_out(d, r, h) = pv(d, r, h);

    Expr nh = q.dim(2).extent();
    q.dim(0).set_min(0);
    q.dim(1).set_bounds(0, R);
    q.dim(2).set_min(0);
    k.dim(0).set_min(0).set_extent(dk);
    k.dim(1).set_min(0).set_extent(nh);
    k.dim(2).set_bounds(0, KC);
    v.dim(0).set_min(0);
    v.dim(1).set_min(0).set_extent(nh);
    v.dim(2).set_bounds(0, KC);
    qpos.dim(0).set_bounds(0, R);
    for (auto* b : {&m_in, &l_in}) {
      (*b).dim(0).set_bounds(0, R);
      (*b).dim(1).set_min(0).set_extent(nh);
    }
    for (auto* b : {&m_out, &l_out}) {
      (*b).dim(0).set_bounds(0, R);
      (*b).dim(1).set_min(0).set_extent(nh);
    }
    Expr dv = acc_out.dim(0).extent();
    acc_in.dim(0).set_min(0).set_extent(dv);
    acc_in.dim(1).set_bounds(0, R);
    acc_in.dim(2).set_min(0).set_extent(nh);
    acc_out.dim(0).set_min(0);
    acc_out.dim(1).set_bounds(0, R);
    acc_out.dim(2).set_min(0).set_extent(nh);
    v.dim(0).set_extent(dv);

    Var jo("jo"), ji("ji"), dO("dO"), di("di");
    s.compute_root()
        .store_in(MemoryType::Stack)
        .bound_storage(h, 64)
        .split(j, jo, ji, (int)s_keys)
        .reorder(ji, r, h, jo)
        .vectorize(ji);
    dot.compute_at(s, r).vectorize(j);
    dot.update().atomic().vectorize(rl).vectorize(j);
    // K tiles prefetch_tiles ahead (decode is memory-bound: measured ~20%
    // less time per key from DRAM with 2).
    if (prefetch_tiles > 0) s.prefetch(k, jo, jo, (int)prefetch_tiles, PrefetchBoundStrategy::NonFaulting);
    part.compute_at(s, h).vectorize(lane).unroll(j).unroll(r);
    part.update().reorder(lane, j, r, rc).vectorize(lane).unroll(j).unroll(r);
    s.specialize(masked != 0).specialize(capped != 0);
    s.specialize(capped != 0);

    m_new.compute_root();
    m_new.update().reorder(rj, r, h).atomic().vectorize(rj, vec);
    m_safe.compute_root();
    alpha.compute_root();
    p.compute_root().store_in(MemoryType::Stack).bound_storage(h, 64).vectorize(j, vec);
    l_new.compute_root();
    l_new.update().reorder(rj, r, h).atomic().vectorize(rj, vec);

    acc_out.specialize(dv >= (int)pv_cols).split(d, dO, di, (int)pv_cols).reorder(di, r, dO, h).vectorize(di);
    acc_out.split(d, dO, di, vec).reorder(di, r, dO, h).vectorize(di);
    if (kv_f16) vf.compute_at(acc_out, h).store_in(MemoryType::Stack).bound_storage(d, 1024).vectorize(d, vec);
    pv.compute_at(acc_out, dO).vectorize(d).unroll(r);
    pv.update().reorder(d, r, rj).vectorize(d).unroll(r);
    pv.update().specialize(masked != 0);
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
    Var d("d"), qi("qi"), hi("hi"), sp("sp");
    RDom rs(0, m.dim(2).extent(), "rs");
    Func m_max("m_max");
    m_max(qi, hi) = kNegInf;
    m_max(qi, hi) = max(m_max(qi, hi), m(qi, hi, rs));
    Func m_safe("m_safe");
    m_safe(qi, hi) = select(m_max(qi, hi) == kNegInf, 0.f, m_max(qi, hi));
    Func w("w");
    w(qi, hi, sp) = exp(m(qi, hi, sp) - m_safe(qi, hi));
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
