// Contract, reference and case list of selective_scan (Mamba-1).
#include <cmath>

#include "kernels/selective_scan/selective_scan.h"

namespace ek {
namespace {

constexpr const char* kOp = "selective_scan";

double softplus(double x) { return x <= 20.0 ? std::log1p(std::exp(x)) : x; }

void reference(const OpCall& call) {
  const SelectiveScanArgs a = SelectiveScanArgs::parse(call);
  const TensorRef& u = call.get("u");
  const TensorRef& delta = call.get("delta");
  const TensorRef& A = call.get("A");
  const TensorRef& Bm = call.get("Bm");
  const TensorRef& Cm = call.get("Cm");
  const TensorRef* Dskip = call.find("Dskip");
  const TensorRef* z = call.find("z");
  const TensorRef* bias = call.find("delta_bias");
  const TensorRef* h0 = call.find("h0");
  float* y = call.get("y").as<float>();
  float* hT = call.get("hT").as<float>();
  const int64_t T = a.tokens, D = a.channels, N = a.state, G = a.groups, dpg = a.channels_per_group();
  std::vector<double> h(static_cast<size_t>(N));
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = d / dpg;
      for (int64_t n = 0; n < N; ++n) h[n] = h0 ? load_as_double(*h0, (b * D + d) * N + n) : 0.0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t td = (b * T + t) * D + d;
        double dt = load_as_double(delta, td) + (bias ? load_as_double(*bias, d) : 0.0);
        if (a.delta_softplus) dt = softplus(dt);
        const double ut = load_as_double(u, td);
        const int64_t bc = ((b * T + t) * G + g) * N;
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = std::exp(dt * load_as_double(A, d * N + n)) * h[n] + dt * load_as_double(Bm, bc + n) * ut;
          acc += h[n] * load_as_double(Cm, bc + n);
        }
        if (Dskip) acc += load_as_double(*Dskip, d) * ut;
        if (z) {
          const double zt = load_as_double(*z, td);
          acc *= zt / (1.0 + std::exp(-zt));
        }
        y[td] = static_cast<float>(acc);
      }
      for (int64_t n = 0; n < N; ++n) hT[(b * D + d) * N + n] = static_cast<float>(h[n]);
    }
}

