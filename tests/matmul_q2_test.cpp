// matmul_q2: GGUF block decoding pinned with hand-built blocks, quantizers,
// the lossless CPU repack, every bad-input message, and every registered
// kernel of every available device against the reference on small shapes
// (both the GEMV and the GEMM path of each, forced through the tunable).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "kernels/matmul_q2/matmul_q2.h"
#include "kernels/matmul_q2/matmul_q2_pack.h"
#include "runtime/runtime.h"

namespace ek {
namespace {

using q2::Format;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

std::vector<double> decode(Format f, const std::vector<uint8_t>& blk) {
  std::vector<double> out(static_cast<size_t>(q2::info(f).block_elems));
  q2::decode_block(f, blk.data(), out.data());
  return out;
}

// ---------------------------------------------------------------- GGUF blocks

// tq2_0: qs[64] then f16 d; element e in qs[32*(e/128) + e%32] bits 2*((e%128)/32).
TEST(MatmulQ2Gguf, Tq2_0HandBuiltBlock) {
  std::vector<uint8_t> b(66, 0x55);  // every code 1 -> value 0
  put_f16(&b[64], 0.5f);
  b[0] = 0x55 & ~0x03;        // e=0: code 0 -> -0.5
  b[0] = (b[0] & ~0x0c) | (2 << 2);  // e=32: code 2 -> +0.5
  b[31] = (b[31] & ~0xc0) | (3 << 6);  // e=127 (h=0, j=3, s=31): code 3 -> +1.0
  b[32] = (b[32] & ~0x03) | (0 << 0);  // e=128: code 0 -> -0.5
  b[63] = (b[63] & ~0xc0) | (2 << 6);  // e=255: code 2 -> +0.5
  b[40] = (b[40] & ~0x30) | (0 << 4);  // e=128+64+8=200: code 0 -> -0.5
  const auto v = decode(Format::tq2_0, b);
  for (int e = 0; e < 256; ++e) {
    double want = 0.0;
    if (e == 0 || e == 128 || e == 200) want = -0.5;
    if (e == 32 || e == 255) want = 0.5;
    if (e == 127) want = 1.0;
    EXPECT_EQ(v[e], want) << "element " << e;
  }
}

// q2_k: scales[16], qs[64], f16 d, f16 dmin; w = d*sc*q - dmin*mn with the
// scale byte scales[8h + 2j + (s >= 16)].
TEST(MatmulQ2Gguf, Q2KHandBuiltBlock) {
  std::vector<uint8_t> b(84, 0);
  for (int i = 0; i < 16; ++i) b[i] = static_cast<uint8_t>((i % 16) | ((15 - i) << 4));  // sc = i, mn = 15-i
  put_f16(&b[80], 0.25f);   // d
  put_f16(&b[82], 0.125f);  // dmin
  // Codes: e=17 (h0 j0 s17) q=3; e=40 (h0 j1 s8) q=2; e=200 (h1 j2 s8) q=1; e=255 (h1 j3 s31) q=3.
  b[16 + 17] |= 3 << 0;
  b[16 + 8] |= 2 << 2;
  b[16 + 32 + 8] |= 1 << 4;
  b[16 + 32 + 31] |= 3 << 6;
  const auto v = decode(Format::q2_k, b);
  auto expect = [&](int e, int q) {
    const int h = e / 128, r = e % 128, j = r / 32, s = r % 32;
    const int si = 8 * h + 2 * j + (s >= 16);
    return 0.25 * si * q - 0.125 * (15 - si);
  };
  EXPECT_EQ(v[17], expect(17, 3));  // scale byte 1: 0.25*1*3 - 0.125*14
  EXPECT_EQ(v[17], 0.75 - 1.75);
  EXPECT_EQ(v[40], expect(40, 2));  // scale byte 2
  EXPECT_EQ(v[40], 0.25 * 2 * 2 - 0.125 * 13);
  EXPECT_EQ(v[200], expect(200, 1));  // scale byte 12
  EXPECT_EQ(v[200], 0.25 * 12 - 0.125 * 3);
  EXPECT_EQ(v[255], expect(255, 3));  // scale byte 15
  EXPECT_EQ(v[255], 0.25 * 15 * 3 - 0);
  EXPECT_EQ(v[0], -0.125 * 15);  // q=0, scale byte 0
  for (int e = 0; e < 256; ++e)
    if (e != 17 && e != 40 && e != 200 && e != 255) EXPECT_EQ(v[e], expect(e, 0)) << "element " << e;
}

TEST(MatmulQ2Gguf, Q2gHandBuiltBlock) {
  for (int G : {64, 128}) {
    const Format f = G == 64 ? Format::q2g64 : Format::q2g128;
    std::vector<uint8_t> b(static_cast<size_t>(4 + G / 4), 0);
    put_f16(&b[0], 2.0f);
    put_f16(&b[2], -3.0f);
    b[4] = 0x1b;           // elements 0..3: codes 3, 2, 1, 0
    b[4 + G / 4 - 1] = 0xc0;  // element G-1: code 3
    const auto v = decode(f, b);
    EXPECT_EQ(v[0], 3.0);
    EXPECT_EQ(v[1], 1.0);
    EXPECT_EQ(v[2], -1.0);
    EXPECT_EQ(v[3], -3.0);
    EXPECT_EQ(v[G - 1], 3.0);
    EXPECT_EQ(v[G - 2], -3.0);
  }
}

// The decoders against loops written the way ggml's dequantize_row_tq2_0 and
// dequantize_row_q2_K walk a block, on random blocks.
TEST(MatmulQ2Gguf, MatchesGgmlLoopOrder) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> t(66), k(84);
    for (auto& v : t) v = static_cast<uint8_t>(rng());
    for (auto& v : k) v = static_cast<uint8_t>(rng());
    put_f16(&t[64], 0.01f * (trial + 1));
    put_f16(&k[80], 0.003f * (trial + 1));
    put_f16(&k[82], 0.002f * (trial + 1));
    // tq2_0: for j in {0, 32}: for l in 0..3: for m in 0..31: y = (q - 1) * d
    std::vector<double> want_t;
    const double dt = f16_to_f32(static_cast<uint16_t>(t[64] | (t[65] << 8)));
    for (int j = 0; j < 64; j += 32)
      for (int l = 0; l < 4; ++l)
        for (int m = 0; m < 32; ++m) want_t.push_back((((t[j + m] >> (l * 2)) & 3) - 1) * dt);
    EXPECT_EQ(decode(Format::tq2_0, t), want_t);
    // q2_K: for n in {0,128}: shift 0..6: two halves of 16 with their own scale byte.
    std::vector<double> want_k;
    const double d = f16_to_f32(static_cast<uint16_t>(k[80] | (k[81] << 8)));
    const double mn = f16_to_f32(static_cast<uint16_t>(k[82] | (k[83] << 8)));
    const uint8_t* q = &k[16];
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        uint8_t sc = k[is++];
        for (int l = 0; l < 16; ++l) want_k.push_back(d * (sc & 0xF) * ((q[l] >> shift) & 3) - mn * (sc >> 4));
        sc = k[is++];
        for (int l = 0; l < 16; ++l) want_k.push_back(d * (sc & 0xF) * ((q[l + 16] >> shift) & 3) - mn * (sc >> 4));
      }
      q += 32;
    }
    EXPECT_EQ(decode(Format::q2_k, k), want_k);
  }
}

