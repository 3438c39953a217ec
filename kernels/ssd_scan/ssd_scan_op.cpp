// Contract, reference and case list of ssd_scan (Mamba-2).
#include <algorithm>
#include <cmath>

#include "kernels/ssd_scan/ssd_scan.h"

namespace ek {
namespace {

constexpr const char* kOp = "ssd_scan";

double softplus(double x) { return x <= 20.0 ? std::log1p(std::exp(x)) : x; }

void reference(const OpCall& call) {
  const SsdScanArgs a = SsdScanArgs::parse(call);
  const TensorRef& x = call.get("x");
  const TensorRef& dt = call.get("dt");
  const TensorRef& A = call.get("A");
  const TensorRef& Bm = call.get("Bm");
  const TensorRef& Cm = call.get("Cm");
  const TensorRef* Dskip = call.find("Dskip");
  const TensorRef* bias = call.find("dt_bias");
  const TensorRef* h0 = call.find("h0");
  float* y = call.get("y").as<float>();
  float* hT = call.get("hT").as<float>();
  const int64_t T = a.tokens, H = a.heads, P = a.head_dim, N = a.state, G = a.groups, hpg = a.heads_per_group();
  std::vector<double> S(static_cast<size_t>(P * N));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / hpg;
      const int64_t s0 = (b * H + h) * P * N;
      for (int64_t i = 0; i < P * N; ++i) S[i] = h0 ? load_as_double(*h0, s0 + i) : 0.0;
      const double Ah = load_as_double(A, h);
      const double Dh = Dskip ? load_as_double(*Dskip, h) : 0.0;
      for (int64_t t = 0; t < T; ++t) {
        double d = load_as_double(dt, (b * T + t) * H + h) + (bias ? load_as_double(*bias, h) : 0.0);
        if (a.dt_softplus) d = softplus(d);
        d = std::min(std::max(d, static_cast<double>(a.dt_min)), static_cast<double>(a.dt_max));
        const double decay = std::exp(d * Ah);
        const int64_t bc = ((b * T + t) * G + g) * N;
        const int64_t xo = ((b * T + t) * H + h) * P;
        for (int64_t p = 0; p < P; ++p) {
          const double xp = load_as_double(x, xo + p);
          const double dx = d * xp;
          double acc = 0;
          double* row = &S[p * N];
          for (int64_t n = 0; n < N; ++n) {
            row[n] = decay * row[n] + dx * load_as_double(Bm, bc + n);
            acc += row[n] * load_as_double(Cm, bc + n);
          }
          y[xo + p] = static_cast<float>(acc + Dh * xp);
        }
      }
      for (int64_t i = 0; i < P * N; ++i) hT[s0 + i] = static_cast<float>(S[i]);
    }
}

// Case dims: B, T, H, P, N, G; option switches dskip, bias, h0; data modes
// a_mode (0: A in [-16, -1], 1: very negative A in [-1e4, -50]) and dt_mode
// (0: typical, 1: dt+bias around the softplus threshold 20); f16 (optional,
// default 0): the activations x, dt, Bm, Cm in f16.
OpCase make_case(std::string name, int64_t B, int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                 bool all_options, std::set<std::string> tags) {
  OpCase c;
  c.op = kOp;
  c.name = std::move(name);
  const int64_t on = all_options ? 1 : 0;
  c.dims = {{"B", B}, {"T", T}, {"H", H}, {"P", P}, {"N", N}, {"G", G}, {"dskip", on},
            {"bias", on}, {"h0", on}, {"a_mode", 0}, {"dt_mode", 0}, {"f16", 0}};
  c.params.set("dt_softplus", all_options);
  c.tags = std::move(tags);
  return c;
}

OpCase f16_case(OpCase c) {
  c.dims["f16"] = 1;
  return c;
}

std::vector<OpCase> cases() {
  std::vector<OpCase> out;
  auto add = [&](OpCase c) { out.push_back(std::move(c)); };
  // Realistic: shapes.json models. Decode (T=1 with state) at full size;
  // prefill with reduced T so the double reference stays cheap (T=512..8192
  // runs are in bench/scan_bench.cpp).
  add(make_case("mamba2-2.7b H=80 P=64 N=128 decode T=1", 1, 1, 80, 64, 128, 1, true, {"realistic", "bench"}));
  add(make_case("hybrid-edge-1b H=64 P=64 N=128 G=8 decode T=1", 1, 1, 64, 64, 128, 8, true,
                {"realistic", "bench"}));
  add(make_case("mamba2-2.7b H=80 P=64 N=128 verify T=8", 1, 8, 80, 64, 128, 1, true, {"realistic"}));
  add(make_case("mamba2-2.7b H=80 P=64 N=128 T=64", 1, 64, 80, 64, 128, 1, true, {"realistic", "smoke"}));
  add(make_case("hybrid-edge-1b H=64 P=64 N=128 G=8 T=160", 1, 160, 64, 64, 128, 8, true, {"realistic"}));
  add(make_case("mamba2-2.7b H=80 P=64 N=128 T=512", 1, 512, 80, 64, 128, 1, true, {"bench"}));
  // Edge shapes and options.
  add(make_case("edge: T=1 without h0", 2, 1, 4, 16, 32, 1, false, {"edge"}));
  add(make_case("edge: T=1 with h0 B=3 odd P=5 N=7", 3, 1, 6, 5, 7, 3, true, {"edge", "smoke"}));
  add(make_case("edge: T=77 (no chunk multiple)", 1, 77, 4, 16, 32, 2, true, {"edge"}));
  add(make_case("edge: T=300 several chunks", 1, 300, 3, 16, 64, 1, true, {"edge"}));
  add(make_case("edge: N=1 P=1", 2, 37, 5, 1, 1, 1, true, {"edge"}));
  add(make_case("edge: N=256", 1, 70, 2, 16, 256, 1, true, {"edge"}));
  add(make_case("edge: G=H=6", 1, 45, 6, 8, 16, 6, true, {"edge"}));
  add(make_case("edge: no options", 1, 66, 4, 32, 64, 2, false, {"edge"}));
  add(make_case("edge: T=2 B=2", 2, 2, 8, 64, 128, 1, true, {"edge"}));
  {
    OpCase c = make_case("edge: very negative A", 1, 90, 4, 16, 32, 1, true, {"edge"});
    c.dims["a_mode"] = 1;
    add(std::move(c));
  }
  {
    OpCase c = make_case("edge: dt near softplus threshold 20", 1, 40, 4, 16, 32, 1, true, {"edge"});
    c.dims["dt_mode"] = 1;
    add(std::move(c));
  }
  {
    OpCase c = make_case("edge: dt clamp [0.05, 0.5]", 1, 100, 4, 16, 32, 1, true, {"edge"});
    c.params.set("dt_min", 0.05);
    c.params.set("dt_max", 0.5);
    add(std::move(c));
  }
  // f16 activations (x, dt, Bm, Cm); state, parameters and y stay f32. T = 100
  // runs the chunked form on every backend by default (and the CPU's
  // any-shape chunk build: P < 4 vectors); odd counts exercise the last
  // half-word of packed f16 reads.
  add(f16_case(make_case("f16: mamba2-2.7b H=80 P=64 N=128 decode T=1", 1, 1, 80, 64, 128, 1, true,
                         {"realistic", "bench"})));
  add(f16_case(make_case("f16: hybrid-edge-1b H=64 P=64 N=128 G=8 T=24", 1, 24, 64, 64, 128, 8, true, {"realistic"})));
  add(f16_case(make_case("f16: mamba2-2.7b H=80 P=64 N=128 T=512", 1, 512, 80, 64, 128, 1, true, {"bench"})));
  add(f16_case(make_case("edge f16: T=1 with h0 B=3 odd P=5 N=7", 3, 1, 6, 5, 7, 3, true, {"edge"})));
  add(f16_case(make_case("edge f16: T=100 odd P=9 N=7 G=2", 1, 100, 4, 9, 7, 2, true, {"edge"})));
  add(f16_case(make_case("edge f16: T=70 P=64 N=128 no options", 1, 70, 2, 64, 128, 1, false, {"edge"})));
  {
    OpCase c = f16_case(make_case("edge f16: dt near softplus threshold 20, T=3", 2, 3, 4, 16, 32, 1, true, {"edge"}));
    c.dims["dt_mode"] = 1;
    add(std::move(c));
  }
  return out;
}

void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  const int64_t B = c.dims.at("B"), T = c.dims.at("T"), H = c.dims.at("H"), P = c.dims.at("P"),
                N = c.dims.at("N"), G = c.dims.at("G");
  const bool near_threshold = c.dims.at("dt_mode") == 1;
  const bool has_bias = c.dims.at("bias") != 0;
  const bool softplus = c.params.get_bool(kOp, "dt_softplus", false);
  const auto f16 = c.dims.find("f16");
  const DType act = f16 != c.dims.end() && f16->second ? DType::f16 : DType::f32;
  oc.allocate("x", act, {B, T, H, P});
  fill_uniform(oc.storage["x"], rng, -1.0, 1.0);
  oc.allocate("dt", act, {B, T, H});
  if (near_threshold)
    fill_uniform(oc.storage["dt"], rng, has_bias ? 19.0 : 18.0, has_bias ? 21.0 : 22.0);
  else if (softplus)
    fill_uniform(oc.storage["dt"], rng, -3.0, 1.0);
  else
    fill_uniform(oc.storage["dt"], rng, 0.001, 0.2);
  oc.allocate("A", DType::f32, {H});
  if (c.dims.at("a_mode") == 1)
    fill_uniform(oc.storage["A"], rng, -1e4, -50.0);
  else
    fill_uniform(oc.storage["A"], rng, -16.0, -1.0);
  oc.allocate("Bm", act, {B, T, G, N});
  fill_uniform(oc.storage["Bm"], rng, -1.0, 1.0);
  oc.allocate("Cm", act, {B, T, G, N});
  fill_uniform(oc.storage["Cm"], rng, -1.0, 1.0);
  if (c.dims.at("dskip")) {
    oc.allocate("Dskip", DType::f32, {H});
    fill_uniform(oc.storage["Dskip"], rng, 0.5, 1.5);
  }
  if (has_bias) {
    oc.allocate("dt_bias", DType::f32, {H});
    if (near_threshold)
      fill_uniform(oc.storage["dt_bias"], rng, -1.0, 1.0);
    else
      fill_uniform(oc.storage["dt_bias"], rng, -3.0, -1.0);
  }
  if (c.dims.at("h0")) {
    oc.allocate("h0", DType::f32, {B, H, P, N});
    fill_uniform(oc.storage["h0"], rng, -1.0, 1.0);
  }
}