// Case dims: B, T, D, N, G; option switches dskip, z, bias, h0; data modes
// a_mode (0: A in [-16, -0.5], 1: very negative A in [-1e4, -50]) and
// delta_mode (0: typical, 1: delta+bias around the softplus threshold 20);
// f16 (optional, default 0): the activations u, delta, Bm, Cm, z in f16.
OpCase make_case(std::string name, int64_t B, int64_t T, int64_t D, int64_t N, int64_t G, bool all_options,
                 std::set<std::string> tags) {
  OpCase c;
  c.op = kOp;
  c.name = std::move(name);
  const int64_t on = all_options ? 1 : 0;
  c.dims = {{"B", B}, {"T", T}, {"D", D}, {"N", N}, {"G", G}, {"dskip", on}, {"z", on},
            {"bias", on}, {"h0", on}, {"a_mode", 0}, {"delta_mode", 0}, {"f16", 0}};
  c.params.set("delta_softplus", all_options);
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
  // Realistic: shapes.json models. Decode (T=1 with state) at full size; prefill
  // with T reduced to keep the double-precision reference cheap (the full
  // T=512/2048 runs are in bench/scan_bench.cpp).
  add(make_case("mamba-130m D=1536 N=16 T=64 all options", 1, 64, 1536, 16, 1, true, {"realistic", "smoke"}));
  add(make_case("mamba-2.8b D=5120 N=16 decode T=1", 1, 1, 5120, 16, 1, true, {"realistic", "bench"}));
  add(make_case("mamba-2.8b D=5120 N=16 T=48", 1, 48, 5120, 16, 1, true, {"realistic"}));
  add(make_case("jamba-v0.1 D=8192 N=16 decode T=1", 1, 1, 8192, 16, 1, true, {"realistic", "bench"}));
  add(make_case("jamba-v0.1 D=8192 N=16 T=16 B=2", 2, 16, 8192, 16, 1, true, {"realistic"}));
  add(make_case("mamba-130m D=1536 N=16 T=512", 1, 512, 1536, 16, 1, true, {"realistic", "bench"}));
  // Edge shapes and options.
  add(make_case("edge: T=1 without h0", 2, 1, 64, 16, 1, false, {"edge"}));
  add(make_case("edge: T=1 with h0 odd D=37", 3, 1, 37, 16, 1, true, {"edge", "smoke"}));
  // 150 channels per group: one whole 128-channel tile and a 22-channel rest
  // (the CPU step's N = 16 build and general build in one call).
  add(make_case("edge: T=1 B=2 D=300 G=2, a tile and a rest per group", 2, 1, 300, 16, 2, true, {"edge"}));
  add(make_case("edge: T=77 (no chunk multiple) D=48", 1, 77, 48, 16, 1, true, {"edge"}));
  add(make_case("edge: N=1", 2, 19, 32, 1, 1, true, {"edge"}));
  add(make_case("edge: N=256 T=9", 1, 9, 40, 256, 2, true, {"edge"}));
  add(make_case("edge: N=5 D=7 T=13", 1, 13, 7, 5, 7, true, {"edge"}));
  add(make_case("edge: G=D=32", 1, 21, 32, 16, 32, true, {"edge"}));
  add(make_case("edge: G=4 D=64 (16 channels per group)", 2, 33, 64, 16, 4, true, {"edge"}));
  add(make_case("edge: G=2 D=40 (20 channels per group)", 1, 17, 40, 16, 2, true, {"edge"}));
  add(make_case("edge: no options", 1, 40, 96, 16, 1, false, {"edge"}));
  add(make_case("edge: D=1 N=1 T=1", 1, 1, 1, 1, 1, true, {"edge"}));
  {
    OpCase c = make_case("edge: very negative A", 1, 50, 64, 16, 1, true, {"edge"});
    c.dims["a_mode"] = 1;
    add(std::move(c));
  }
  {
    OpCase c = make_case("edge: delta near softplus threshold 20", 1, 30, 64, 16, 1, true, {"edge"});
    c.dims["delta_mode"] = 1;
    add(std::move(c));
  }
  {
    OpCase c = make_case("edge: only Dskip and z", 1, 25, 80, 16, 1, false, {"edge"});
    c.dims["dskip"] = 1;
    c.dims["z"] = 1;
    add(std::move(c));
  }
  {
    OpCase c = make_case("edge: only delta_bias, softplus", 1, 25, 80, 16, 1, false, {"edge"});
    c.dims["bias"] = 1;
    c.params.set("delta_softplus", true);
    add(std::move(c));
  }
  // f16 activations (u, delta, Bm, Cm, z); state, parameters and y stay f32.
  // Odd element counts exercise the last half-word of packed f16 reads.
  add(f16_case(make_case("f16: mamba-2.8b D=5120 N=16 decode T=1", 1, 1, 5120, 16, 1, true, {"realistic", "bench"})));
  add(f16_case(make_case("f16: mamba-130m D=1536 N=16 T=64 all options", 1, 64, 1536, 16, 1, true, {"realistic"})));
  add(f16_case(make_case("f16: mamba-130m D=1536 N=16 T=512", 1, 512, 1536, 16, 1, true, {"bench"})));
  add(f16_case(make_case("edge f16: T=1 with h0 odd D=37 B=3", 3, 1, 37, 16, 1, true, {"edge"})));
  add(f16_case(make_case("edge f16: T=1 B=2 D=300 G=2, a tile and a rest per group", 2, 1, 300, 16, 2, true, {"edge"})));
  add(f16_case(make_case("edge f16: T=77 D=45 N=5 G=3, odd sizes", 1, 77, 45, 5, 3, true, {"edge"})));
  add(f16_case(make_case("edge f16: no options T=40 D=96", 1, 40, 96, 16, 1, false, {"edge"})));
  {
    OpCase c = f16_case(make_case("edge f16: delta near softplus threshold 20", 1, 30, 64, 16, 1, true, {"edge"}));
    c.dims["delta_mode"] = 1;
    add(std::move(c));
  }
  return out;
}

