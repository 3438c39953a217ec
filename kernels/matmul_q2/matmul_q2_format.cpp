// Formats of matmul_q2: exact block decoding (GGUF bit order included) and the
// fp32 quantizers.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/matmul_q2/matmul_q2.h"

namespace ek {
namespace q2 {
namespace {

constexpr const char* kOp = "matmul_q2";

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}
double load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }
float round_f16(float v) { return f16_to_f32(f32_to_f16(v)); }

}  // namespace

const std::vector<FormatInfo>& formats() {
  static const std::vector<FormatInfo> all = {
      {Format::q2g64, "q2g64", 64, 4 + 64 / 4},
      {Format::q2g128, "q2g128", 128, 4 + 128 / 4},
      {Format::tq2_0, "tq2_0", 256, kTq2Bytes},
      {Format::q2_k, "q2_k", 256, kQ2kBytes},
  };
  return all;
}

const FormatInfo& info(Format f) { return formats()[static_cast<size_t>(f)]; }

std::string format_list() {
  std::string s;
  for (const FormatInfo& i : formats()) s += (s.empty() ? "" : "|") + std::string(i.name);
  return s;
}

Format parse_format(const std::string& name) {
  for (const FormatInfo& i : formats())
    if (name == i.name) return i.format;
  throw InvalidArgument(cat(kOp, ": unknown format '", name, "' (expected ", format_list(), ")"));
}

int64_t row_bytes(Format f, int64_t K) {
  const FormatInfo& fi = info(f);
  EK_CHECK_ARG(K >= 1, kOp, ": K=", K, " must be >= 1");
  EK_CHECK_ARG(K % fi.block_elems == 0, kOp, ": K=", K, " is not a multiple of the ", fi.name,
               " block size ", fi.block_elems);
  return K / fi.block_elems * fi.block_bytes;
}