Cost cost(const OpCall& call) {
  const SsdScanArgs a = SsdScanArgs::parse(call);
  const double bth = static_cast<double>(a.batch) * a.tokens * a.heads;
  const double bc = static_cast<double>(a.batch) * a.tokens * a.groups * a.state;
  const double states = static_cast<double>(a.batch) * a.heads * a.head_dim * a.state;
  const double act = static_cast<double>(dtype_size(a.activations));  // x, dt, Bm, Cm
  Cost c;
  c.bytes = act * (bth * (a.head_dim + 1) + 2 * bc) +
            4.0 * (bth * a.head_dim /* y */ + a.heads * (1 + (a.has_dskip ? 1 : 0) + (a.has_dt_bias ? 1 : 0)) +
                   states * (a.has_h0 ? 2 : 1));
  // The recurrence's work as ops.md counts it: 4*T*H*P*N (state update FMA +
  // output FMA per state element per token).
  c.flops = 4.0 * bth * a.head_dim * a.state;
  return c;
}

const RegisterOp reg(OpDef{
    kOp,
    "Mamba-2 SSD scan: S = exp(dt*A)*S + dt*x (x) B, y = S.C + Dskip*x, with final state",
    {{"x", true, false, "x [B, T, H, P] f32|f16 (x, dt, Bm, Cm share one dtype)"},
     {"dt", true, false, "dt [B, T, H] f32|f16"},
     {"A", true, false, "A [H] f32"},
     {"Bm", true, false, "Bm [B, T, G, N] f32|f16"},
     {"Cm", true, false, "Cm [B, T, G, N] f32|f16"},
     {"Dskip", false, false, "Dskip [H] f32"},
     {"dt_bias", false, false, "dt_bias [H] f32"},
     {"h0", false, false, "h0 [B, H, P, N] f32 initial state (zeros if absent)"},
     {"y", true, true, "y [B, T, H, P] f32"},
     {"hT", true, true, "hT [B, H, P, N] f32 final state"}},
    {"dt_softplus", "dt_min", "dt_max"},
    [](const OpCall& call) {
      const SsdScanArgs a = SsdScanArgs::parse(call);
      return std::map<std::string, TensorDesc>{
          {"y", {DType::f32, {a.batch, a.tokens, a.heads, a.head_dim}}},
          {"hT", {DType::f32, {a.batch, a.heads, a.head_dim, a.state}}}};
    },
    reference,
    cost,
    cases,
    make_inputs,
    {{"hT", "h0"}},  // the state may be updated in place
});

}  // namespace

