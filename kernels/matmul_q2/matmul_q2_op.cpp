// Contract, scalar reference and shared case list of matmul_q2.
#include <algorithm>
#include <cmath>

#include "kernels/matmul_q2/matmul_q2.h"

namespace ek {
namespace q2 {
namespace {

constexpr const char* kOp = "matmul_q2";

// Y = X W^T + bias, each weight decoded exactly, accumulated in double.
void reference(const OpCall& call) {
  const MatmulQ2Args a = MatmulQ2Args::parse(call);
  const TensorRef& X = call.get("X");
  const uint8_t* W = call.get("W").as<uint8_t>();
  const TensorRef* bias = call.find("bias");
  float* Y = call.get("Y").as<float>();
  std::vector<double> x(static_cast<size_t>(a.T * a.K)), w(static_cast<size_t>(a.K));
  for (int64_t i = 0; i < a.T * a.K; ++i) x[i] = load_as_double(X, i);
  for (int64_t n = 0; n < a.N; ++n) {
    dequantize_row(a.format, W + n * a.row_bytes, a.K, w.data());
    const double b = bias ? bias->as<float>()[n] : 0.0;
    for (int64_t t = 0; t < a.T; ++t) {
      const double* xr = x.data() + t * a.K;
      double s = 0;
      for (int64_t k = 0; k < a.K; ++k) s += xr[k] * w[k];
      Y[t * a.N + n] = static_cast<float>(s + b);
    }
  }
}

Cost cost(const OpCall& call) {
  const MatmulQ2Args a = MatmulQ2Args::parse(call);
  Cost c;
  c.bytes = static_cast<double>(a.N) * a.row_bytes + static_cast<double>(a.T) * a.K * dtype_size(a.x_dtype) +
            static_cast<double>(a.T) * a.N * 4 + (a.has_bias ? a.N * 4.0 : 0.0);
  const double macs = static_cast<double>(a.T) * a.N * a.K;
  // The int8 path's multiply-adds are integer ops; which path runs is the
  // kernel's business, so the op reports the fp32 count and int8 kernels'
  // benchmarks set int_ops (bench/matmul_q2_bench.cpp).
  c.flops = 2 * macs;
  return c;
}

struct Shape {
  const char* name;
  int64_t N, K;
};
// shapes.json "matmul_q2" ([N_out, K_in]).
const Shape kShapes[] = {
    {"mistral-7b ffn up", 14336, 4096},       {"mistral-7b ffn down", 4096, 14336},
    {"mistral-7b qkv", 6144, 4096},           {"llama-3.2-1b ffn up", 8192, 2048},
    {"llama-3.2-1b ffn down", 2048, 8192},    {"bitnet-2b ffn down", 2560, 6912},
    {"mamba-2.8b in_proj", 10240, 2560},      {"mamba-2.8b out_proj", 2560, 5120},
    {"hybrid-edge-1b mamba2 in_proj", 10304, 2048},
};

std::vector<OpCase> cases() {
  std::vector<OpCase> out;
  auto add = [&](Format f, const std::string& what, int64_t T, int64_t N, int64_t K, std::set<std::string> tags,
                 bool bias = false, bool f16 = false) {
    OpCase c;
    c.op = kOp;
    c.name = cat(info(f).name, " ", what, " T=", T, " N=", N, " K=", K, bias ? " bias" : "", f16 ? " f16" : "");
    c.dims = {{"T", T}, {"N", N}, {"K", K}, {"bias", bias ? 1 : 0}, {"f16", f16 ? 1 : 0}};
    c.params.set("format", std::string(info(f).name));
    c.tags = std::move(tags);
    out.push_back(std::move(c));
  };
  for (const FormatInfo& fi : formats()) {
    const Format f = fi.format;
    for (const Shape& s : kShapes) {
      if (s.K % fi.block_elems != 0) continue;  // bitnet K=6912 has no 256-blocks
      // Decode on every real shape; verify (T=3, 8) on two of them; the
      // reference is a scalar double loop, so prefill-sized calls on the
      // full shapes are benchmark cases only.
      add(f, s.name, 1, s.N, s.K, {"realistic"}, s.N == 6144, false);
      add(f, s.name, 512, s.N, s.K, {"bench"});
    }
    add(f, "llama-3.2-1b ffn down", 8, 2048, 8192, {"realistic"}, true);
    add(f, "mamba-2.8b out_proj", 3, 2560, 5120, {"realistic"}, false, true);
    // Prefill on reduced N (real K).
    add(f, "mistral-7b ffn down, N reduced", 64, 96, 14336, {"realistic"});
    add(f, "mistral-7b ffn up, N reduced", 512, 48, 4096, {"realistic"}, true);
    // Edges: N not a multiple of the 16-row tile, K = one block, odd T.
    const int64_t B = fi.block_elems;
    add(f, "edge: K one block", 1, 16, B, {"edge", "smoke"});
    add(f, "edge: one row", 3, 1, 2 * B, {"edge"}, true);
    add(f, "edge: N off-tile, K one block", 8, 17, B, {"edge"});
    add(f, "edge: N off-tile", 64, 100, 4 * B, {"edge"}, true, true);
    add(f, "edge: N off-tile, long T", 512, 33, 2 * B, {"edge"});
    add(f, "edge: odd T", 5, 250, 3 * B, {"edge"}, false, true);
    add(f, "edge: T just above the GEMM threshold", 17, 40, 2 * B, {"edge"}, true);
  }
  return out;
}

// Weights: random code bytes (every byte pattern is a valid block) with
// scales in the range real quantized models have; quantizing real fp32 data
// here would make large cases slow to build (the quantizers have their own
// tests).
void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  const int64_t T = c.dims.at("T"), N = c.dims.at("N"), K = c.dims.at("K");
  const Format f = parse_format(c.params.get_string(kOp, "format", ""));
  const DType xt = c.dims.at("f16") ? DType::f16 : DType::f32;
  oc.allocate("X", xt, {T, K});
  fill_uniform(oc.storage["X"], rng, -1.0, 1.0);
  const int64_t rb = row_bytes(f, K);
  oc.allocate("W", DType::u8, {N, rb});
  uint8_t* w = oc.storage["W"].as<uint8_t>();
  for (int64_t i = 0; i < N * rb; i += 8) {
    const uint64_t v = rng();
    for (int64_t b = 0; b < 8 && i + b < N * rb; ++b) w[i + b] = static_cast<uint8_t>(v >> (8 * b));
  }
  std::uniform_real_distribution<float> scale(0.004f, 0.03f), unit(0.0f, 1.0f);
  auto put_f16 = [](uint8_t* p, float v) {
    const uint16_t h = f32_to_f16(v);
    p[0] = static_cast<uint8_t>(h & 0xff);
    p[1] = static_cast<uint8_t>(h >> 8);
  };
  const FormatInfo& fi = info(f);
  for (int64_t blk = 0; blk < N * rb / fi.block_bytes; ++blk) {
    uint8_t* b = w + blk * fi.block_bytes;
    switch (f) {
      case Format::q2g64:
      case Format::q2g128: {
        const float d = scale(rng);
        put_f16(b, d);
        put_f16(b + 2, -d * (1.0f + unit(rng)));  // m around -1.5 d: weights centred on 0
        break;
      }
      case Format::tq2_0:
        put_f16(b + 64, scale(rng));
        break;
      case Format::q2_k:
        put_f16(b + 80, scale(rng) / 8);
        put_f16(b + 82, scale(rng) / 8);
        break;
    }
  }
  if (c.dims.at("bias")) {
    oc.allocate("bias", DType::f32, {N});
    fill_uniform(oc.storage["bias"], rng, -0.5, 0.5);
  }
}

const RegisterOp reg(OpDef{
    kOp,
    "Y[t, n] = sum_k X[t, k] * W[n, k] (+ bias[n]) with W in a 2-bit format (q2g64, q2g128, tq2_0, q2_k)",
    {{"X", true, false, "X [T, K] f32|f16"},
     {"W", true, false, "W [N, row_bytes] u8: quantized rows (kernels/matmul_q2/README.md)"},
     {"bias", false, false, "bias [N] f32"},
     {"Y", true, true, "Y [T, N] f32"}},
    {"format", "act"},
    [](const OpCall& call) {
      const MatmulQ2Args a = MatmulQ2Args::parse(call);
      return std::map<std::string, TensorDesc>{{"Y", {DType::f32, {a.T, a.N}}}};
    },
    reference,
    cost,
    cases,
    make_inputs,
});

}  // namespace
}  // namespace q2
}  // namespace ek