int block_code(Format f, const uint8_t* b, int e) {
  switch (f) {
    case Format::q2g64:
    case Format::q2g128:
      return (b[4 + e / 4] >> (2 * (e % 4))) & 3;
    case Format::tq2_0:
      return (b[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
    case Format::q2_k: {
      const int h = e / 128, r = e % 128, j = r / 32, s = r % 32;
      return (b[16 + 32 * h + s] >> (2 * j)) & 3;
    }
  }
  return 0;
}

void decode_block(Format f, const uint8_t* b, double* out) {
  const int n = info(f).block_elems;
  switch (f) {
    case Format::q2g64:
    case Format::q2g128: {
      const double d = load_f16(b), m = load_f16(b + 2);
      for (int e = 0; e < n; ++e) out[e] = d * block_code(f, b, e) + m;
      break;
    }
    case Format::tq2_0: {
      const double d = load_f16(b + 64);
      for (int e = 0; e < n; ++e) out[e] = d * (block_code(f, b, e) - 1);
      break;
    }
    case Format::q2_k: {
      const double d = load_f16(b + 80), dmin = load_f16(b + 82);
      for (int e = 0; e < n; ++e) {
        const int h = e / 128, r = e % 128, j = r / 32, s = r % 32;
        const uint8_t sb = b[8 * h + 2 * j + (s >= 16 ? 1 : 0)];
        out[e] = d * (sb & 15) * block_code(f, b, e) - dmin * (sb >> 4);
      }
      break;
    }
  }
}

void dequantize_row(Format f, const uint8_t* row, int64_t K, double* out) {
  const FormatInfo& fi = info(f);
  row_bytes(f, K);  // validates K
  for (int64_t b = 0; b < K / fi.block_elems; ++b)
    decode_block(f, row + b * fi.block_bytes, out + b * fi.block_elems);
}

void dequantize_row(Format f, const uint8_t* row, int64_t K, float* out) {
  double tmp[256];
  const FormatInfo& fi = info(f);
  row_bytes(f, K);
  for (int64_t b = 0; b < K / fi.block_elems; ++b) {
    decode_block(f, row + b * fi.block_bytes, tmp);
    for (int e = 0; e < fi.block_elems; ++e) out[b * fi.block_elems + e] = static_cast<float>(tmp[e]);
  }
}

// ------------------------------------------------------------- quantizers

namespace {

struct Affine {
  float d = 0, m = 0;
};

// Codes for x under w = d*q + m, and the squared error they leave.
double assign(const float* x, int n, Affine a, uint8_t* q) {
  double err = 0;
  const float inv = a.d != 0 ? 1.0f / a.d : 0.0f;
  for (int i = 0; i < n; ++i) {
    int c = a.d != 0 ? static_cast<int>(std::nearbyint((x[i] - a.m) * inv)) : 0;
    c = std::min(3, std::max(0, c));
    // Rounding of (x-m)/d can pick a neighbour of the nearest level: fix it.
    double best = std::fabs(static_cast<double>(a.d) * c + a.m - x[i]);
    for (int alt : {c - 1, c + 1}) {
      if (alt < 0 || alt > 3) continue;
      const double e = std::fabs(static_cast<double>(a.d) * alt + a.m - x[i]);
      if (e < best) best = e, c = alt;
    }
    q[i] = static_cast<uint8_t>(c);
    err += best * best;
  }
  return err;
}

// Least-squares (d, m) for fixed codes; false when the codes are all equal.
bool fit(const float* x, int n, const uint8_t* q, Affine* a) {
  double sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int i = 0; i < n; ++i) {
    sq += q[i];
    sqq += q[i] * q[i];
    sx += x[i];
    sqx += q[i] * static_cast<double>(x[i]);
  }
  const double det = n * sqq - sq * sq;
  if (det <= 0) return false;
  const double d = (n * sqx - sq * sx) / det;
  a->d = static_cast<float>(d);
  a->m = static_cast<float>((sx - d * sq) / n);
  return true;
}

Affine stored(Affine a) { return {round_f16(a.d), round_f16(a.m)}; }

// The MSE-minimising (d, m) search of one q2g group (see the header).
Affine quantize_group(const float* x, int n, uint8_t* q) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (hi == lo) {
    Affine a = stored({0.0f, lo});
    assign(x, n, a, q);
    return a;
  }
  std::vector<uint8_t> cand(static_cast<size_t>(n));
  Affine best = stored({(hi - lo) / 3.0f, lo});
  double best_err = assign(x, n, best, q);
  // Grids of 3 + 0.1*s steps over [lo, hi], each refined by alternating fits.
  for (int s = -6; s <= 12; ++s) {
    Affine a{(hi - lo) / (3.0f + 0.1f * s), lo};
    for (int it = 0; it < 4; ++it) {
      assign(x, n, a, cand.data());
      Affine refit;
      if (!fit(x, n, cand.data(), &refit)) break;
      a = refit;
    }
    {
      const Affine c = stored(a);
      if (!std::isfinite(c.d) || !std::isfinite(c.m)) continue;
      const double e = assign(x, n, c, cand.data());
      if (e < best_err) {
        best_err = e;
        best = c;
        std::copy(cand.begin(), cand.end(), q);
      }
    }
  }
  return best;
}

void check_finite(const float* x, int64_t K, const char* what) {
  for (int64_t i = 0; i < K; ++i)
    EK_CHECK_ARG(std::isfinite(x[i]), kOp, ": ", what, " quantizer input element ", i, " is not finite");
}

}  // namespace

void quantize_row_q2g(const float* x, int64_t K, int G, uint8_t* out) {
  EK_CHECK_ARG(G == 64 || G == 128, kOp, ": q2g group size ", G, " is not 64 or 128");
  const Format f = G == 64 ? Format::q2g64 : Format::q2g128;
  row_bytes(f, K);
  check_finite(x, K, info(f).name);
  uint8_t q[128];
  for (int64_t g = 0; g < K / G; ++g) {
    uint8_t* blk = out + g * (4 + G / 4);
    const Affine a = quantize_group(x + g * G, G, q);
    store_u16(blk, f32_to_f16(a.d));
    store_u16(blk + 2, f32_to_f16(a.m));
    std::memset(blk + 4, 0, static_cast<size_t>(G / 4));
    for (int e = 0; e < G; ++e) blk[4 + e / 4] |= static_cast<uint8_t>(q[e] << (2 * (e % 4)));
  }
}