SsdScanArgs SsdScanArgs::parse(const OpCall& call) {
  const TensorRef& x = call.get("x");
  SsdScanArgs a;
  check_rank(kOp, "x", x, 4);
  check_dtype(kOp, "x", x, {DType::f32, DType::f16});
  a.activations = x.dtype;
  // The per-token activations share x's dtype: one kernel build per dtype
  // instead of one per combination.
  auto check_activation = [&](const char* name, const TensorRef& t) {
    EK_CHECK_ARG(t.dtype == a.activations, kOp, ": ", name, " has dtype ", dtype_name(t.dtype), ", expected ",
                 dtype_name(a.activations), " like x (x, dt, Bm and Cm share one dtype)");
  };
  a.batch = x.shape[0];
  a.tokens = x.shape[1];
  a.heads = x.shape[2];
  a.head_dim = x.shape[3];
  EK_CHECK_ARG(a.batch >= 1, kOp, ": x batch B=", a.batch, ", expected >= 1");
  EK_CHECK_ARG(a.tokens >= 1, kOp, ": x tokens T=", a.tokens, ", expected >= 1");
  EK_CHECK_ARG(a.heads >= 1, kOp, ": x heads H=", a.heads, ", expected >= 1");
  EK_CHECK_ARG(a.head_dim >= 1, kOp, ": x head dim P=", a.head_dim, ", expected >= 1");
  const int64_t limit = (int64_t(1) << 31) - 1;
  EK_CHECK_ARG(shape_numel(x.shape, cat(kOp, ": x")) <= limit, kOp, ": x has more than 2^31-1 elements");

  const TensorRef& dt = call.get("dt");
  check_rank(kOp, "dt", dt, 3);
  check_activation("dt", dt);
  check_dim(kOp, "dt", dt, 0, a.batch, "B");
  check_dim(kOp, "dt", dt, 1, a.tokens, "T");
  check_dim(kOp, "dt", dt, 2, a.heads, "H");

  auto check_per_head = [&](const char* name, const TensorRef& t) {
    check_rank(kOp, name, t, 1);
    check_dtype(kOp, name, t, {DType::f32});
    check_dim(kOp, name, t, 0, a.heads, "H");
  };
  check_per_head("A", call.get("A"));

  const TensorRef& Bm = call.get("Bm");
  check_rank(kOp, "Bm", Bm, 4);
  check_activation("Bm", Bm);
  check_dim(kOp, "Bm", Bm, 0, a.batch, "B");
  check_dim(kOp, "Bm", Bm, 1, a.tokens, "T");
  a.groups = Bm.shape[2];
  a.state = Bm.shape[3];
  EK_CHECK_ARG(a.groups >= 1, kOp, ": Bm groups G=", a.groups, ", expected >= 1");
  EK_CHECK_ARG(a.heads % a.groups == 0, kOp, ": H=", a.heads, " is not a multiple of Bm groups G=", a.groups);
  EK_CHECK_ARG(a.state >= 1 && a.state <= kSsdScanMaxState, kOp, ": Bm state size N=", a.state, " is not in 1..",
               kSsdScanMaxState);
  EK_CHECK_ARG(shape_numel(Bm.shape, cat(kOp, ": Bm")) <= limit, kOp, ": Bm has more than 2^31-1 elements");
  const TensorRef& Cm = call.get("Cm");
  check_rank(kOp, "Cm", Cm, 4);
  check_activation("Cm", Cm);
  EK_CHECK_ARG(Cm.shape == Bm.shape, kOp, ": Cm has shape ", shape_str(Cm.shape), ", expected Bm's shape ",
               shape_str(Bm.shape));

  if (const TensorRef* t = call.find("Dskip")) {
    check_per_head("Dskip", *t);
    a.has_dskip = true;
  }
  if (const TensorRef* t = call.find("dt_bias")) {
    check_per_head("dt_bias", *t);
    a.has_dt_bias = true;
  }
  EK_CHECK_ARG(a.batch * a.heads * a.head_dim * a.state <= limit, kOp, ": state B*H*P*N exceeds 2^31-1 elements");
  if (const TensorRef* t = call.find("h0")) {
    check_rank(kOp, "h0", *t, 4);
    check_dtype(kOp, "h0", *t, {DType::f32});
    check_dim(kOp, "h0", *t, 0, a.batch, "B");
    check_dim(kOp, "h0", *t, 1, a.heads, "H");
    check_dim(kOp, "h0", *t, 2, a.head_dim, "P");
    check_dim(kOp, "h0", *t, 3, a.state, "N");
    a.has_h0 = true;
  }
  a.dt_softplus = call.params.get_bool(kOp, "dt_softplus", false);
  const double lo = call.params.get_float(kOp, "dt_min", -INFINITY);
  const double hi = call.params.get_float(kOp, "dt_max", INFINITY);
  EK_CHECK_ARG(!std::isnan(lo), kOp, ": param dt_min is NaN");
  EK_CHECK_ARG(!std::isnan(hi), kOp, ": param dt_max is NaN");
  EK_CHECK_ARG(lo <= hi, kOp, ": param dt_min=", lo, " is greater than dt_max=", hi);
  a.dt_min = static_cast<float>(lo);
  a.dt_max = static_cast<float>(hi);
  return a;
}

}  // namespace ek
