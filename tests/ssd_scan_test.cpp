// ssd_scan: every kernel on every device against the double reference over
// the case list, in both forms (sequential and chunked, several chunk
// lengths); chunked == sequential; split invariance (one call == two calls
// with the state handed over); chained decode steps == one scan (f32 and f16
// activations); f16 activations == f32 activations of the same values in
// every form; f16 storage within ops.md's 1e-5 of the fp32 result; bad inputs
// (mixed activation dtypes included) rejected with messages that name the
// argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "kernels/ssd_scan/ssd_scan.h"
#include "runtime/runtime.h"
#include "tests/scan_test_util.h"

namespace ek {
namespace {

const OpDef& def() { return Registry::instance().op("ssd_scan"); }

DeviceSet& devices() {
  static DeviceSet set = open_devices(std::getenv("EK_TEST_BACKENDS") ? std::getenv("EK_TEST_BACKENDS") : "");
  return set;
}

struct Target {
  Device* dev;
  const KernelImpl* kernel;
  std::string name() const { return dev->profile().label() + " " + kernel->id(); }
  bool has_tunable(const std::string& key) const {
    for (const auto& t : kernel->tunables)
      if (t.name == key) return true;
    return false;
  }
};

std::vector<Target> targets(const OpCall& call) {
  std::vector<Target> out;
  for (auto& d : devices().devices)
    for (const KernelImpl* k : Registry::instance().kernels("ssd_scan", d->backend()))
      if (!k->ineligible_reason || k->ineligible_reason(d->profile(), call).empty()) out.push_back({d.get(), k});
  return out;
}

void run(const Target& t, const OpCall& call, const Tuning& extra = {}) {
  Tuning tuning = t.kernel->default_tuning();
  for (const auto& kv : extra)
    if (t.has_tunable(kv.first)) tuning[kv.first] = kv.second;
  auto inv = t.kernel->bind(*t.dev, call, tuning);
  inv->execute();
  inv->read_outputs();
}

// The forms a test walks: CPU kernels expose form/chunk tunables; other
// backends run their default selection.
std::vector<Tuning> forms() {
  return {{}, {{"form", 1}, {"seq_tokens", 3}}, {{"form", 2}, {"chunk", 32}}, {{"form", 2}, {"chunk", 64}},
          {{"form", 2}, {"chunk", 128}}};
}
std::string str(const Tuning& t) {
  std::string s;
  for (const auto& kv : t) s += cat(kv.first, "=", kv.second, " ");
  return s.empty() ? "default" : s;
}

OwnedCall reference_of(const OwnedCall& oc) {
  OwnedCall ref;
  ref.call = oc.call;
  for (const auto& kv : def().infer_outputs(oc.call)) ref.allocate(kv.first, kv.second.dtype, kv.second.shape);
  def().reference(ref.call);
  return ref;
}

double worst_nmse = 0;

void expect_close(const OpCall& got, const OpCall& ref, double bound, const std::string& what) {
  for (const char* out : {"y", "hT"}) {
    const double e = nmse(got.get(out), ref.get(out));
    worst_nmse = std::max(worst_nmse, e);
    EXPECT_LE(e, bound) << what << " output " << out;
    EXPECT_EQ(count_nonfinite_where_ref_finite(got.get(out), ref.get(out)), 0) << what << " output " << out;
  }
}

TEST(SsdScan, CpuVariantsRegistered) {
  std::set<std::string> variants;
  for (const KernelImpl* k : Registry::instance().kernels("ssd_scan", "cpu")) variants.insert(k->variant);
#if defined(__x86_64__)
  EXPECT_TRUE(variants.count("halide_sse41")) << "the baseline CPU build must always exist";
  EXPECT_TRUE(variants.count("halide_avx2"));
  EXPECT_TRUE(variants.count("halide_avx512"));
#elif defined(__aarch64__)
  EXPECT_TRUE(variants.count("halide_neon"));
#endif
}

TEST(SsdScan, AllCasesAllKernelsBothFormsMatchReference) {
  for (const OpCase& c : def().cases()) {
    if (c.tags.count("bench") && !c.tags.count("realistic")) continue;
    OwnedCall oc = make_call(def(), c, 7);
    const OwnedCall ref = reference_of(oc);
    const auto ts = targets(oc.call);
    EXPECT_FALSE(ts.empty()) << c.name;
    for (const Target& t : ts)
      for (const Tuning& form : forms()) {
        std::memset(oc.call.get("y").data, 0xff, oc.call.get("y").nbytes());  // NaN: must be overwritten
        run(t, oc.call, form);
        expect_close(oc.call, ref.call, t.kernel->nmse_bound, cat(t.name(), " case '", c.name, "' ", str(form)));
      }
  }
  std::printf("worst nmse over all cases, kernels and forms: %.3g\n", worst_nmse);
}

OpCase make(int64_t B, int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, bool f16 = false) {
  OpCase c;
  c.op = "ssd_scan";
  c.name = "test";
  c.dims = {{"B", B}, {"T", T}, {"H", H}, {"P", P}, {"N", N}, {"G", G}, {"dskip", 1},
            {"bias", 1}, {"h0", 1}, {"a_mode", 0}, {"dt_mode", 0}, {"f16", f16 ? 1 : 0}};
  c.params.set("dt_softplus", true);
  c.params.set("dt_min", 0.001);
  c.params.set("dt_max", 2.0);
  return c;
}

OwnedCall with_outputs(const OpCall& inputs) {
  OwnedCall oc;
  oc.call = inputs;
  for (const auto& kv : def().infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

TEST(SsdScan, ChunkedAgreesWithSequential) {
  const OwnedCall in = make_call(def(), make(2, 300, 6, 64, 128, 2), 13);
  for (const Target& t : targets(in.call)) {
    if (!t.has_tunable("form")) continue;
    OwnedCall seq = with_outputs(in.call);
    run(t, seq.call, {{"form", 1}});
    for (int64_t chunk : {16, 64, 100, 256}) {
      OwnedCall chk = with_outputs(in.call);
      run(t, chk.call, {{"form", 2}, {"chunk", chunk}});
      EXPECT_LE(nmse(chk.call.get("y"), seq.call.get("y")), 1e-9) << t.name() << " chunk=" << chunk;
      EXPECT_LE(nmse(chk.call.get("hT"), seq.call.get("hT")), 1e-9) << t.name() << " chunk=" << chunk;
    }
  }
}

// A call over tokens [t0, t0+len) of `full` with h0 given by `state`.
OwnedCall slice_tokens(const OpCall& full, int64_t t0, int64_t len, const TensorRef* state) {
  const SsdScanArgs a = SsdScanArgs::parse(full);
  OwnedCall oc;
  oc.call.op = "ssd_scan";
  oc.call.params = full.params;
  auto copy_tokens = [&](const char* name, int64_t row) {
    const TensorRef& src = full.get(name);
    const size_t es = dtype_size(src.dtype);
    Shape shape = src.shape;
    shape[1] = len;
    oc.allocate(name, src.dtype, shape);
    for (int64_t b = 0; b < a.batch; ++b)
      std::memcpy(static_cast<char*>(oc.storage[name].data()) + b * len * row * es,
                  static_cast<const char*>(src.data) + (b * a.tokens + t0) * row * es, static_cast<size_t>(len * row) * es);
  };
  copy_tokens("x", a.heads * a.head_dim);
  copy_tokens("dt", a.heads);
  copy_tokens("Bm", a.groups * a.state);
  copy_tokens("Cm", a.groups * a.state);
  for (const char* name : {"A", "Dskip", "dt_bias"})
    if (full.find(name)) oc.call.tensors[name] = full.get(name);
  if (state) oc.call.tensors["h0"] = *state;
  for (const auto& kv : def().infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

TEST(SsdScan, SplitInvariance) {
  const int64_t T = 150, H = 4, P = 16;
  const OwnedCall in = make_call(def(), make(2, T, H, P, 32, 2), 17);
  for (const Target& t : targets(in.call))
    for (const Tuning& form : forms()) {
      OwnedCall one = with_outputs(in.call);
      run(t, one.call, form);
      for (int64_t cut : {int64_t(1), int64_t(63), int64_t(64), int64_t(149)}) {
        OwnedCall first = slice_tokens(in.call, 0, cut, in.call.find("h0"));
        run(t, first.call, form);
        OwnedCall second = slice_tokens(in.call, cut, T - cut, &first.call.get("hT"));
        run(t, second.call, form);
        double num = 0, den = 0;
        const int64_t row = H * P;
        for (int64_t b = 0; b < 2; ++b)
          for (int64_t tt = 0; tt < T; ++tt)
            for (int64_t i = 0; i < row; ++i) {
              const float want = one.call.get("y").as<float>()[(b * T + tt) * row + i];
              const float got = tt < cut ? first.call.get("y").as<float>()[(b * cut + tt) * row + i]
                                         : second.call.get("y").as<float>()[(b * (T - cut) + tt - cut) * row + i];
              num += double(got - want) * (got - want);
              den += double(want) * want;
            }
        EXPECT_LE(num / den, 1e-9) << t.name() << " " << str(form) << " cut=" << cut;
        EXPECT_LE(nmse(second.call.get("hT"), one.call.get("hT")), 1e-9) << t.name() << " " << str(form) << " cut=" << cut;
      }
    }
}

TEST(SsdScan, ChainedDecodeStepsEqualOneScan) {
  const int64_t T = 10, H = 8, P = 64, N = 128;
  for (bool f16 : {false, true}) {
    const OwnedCall in = make_call(def(), make(1, T, H, P, N, 4, f16), 5);
    const OwnedCall ref = reference_of(in);
    for (const Target& t : targets(in.call)) {
      std::vector<OwnedCall> steps;
      steps.reserve(T);  // `state` points into the previous step
      const TensorRef* state = in.call.find("h0");
      double num = 0, den = 0;
      for (int64_t s = 0; s < T; ++s) {
        steps.push_back(slice_tokens(in.call, s, 1, state));
        run(t, steps.back().call);
        state = &steps.back().call.get("hT");
        for (int64_t i = 0; i < H * P; ++i) {
          const double want = ref.call.get("y").as<float>()[s * H * P + i];
          const double got = steps.back().call.get("y").as<float>()[i];
          num += (got - want) * (got - want);
          den += want * want;
        }
      }
      EXPECT_LE(num / den, 1e-7) << t.name() << (f16 ? " f16" : " f32");
      EXPECT_LE(nmse(*state, ref.call.get("hT")), 1e-7) << t.name() << (f16 ? " f16" : " f32");
    }
  }
}

// ------------------------------------------------------------ f16 activations

// See tests/scan_test_util.h.
OwnedCall widened_to_f32(const OpCall& call) { return scan_test::widened_to_f32(def(), call); }
OwnedCall rounded_to_f16(const OpCall& call) { return scan_test::rounded_to_f16(def(), call, {"x", "dt", "Bm", "Cm"}); }

// f16 activations give what f32 activations of the same values give, in
// every form: the kernels widen exactly and run the same fp32 arithmetic.
// Decode step, a short sequential run, several chunks with odd sizes (the
// CPU's any-shape chunk build), and the register-tiled chunk build.
// The state updated in place (hT is h0) gives bit for bit what a separate hT
// gives, on every kernel and form: the decode step, short and chunked scans.
TEST(SsdScan, StateUpdatedInPlace) {
  for (int64_t T : {int64_t(1), int64_t(5), int64_t(300)}) {
    const OwnedCall separate = make_call(def(), make(2, T, 6, 64, 32, 2), 19);
    for (const Target& t : targets(separate.call))
      for (const Tuning& form : forms()) {
        run(t, separate.call, form);
        OwnedCall in_place = scan_test::with_state_in_place(def(), separate.call);
        run(t, in_place.call, form);
        const std::string what = cat(t.name(), " T=", T, " ", str(form));
        EXPECT_TRUE(scan_test::same_bits(in_place.call.get("y"), separate.call.get("y"))) << what;
        EXPECT_TRUE(scan_test::same_bits(in_place.call.get("h0"), separate.call.get("hT"))) << what;
      }
  }
}

TEST(SsdScan, F16ActivationsEqualF32OfSameValues) {
  struct Shape6 { int64_t B, T, H, P, N, G; };
  for (const Shape6& s : {Shape6{3, 1, 6, 5, 7, 3}, Shape6{2, 3, 4, 16, 32, 2}, Shape6{1, 100, 4, 9, 7, 2},
                          Shape6{1, 70, 4, 64, 128, 1}}) {
    OwnedCall h = make_call(def(), make(s.B, s.T, s.H, s.P, s.N, s.G, true), 21);
    ASSERT_EQ(h.call.get("x").dtype, DType::f16);
    OwnedCall f = widened_to_f32(h.call);
    for (const Target& t : targets(h.call))
      for (const Tuning& form : forms()) {
        run(t, h.call, form);
        run(t, f.call, form);
        const std::string what =
            cat(t.name(), " B=", s.B, " T=", s.T, " H=", s.H, " P=", s.P, " N=", s.N, " G=", s.G, " ", str(form));
        expect_close(h.call, f.call, 1e-12, what);
      }
  }
}

// ops.md's accuracy table: f16 storage of activations, fp32 accumulation,
// nmse <= 1e-5 against the fp32 (here: double) result of the unrounded
// inputs. Decode and a chunked prefill.
TEST(SsdScan, F16StorageWithinOpsBound) {
  for (int64_t T : {int64_t(1), int64_t(80)}) {
    const OwnedCall exact = make_call(def(), make(1, T, 8, 64, 128, 2), 31);
    const OwnedCall ref = reference_of(exact);
    OwnedCall h = rounded_to_f16(exact.call);
    for (const Target& t : targets(h.call)) {
      run(t, h.call);
      scan_test::expect_f16_storage_within_ops_bound(h.call, ref.call, cat(t.name(), " T=", T));
    }
  }
}

TEST(SsdScan, NanPropagates) {
  OwnedCall oc = make_call(def(), make(1, 70, 2, 16, 32, 1), 3);
  oc.storage["x"].as<float>()[(5 * 2 + 1) * 16 + 3] = NAN;  // token 5, head 1, p 3
  for (const Target& t : targets(oc.call))
    for (const Tuning& form : forms()) {
      run(t, oc.call, form);
      EXPECT_TRUE(std::isnan(oc.call.get("y").as<float>()[(5 * 2 + 1) * 16 + 3])) << t.name() << " " << str(form);
      EXPECT_TRUE(std::isnan(oc.call.get("hT").as<float>()[(1 * 16 + 3) * 32])) << t.name() << " " << str(form);
      EXPECT_FALSE(std::isnan(oc.call.get("y").as<float>()[(5 * 2 + 0) * 16 + 3])) << t.name() << " " << str(form);
    }
}

// ---------------------------------------------------------------- bad input

void expect_rejected(const std::function<void(OwnedCall&)>& spoil, const std::string& needle) {
  OwnedCall oc = make_call(def(), make(2, 6, 4, 8, 16, 2), 1);
  spoil(oc);
  const int64_t ny = 2 * 6 * 4 * 8;
  std::vector<float> y_before(static_cast<size_t>(ny), 1234.5f);
  const bool y_ok = oc.call.find("y") && oc.call.get("y").nbytes() == y_before.size() * 4;
  if (y_ok) std::memcpy(oc.call.get("y").data, y_before.data(), y_before.size() * 4);
  for (auto& d : devices().devices) {
    try {
      run_op(*d, oc.call);
      ADD_FAILURE() << "accepted a call that should fail with '" << needle << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
      EXPECT_NE(std::string(e.what()).find("ssd_scan"), std::string::npos) << "message: " << e.what();
    }
    if (y_ok) EXPECT_EQ(std::memcmp(oc.call.get("y").data, y_before.data(), y_before.size() * 4), 0) << "output written";
  }
}

void reshape(OwnedCall& oc, const std::string& name, Shape shape, DType dt = DType::f32) { oc.allocate(name, dt, shape); }

TEST(SsdScan, BadInputsNameTheArgument) {
  expect_rejected([](OwnedCall& oc) { oc.call.tensors.erase("x"); }, "missing tensor 'x'");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "x", {2, 6, 32}); }, "x has 3 dims");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "x", {2, 6, 4, 8}, DType::i8); }, "x has dtype i8, expected f32|f16");
  // The activations share x's dtype; parameters and state are f32.
  expect_rejected([](OwnedCall& oc) { reshape(oc, "x", {2, 6, 4, 8}, DType::f16); }, "dt has dtype f32, expected f16 like x");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "dt", {2, 6, 4}, DType::f16); }, "dt has dtype f16, expected f32 like x");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 2, 16}, DType::f16); }, "Bm has dtype f16, expected f32 like x");
  expect_rejected(
      [](OwnedCall& oc) {
        reshape(oc, "x", {2, 6, 4, 8}, DType::f16);
        reshape(oc, "dt", {2, 6, 4}, DType::f16);
        reshape(oc, "Bm", {2, 6, 2, 16}, DType::f16);  // Cm stays f32
      },
      "Cm has dtype f32, expected f16 like x");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {4}, DType::f16); }, "A has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Dskip", {4}, DType::f16); }, "Dskip has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "dt_bias", {4}, DType::f16); }, "dt_bias has dtype f16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {2, 4, 8, 16}, DType::f16); }, "h0 has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "y", {2, 6, 4, 8}, DType::f16); }, "output y has dtype f16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "dt", {2, 6, 5}); }, "dt dim 2 is 5, expected H=4");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {4, 1}); }, "A has 2 dims");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {3}); }, "A dim 0 is 3, expected H=4");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 3, 16}); }, "H=4 is not a multiple of Bm groups G=3");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 2, 300}); }, "Bm state size N=300");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {1, 6, 2, 16}); }, "Bm dim 0 is 1, expected B=2");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Cm", {2, 6, 2, 8}); }, "Cm has shape");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Dskip", {8}); }, "Dskip dim 0 is 8, expected H=4");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "dt_bias", {4, 1}); }, "dt_bias has 2 dims");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {2, 4, 8, 15}); }, "h0 dim 3 is 15, expected N=16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {2, 4, 7, 16}); }, "h0 dim 2 is 7, expected P=8");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "x", {2, 0, 4, 8}); }, "tokens T=0");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("dt_min", 1.0); oc.call.params.set("dt_max", 0.5); },
                  "dt_min=1 is greater than dt_max=0.5");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("dt_max", std::string("big")); }, "dt_max='big'");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("dt_softplus", std::string("2")); }, "dt_softplus='2'");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("chunk", int64_t(8)); }, "unknown param 'chunk'");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "y", {2, 6, 4, 9}); }, "output y has shape");
  expect_rejected([](OwnedCall& oc) {  // hT one element into h0: a partial overlap
    oc.call.tensors["hT"] = oc.call.get("h0");
    oc.call.tensors["hT"].data = oc.call.get("h0").as<float>() + 1;
  }, "output hT overlaps tensor h0 without being the same tensor");
  expect_rejected([](OwnedCall& oc) { oc.call.tensors["y"] = oc.call.get("x"); }, "output y overlaps tensor x");
}

}  // namespace
}  // namespace ek
