// Halide generators of the CPU matmul_q2 kernels.
//
// All kernels read weights in the CPU tile layout that bind() repacks into
// once (kernels/matmul_q2/README.md, "CPU tile layout"): 16 output rows form a
// tile; along K the tile is cut into chunks of 16 columns, and chunk c of tile
// i is 64 bytes: byte 4*r + s holds the four 2-bit codes of row r at columns
// 16c + 4j + s, code j in bits 2j..2j+1. One 64-byte load therefore holds, for
// every slot j, the 16x4 block that one AVX-512 VNNI instruction multiplies
// with a broadcast of 4 activations: lane r of the i32 result is row r, so no
// horizontal reduction is ever needed and each lane accumulates one output.
//
//   matmul_q2_affine   q2g64 / q2g128 / tq2_0: per group of G columns (runtime
//                      input, 64, 128 or 256) and row, f16 scale d and offset m:
//                      w = d*q + m (tq2_0 is d, m = -d with G = 256).
//   matmul_q2_k        q2_k: per 256-column super-block f16 d and dmin, per
//                      16-column sub-block 4-bit sc and mn: w = d*sc*q - dmin*mn.
//   matmul_q2_act      per-call activation preparation: int8 quantization with
//                      one scale per block, and fp32 block sums of x (for the
//                      offset/min terms), or an fp32 copy of f16 activations.
//
// Activation paths (generator param `act`):
//   f32   codes are converted to f32 and multiplied with fp32 activations.
//   int8  activations arrive quantized (xq = round(x / sx), |xq| <= 127, one sx
//         per quantization block = weight group, or 256 for q2_k); the inner
//         loop is a widening u8 x i8 dot product into i32, which Halide turns
//         into vpdpbusd on avx512_sapphirerapids targets and into
//         pmaddwd-based sequences elsewhere; the scale and offset terms are
//         applied in fp32 once per group.
//
// Shapes (generator param `shape`):
//   gemv  T <= 8 (decode / verify): one pass over the weights; tokens are
//         blocked 1..4 at a time so that each weight chunk is unpacked once per
//         token block. Memory-bound: the weight stream is the cost.
//   gemm  T >= 16 (prefill): register blocks of 16 rows x `tokens` tokens;
//         the caller splits T into L2-sized token panels (one call each), so
//         weights are re-read from DRAM only once per panel. Compute-bound.
#include <Halide.h>

using namespace Halide;
using namespace Halide::ConciseCasts;

