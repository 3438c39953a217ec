// Contract, reference and case list of causal_conv1d.
#include <cmath>

#include "kernels/causal_conv1d/causal_conv1d.h"

namespace ek {
namespace {

constexpr const char* kOp = "causal_conv1d";

void reference(const OpCall& call) {
  const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
  const TensorRef& x = call.get("x");
  const TensorRef& w = call.get("w");
  const TensorRef* bias = call.find("bias");
  const TensorRef* s0 = call.find("s0");
  float* y = call.get("y").as<float>();
  float* sT = call.get("sT").as<float>();
  const int64_t B = a.batch, T = a.tokens, D = a.channels, W = a.width, S = W - 1;
  // xx row r (0 <= r < S+T): the state for r < S, then x.
  auto xx = [&](int64_t b, int64_t r, int64_t d) -> double {
    if (r < S) return s0 ? load_as_double(*s0, (b * S + r) * D + d) : 0.0;
    return load_as_double(x, (b * T + (r - S)) * D + d);
  };
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        double acc = bias ? load_as_double(*bias, d) : 0.0;
        for (int64_t j = 0; j < W; ++j) acc += load_as_double(w, d * W + j) * xx(b, t + j, d);
        if (a.silu) acc = acc / (1.0 + std::exp(-acc));
        y[(b * T + t) * D + d] = static_cast<float>(acc);
      }
    for (int64_t r = 0; r < S; ++r)
      for (int64_t d = 0; d < D; ++d) sT[(b * S + r) * D + d] = static_cast<float>(xx(b, T + r, d));
  }
}

std::vector<OpCase> cases() {
  std::vector<OpCase> out;
  auto add = [&](std::string name, int64_t B, int64_t T, int64_t D, int64_t W, bool silu, bool bias,
                 bool state, std::set<std::string> tags, bool f16 = false) {
    OpCase c;
    c.op = kOp;
    c.name = std::move(name);
    c.dims = {{"B", B}, {"T", T}, {"D", D}, {"W", W}, {"bias", bias}, {"state", state}, {"f16", f16}};
    c.params.set("silu", silu);
    c.tags = std::move(tags);
    out.push_back(std::move(c));
  };
  // Realistic: d_inner (and Mamba-2's conv dim incl. B/C) of shapes.json models.
  add("mamba-2.8b d_inner=5120 decode T=1", 1, 1, 5120, 4, true, true, true, {"realistic", "bench"});
  add("mamba-2.8b d_inner=5120 prefill T=512", 1, 512, 5120, 4, true, true, false, {"realistic", "bench"});
  add("hybrid-edge-1b conv_dim=6144 decode T=1", 1, 1, 6144, 4, true, true, true, {"realistic", "bench"});
  add("hybrid-edge-1b conv_dim=6144 prefill T=512", 1, 512, 6144, 4, true, true, true, {"realistic", "bench"});
  add("mamba-130m d_inner=1536 T=64 B=2", 2, 64, 1536, 4, true, true, true, {"realistic", "smoke"});
  add("mamba-130m d_inner=1536 T=16 f16", 1, 16, 1536, 4, true, true, true, {"realistic"}, true);
  // Edge shapes: every width, T=1, T < W-1, odd D, no bias, no SiLU, batch > 1.
  add("edge: W=2 D=3 T=1", 1, 1, 3, 2, false, false, true, {"edge", "smoke"});
  add("edge: W=3 D=17 T=2 B=3", 3, 2, 17, 3, true, true, true, {"edge"});
  add("edge: W=4 T=1 no state", 2, 1, 33, 4, true, false, false, {"edge"});
  add("edge: W=4 T=2 < W-1 state", 1, 2, 65, 4, false, true, true, {"edge"});
  add("edge: W=4 odd D=1023 T=37", 1, 37, 1023, 4, true, true, true, {"edge"});
  add("edge: large D=40000 T=3", 1, 3, 40000, 4, true, true, true, {"edge"});
  add("edge: f16 W=3 D=5 T=9", 2, 9, 5, 3, true, true, true, {"edge"}, true);
  return out;
}

