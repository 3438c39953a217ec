// The one-time, lossless repack of matmul_q2 weights into the CPU tile layout
// the Halide kernels read (README.md, "CPU tile layout"). A CPU Invocation
// packs in bind(); callers that keep weights across calls keep the Invocation
// (or a CpuPackedWeights) instead of repacking per call.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/common/tensor.h"
#include "kernels/matmul_q2/matmul_q2.h"

namespace ek {
namespace q2 {

constexpr int kTileRows = 16;   // output rows per tile
constexpr int kChunkCols = 16;  // K columns per 64-byte chunk

struct CpuPackedWeights {
  Format format = Format::q2g128;
  int64_t N = 0, K = 0;
  int64_t tiles = 0;  // ceil(N / 16); rows N..16*tiles-1 are zero padding
  // q2g64 / q2g128 / tq2_0 ("affine" family): w = d*q + m per group of
  // `group` columns (tq2_0: group 256, m = -d, exactly).
  bool affine = true;
  int group = 128;
  // [tiles][K/16][64]: byte 4r+s of chunk c holds, at bits 2j, the code of
  // row r, column 16c + 4j + s.
  HostTensor codes;
  // affine: [tiles][K/group][2][16] f16 bits, d then m of the 16 rows.
  // q2_k:   [tiles][K/256][2][16] f16 bits, d then dmin.
  HostTensor scales;
  // q2_k only: [tiles][K/16][16] the GGUF scale byte (sc | mn << 4) of each
  // row's 16-column sub-block.
  HostTensor subscales;
  // Every f16 scale is a normal number or zero (no subnormal, Inf or NaN):
  // the kernels may use their short f16 conversion.
  bool normal_scales = true;
};

// Packs W [N, row_bytes(format, K)] (validated by the caller). Uses up to
// `threads` threads.
CpuPackedWeights pack_cpu(Format f, const uint8_t* W, int64_t N, int64_t K, int threads = 1);

// Decodes weight (n, k) back from the packed layout (tests: the repack is lossless).
double packed_weight(const CpuPackedWeights& p, int64_t n, int64_t k);

// The GPU row layout the Vulkan and OpenCL kernels read (README.md, "GPU row
// layout"): every row is 64-column chunks of 16-byte code vectors, so a work
// item loads one uvec4 / uint4 per chunk and never straddles a scale group.
struct GpuPackedWeights {
  Format format = Format::q2g128;
  int64_t N = 0, K = 0;
  bool affine = true;
  int group = 128;  // affine: columns per (d, m); q2_k: 256
  // [N][K/16] u32: word w holds the codes of columns 16w..16w+15, column
  // 16w + i in bits 2i..2i+1.
  std::vector<uint32_t> codes;
  // affine: [N][K/group] u32 = f16 d | f16 m << 16 (tq2_0: m = -d).
  // q2_k:   [N][K/256] u32 = f16 d | f16 dmin << 16.
  std::vector<uint32_t> scales;
  // q2_k only: [N][K/64] u32: byte b = the GGUF scale byte (sc | mn << 4) of
  // sub-block 4w + b (columns 16(4w+b) ..).
  std::vector<uint32_t> subscales;
};
GpuPackedWeights pack_gpu(Format f, const uint8_t* W, int64_t N, int64_t K);
double packed_weight(const GpuPackedWeights& p, int64_t n, int64_t k);

}  // namespace q2
}  // namespace ek