namespace {

constexpr int kTileRows = 16;   // rows per tile (i32 lanes of one AVX-512 vector)
constexpr int kChunkCols = 16;  // columns per 64-byte chunk of a tile

// The weights of one tile chunk as codes: slot j of byte 4r+s, in 0..3.
Expr code_of(const Expr& byte, const Expr& slot) {
  return (byte >> cast<uint8_t>(2 * slot)) & cast<uint8_t>(3);
}

// Slot j of a byte masked in place: the code times 4^j. Summing these with a
// separate accumulator per slot and shifting the sums right by 2j at the end
// of a group is exact and saves the per-chunk shifts.
Expr code_times_4pow(const Expr& byte, const Expr& slot) {
  return byte & (cast<uint8_t>(3) << cast<uint8_t>(2 * slot));
}

// f16 bits -> f32, exact for every f16 value. Halide 14 lowers Float(16)
// casts to a long generic sequence on x86 (no vcvtph2ps), so the kernels
// convert themselves.
//
// normal_only (every value is a normal f16 or zero; the packer checks): the
// sign-extended bits shifted left by 13 and masked hold sign, exponent and
// mantissa in place, an integer add rebiases the exponent, and zero stays
// zero through a zero-masked add: shift, and, test, masked add (the widening
// folds into the load). Not a multiply by 2^112 of the f32 reading of the
// bits: LLVM reassociates that constant into the next product even under
// strict_float, and xsum * 2^112 overflows for |xsum| > 65536. General:
// rebiased the same way for normal values; subnormals become
// (2^-14 + m*2^-24) - 2^-14, exact; exponent 31 maps to Inf/NaN.
Expr f16_bits_to_f32(const Expr& h, bool normal_only) {
  Expr w = reinterpret<uint32_t>(i32(reinterpret<int16_t>(h)));  // sign-extended
  Expr sign_mag = (w << 13) & Internal::make_const(UInt(32), 0x8fffe000u);
  Expr rebiased = sign_mag + Internal::make_const(UInt(32), 0x38000000u);
  if (normal_only)
    return reinterpret<float>(select((sign_mag & Internal::make_const(UInt(32), 0x0fffe000u)) != u32(0), rebiased,
                                     u32(0)));
  Expr magnitude = w & u32(0x7fff);
  Expr sign = sign_mag & Internal::make_const(UInt(32), 0x80000000u);
  Expr mag_bits = magnitude << 13;
  Expr subnormal = strict_float(reinterpret<float>(mag_bits + u32(0x38800000)) - 6.103515625e-05f);  // 2^-14
  Expr special = reinterpret<float>(sign_mag + Internal::make_const(UInt(32), 0x70000000u));
  Expr value = select(magnitude < u32(0x0400), reinterpret<float>(reinterpret<uint32_t>(subnormal) | sign),
                      magnitude >= u32(0x7c00), special, reinterpret<float>(rebiased));
  return value;
}

// Shared constraints: every buffer starts at 0 and is dense in dim 0; tile
// buffers have exactly the tile extents the layout defines.
template <class B>
void dense_from_zero(B& b, int dims) {
  for (int d = 0; d < dims; ++d) b.dim(d).set_min(0);
  b.dim(0).set_stride(1);
}

// Output schedule shared by the matmul generators: y(n, t) in 16-row tiles
// (lane r vectorized), groups of `tiles_per_task` tiles per parallel task.
// gemm: register blocks of `tokens` tokens (T >= tokens; the caller feeds
// L2-sized token panels, one call each). gemv: exact blocks for T = 1..3,
// blocks of 4 beyond (the last shifted inwards: a few tokens recomputed, the
// tile re-read from L1/L2, not DRAM). The whole nest is duplicated for
// finite / non-finite scales (see f16_bits_to_f32). Inner Funcs compute at `to`.
void schedule_output(Func y, Var n, Var t, Var r, Var to, bool gemm, int tokens, int tiles_per_task,
                     Expr normal_scales) {
  Var tile("tile"), tile_o("tile_o"), tile_i("tile_i"), ti("ti");
  y.split(n, tile, r, kTileRows, TailStrategy::RoundUp).vectorize(r);
  Expr T = y.output_buffer().dim(1).extent();
  auto tokens_nest = [&](Stage s) {
    if (gemm) {
      s.split(t, to, ti, tokens, TailStrategy::ShiftInwards)
          .split(tile, tile_o, tile_i, tiles_per_task, TailStrategy::GuardWithIf)
          .reorder(r, ti, to, tile_i, tile_o)
          .unroll(ti)
          .parallel(tile_o);
      return;
    }
    s.split(tile, tile_o, tile_i, tiles_per_task, TailStrategy::GuardWithIf).parallel(tile_o);
    for (int tb = 1; tb <= 3; ++tb)
      s.specialize(T == tb)
          .split(t, to, ti, tb, TailStrategy::GuardWithIf)
          .reorder(r, ti, to, tile_i, tile_o)
          .unroll(ti);
    s.split(t, to, ti, 4, TailStrategy::ShiftInwards).reorder(r, ti, to, tile_i, tile_o).unroll(ti);
  };
  tokens_nest(y.specialize(normal_scales));
  tokens_nest(y);
}

class MatmulQ2Affine : public Generator<MatmulQ2Affine> {
 public:
  GeneratorParam<std::string> act{"act", "int8"};       // int8 | f32
  GeneratorParam<std::string> shape{"shape", "gemv"};   // gemv | gemm
  GeneratorParam<int> tokens{"tokens", 8};              // gemm register block (tokens)
  GeneratorParam<int> tiles_per_task{"tiles_per_task", 4};        // parallel task size (tiles)
  GeneratorParam<bool> mask_slots{"mask_slots", true};  // gemv int8: per-slot accumulators