void quantize_row_tq2_0(const float* x, int64_t K, uint8_t* out) {
  row_bytes(Format::tq2_0, K);
  check_finite(x, K, "tq2_0");
  for (int64_t b = 0; b < K / 256; ++b) {
    const float* xb = x + b * 256;
    uint8_t* blk = out + b * kTq2Bytes;
    double absmean = 0;
    for (int e = 0; e < 256; ++e) absmean += std::fabs(xb[e]);
    absmean /= 256;
    int t[256];
    double sxq = 0, sqq = 0;
    for (int e = 0; e < 256; ++e) {
      t[e] = absmean > 0 ? static_cast<int>(std::max(-1.0, std::min(1.0, std::nearbyint(xb[e] / absmean)))) : 0;
      sxq += xb[e] * static_cast<double>(t[e]);
      sqq += t[e] * t[e];
    }
    const float d = sqq > 0 ? static_cast<float>(sxq / sqq) : 0.0f;
    std::memset(blk, 0, 64);
    for (int e = 0; e < 256; ++e)
      blk[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((t[e] + 1) << (2 * ((e % 128) / 32)));
    store_u16(blk + 64, f32_to_f16(d));
  }
}

void quantize_row_q2_k(const float* x, int64_t K, uint8_t* out) {
  row_bytes(Format::q2_k, K);
  check_finite(x, K, "q2_k");
  for (int64_t b = 0; b < K / 256; ++b) {
    const float* xb = x + b * 256;
    uint8_t* blk = out + b * kQ2kBytes;
    // Per sub-block (16 consecutive elements): scale >= 0, offset <= 0.
    float scale[16], offset[16];
    uint8_t q[16];
    for (int sb = 0; sb < 16; ++sb) {
      const float* xs = xb + 16 * sb;
      Affine a = quantize_group(xs, 16, q);
      if (a.m > 0 || a.d < 0) {  // outside GGUF's sign convention: min/max grid with min <= 0
        float lo = 0, hi = 0;
        for (int i = 0; i < 16; ++i) lo = std::min(lo, xs[i]), hi = std::max(hi, xs[i]);
        a = {(hi - lo) / 3.0f, lo};
      }
      scale[sb] = a.d;
      offset[sb] = a.m;
    }
    float max_scale = 0, max_min = 0;
    for (int sb = 0; sb < 16; ++sb) max_scale = std::max(max_scale, scale[sb]), max_min = std::max(max_min, -offset[sb]);
    const float d = round_f16(max_scale / 15.0f), dmin = round_f16(max_min / 15.0f);
    uint8_t sc[16], mn[16];
    for (int sb = 0; sb < 16; ++sb) {
      sc[sb] = d > 0 ? static_cast<uint8_t>(std::min(15.0f, std::nearbyint(scale[sb] / d))) : 0;
      mn[sb] = dmin > 0 ? static_cast<uint8_t>(std::min(15.0f, std::nearbyint(-offset[sb] / dmin))) : 0;
    }
    std::memset(blk, 0, kQ2kBytes);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, r = e % 128, j = r / 32, s = r % 32;
      const int sb = e / 16;  // the sub-block of element e: 8h + 2j + (s >= 16)
      blk[8 * h + 2 * j + (s >= 16 ? 1 : 0)] = static_cast<uint8_t>(sc[sb] | (mn[sb] << 4));
      const float step = d * sc[sb], lo = -dmin * mn[sb];
      int c = step > 0 ? static_cast<int>(std::nearbyint((xb[e] - lo) / step)) : 0;
      c = std::min(3, std::max(0, c));
      blk[16 + 32 * h + s] |= static_cast<uint8_t>(c << (2 * j));
    }
    store_u16(blk + 80, f32_to_f16(d));
    store_u16(blk + 82, f32_to_f16(dmin));
  }
}

void quantize_row(Format f, const float* x, int64_t K, uint8_t* out) {
  switch (f) {
    case Format::q2g64: quantize_row_q2g(x, K, 64, out); return;
    case Format::q2g128: quantize_row_q2g(x, K, 128, out); return;
    case Format::tq2_0: quantize_row_tq2_0(x, K, out); return;
    case Format::q2_k: quantize_row_q2_k(x, K, out); return;
  }
}