void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  const int64_t B = c.dims.at("B"), T = c.dims.at("T"), D = c.dims.at("D"), W = c.dims.at("W");
  const DType dt = c.dims.at("f16") ? DType::f16 : DType::f32;
  oc.allocate("x", dt, {B, T, D});
  fill_uniform(oc.storage["x"], rng, -2.0, 2.0);
  oc.allocate("w", DType::f32, {D, W});
  fill_uniform(oc.storage["w"], rng, -0.7, 0.7);
  if (c.dims.at("bias")) {
    oc.allocate("bias", DType::f32, {D});
    fill_uniform(oc.storage["bias"], rng, -0.5, 0.5);
  }
  if (c.dims.at("state")) {
    oc.allocate("s0", dt, {B, W - 1, D});
    fill_uniform(oc.storage["s0"], rng, -2.0, 2.0);
  }
}

Cost cost(const OpCall& call) {
  const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
  const double n = static_cast<double>(a.batch) * a.tokens * a.channels;
  const double s = static_cast<double>(a.batch) * (a.width - 1) * a.channels;
  Cost c;
  c.bytes = n * dtype_size(a.x_dtype) + n * 4 + (a.has_state ? s * dtype_size(a.x_dtype) : 0) + s * 4 +
            a.channels * (a.width + 1) * 4.0;
  c.flops = n * (2.0 * a.width + (a.silu ? 4 : 0));
  return c;
}

const RegisterOp reg(OpDef{
    kOp,
    "depthwise causal conv over time with carried state: y = bias + sum_j w[:,j] * (s0++x)[t+j], optional SiLU",
    {{"x", true, false, "x [B, T, D] f32|f16"},
     {"w", true, false, "w [D, W] f32, W in 2..4"},
     {"bias", false, false, "bias [D] f32"},
     {"s0", false, false, "s0 [B, W-1, D], dtype of x (zeros if absent)"},
     {"y", true, true, "y [B, T, D] f32"},
     {"sT", true, true, "sT [B, W-1, D] f32"}},
    {"silu"},
    [](const OpCall& call) {
      const CausalConv1dArgs a = CausalConv1dArgs::parse(call);
      return std::map<std::string, TensorDesc>{
          {"y", {DType::f32, {a.batch, a.tokens, a.channels}}},
          {"sT", {DType::f32, {a.batch, a.width - 1, a.channels}}}};
    },
    reference,
    cost,
    cases,
    make_inputs,
});

}  // namespace

CausalConv1dArgs CausalConv1dArgs::parse(const OpCall& call) {
  const TensorRef& x = call.get("x");
  const TensorRef& w = call.get("w");
  CausalConv1dArgs a;
  check_rank(kOp, "x", x, 3);
  check_dtype(kOp, "x", x, {DType::f32, DType::f16});
  a.x_dtype = x.dtype;
  a.batch = x.shape[0];
  a.tokens = x.shape[1];
  a.channels = x.shape[2];
  EK_CHECK_ARG(a.batch >= 1, kOp, ": x batch B=", a.batch, ", expected >= 1");
  EK_CHECK_ARG(a.tokens >= 1, kOp, ": x tokens T=", a.tokens, ", expected >= 1");
  EK_CHECK_ARG(a.channels >= 1, kOp, ": x channels D=", a.channels, ", expected >= 1");
  EK_CHECK_ARG(shape_numel(x.shape, cat(kOp, ": x")) <= (int64_t(1) << 31) - 1, kOp,
               ": x has more than 2^31-1 elements");
  check_rank(kOp, "w", w, 2);
  check_dtype(kOp, "w", w, {DType::f32});
  check_dim(kOp, "w", w, 0, a.channels, "D");
  a.width = w.shape[1];
  EK_CHECK_ARG(a.width >= 2 && a.width <= 4, kOp, ": w width W=", a.width, " is not in 2..4");
  if (const TensorRef* b = call.find("bias")) {
    check_rank(kOp, "bias", *b, 1);
    check_dtype(kOp, "bias", *b, {DType::f32});
    check_dim(kOp, "bias", *b, 0, a.channels, "D");
    a.has_bias = true;
  }
  if (const TensorRef* s = call.find("s0")) {
    check_rank(kOp, "s0", *s, 3);
    EK_CHECK_ARG(s->dtype == x.dtype, kOp, ": s0 has dtype ", dtype_name(s->dtype), ", expected x's dtype ",
                 dtype_name(x.dtype));
    check_dim(kOp, "s0", *s, 0, a.batch, "B");
    check_dim(kOp, "s0", *s, 1, a.width - 1, "W-1");
    check_dim(kOp, "s0", *s, 2, a.channels, "D");
    a.has_state = true;
  }
  a.silu = call.params.get_bool(kOp, "silu", false);
  return a;
}

}  // namespace ek