  // int8: u8 [64 bytes, K/16 chunks, tiles]; f32: the same bytes as u32
  // [16 rows, K/16 chunks, tiles] (row r's four bytes of a chunk, little-endian).
  Input<Buffer<void, 3>> codes{"codes"};
  Input<Buffer<uint16_t, 4>> scales{"scales"};      // f16 bits [16 rows, {d, m}, K/G groups, tiles]
  Input<Buffer<void, 2>> x{"x"};                    // int8: xq i8 [K, T]; f32: x f32 [K, T]
  Input<Buffer<float, 2>> xscale{"xscale"};         // [K/G, T] (int8 path; ignored by f32)
  Input<Buffer<float, 2>> xsum{"xsum"};             // [K/G, T] fp32 sums of x per group
  Input<Buffer<float, 1>> bias{"bias"};             // [tiles * 16]
  Input<int> group_size{"group_size"};              // 64, 128 or 256
  Input<bool> normal_scales{"normal_scales"};       // scales are normal f16 or zero
  // gemv: software prefetch of the code stream this many groups of a tile
  // ahead (a group of a tile is 16 rows x G/4 bytes); a run-time tunable.
  Input<int> prefetch_groups{"prefetch_groups"};
  Output<Buffer<float, 2>> y{"y"};                  // [tiles * 16, T]

  void configure() {
    const bool int8 = std::string(act) == "int8";
    x.set_type(int8 ? Int(8) : Float(32));
    codes.set_type(int8 ? UInt(8) : UInt(32));
  }