TEST(MatmulQ2Gguf, FormatTable) {
  EXPECT_EQ(q2::row_bytes(Format::q2g64, 128), 2 * 20);
  EXPECT_EQ(q2::row_bytes(Format::q2g128, 4096), 32 * 36);
  EXPECT_EQ(q2::row_bytes(Format::tq2_0, 512), 2 * 66);
  EXPECT_EQ(q2::row_bytes(Format::q2_k, 4096), 16 * 84);
  EXPECT_EQ(q2::parse_format("q2_k"), Format::q2_k);
}

// ---------------------------------------------------------------- quantizers

double sq_error(Format f, const std::vector<float>& x, const std::vector<uint8_t>& q) {
  std::vector<double> w(x.size());
  q2::dequantize_row(f, q.data(), static_cast<int64_t>(x.size()), w.data());
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) e += (w[i] - x[i]) * (w[i] - x[i]);
  return e;
}

// The min/max grid, quantized the same way (f16 d and m): the baseline the
// MSE search must never lose to.
double minmax_error(const std::vector<float>& x, int G) {
  double e = 0;
  for (size_t g = 0; g < x.size() / G; ++g) {
    float lo = x[g * G], hi = x[g * G];
    for (int i = 0; i < G; ++i) lo = std::min(lo, x[g * G + i]), hi = std::max(hi, x[g * G + i]);
    const double d = f16_to_f32(f32_to_f16((hi - lo) / 3)), m = f16_to_f32(f32_to_f16(lo));
    for (int i = 0; i < G; ++i) {
      double best = 1e300;
      for (int c = 0; c < 4; ++c) best = std::min(best, std::fabs(d * c + m - x[g * G + i]));
      e += best * best;
    }
  }
  return e;
}