void make_inputs(const OpCase& c, std::mt19937_64& rng, OwnedCall& oc) {
  const int64_t B = c.dims.at("B"), T = c.dims.at("T"), D = c.dims.at("D"), N = c.dims.at("N"),
                G = c.dims.at("G");
  const bool near_threshold = c.dims.at("delta_mode") == 1;
  const bool has_bias = c.dims.at("bias") != 0;
  const bool softplus = c.params.get_bool(kOp, "delta_softplus", false);
  const auto f16 = c.dims.find("f16");
  const DType act = f16 != c.dims.end() && f16->second ? DType::f16 : DType::f32;
  oc.allocate("u", act, {B, T, D});
  fill_uniform(oc.storage["u"], rng, -1.0, 1.0);
  oc.allocate("delta", act, {B, T, D});
  if (near_threshold)
    fill_uniform(oc.storage["delta"], rng, has_bias ? 19.0 : 18.0, has_bias ? 21.0 : 22.0);
  else if (softplus)
    fill_uniform(oc.storage["delta"], rng, -3.0, 1.0);  // softplus -> dt in ~[0.05, 1.3] (after bias)
  else
    fill_uniform(oc.storage["delta"], rng, 0.001, 0.2);  // dt used as given
  oc.allocate("A", DType::f32, {D, N});
  if (c.dims.at("a_mode") == 1)
    fill_uniform(oc.storage["A"], rng, -1e4, -50.0);
  else
    fill_uniform(oc.storage["A"], rng, -16.0, -0.5);
  oc.allocate("Bm", act, {B, T, G, N});
  fill_uniform(oc.storage["Bm"], rng, -1.0, 1.0);
  oc.allocate("Cm", act, {B, T, G, N});
  fill_uniform(oc.storage["Cm"], rng, -1.0, 1.0);
  if (c.dims.at("dskip")) {
    oc.allocate("Dskip", DType::f32, {D});
    fill_uniform(oc.storage["Dskip"], rng, 0.5, 1.5);
  }
  if (c.dims.at("z")) {
    oc.allocate("z", act, {B, T, D});
    fill_uniform(oc.storage["z"], rng, -3.0, 3.0);
  }
  if (has_bias) {
    oc.allocate("delta_bias", DType::f32, {D});
    if (near_threshold)
      fill_uniform(oc.storage["delta_bias"], rng, -1.0, 1.0);
    else
      fill_uniform(oc.storage["delta_bias"], rng, -2.0, -0.5);
  }
  if (c.dims.at("h0")) {
    oc.allocate("h0", DType::f32, {B, D, N});
    fill_uniform(oc.storage["h0"], rng, -2.0, 2.0);
  }
}

Cost cost(const OpCall& call) {
  const SelectiveScanArgs a = SelectiveScanArgs::parse(call);
  const double btd = static_cast<double>(a.batch) * a.tokens * a.channels;
  const double updates = btd * a.state;
  const double bc = static_cast<double>(a.batch) * a.tokens * a.groups * a.state;
  const double states = static_cast<double>(a.batch) * a.channels * a.state;
  const double act = static_cast<double>(dtype_size(a.activations));  // u, delta, z, Bm, Cm
  Cost c;
  c.bytes = act * (btd * (2 + (a.has_z ? 1 : 0)) + 2 * bc) +
            4.0 * (btd /* y */ + a.channels * a.state + a.channels * ((a.has_dskip ? 1 : 0) + (a.has_delta_bias ? 1 : 0)) +
                   states * (a.has_h0 ? 2 : 1));
  // Per state update: dt*A, exp (counted as one op), h = dA*h + (dt*u)*B, y += h*C.
  c.flops = updates * 7 + btd * 12;
  return c;
}

const RegisterOp reg(OpDef{
    kOp,
    "Mamba-1 selective scan: h = exp(dt*A)*h + dt*B*u, y = C.h (+ Dskip*u) (* silu(z)), with final state",
    {{"u", true, false, "u [B, T, D] f32|f16 (u, delta, Bm, Cm, z share one dtype)"},
     {"delta", true, false, "delta [B, T, D] f32|f16"},
     {"A", true, false, "A [D, N] f32"},
     {"Bm", true, false, "Bm [B, T, G, N] f32|f16"},
     {"Cm", true, false, "Cm [B, T, G, N] f32|f16"},
     {"Dskip", false, false, "Dskip [D] f32"},
     {"z", false, false, "z [B, T, D] f32|f16 (gate: y *= silu(z))"},
     {"delta_bias", false, false, "delta_bias [D] f32"},
     {"h0", false, false, "h0 [B, D, N] f32 initial state (zeros if absent)"},
     {"y", true, true, "y [B, T, D] f32"},
     {"hT", true, true, "hT [B, D, N] f32 final state"}},
    {"delta_softplus"},
    [](const OpCall& call) {
      const SelectiveScanArgs a = SelectiveScanArgs::parse(call);
      return std::map<std::string, TensorDesc>{{"y", {DType::f32, {a.batch, a.tokens, a.channels}}},
                                               {"hT", {DType::f32, {a.batch, a.channels, a.state}}}};
    },
    reference,
    cost,
    cases,
    make_inputs,
    {{"hT", "h0"}},  // the state may be updated in place
});

}  // namespace