  void generate() {
    const bool int8 = std::string(act) == "int8";
    const bool gemm = std::string(shape) == "gemm";
    const Target target = get_target();
    const bool vnni = target.has_feature(Target::AVX512_SapphireRapids);
    // x86 without VNNI: pmaddubsw (u8 x i8 pairs -> i16), summed in i16 over
    // 64 columns, widened once (see below).
    const bool maddubs = int8 && !vnni && target.arch == Target::X86;
    const bool masked = int8 && !gemm && mask_slots && vnni;

    Var r("r"), t("t"), g("g"), tile("tile"), j("j"), n("n");
    Expr G = group_size;
    Expr K = x.dim(0).extent();
    Expr groups = K / G;

    // Partial dot product of one group: sum over the group's columns of
    // code * activation, one accumulator per (row lane, token[, slot]).
    // Chunks are visited four at a time (G is a multiple of 64), so the
    // inner four are unrolled without a tail.
    RDom rc(0, 4, 0, 4, 0, G / (4 * kChunkCols), "rc");  // column in quad, chunk in 4, chunk quad
    Expr chunk = g * (G / kChunkCols) + rc.z * 4 + rc.y;
    Func part("part");
    Func pairs_func;  // maddubs only
    Var pairs_h;
    RDom pairs_rdom;
    Expr dot;  // the group's sum for (r, t, g, tile), i32 (int8) or f32
    if (masked) {
      Expr byte = codes(r * 4 + rc.x, chunk, tile);
      Expr col = chunk * kChunkCols + j * 4 + rc.x;
      part(r, j, t, g, tile) = 0;
      part(r, j, t, g, tile) += i32(widening_mul(code_times_4pow(byte, j), x(col, t)));
      dot = part(r, 0, t, g, tile) + (part(r, 1, t, g, tile) >> 2) + (part(r, 2, t, g, tile) >> 4) +
            (part(r, 3, t, g, tile) >> 6);
    } else if (maddubs) {
      // pmaddubsw: lane (h, r) of a 32 x i16 vector is the sum of the two
      // products of row r's columns 2h, 2h+1 of a quad. Summed (saturating
      // add, which never saturates: 16 products of |3 * 127| per lane and
      // 64 columns) over a 64-column quad of chunks, then widened into i32
      // with one multiply-add by 1 per quad.
      Var h("h");
      RDom rq(0, 2, 0, 4, 0, 4, "rq");  // column in pair, slot, chunk in quad
      Func pairs("pairs");
      Var q("q");
      Expr chunk_p = q * 4 + rq.z;
      Expr byte = codes(r * 4 + 2 * h + rq.x, chunk_p, tile);
      Expr col = chunk_p * kChunkCols + rq.y * 4 + 2 * h + rq.x;
      pairs(h, r, t, q, tile) = i16(0);
      pairs(h, r, t, q, tile) =
          saturating_add(pairs(h, r, t, q, tile), i16(widening_mul(code_of(byte, rq.y), x(col, t))));
      RDom rw(0, 2, 0, G / (4 * kChunkCols), "rw");  // pair half, quad in group
      part(r, t, g, tile) = 0;
      part(r, t, g, tile) += i32(pairs(rw.x, r, t, g * (G / (4 * kChunkCols)) + rw.y, tile));
      dot = part(r, t, g, tile);
      pairs_func = pairs;
      pairs_h = h;
      pairs_rdom = rq;
      rc = rw;
    } else if (int8) {
      // Slots as a reduction dimension: codes shifted into 0..3 once per
      // chunk, reused by every token of the block.
      RDom rs(0, 4, 0, 4, 0, 4, 0, G / (4 * kChunkCols), "rs");  // column, slot, chunk in 4, chunk quad
      Expr chunk_s = g * (G / kChunkCols) + rs.w * 4 + rs.z;
      Expr byte = codes(r * 4 + rs.x, chunk_s, tile);
      Expr col = chunk_s * kChunkCols + rs.y * 4 + rs.x;
      // ARM's sdot wants both operands signed: codes 0..3 are valid int8.
      Expr code = target.arch == Target::ARM ? i8(code_of(byte, rs.y)) : code_of(byte, rs.y);
      part(r, t, g, tile) = 0;
      part(r, t, g, tile) += i32(widening_mul(code, x(col, t)));
      dot = part(r, t, g, tile);
      rc = rs;
    } else {
      // f32: the four bytes of row r in a chunk read as one little-endian u32;
      // code (s, j) sits at bit 8s + 2j. One accumulator per slot j.
      Expr word = codes(r, chunk, tile);
      Expr q = f32((word >> u32(8 * rc.x + 2 * j)) & u32(3));
      Expr col = chunk * kChunkCols + j * 4 + rc.x;
      part(r, j, t, g, tile) = 0.0f;
      part(r, j, t, g, tile) += q * x(col, t);
      dot = (part(r, 0, t, g, tile) + part(r, 1, t, g, tile)) + (part(r, 2, t, g, tile) + part(r, 3, t, g, tile));
    }

    auto scale = [&](int which) {
      Expr h = scales(r, which, g, tile);
      return select(normal_scales, f16_bits_to_f32(h, true), f16_bits_to_f32(h, false));
    };
    Expr d = scale(0), m = scale(1);
    Func group_out("group_out");
    if (int8) {
      group_out(r, t, g, tile) = f32(dot) * (d * xscale(g, t)) + m * xsum(g, t);
    } else {
      group_out(r, t, g, tile) = dot * d + m * xsum(g, t);
    }

    RDom rg(0, groups, "rg");
    Func acc("acc");
    acc(r, t, tile) = bias(tile * kTileRows + r);
    acc(r, t, tile) += group_out(r, t, rg, tile);
    y(n, t) = acc(n % kTileRows, t, n / kTileRows);

    // ------------------------------------------------------------ schedule
    Var to("to");
    schedule_output(y, n, t, r, to, gemm, tokens, tiles_per_task, normal_scales);
    acc.compute_at(y, to).vectorize(r).unroll(t);
    acc.update().reorder(r, t, rg).vectorize(r).unroll(t);
    if (!gemm) acc.update().prefetch(codes, rg, rg, max(1, prefetch_groups));
    part.compute_at(acc, rg);
    if (maddubs) {
      part.vectorize(r).unroll(t);
      part.update().reorder(rc.x, r, t, rc.y).atomic().vectorize(rc.x).vectorize(r).unroll(t);
      pairs_func.compute_at(part, rc.y).vectorize(pairs_h).vectorize(r).unroll(t);
      pairs_func.update()
          .reorder(pairs_rdom.x, pairs_h, r, t, pairs_rdom.y, pairs_rdom.z)
          .atomic(true)  // saturating add: associative here, it never saturates
          .vectorize(pairs_rdom.x)
          .vectorize(pairs_h)
          .vectorize(r)
          .unroll(t)
          .unroll(pairs_rdom.y)
          .unroll(pairs_rdom.z);
    } else if (int8 && !masked) {
      part.vectorize(r).unroll(t);
      part.update().reorder(rc.x, r, t, rc.y, rc[2], rc[3]).atomic().vectorize(rc.x).vectorize(r)
          .unroll(t).unroll(rc.y).unroll(rc[2]);
    } else if (int8) {
      part.vectorize(r).unroll(j).unroll(t);
      part.update().reorder(rc.x, r, j, t, rc.y, rc.z).atomic().vectorize(rc.x).vectorize(r)
          .unroll(j).unroll(t).unroll(rc.y);
    } else {
      part.vectorize(r).unroll(j).unroll(t);
      part.update().reorder(r, rc.x, j, t, rc.y, rc.z).vectorize(r).unroll(rc.x).unroll(j).unroll(t).unroll(rc.y);
    }

    // Layout constraints (the packer guarantees them).
    codes.dim(0).set_bounds(0, int8 ? 64 : kTileRows).dim(0).set_stride(1);
    codes.dim(1).set_min(0).dim(1).set_stride(int8 ? 64 : kTileRows);
    codes.dim(2).set_min(0);
    scales.dim(0).set_bounds(0, kTileRows).dim(0).set_stride(1);
    scales.dim(1).set_bounds(0, 2).dim(1).set_stride(kTileRows);
    scales.dim(2).set_min(0).dim(3).set_min(0);
    x.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    xscale.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    xsum.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    bias.dim(0).set_min(0);
    y.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    y.dim(0).set_extent((y.dim(0).extent() / kTileRows) * kTileRows);
  }
};

class MatmulQ2K : public Generator<MatmulQ2K> {
 public:
  GeneratorParam<std::string> act{"act", "int8"};       // int8 | f32
  GeneratorParam<std::string> shape{"shape", "gemv"};   // gemv | gemm
  GeneratorParam<int> tokens{"tokens", 8};
  GeneratorParam<int> tiles_per_task{"tiles_per_task", 4};