TEST(MatmulQ2Quantize, Q2gBeatsMinMax) {
  std::mt19937_64 rng(11);
  std::normal_distribution<float> gauss(0.0f, 0.02f);
  for (int G : {64, 128}) {
    const Format f = G == 64 ? Format::q2g64 : Format::q2g128;
    std::vector<float> x(4096);
    for (auto& v : x) v = gauss(rng);
    x[5] = 0.2f;  // an outlier: min/max wastes levels on it
    std::vector<uint8_t> q(static_cast<size_t>(q2::row_bytes(f, 4096)));
    q2::quantize_row(f, x.data(), 4096, q.data());
    const double e = sq_error(f, x, q), base = minmax_error(x, G);
    EXPECT_LE(e, base * (1 + 1e-9));
    EXPECT_LT(e, 0.85 * base) << "G=" << G;  // Gaussian groups: clearly better than min/max
    double energy = 0;
    for (float v : x) energy += v * v;
    EXPECT_LT(e / energy, 0.15);
  }
}

TEST(MatmulQ2Quantize, Q2gExactOnGrid) {
  // Values already on a 4-level grid with f16-exact d and m come back exactly.
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i) x[i] = -0.75f + 0.5f * ((i * 7) % 4);
  std::vector<uint8_t> q(36);
  q2::quantize_row(Format::q2g128, x.data(), 128, q.data());
  EXPECT_EQ(sq_error(Format::q2g128, x, q), 0.0);
  // A constant group: d = 0, m = the value.
  std::vector<float> c(64, 0.125f);
  std::vector<uint8_t> qc(20);
  q2::quantize_row(Format::q2g64, c.data(), 64, qc.data());
  EXPECT_EQ(sq_error(Format::q2g64, c, qc), 0.0);
}

TEST(MatmulQ2Quantize, Tq2_0Absmean) {
  std::mt19937_64 rng(3);
  // Scaled ternary weights (BitNet style) are recovered exactly.
  std::vector<float> x(512);
  for (auto& v : x) v = 0.0625f * static_cast<float>(static_cast<int>(rng() % 3) - 1);
  std::vector<uint8_t> q(132);
  q2::quantize_row(Format::tq2_0, x.data(), 512, q.data());
  EXPECT_EQ(sq_error(Format::tq2_0, x, q), 0.0);
  for (int e = 0; e < 512; ++e) {
    const int code = q2::block_code(Format::tq2_0, q.data() + 66 * (e / 256), e % 256);
    EXPECT_GE(code, 0);
    EXPECT_LE(code, 2);  // ternary: never code 3
  }
  // Gaussian data: threshold at gamma/2 and a least-squares d.
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (auto& v : x) v = gauss(rng);
  q2::quantize_row(Format::tq2_0, x.data(), 512, q.data());
  double energy = 0;
  for (float v : x) energy += v * v;
  EXPECT_LT(sq_error(Format::tq2_0, x, q) / energy, 0.35);
}

TEST(MatmulQ2Quantize, Q2KRoundTrip) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> gauss(0.0f, 0.05f);
  std::vector<float> x(1024);
  for (auto& v : x) v = gauss(rng);
  std::vector<uint8_t> q(4 * 84);
  q2::quantize_row(Format::q2_k, x.data(), 1024, q.data());
  double energy = 0;
  for (float v : x) energy += v * v;
  EXPECT_LT(sq_error(Format::q2_k, x, q) / energy, 0.2);
}