SelectiveScanArgs SelectiveScanArgs::parse(const OpCall& call) {
  const TensorRef& u = call.get("u");
  SelectiveScanArgs a;
  check_rank(kOp, "u", u, 3);
  check_dtype(kOp, "u", u, {DType::f32, DType::f16});
  a.activations = u.dtype;
  // The per-token activations share u's dtype: one kernel build per dtype
  // instead of one per combination.
  auto check_activation = [&](const char* name, const TensorRef& t) {
    EK_CHECK_ARG(t.dtype == a.activations, kOp, ": ", name, " has dtype ", dtype_name(t.dtype), ", expected ",
                 dtype_name(a.activations), " like u (u, delta, Bm, Cm and z share one dtype)");
  };
  a.batch = u.shape[0];
  a.tokens = u.shape[1];
  a.channels = u.shape[2];
  EK_CHECK_ARG(a.batch >= 1, kOp, ": u batch B=", a.batch, ", expected >= 1");
  EK_CHECK_ARG(a.tokens >= 1, kOp, ": u tokens T=", a.tokens, ", expected >= 1");
  EK_CHECK_ARG(a.channels >= 1, kOp, ": u channels D=", a.channels, ", expected >= 1");
  const int64_t limit = (int64_t(1) << 31) - 1;
  EK_CHECK_ARG(shape_numel(u.shape, cat(kOp, ": u")) <= limit, kOp, ": u has more than 2^31-1 elements");

  auto check_like_u = [&](const char* name, const TensorRef& t) {
    check_rank(kOp, name, t, 3);
    check_activation(name, t);
    EK_CHECK_ARG(t.shape == u.shape, kOp, ": ", name, " has shape ", shape_str(t.shape), ", expected u's shape ",
                 shape_str(u.shape));
  };
  check_like_u("delta", call.get("delta"));

  const TensorRef& A = call.get("A");
  check_rank(kOp, "A", A, 2);
  check_dtype(kOp, "A", A, {DType::f32});
  check_dim(kOp, "A", A, 0, a.channels, "D");
  a.state = A.shape[1];
  EK_CHECK_ARG(a.state >= 1 && a.state <= kSelectiveScanMaxState, kOp, ": A state size N=", a.state,
               " is not in 1..", kSelectiveScanMaxState);

  const TensorRef& Bm = call.get("Bm");
  check_rank(kOp, "Bm", Bm, 4);
  check_activation("Bm", Bm);
  check_dim(kOp, "Bm", Bm, 0, a.batch, "B");
  check_dim(kOp, "Bm", Bm, 1, a.tokens, "T");
  a.groups = Bm.shape[2];
  EK_CHECK_ARG(a.groups >= 1, kOp, ": Bm groups G=", a.groups, ", expected >= 1");
  EK_CHECK_ARG(a.channels % a.groups == 0, kOp, ": D=", a.channels, " is not a multiple of Bm groups G=", a.groups);
  check_dim(kOp, "Bm", Bm, 3, a.state, "N");
  EK_CHECK_ARG(shape_numel(Bm.shape, cat(kOp, ": Bm")) <= limit, kOp, ": Bm has more than 2^31-1 elements");
  const TensorRef& Cm = call.get("Cm");
  check_rank(kOp, "Cm", Cm, 4);
  check_activation("Cm", Cm);
  EK_CHECK_ARG(Cm.shape == Bm.shape, kOp, ": Cm has shape ", shape_str(Cm.shape), ", expected Bm's shape ",
               shape_str(Bm.shape));

  auto check_per_channel = [&](const char* name, const TensorRef& t) {
    check_rank(kOp, name, t, 1);
    check_dtype(kOp, name, t, {DType::f32});
    check_dim(kOp, name, t, 0, a.channels, "D");
  };
  if (const TensorRef* t = call.find("Dskip")) {
    check_per_channel("Dskip", *t);
    a.has_dskip = true;
  }
  if (const TensorRef* t = call.find("delta_bias")) {
    check_per_channel("delta_bias", *t);
    a.has_delta_bias = true;
  }
  if (const TensorRef* t = call.find("z")) {
    check_like_u("z", *t);
    a.has_z = true;
  }
  if (const TensorRef* t = call.find("h0")) {
    check_rank(kOp, "h0", *t, 3);
    check_dtype(kOp, "h0", *t, {DType::f32});
    check_dim(kOp, "h0", *t, 0, a.batch, "B");
    check_dim(kOp, "h0", *t, 1, a.channels, "D");
    check_dim(kOp, "h0", *t, 2, a.state, "N");
    a.has_h0 = true;
  }
  EK_CHECK_ARG(a.batch * a.channels * a.state <= limit, kOp, ": state B*D*N=", a.batch * a.channels * a.state,
               " exceeds 2^31-1 elements");
  a.delta_softplus = call.params.get_bool(kOp, "delta_softplus", false);
  return a;
}

}  // namespace ek