  Input<Buffer<void, 3>> codes{"codes"};               // as in matmul_q2_affine

  Input<Buffer<uint8_t, 3>> subscales{"subscales"};    // [16 rows, K/16, tiles]: sc | mn << 4
  Input<Buffer<uint16_t, 4>> superscales{"superscales"};  // f16 bits [16 rows, {d, dmin}, K/256, tiles]
  Input<Buffer<void, 2>> x{"x"};                       // int8: xq i8 [K, T]; f32: x f32 [K, T]
  Input<Buffer<float, 2>> xscale{"xscale"};            // [K/256, T] (int8 path)
  Input<Buffer<float, 2>> xsum{"xsum"};                // [K/16, T] fp32 sums of x per sub-block
  Input<Buffer<float, 1>> bias{"bias"};                // [tiles * 16]
  Input<bool> normal_scales{"normal_scales"};          // d and dmin are normal f16 or zero
  Input<int> prefetch_groups{"prefetch_groups"};       // as in matmul_q2_affine (a group: 1 KiB)
  Output<Buffer<float, 2>> y{"y"};                     // [tiles * 16, T]

  void configure() {
    const bool int8 = std::string(act) == "int8";
    x.set_type(int8 ? Int(8) : Float(32));
    codes.set_type(int8 ? UInt(8) : UInt(32));
  }