TEST(MatmulQ2Quantize, RejectsBadInput) {
  std::vector<float> x(100, 1.0f);
  std::vector<uint8_t> q(1000);
  try {
    q2::quantize_row(Format::q2g64, x.data(), 100, q.data());
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("K=100 is not a multiple of the q2g64 block size 64"), std::string::npos)
        << e.what();
  }
  x[3] = NAN;
  EXPECT_THROW(q2::quantize_row(Format::tq2_0, x.data(), 0, q.data()), InvalidArgument);
  std::vector<float> y(64, 0.0f);
  y[3] = INFINITY;
  try {
    q2::quantize_row(Format::q2g64, y.data(), 64, q.data());
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("element 3 is not finite"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- repack

TEST(MatmulQ2Pack, LosslessForEveryFormat) {
  std::mt19937_64 rng(9);
  for (const auto& fi : q2::formats()) {
    const int64_t N = 37, K = 2 * 256;
    const int64_t rb = q2::row_bytes(fi.format, K);
    std::vector<uint8_t> W(static_cast<size_t>(N * rb));
    for (auto& v : W) v = static_cast<uint8_t>(rng());
    // Finite f16 scales (random bytes may be Inf/NaN, which is legal but
    // makes the comparison below awkward).
    for (int64_t blk = 0; blk < N * rb / fi.block_bytes; ++blk) {
      uint8_t* b = W.data() + blk * fi.block_bytes;
      if (fi.format == Format::tq2_0) put_f16(b + 64, 0.01f * (blk % 7 + 1));
      if (fi.format == Format::q2_k) put_f16(b + 80, 0.01f), put_f16(b + 82, -0.02f * (blk % 3));
      if (fi.format == Format::q2g64 || fi.format == Format::q2g128) put_f16(b, 0.5f), put_f16(b + 2, -0.25f * (blk % 5));
    }
    for (int threads : {1, 2}) {
      const auto p = q2::pack_cpu(fi.format, W.data(), N, K, threads);
      EXPECT_EQ(p.tiles, 3);
      std::vector<double> row(static_cast<size_t>(K));
      for (int64_t n = 0; n < N; ++n) {
        q2::dequantize_row(fi.format, W.data() + n * rb, K, row.data());
        for (int64_t k = 0; k < K; ++k)
          ASSERT_EQ(q2::packed_weight(p, n, k), row[k]) << fi.name << " n=" << n << " k=" << k;
      }
      for (int64_t n = N; n < 48; ++n)
        for (int64_t k = 0; k < K; k += 7) ASSERT_EQ(q2::packed_weight(p, n, k), 0.0);
    }
    const auto g = q2::pack_gpu(fi.format, W.data(), N, K);
    std::vector<double> row(static_cast<size_t>(K));
    for (int64_t n = 0; n < N; ++n) {
      q2::dequantize_row(fi.format, W.data() + n * rb, K, row.data());
      for (int64_t k = 0; k < K; ++k)
        ASSERT_EQ(q2::packed_weight(g, n, k), row[k]) << "gpu " << fi.name << " n=" << n << " k=" << k;
    }
  }
}

// ---------------------------------------------------------------- bad inputs

struct Call {
  OwnedCall oc;
  Call(int64_t T, int64_t N, int64_t K, const std::string& format, int64_t w_bytes = -1) {
    oc.call.op = "matmul_q2";
    oc.call.params.set("format", format);
    oc.allocate("X", DType::f32, {T, K});
    int64_t rb = w_bytes;
    if (rb < 0) rb = q2::row_bytes(q2::parse_format(format), K);
    oc.allocate("W", DType::u8, {N, rb});
    oc.allocate("Y", DType::f32, {T, N});
  }
};

void expect_error(const OpCall& call, const std::string& fragment) {
  const OpDef& def = Registry::instance().op("matmul_q2");
  try {
    validate_call(def, call);
    FAIL() << "no error, expected: " << fragment;
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << "got: " << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("matmul_q2: ", 0), 0u) << e.what();
  }
}

TEST(MatmulQ2Errors, Messages) {
  {  // K not a multiple of the group
    Call c(1, 16, 128, "q2g128");
    c.oc.allocate("X", DType::f32, {1, 100});
    expect_error(c.oc.call, "K=100 (X dim 1) is not a multiple of the q2g128 block size 128");
  }
  {
    Call c(1, 16, 256, "tq2_0");
    c.oc.allocate("X", DType::f32, {1, 6784});
    expect_error(c.oc.call, "is not a multiple of the tq2_0 block size 256");
  }
  {  // short buffer
    Call c(1, 16, 4096, "q2g128", 1000);
    expect_error(c.oc.call, "W has 1000 bytes per row, format q2g128 needs 1152 for K=4096 (buffer too short)");
  }
  {  // mismatched K
    Call c(1, 16, 4096, "q2_k", 2 * 84);
    expect_error(c.oc.call, "mismatched K: W rows hold 512 weights (168 bytes of q2_k) but X has K=4096");
  }
  {  // unknown format
    Call c(1, 16, 256, "q2_k");
    c.oc.call.params.set("format", std::string("q4_0"));
    expect_error(c.oc.call, "unknown format 'q4_0' (expected q2g64|q2g128|tq2_0|q2_k)");
  }
  {  // missing format
    Call c(1, 16, 256, "q2_k");
    c.oc.call.params = Params();
    expect_error(c.oc.call, "param format is required");
  }
  {  // bad act
    Call c(1, 16, 256, "q2_k");
    c.oc.call.params.set("act", std::string("int4"));
    expect_error(c.oc.call, "param act='int4' is not auto|f32|int8");
  }
  {  // T*N overflow: shapes only (no data is touched before validation)
    OpCall call;
    call.op = "matmul_q2";
    call.params.set("format", std::string("q2g64"));
    static float xdummy;
    static uint8_t wdummy;
    call.tensors["X"] = TensorRef{DType::f32, {int64_t(1) << 20, 64}, &xdummy};
    call.tensors["W"] = TensorRef{DType::u8, {int64_t(1) << 20, 20}, &wdummy};
    call.tensors["Y"] = TensorRef{DType::f32, {1, 1}, &xdummy};
    expect_error(call, "T*N = 1048576*1048576 overflows");
  }
  {  // dtypes and ranks
    Call c(1, 16, 64, "q2g64");
    c.oc.allocate("X", DType::i32, {1, 64});
    expect_error(c.oc.call, "X has dtype i32, expected f32|f16");
  }
  {
    Call c(1, 16, 64, "q2g64");
    c.oc.allocate("W", DType::f32, {16, 20});
    expect_error(c.oc.call, "W has dtype f32, expected u8");
  }
  {
    Call c(1, 16, 64, "q2g64");
    c.oc.allocate("W", DType::u8, {320});
    expect_error(c.oc.call, "W has 1 dims [320], expected 2");
  }
  {  // bias
    Call c(2, 16, 64, "q2g64");
    c.oc.allocate("bias", DType::f32, {15});
    expect_error(c.oc.call, "bias dim 0 is 15, expected N=16");
  }
  {  // output shape
    Call c(2, 16, 64, "q2g64");
    c.oc.allocate("Y", DType::f32, {2, 17});
    expect_error(c.oc.call, "output Y has shape [2, 17], expected [2, 16]");
  }
}

TEST(MatmulQ2Errors, RunOpWritesNothingOnError) {
  DeviceSet set = open_devices("cpu");
  ASSERT_FALSE(set.devices.empty());
  Call c(2, 16, 4096, "q2g128", 1000);
  std::fill_n(c.oc.storage["Y"].as<float>(), 32, 7.0f);
  EXPECT_THROW(run_op(*set.devices[0], c.oc.call), InvalidArgument);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(c.oc.storage["Y"].as<float>()[i], 7.0f);
}

// ---------------------------------------------------------------- kernels

OwnedCall clone(const OwnedCall& oc) {
  OwnedCall out;
  out.call.op = oc.call.op;
  out.call.params = oc.call.params;
  for (const auto& kv : oc.storage) {
    out.allocate(kv.first, kv.second.dtype(), kv.second.shape());
    std::memcpy(out.storage[kv.first].data(), kv.second.data(), kv.second.nbytes());
  }
  return out;
}

struct KernelCase {
  Format format;
  int64_t T, N, K;
  bool bias, f16;
};

OwnedCall make_case(const KernelCase& kc, uint64_t seed) {
  OpCase c;
  c.op = "matmul_q2";
  c.dims = {{"T", kc.T}, {"N", kc.N}, {"K", kc.K}, {"bias", kc.bias}, {"f16", kc.f16}};
  c.params.set("format", std::string(q2::info(kc.format).name));
  return make_call(Registry::instance().op("matmul_q2"), c, seed);
}

// Every kernel on every device (EK_TEST_BACKENDS restricts), every format,
// GEMV and GEMM forced on the same calls through gemm_min_tokens.
TEST(MatmulQ2Kernels, AllKernelsMatchReference) {
  const char* env = std::getenv("EK_TEST_BACKENDS");
  DeviceSet set = open_devices(env ? env : "");
  const OpDef& def = Registry::instance().op("matmul_q2");
  const std::vector<KernelCase> shapes = {
      {Format::q2g64, 1, 16, 64, false, false},   {Format::q2g128, 2, 35, 256, true, false},
      {Format::tq2_0, 3, 48, 512, false, true},   {Format::q2_k, 4, 21, 512, true, false},
      {Format::q2g128, 5, 64, 384, true, true},   {Format::q2g64, 8, 7, 192, false, false},
      {Format::q2_k, 9, 40, 256, false, true},    {Format::tq2_0, 16, 33, 256, true, false},
      {Format::q2g128, 17, 50, 1024, false, false}, {Format::q2_k, 64, 18, 768, true, false},
      {Format::q2g64, 33, 100, 320, true, false}, {Format::tq2_0, 130, 20, 768, false, false},
  };
  int runs = 0;
  for (auto& dev : set.devices) {
    for (const KernelImpl* k : Registry::instance().kernels("matmul_q2", dev->backend())) {
      for (const KernelCase& kc : shapes) {
        OwnedCall oc = make_case(kc, 42 + kc.T);
        OwnedCall ref = make_case(kc, 42 + kc.T);
        def.reference(ref.call);
        const std::string why = k->ineligible_reason ? k->ineligible_reason(dev->profile(), oc.call) : "";
        if (!why.empty()) continue;
        for (int64_t gemm_min : {int64_t(8), int64_t(1) << 30}) {
          Tuning tuning = k->default_tuning();
          if (tuning.count("gemm_min_tokens")) tuning["gemm_min_tokens"] = gemm_min;
          auto inv = k->bind(*dev, oc.call, tuning);
          inv->execute();
          inv->read_outputs();
          const TensorRef y = oc.call.get("Y"), r = ref.call.get("Y");
          const double e = nmse(y, r);
          EXPECT_LE(e, k->nmse_bound) << k->id() << " " << q2::info(kc.format).name << " T=" << kc.T
                                      << " N=" << kc.N << " K=" << kc.K << " gemm_min=" << gemm_min;
          EXPECT_EQ(count_nonfinite_where_ref_finite(y, r), 0) << k->id();
          ++runs;
          if (std::getenv("EK_Q2_VERBOSE")) std::printf("%s %s T=%ld gemm_min=%ld nmse=%.3g\n", k->id().c_str(), q2::info(kc.format).name, (long)kc.T, (long)gemm_min, e);
          std::fill_n(y.as<float>(), y.numel(), NAN);  // the next run must write every element
        }
      }
    }
  }
  EXPECT_GT(runs, 0);
}

// Runs every CPU kernel eligible for `call` once on `dev`, each followed by
// `check(kernel)` on the outputs it wrote.
template <class Check>
void run_each_eligible_cpu_kernel(Device& dev, const OpCall& call, Check check) {
  for (const KernelImpl* k : Registry::instance().kernels("matmul_q2", "cpu")) {
    if (!k->ineligible_reason(dev.profile(), call).empty()) continue;
    k->bind(dev, call, k->default_tuning())->execute();
    check(k);
  }
}

// Scales that are f16 subnormals, Inf or NaN take the kernels' exact f16
// conversion: subnormal scales still match the reference; Inf/NaN scales
// and NaN/Inf activations give non-finite outputs where the reference does,
// and leave other rows exact.
TEST(MatmulQ2Kernels, NonNormalScalesAndActivations) {
  DeviceSet set = open_devices("cpu");
  const OpDef& def = Registry::instance().op("matmul_q2");
  for (const auto& fi : q2::formats()) {
    const int64_t T = 3, N = 40, K = 512;
    OwnedCall oc = make_case({fi.format, T, N, K, false, false}, 77);
    uint8_t* W = oc.storage["W"].as<uint8_t>();
    const int64_t rb = q2::row_bytes(fi.format, K);
    auto scale_ptr = [&](int64_t row, int64_t blk) -> uint8_t* {
      uint8_t* b = W + row * rb + blk * fi.block_bytes;
      if (fi.format == Format::tq2_0) return b + 64;
      if (fi.format == Format::q2_k) return b + 80;
      return b;
    };
    // Row 3: subnormal scales everywhere (exact results expected).
    for (int64_t blk = 0; blk < K / fi.block_elems; ++blk) {
      uint8_t* p = scale_ptr(3, blk);
      p[0] = 0x37;
      p[1] = 0x01;  // f16 0x0137: subnormal
    }
    OwnedCall ref = clone(oc);
    def.reference(ref.call);
    run_each_eligible_cpu_kernel(*set.devices[0], oc.call, [&](const KernelImpl* k) {
      EXPECT_LE(nmse(oc.call.get("Y"), ref.call.get("Y")), k->nmse_bound) << k->id() << " " << fi.name;
    });
    // Row 5: an Inf scale; token 1: a NaN activation.
    uint8_t* p = scale_ptr(5, 0);
    p[0] = 0x00;
    p[1] = 0x7c;  // +Inf
    oc.storage["X"].as<float>()[1 * K + 17] = NAN;
    OwnedCall ref2 = clone(oc);
    def.reference(ref2.call);
    run_each_eligible_cpu_kernel(*set.devices[0], oc.call, [&](const KernelImpl* k) {
      const float* y = oc.call.get("Y").as<float>();
      const float* r = ref2.call.get("Y").as<float>();
      for (int64_t t = 0; t < T; ++t)
        for (int64_t n = 0; n < N; ++n) {
          const float yv = y[t * N + n], rv = r[t * N + n];
          EXPECT_EQ(std::isfinite(yv), std::isfinite(rv)) << k->id() << " " << fi.name << " t=" << t << " n=" << n;
        }
      EXPECT_LE(nmse(oc.call.get("Y"), ref2.call.get("Y")), k->nmse_bound) << k->id() << " " << fi.name;
    });
  }
}

// The fast f16 path for normal-or-zero scales: zero and negative-zero scales
// stay zero, and activations whose group sums exceed 2^16 stay finite (a
// 2^112-scaled conversion folded into the activation terms would overflow).
TEST(MatmulQ2Kernels, ZeroScalesAndLargeActivations) {
  DeviceSet set = open_devices("cpu");
  const OpDef& def = Registry::instance().op("matmul_q2");
  int runs = 0;
  for (const auto& fi : q2::formats()) {
    const int64_t T = 2, N = 48, K = 512;
    OwnedCall oc = make_case({fi.format, T, N, K, false, false}, 91);
    uint8_t* W = oc.storage["W"].as<uint8_t>();
    const int64_t rb = q2::row_bytes(fi.format, K);
    for (int64_t blk = 0; blk < K / fi.block_elems; ++blk) {
      uint8_t* b = W + 7 * rb + blk * fi.block_bytes;  // row 7: d = +0 (and m = -0 for q2g)
      uint8_t* s = fi.format == Format::tq2_0 ? b + 64 : fi.format == Format::q2_k ? b + 80 : b;
      s[0] = 0x00;
      s[1] = 0x00;
      if (fi.format != Format::tq2_0) {
        s[2] = 0x00;
        s[3] = 0x80;
      }
    }
    float* X = oc.storage["X"].as<float>();
    for (int64_t i = 0; i < T * K; ++i) X[i] = 3000.0f + static_cast<float>(i % 7);  // group sums ~4e5
    OwnedCall ref = clone(oc);
    def.reference(ref.call);
    run_each_eligible_cpu_kernel(*set.devices[0], oc.call, [&](const KernelImpl* k) {
      ++runs;
      const float* y = oc.call.get("Y").as<float>();
      for (int64_t i = 0; i < T * N; ++i) ASSERT_TRUE(std::isfinite(y[i])) << k->id() << " " << fi.name << " i=" << i;
      EXPECT_LE(nmse(oc.call.get("Y"), ref.call.get("Y")), k->nmse_bound) << k->id() << " " << fi.name;
    });
  }
  // At least one kernel per format (an ARMv8.0 CPU has only halide_neon_f32).
  EXPECT_GE(runs, static_cast<int>(q2::formats().size()));
}

TEST(MatmulQ2Kernels, ActParamSelectsPath) {
  DeviceSet set = open_devices("cpu");
  ASSERT_FALSE(set.devices.empty());
  const DeviceProfile& p = set.devices[0]->profile();
  OwnedCall oc = make_case({Format::q2g128, 1, 16, 128, false, false}, 1);
  oc.call.params.set("act", std::string("f32"));
  Selection s = select_kernel(p, oc.call);
  EXPECT_DOUBLE_EQ(s.kernel->nmse_bound, 1e-7) << s.kernel->id();
  oc.call.params.set("act", std::string("int8"));
  if (p.has("int8_dot") || p.has("avx2")) {
    s = select_kernel(p, oc.call);
    EXPECT_DOUBLE_EQ(s.kernel->nmse_bound, 5e-4) << s.kernel->id();
  }
}

#if defined(__aarch64__)
// aarch64: the int8 kernels need the dot-product extension (sdot, HWCAP_ASIMDDP);
// without it the fp32 NEON kernels serve act=auto. Checked on the probed
// profile and on the same profile with dotprod taken away.
TEST(MatmulQ2Kernels, ArmVariantFollowsDotprod) {
  DeviceSet set = open_devices("cpu");
  ASSERT_FALSE(set.devices.empty());
  DeviceProfile p = set.devices[0]->profile();
  ASSERT_TRUE(p.has("neon"));
  OwnedCall oc = make_case({Format::q2_k, 1, 16, 256, false, false}, 1);
  EXPECT_EQ(select_kernel(p, oc.call).kernel->variant, p.has("dotprod") ? "halide_dotprod_int8" : "halide_neon_f32");
  p.features.erase("dotprod");
  p.features.erase("int8_dot");
  EXPECT_EQ(select_kernel(p, oc.call).kernel->variant, "halide_neon_f32");
}
#endif

TEST(MatmulQ2Kernels, RunOpEndToEnd) {
  DeviceSet set = open_devices("cpu");
  const OpDef& def = Registry::instance().op("matmul_q2");
  for (const auto& fi : q2::formats()) {
    OwnedCall oc = make_case({fi.format, 3, 40, 512, true, false}, 5);
    OwnedCall ref = make_case({fi.format, 3, 40, 512, true, false}, 5);
    def.reference(ref.call);
    run_op(*set.devices[0], oc.call);
    EXPECT_LE(nmse(oc.call.get("Y"), ref.call.get("Y")), 5e-4) << fi.name;
  }
}

// Real quantized weights: quantize an fp32 matrix, run, compare with the
// fp32 product: the quantization error is what it should be, and the
// kernels agree with the reference on quantizer output too.
TEST(MatmulQ2Kernels, QuantizedWeightsEndToEnd) {
  DeviceSet set = open_devices("cpu");
  const OpDef& def = Registry::instance().op("matmul_q2");
  std::mt19937_64 rng(21);
  std::normal_distribution<float> gauss(0.0f, 0.02f);
  const int64_t T = 4, N = 64, K = 1024;
  std::vector<float> w(static_cast<size_t>(N * K));
  for (auto& v : w) v = gauss(rng);
  // int8 kernels need a dot-product ISA (x86: avx2 or VNNI; aarch64: dotprod);
  // without one, act=int8 has no kernel (as in ActParamSelectsPath).
  const DeviceProfile& p = set.devices[0]->profile();
  const bool have_int8 = p.has("int8_dot") || p.has("avx2");
  for (const auto& fi : q2::formats()) {
    const auto bytes = q2::quantize_matrix(fi.format, w.data(), N, K);
    for (const char* act : {"f32", "int8"}) {
      if (std::string(act) == "int8" && !have_int8) continue;
      OwnedCall oc;
      oc.call.op = "matmul_q2";
      oc.call.params.set("format", std::string(fi.name));
      oc.call.params.set("act", std::string(act));
      oc.allocate("X", DType::f32, {T, K});
      fill_uniform(oc.storage["X"], rng, -1, 1);
      oc.allocate("W", DType::u8, {N, q2::row_bytes(fi.format, K)});
      std::memcpy(oc.storage["W"].data(), bytes.data(), bytes.size());
      oc.allocate("Y", DType::f32, {T, N});
      OwnedCall ref = clone(oc);
      def.reference(ref.call);
      run_op(*set.devices[0], oc.call);
      EXPECT_LE(nmse(oc.call.get("Y"), ref.call.get("Y")), std::string(act) == "f32" ? 1e-7 : 5e-4)
          << fi.name << " " << act;
    }
  }
}

}  // namespace
}  // namespace ek
