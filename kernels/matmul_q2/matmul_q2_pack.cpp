// Repack of matmul_q2 weights into the CPU tile layout (lossless, once per bind).
#include "kernels/matmul_q2/matmul_q2_pack.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace ek {
namespace q2 {
namespace {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// The K codes (0..3) of one row in column order.
void row_codes(Format f, const uint8_t* row, int64_t K, uint8_t* codes) {
  const FormatInfo& fi = info(f);
  for (int64_t b = 0; b < K / fi.block_elems; ++b) {
    const uint8_t* blk = row + b * fi.block_bytes;
    uint8_t* c = codes + b * fi.block_elems;
    switch (f) {
      case Format::q2g64:
      case Format::q2g128:
        for (int i = 0; i < fi.block_elems / 4; ++i)
          for (int s = 0; s < 4; ++s) c[4 * i + s] = (blk[4 + i] >> (2 * s)) & 3;
        break;
      case Format::tq2_0:
      case Format::q2_k: {
        // Both: element 128h + 32j + s in byte 32h + s (after the q2_k
        // scales), bits 2j.
        const uint8_t* qs = blk + (f == Format::q2_k ? 16 : 0);
        for (int h = 0; h < 2; ++h)
          for (int j = 0; j < 4; ++j)
            for (int s = 0; s < 32; ++s) c[128 * h + 32 * j + s] = (qs[32 * h + s] >> (2 * j)) & 3;
        break;
      }
    }
  }
}

void pack_tiles(const CpuPackedWeights& p, const uint8_t* W, int64_t rb, int64_t tile_begin, int64_t tile_end) {
  const int64_t K = p.K, chunks = K / kChunkCols;
  const FormatInfo& fi = info(p.format);
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  uint8_t* out_codes = p.codes.as<uint8_t>();
  uint16_t* out_scales = p.scales.as<uint16_t>();
  uint8_t* out_sub = p.affine ? nullptr : p.subscales.as<uint8_t>();
  const int64_t groups = K / p.group;
  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    uint8_t* tc = out_codes + tile * chunks * 64;
    std::memset(tc, 0, static_cast<size_t>(chunks * 64));
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t n = tile * kTileRows + r;
      uint16_t* ts = out_scales + tile * groups * 2 * kTileRows;
      if (n >= p.N) {  // padding rows: zero codes and scales (w = 0)
        for (int64_t g = 0; g < groups; ++g) ts[(g * 2) * kTileRows + r] = ts[(g * 2 + 1) * kTileRows + r] = 0;
        if (out_sub)
          for (int64_t c = 0; c < chunks; ++c) out_sub[(tile * chunks + c) * kTileRows + r] = 0;
        continue;
      }
      const uint8_t* row = W + n * rb;
      row_codes(p.format, row, K, codes.data());
      for (int64_t c = 0; c < chunks; ++c) {
        const uint8_t* cc = codes.data() + c * kChunkCols;
        uint8_t* dst = tc + c * 64 + 4 * r;
        for (int s = 0; s < 4; ++s)
          dst[s] = static_cast<uint8_t>(cc[s] | (cc[4 + s] << 2) | (cc[8 + s] << 4) | (cc[12 + s] << 6));
      }
      for (int64_t b = 0; b < K / fi.block_elems; ++b) {
        const uint8_t* blk = row + b * fi.block_bytes;
        uint16_t* s0 = ts + (b * 2) * kTileRows + r;
        uint16_t* s1 = ts + (b * 2 + 1) * kTileRows + r;
        switch (p.format) {
          case Format::q2g64:
          case Format::q2g128:
            *s0 = load_u16(blk);
            *s1 = load_u16(blk + 2);
            break;
          case Format::tq2_0:
            *s0 = load_u16(blk + 64);
            *s1 = static_cast<uint16_t>(*s0 ^ 0x8000u);  // m = -d, exactly
            break;
          case Format::q2_k:
            *s0 = load_u16(blk + 80);
            *s1 = load_u16(blk + 82);
            // Sub-block sb (columns 16sb..16sb+15) uses scales[sb].
            for (int sb = 0; sb < 16; ++sb) out_sub[(tile * chunks + b * 16 + sb) * kTileRows + r] = blk[sb];
            break;
        }
      }
    }
  }
}

}  // namespace