  void generate() {
    const bool int8 = std::string(act) == "int8";
    const bool gemm = std::string(shape) == "gemm";
    Var r("r"), t("t"), b("b"), s("s"), tile("tile"), j("j"), n("n");
    Expr K = x.dim(0).extent();
    Expr blocks = K / 256;

    const Target target = get_target();
    const bool maddubs = int8 && !target.has_feature(Target::AVX512_SapphireRapids) && target.arch == Target::X86;

    // Dot product of one 16-column sub-block (one tile chunk) per row lane.
    Func sub_dot("sub_dot"), pairs("pairs");
    Var h("h");
    RDom rs(0, 4, 0, 4, "rs");  // rs.x: column in quad, rs.y: slot
    RDom rp(0, 2, 0, 4, "rp");  // maddubs: column in pair, slot
    RDom rh(0, 2, "rh");
    if (maddubs) {
      // As in matmul_q2_affine: pmaddubsw pairs (h, r), 8 products per i16
      // lane per sub-block, widened once.
      Expr byte = codes(r * 4 + 2 * h + rp.x, s, tile);
      pairs(h, r, t, s, tile) = i16(0);
      pairs(h, r, t, s, tile) = saturating_add(
          pairs(h, r, t, s, tile), i16(widening_mul(code_of(byte, rp.y), x(s * kChunkCols + rp.y * 4 + 2 * h + rp.x, t))));
      sub_dot(r, t, s, tile) = 0;
      sub_dot(r, t, s, tile) += i32(pairs(rh, r, t, s, tile));
    } else if (int8) {
      Expr byte = codes(r * 4 + rs.x, s, tile);
      Expr code = target.arch == Target::ARM ? i8(code_of(byte, rs.y)) : code_of(byte, rs.y);
      sub_dot(r, t, s, tile) = 0;
      sub_dot(r, t, s, tile) += i32(widening_mul(code, x(s * kChunkCols + rs.y * 4 + rs.x, t)));
    } else {
      Expr word = codes(r, s, tile);
      RDom rq(0, 4, "rq");
      sub_dot(r, j, t, s, tile) = 0.0f;
      sub_dot(r, j, t, s, tile) += f32((word >> u32(8 * rq + 2 * j)) & u32(3)) * x(s * kChunkCols + j * 4 + rq, t);
      rs = RDom(rq);
    }
    Expr sub_sum = int8 ? Expr(sub_dot(r, t, s, tile))
                        : (sub_dot(r, 0, t, s, tile) + sub_dot(r, 1, t, s, tile)) +
                              (sub_dot(r, 2, t, s, tile) + sub_dot(r, 3, t, s, tile));
    Func sub_total("sub_total");
    sub_total(r, t, s, tile) = sub_sum;

    // Super-block: sum_s sc_s * dot_s and sum_s mn_s * xsum_s.
    RDom rb(0, 16, "rb");
    Expr sb = b * 16 + rb;
    Expr packed_sc = subscales(r, sb, tile);
    Func scaled("scaled"), mins("mins");
    if (int8) {
      scaled(r, t, b, tile) = 0;
      scaled(r, t, b, tile) += sub_total(r, t, sb, tile) * i32(packed_sc & cast<uint8_t>(15));
    } else {
      scaled(r, t, b, tile) = 0.0f;
      scaled(r, t, b, tile) += sub_total(r, t, sb, tile) * f32(packed_sc & cast<uint8_t>(15));
    }
    mins(r, t, b, tile) = 0.0f;
    mins(r, t, b, tile) += f32(packed_sc >> cast<uint8_t>(4)) * xsum(sb, t);

    auto scale = [&](int which) {
      Expr h = superscales(r, which, b, tile);
      return select(normal_scales, f16_bits_to_f32(h, true), f16_bits_to_f32(h, false));
    };
    Expr d = scale(0), dmin = scale(1);
    Func block_out("block_out");
    if (int8) {
      block_out(r, t, b, tile) = f32(scaled(r, t, b, tile)) * (d * xscale(b, t)) - dmin * mins(r, t, b, tile);
    } else {
      block_out(r, t, b, tile) = scaled(r, t, b, tile) * d - dmin * mins(r, t, b, tile);
    }

    RDom rg(0, blocks, "rg");
    Func acc("acc");
    acc(r, t, tile) = bias(tile * kTileRows + r);
    acc(r, t, tile) += block_out(r, t, rg, tile);
    y(n, t) = acc(n % kTileRows, t, n / kTileRows);

    // ------------------------------------------------------------ schedule
    Var to("to");
    schedule_output(y, n, t, r, to, gemm, tokens, tiles_per_task, normal_scales);
    acc.compute_at(y, to).vectorize(r).unroll(t);
    acc.update().reorder(r, t, rg).vectorize(r).unroll(t);
    if (!gemm) acc.update().prefetch(codes, rg, rg, max(1, prefetch_groups));
    scaled.compute_at(acc, rg).vectorize(r).unroll(t);
    scaled.update().reorder(r, t, rb).vectorize(r).unroll(t);
    mins.compute_at(acc, rg).vectorize(r).unroll(t);
    mins.update().reorder(r, t, rb).vectorize(r).unroll(t);
    sub_dot.compute_at(scaled, rb);
    if (maddubs) {
      sub_dot.vectorize(r).unroll(t);
      sub_dot.update().reorder(rh, r, t).atomic().vectorize(rh).vectorize(r).unroll(t);
      pairs.compute_at(scaled, rb).vectorize(h).vectorize(r).unroll(t);
      pairs.update()
          .reorder(rp.x, h, r, t, rp.y)
          .atomic(true)  // saturating add that never saturates (8 products of |3 * 127|)
          .vectorize(rp.x)
          .vectorize(h)
          .vectorize(r)
          .unroll(t)
          .unroll(rp.y);
    } else if (int8) {
      sub_dot.vectorize(r).unroll(t);
      sub_dot.update().reorder(rs.x, r, t, rs.y).atomic().vectorize(rs.x).vectorize(r).unroll(t).unroll(rs.y);
    } else {
      sub_dot.vectorize(r).unroll(j).unroll(t);
      sub_dot.update().reorder(r, rs.x, j, t).vectorize(r).unroll(rs.x).unroll(j).unroll(t);
    }

    codes.dim(0).set_bounds(0, int8 ? 64 : kTileRows).dim(0).set_stride(1);
    codes.dim(1).set_min(0).dim(1).set_stride(int8 ? 64 : kTileRows);
    codes.dim(2).set_min(0);
    subscales.dim(0).set_bounds(0, kTileRows).dim(0).set_stride(1);
    subscales.dim(1).set_min(0).dim(1).set_stride(kTileRows).dim(2).set_min(0);
    superscales.dim(0).set_bounds(0, kTileRows).dim(0).set_stride(1);
    superscales.dim(1).set_bounds(0, 2).dim(1).set_stride(kTileRows);
    superscales.dim(2).set_min(0).dim(3).set_min(0);
    x.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    xscale.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    xsum.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    bias.dim(0).set_min(0);
    y.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    y.dim(0).set_extent((y.dim(0).extent() / kTileRows) * kTileRows);
  }
};

// Per-call activation preparation, one pass over X [K, T]:
//   act=int8: xq = round(x / sx) in -127..127 with sx = max|x| / 127 per block
//             of QB columns; xsum = fp32 sums per SB columns.
//   act=sums: xsum only (fp32 activations used as they are).
//   act=f32:  an fp32 copy of f16 activations, plus xsum.
// X arrives twice, as 3-D views [QB, K/QB, T] and [SB, K/SB, T] of the same
// memory, so that block indices need no division; QB and SB are multiples of
// 16. Reductions run on 16 lanes first and reduce across lanes once per block.
class MatmulQ2Act : public Generator<MatmulQ2Act> {
 public:
  GeneratorParam<std::string> act{"act", "int8"};      // int8 | sums | f32
  GeneratorParam<std::string> x_type{"x_type", "f32"};  // f32 | f16

