// matmul_q2: Y[t, n] = sum_k X[t, k] * W[n, k] (+ bias[n]) with 2-bit weights.
// Contract in ops.md ("matmul_q2"); formats, byte layouts and the kernels'
// repacked layouts in kernels/matmul_q2/README.md.
//
// Tensors of a call:
//   X     [T, K] f32 | f16
//   W     [N, row_bytes(format, K)] u8: the quantized rows, back to back; each
//         row is K / block_elems blocks in the format's own byte layout.
//   bias  [N] f32 (optional)
//   Y     [T, N] f32
// Params:
//   format  q2g64 | q2g128 | tq2_0 | q2_k (required)
//   act     auto (default) | f32 | int8: f32 admits only kernels that use the
//           fp32 activations as they are (nmse <= 1e-7), int8 only kernels that
//           quantize the activations to int8 per call (nmse <= 5e-4).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common/op.h"

namespace ek {
namespace q2 {

enum class Format { q2g64, q2g128, tq2_0, q2_k };

struct FormatInfo {
  Format format;
  const char* name;
  int block_elems;  // weights per block (q2g: the group size G)
  int block_bytes;  // bytes per block
};

// All formats, in a fixed order.
const std::vector<FormatInfo>& formats();
const FormatInfo& info(Format f);
// Throws InvalidArgument "matmul_q2: unknown format 'x' (expected q2g64|q2g128|tq2_0|q2_k)".
Format parse_format(const std::string& name);
// "q2g64|q2g128|tq2_0|q2_k"
std::string format_list();

// Bytes of one row of K weights; throws InvalidArgument naming K if
// K % block_elems != 0 or K < 1.
int64_t row_bytes(Format f, int64_t K);

// ------------------------------------------------------------- byte layouts
// q2g (G = 64 or 128), one block per group, 4 + G/4 bytes:
//   f16 d, f16 m (little-endian), then G/4 code bytes; element k of the group
//   is code byte k/4, bits 2*(k%4); w = d*q + m.
// tq2_0, 66 bytes: qs[64], f16 d. Element e: qs[32*(e/128) + e%32], bits
//   2*((e%128)/32); w = d*(q - 1).
// q2_k, 84 bytes: scales[16], qs[64], f16 d, f16 dmin. Element e: h = e/128,
//   r = e%128, j = r/32, s = r%32: code in qs[32h + s] bits 2j, scale byte
//   scales[8h + 2j + (s >= 16)] (low nibble sc, high nibble mn);
//   w = d*sc*q - dmin*mn.
constexpr int kTq2Bytes = 66;
constexpr int kQ2kBytes = 84;

// 2-bit code (0..3) of element e of one block.
int block_code(Format f, const uint8_t* block, int e);
// Decodes one block exactly (every value is exact in double; the float
// results are the values rounded once).
void decode_block(Format f, const uint8_t* block, double* out);
// Decodes a row of K weights (K a multiple of the block size).
void dequantize_row(Format f, const uint8_t* row, int64_t K, float* out);
void dequantize_row(Format f, const uint8_t* row, int64_t K, double* out);

// ------------------------------------------------------------- quantizers
// fp32 -> q2g with group size G (64 or 128). Per group, d and m minimise the
// squared error: candidate grids around min/max, each refined by alternating
// a least-squares fit of (d, m) to the codes and re-rounding, evaluated with
// the f16-rounded d and m actually stored. Never worse than the min/max grid.
// Inputs must be finite.
void quantize_row_q2g(const float* x, int64_t K, int G, uint8_t* out);
// fp32 -> tq2_0 (absmean ternary, BitNet b1.58): per 256-block gamma =
// mean|x|, q = clamp(round(x / gamma), -1, 1); d is then the least-squares
// scale for those ternary codes, sum(x*q) / sum(q*q) (exact for inputs that
// already are scaled ternary values).
void quantize_row_tq2_0(const float* x, int64_t K, uint8_t* out);
// fp32 -> q2_k: per 16-weight sub-block an affine fit (scale >= 0, min <= 0
// as GGUF requires), then the sub-block scales and mins quantized to 4 bits
// against the block's f16 d and dmin. For tests, benchmarks and tools.
void quantize_row_q2_k(const float* x, int64_t K, uint8_t* out);
// Dispatches to the quantizer of `f` (q2g64, q2g128, tq2_0, q2_k).
void quantize_row(Format f, const float* x, int64_t K, uint8_t* out);
// Quantizes a whole [N, K] matrix into [N, row_bytes] bytes.
std::vector<uint8_t> quantize_matrix(Format f, const float* w, int64_t N, int64_t K);

// ------------------------------------------------------------- call contract
enum class ActPath { any, f32, int8 };

// Validated view of a matmul_q2 call.
struct MatmulQ2Args {
  int64_t T = 0, N = 0, K = 0;
  Format format = Format::q2g128;
  DType x_dtype = DType::f32;
  bool has_bias = false;
  ActPath act = ActPath::any;
  int64_t row_bytes = 0;

  // Throws InvalidArgument naming the argument (see ops.md, "Errors").
  static MatmulQ2Args parse(const OpCall& call);
};

const char* act_name(ActPath a);

}  // namespace q2
}  // namespace ek