CpuPackedWeights pack_cpu(Format f, const uint8_t* W, int64_t N, int64_t K, int threads) {
  CpuPackedWeights p;
  p.format = f;
  p.N = N;
  p.K = K;
  p.tiles = (N + kTileRows - 1) / kTileRows;
  p.affine = f != Format::q2_k;
  p.group = f == Format::q2g64 ? 64 : f == Format::q2g128 ? 128 : 256;
  const int64_t rb = row_bytes(f, K);
  const int64_t chunks = K / kChunkCols;
  p.codes = HostTensor(DType::u8, {p.tiles, chunks, 64});
  p.scales = HostTensor(DType::u8, {p.tiles, K / p.group, 2, kTileRows, 2});  // f16 bits as byte pairs
  if (!p.affine) p.subscales = HostTensor(DType::u8, {p.tiles, chunks, kTileRows});
  const int n_threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, p.tiles / 16 + 1)));
  auto scan_normal = [&] {
    const uint16_t* sc = p.scales.as<uint16_t>();
    for (int64_t i = 0; i < p.scales.numel() / 2; ++i) {
      const unsigned exp = sc[i] & 0x7c00u, mant = sc[i] & 0x03ffu;
      if (exp == 0x7c00u || (exp == 0 && mant != 0)) return false;
    }
    return true;
  };
  if (n_threads == 1) {
    pack_tiles(p, W, rb, 0, p.tiles);
  } else {
    std::vector<std::thread> pool;
    for (int i = 0; i < n_threads; ++i) {
      const int64_t b = p.tiles * i / n_threads, e = p.tiles * (i + 1) / n_threads;
      pool.emplace_back([&, b, e] { pack_tiles(p, W, rb, b, e); });
    }
    for (auto& t : pool) t.join();
  }
  p.normal_scales = scan_normal();
  return p;
}

double packed_weight(const CpuPackedWeights& p, int64_t n, int64_t k) {
  const int64_t tile = n / kTileRows, r = n % kTileRows, chunks = p.K / kChunkCols;
  const int64_t c = k / kChunkCols, j = (k % kChunkCols) / 4, s = k % 4;
  const int q = (p.codes.as<uint8_t>()[(tile * chunks + c) * 64 + 4 * r + s] >> (2 * j)) & 3;
  const uint16_t* sc = p.scales.as<uint16_t>();
  const int64_t g = k / p.group, groups = p.K / p.group;
  const double s0 = f16_to_f32(sc[((tile * groups + g) * 2) * kTileRows + r]);
  const double s1 = f16_to_f32(sc[((tile * groups + g) * 2 + 1) * kTileRows + r]);
  if (p.affine) return s0 * q + s1;
  const uint8_t sb = p.subscales.as<uint8_t>()[(tile * chunks + c) * kTileRows + r];
  return s0 * (sb & 15) * q - s1 * (sb >> 4);
}

GpuPackedWeights pack_gpu(Format f, const uint8_t* W, int64_t N, int64_t K) {
  GpuPackedWeights p;
  p.format = f;
  p.N = N;
  p.K = K;
  p.affine = f != Format::q2_k;
  p.group = f == Format::q2g64 ? 64 : f == Format::q2g128 ? 128 : 256;
  const FormatInfo& fi = info(f);
  const int64_t rb = row_bytes(f, K), words = K / 16, blocks = K / fi.block_elems;
  p.codes.assign(static_cast<size_t>(N * words), 0);
  p.scales.assign(static_cast<size_t>(N * (K / p.group)), 0);
  if (!p.affine) p.subscales.assign(static_cast<size_t>(N * (K / 64)), 0);
  std::vector<uint8_t> codes(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    const uint8_t* row = W + n * rb;
    row_codes(f, row, K, codes.data());
    uint32_t* cw = p.codes.data() + n * words;
    for (int64_t w = 0; w < words; ++w) {
      uint32_t v = 0;
      for (int i = 0; i < 16; ++i) v |= static_cast<uint32_t>(codes[16 * w + i]) << (2 * i);
      cw[w] = v;
    }
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* blk = row + b * fi.block_bytes;
      uint32_t& s = p.scales[static_cast<size_t>(n * blocks + b)];
      switch (f) {
        case Format::q2g64:
        case Format::q2g128:
          s = load_u16(blk) | (static_cast<uint32_t>(load_u16(blk + 2)) << 16);
          break;
        case Format::tq2_0: {
          const uint32_t d = load_u16(blk + 64);
          s = d | ((d ^ 0x8000u) << 16);
          break;
        }
        case Format::q2_k:
          s = load_u16(blk + 80) | (static_cast<uint32_t>(load_u16(blk + 82)) << 16);
          for (int w4 = 0; w4 < 4; ++w4)
            p.subscales[static_cast<size_t>(n * (K / 64) + b * 4 + w4)] =
                blk[4 * w4] | (blk[4 * w4 + 1] << 8) | (blk[4 * w4 + 2] << 16) | (static_cast<uint32_t>(blk[4 * w4 + 3]) << 24);
          break;
      }
    }
  }
  return p;
}

double packed_weight(const GpuPackedWeights& p, int64_t n, int64_t k) {
  const int q = (p.codes[static_cast<size_t>(n * (p.K / 16) + k / 16)] >> (2 * (k % 16))) & 3;
  const uint32_t s = p.scales[static_cast<size_t>(n * (p.K / p.group) + k / p.group)];
  const double lo = f16_to_f32(static_cast<uint16_t>(s & 0xffff)), hi = f16_to_f32(static_cast<uint16_t>(s >> 16));
  if (p.affine) return lo * q + hi;
  const uint32_t sw = p.subscales[static_cast<size_t>(n * (p.K / 64) + k / 64)];
  const uint32_t sb = (sw >> (8 * ((k / 16) % 4))) & 0xff;
  return lo * (sb & 15) * q - hi * (sb >> 4);
}

}  // namespace q2
}  // namespace ek