std::vector<uint8_t> quantize_matrix(Format f, const float* w, int64_t N, int64_t K) {
  const int64_t rb = row_bytes(f, K);
  std::vector<uint8_t> out(static_cast<size_t>(N * rb));
  for (int64_t n = 0; n < N; ++n) quantize_row(f, w + n * K, K, out.data() + n * rb);
  return out;
}

// ------------------------------------------------------------- call contract

const char* act_name(ActPath a) {
  switch (a) {
    case ActPath::any: return "auto";
    case ActPath::f32: return "f32";
    case ActPath::int8: return "int8";
  }
  return "?";
}

MatmulQ2Args MatmulQ2Args::parse(const OpCall& call) {
  MatmulQ2Args a;
  EK_CHECK_ARG(call.params.has("format"), kOp, ": param format is required (", format_list(), ")");
  a.format = parse_format(call.params.get_string(kOp, "format", ""));
  const std::string act = call.params.get_string(kOp, "act", "auto");
  if (act == "auto") {
    a.act = ActPath::any;
  } else if (act == "f32") {
    a.act = ActPath::f32;
  } else if (act == "int8") {
    a.act = ActPath::int8;
  } else {
    throw InvalidArgument(cat(kOp, ": param act='", act, "' is not auto|f32|int8"));
  }

  const TensorRef& X = call.get("X");
  const TensorRef& W = call.get("W");
  check_rank(kOp, "X", X, 2);
  check_dtype(kOp, "X", X, {DType::f32, DType::f16});
  check_rank(kOp, "W", W, 2);
  check_dtype(kOp, "W", W, {DType::u8});
  a.x_dtype = X.dtype;
  a.T = X.shape[0];
  a.K = X.shape[1];
  a.N = W.shape[0];
  EK_CHECK_ARG(a.T >= 1, kOp, ": X has T=", a.T, " rows, expected >= 1");
  EK_CHECK_ARG(a.N >= 1, kOp, ": W has N=", a.N, " rows, expected >= 1");
  const FormatInfo& fi = info(a.format);
  EK_CHECK_ARG(a.K % fi.block_elems == 0 && a.K >= 1, kOp, ": K=", a.K, " (X dim 1) is not a multiple of the ",
               fi.name, " block size ", fi.block_elems);
  a.row_bytes = q2::row_bytes(a.format, a.K);
  const int64_t wb = W.shape[1];
  if (wb != a.row_bytes) {
    if (wb > 0 && wb % fi.block_bytes == 0) {
      throw InvalidArgument(cat(kOp, ": mismatched K: W rows hold ", wb / fi.block_bytes * fi.block_elems,
                                " weights (", wb, " bytes of ", fi.name, ") but X has K=", a.K));
    }
    throw InvalidArgument(cat(kOp, ": W has ", wb, " bytes per row, format ", fi.name, " needs ", a.row_bytes,
                              " for K=", a.K, wb < a.row_bytes ? " (buffer too short)" : ""));
  }
  // Kernels index with 32-bit integers: every tensor must stay below 2^31
  // elements (and T*N must not overflow at all).
  constexpr int64_t kMax = (int64_t(1) << 31) - 1;
  EK_CHECK_ARG(a.T <= kMax / a.N, kOp, ": T*N = ", a.T, "*", a.N, " overflows (Y would exceed 2^31-1 elements)");
  EK_CHECK_ARG(a.T <= kMax / a.K, kOp, ": T*K = ", a.T, "*", a.K, " overflows (X exceeds 2^31-1 elements)");
  EK_CHECK_ARG(a.N <= kMax / a.row_bytes, kOp, ": W has ", a.N, "x", a.row_bytes, " bytes, more than 2^31-1");
  if (const TensorRef* b = call.find("bias")) {
    check_rank(kOp, "bias", *b, 1);
    check_dtype(kOp, "bias", *b, {DType::f32});
    check_dim(kOp, "bias", *b, 0, a.N, "N");
    a.has_bias = true;
  }
  return a;
}

}  // namespace q2
}  // namespace ek