  Input<Buffer<void, 3>> xq_view{"xq_view"};   // [QB, K/QB, T] f32, or f16 bits as u16
  Input<Buffer<void, 3>> xs_view{"xs_view"};   // [SB, K/SB, T], same memory
  Output<Buffer<void, 3>> out_x{"out_x"};          // [QB, K/QB, T] int8: xq i8; f32: x f32; sums: unused
  Output<Buffer<float, 2>> out_scale{"out_scale"};  // [K/QB, T] (int8; else unused)
  Output<Buffer<float, 2>> out_sum{"out_sum"};      // [K/SB, T]

  void configure() {
    const Type in = std::string(x_type) == "f16" ? UInt(16) : Float(32);
    xq_view.set_type(in);
    xs_view.set_type(in);
    out_x.set_type(std::string(act) == "int8" ? Int(8) : Float(32));
  }

  void generate() {
    const std::string mode = act;
    const bool f16 = std::string(x_type) == "f16";
    Var i("i"), blk("blk"), t("t"), l("l");
    auto value = [&](Func in) {
      Func f(in.name() + "_f32");
      f(i, blk, t) = f16 ? f16_bits_to_f32(in(i, blk, t), false) : Expr(in(i, blk, t));
      return f;
    };
    Func xq_in = value(xq_view), xs_in = value(xs_view);

    // Sums per SB columns: 16 lane partial sums, then one reduction.
    Expr SB = xs_view.dim(0).extent();
    RDom rs(0, SB / 16, "rs");
    Func sum16("sum16");
    sum16(l, blk, t) = 0.0f;
    sum16(l, blk, t) += xs_in(l + 16 * rs, blk, t);
    RDom rl(0, 16, "rl");
    out_sum(blk, t) = 0.0f;
    out_sum(blk, t) += sum16(rl, blk, t);

    if (mode == "int8") {
      Expr QB = xq_view.dim(0).extent();
      RDom rq(0, QB / 16, "rq");
      Func max16("max16"), amax("amax");
      max16(l, blk, t) = 0.0f;
      max16(l, blk, t) = max(max16(l, blk, t), abs(xq_in(l + 16 * rq, blk, t)));
      amax(blk, t) = 0.0f;
      amax(blk, t) = max(amax(blk, t), max16(rl, blk, t));
      out_scale(blk, t) = amax(blk, t) / 127.0f;
      Expr a = amax(blk, t);
      Expr inv = select(a > 0.0f, 127.0f / a, 0.0f);
      out_x(i, blk, t) = i8(clamp(round(xq_in(i, blk, t) * inv), -127.0f, 127.0f));

      // amax feeds two outputs: computed first, row-parallel.
      amax.compute_root().parallel(t);
      amax.update().atomic().vectorize(rl).parallel(t);
      max16.compute_at(amax, blk).vectorize(l);
      max16.update().vectorize(l);
      out_x.vectorize(i, 64, TailStrategy::GuardWithIf).parallel(t);
      out_scale.vectorize(blk, 8, TailStrategy::GuardWithIf).parallel(t);
    } else {
      out_scale(blk, t) = 0.0f;
      out_x(i, blk, t) = mode == "f32" ? Expr(xq_in(i, blk, t)) : 0.0f;
      out_x.vectorize(i, 16, TailStrategy::GuardWithIf).parallel(t);
    }
    out_sum.parallel(t);
    out_sum.update().atomic().vectorize(rl).parallel(t);
    sum16.compute_at(out_sum, blk).vectorize(l);
    sum16.update().vectorize(l);

    for (auto* b : {&xq_view, &xs_view}) b->dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0).dim(2).set_min(0);
    out_x.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0).dim(2).set_min(0);
    out_scale.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
    out_sum.dim(0).set_min(0).dim(0).set_stride(1).dim(1).set_min(0);
  }
};

}  // namespace

HALIDE_REGISTER_GENERATOR(MatmulQ2Affine, matmul_q2_affine)
HALIDE_REGISTER_GENERATOR(MatmulQ2K, matmul_q2_k)
HALIDE_REGISTER_GENERATOR(MatmulQ2Act, matmul_q2_act)
