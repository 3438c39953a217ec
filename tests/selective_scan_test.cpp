// selective_scan: every kernel on every device against the double reference
// over the case list and extra tunings, split invariance (one call == two
// calls with the state handed over), chained decode steps == one scan (f32
// and f16 activations), f16 activations == f32 activations of the same
// values, f16 storage within ops.md's 1e-5 of the fp32 result, and bad
// inputs (mixed activation dtypes included) rejected with messages that name
// the argument.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include "kernels/selective_scan/selective_scan.h"
#include "runtime/runtime.h"
#include "tests/scan_test_util.h"

namespace ek {
namespace {

const OpDef& def() { return Registry::instance().op("selective_scan"); }

// Devices to test: EK_TEST_BACKENDS (comma list) or all that are present.
DeviceSet& devices() {
  static DeviceSet set = open_devices(std::getenv("EK_TEST_BACKENDS") ? std::getenv("EK_TEST_BACKENDS") : "");
  return set;
}

struct Target {
  Device* dev;
  const KernelImpl* kernel;
  std::string name() const { return dev->profile().label() + " " + kernel->id(); }
};

std::vector<Target> targets(const OpCall& call) {
  std::vector<Target> out;
  for (auto& d : devices().devices)
    for (const KernelImpl* k : Registry::instance().kernels("selective_scan", d->backend()))
      if (!k->ineligible_reason || k->ineligible_reason(d->profile(), call).empty()) out.push_back({d.get(), k});
  return out;
}

void run(const Target& t, const OpCall& call, const Tuning& extra = {}) {
  Tuning tuning = t.kernel->default_tuning();
  for (const auto& kv : extra) tuning[kv.first] = kv.second;
  auto inv = t.kernel->bind(*t.dev, call, tuning);
  inv->execute();
  inv->read_outputs();
}

OwnedCall reference_of(const OwnedCall& oc) {
  OwnedCall ref;
  ref.call = oc.call;
  for (const auto& kv : def().infer_outputs(oc.call)) ref.allocate(kv.first, kv.second.dtype, kv.second.shape);
  def().reference(ref.call);
  return ref;
}

double worst_nmse = 0;

void expect_close(const OwnedCall& got, const OwnedCall& ref, double bound, const std::string& what) {
  for (const char* out : {"y", "hT"}) {
    const TensorRef& g = got.call.get(out);
    const TensorRef& r = ref.call.get(out);
    const double e = nmse(g, r);
    worst_nmse = std::max(worst_nmse, e);
    EXPECT_LE(e, bound) << what << " output " << out;
    EXPECT_EQ(count_nonfinite_where_ref_finite(g, r), 0) << what << " output " << out;
  }
}

TEST(SelectiveScan, CpuVariantsRegistered) {
  std::set<std::string> variants;
  for (const KernelImpl* k : Registry::instance().kernels("selective_scan", "cpu")) variants.insert(k->variant);
#if defined(__x86_64__)
  EXPECT_TRUE(variants.count("halide_sse41")) << "the baseline CPU build must always exist";
  EXPECT_TRUE(variants.count("halide_avx2"));
  EXPECT_TRUE(variants.count("halide_avx512"));
#elif defined(__aarch64__)
  EXPECT_TRUE(variants.count("halide_neon"));
#endif
}

TEST(SelectiveScan, AllCasesAllKernelsMatchReference) {
  for (const OpCase& c : def().cases()) {
    if (c.tags.count("bench") && !c.tags.count("realistic")) continue;
    OwnedCall oc = make_call(def(), c, 7);
    const OwnedCall ref = reference_of(oc);
    const auto ts = targets(oc.call);
    EXPECT_FALSE(ts.empty()) << c.name;
    for (const Target& t : ts) {
      // Default tuning plus a short segment (many state hand-overs).
      for (int64_t chunk : {int64_t(0), int64_t(16)}) {
        Tuning extra;
        if (chunk) extra["chunk"] = chunk;
        std::memset(oc.call.get("y").data, 0xff, oc.call.get("y").nbytes());  // NaN: must be overwritten
        run(t, oc.call, extra);
        expect_close(oc, ref, t.kernel->nmse_bound, cat(t.name(), " case '", c.name, "' chunk=", chunk));
      }
    }
  }
  std::printf("worst nmse over all cases and kernels: %.3g\n", worst_nmse);
}

// A call over tokens [t0, t0+len) of `full` with h0 given by `state`.
OwnedCall slice_tokens(const OwnedCall& full, int64_t t0, int64_t len, const TensorRef* state) {
  const SelectiveScanArgs a = SelectiveScanArgs::parse(full.call);
  OwnedCall oc;
  oc.call.op = "selective_scan";
  oc.call.params = full.call.params;
  auto copy_tokens = [&](const char* name, int64_t row) {  // row = elements per token
    const TensorRef& src = full.call.get(name);
    const size_t es = dtype_size(src.dtype);
    Shape shape = src.shape;
    shape[1] = len;
    oc.allocate(name, src.dtype, shape);
    for (int64_t b = 0; b < a.batch; ++b)
      std::memcpy(static_cast<char*>(oc.storage[name].data()) + b * len * row * es,
                  static_cast<const char*>(src.data) + (b * a.tokens + t0) * row * es, static_cast<size_t>(len * row) * es);
  };
  for (const char* name : {"u", "delta", "z"})
    if (full.call.find(name)) copy_tokens(name, a.channels);
  for (const char* name : {"Bm", "Cm"}) copy_tokens(name, a.groups * a.state);
  for (const char* name : {"A", "Dskip", "delta_bias"})
    if (full.call.find(name)) oc.call.tensors[name] = full.call.get(name);
  if (state) oc.call.tensors["h0"] = *state;
  for (const auto& kv : def().infer_outputs(oc.call)) oc.allocate(kv.first, kv.second.dtype, kv.second.shape);
  return oc;
}

OpCase split_case(int64_t B, int64_t T, int64_t D, int64_t N, int64_t G, bool f16 = false) {
  OpCase c;
  c.op = "selective_scan";
  c.name = "split";
  c.dims = {{"B", B}, {"T", T}, {"D", D}, {"N", N}, {"G", G}, {"dskip", 1}, {"z", 1},
            {"bias", 1}, {"h0", 1}, {"a_mode", 0}, {"delta_mode", 0}, {"f16", f16 ? 1 : 0}};
  c.params.set("delta_softplus", true);
  return c;
}

TEST(SelectiveScan, SplitInvariance) {
  const OwnedCall full = make_call(def(), split_case(2, 90, 80, 16, 1), 11);
  for (const Target& t : targets(full.call)) {
    OwnedCall one;  // full's inputs, its own outputs
    one.call = full.call;
    for (const auto& kv : def().infer_outputs(one.call)) one.allocate(kv.first, kv.second.dtype, kv.second.shape);
    run(t, one.call);
    for (int64_t cut : {int64_t(1), int64_t(37), int64_t(64), int64_t(89)}) {
      OwnedCall first = slice_tokens(full, 0, cut, full.call.find("h0"));
      run(t, first.call);
      OwnedCall second = slice_tokens(full, cut, 90 - cut, &first.call.get("hT"));
      run(t, second.call);
      // y of the two calls, stitched, against y of the one call.
      const int64_t D = 80;
      double num = 0, den = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t tt = 0; tt < 90; ++tt)
          for (int64_t d = 0; d < D; ++d) {
            const float want = one.call.get("y").as<float>()[(b * 90 + tt) * D + d];
            const float got = tt < cut ? first.call.get("y").as<float>()[(b * cut + tt) * D + d]
                                       : second.call.get("y").as<float>()[(b * (90 - cut) + tt - cut) * D + d];
            num += double(got - want) * (got - want);
            den += double(want) * want;
          }
      EXPECT_LE(num / den, 1e-10) << t.name() << " cut=" << cut;
      EXPECT_LE(nmse(second.call.get("hT"), one.call.get("hT")), 1e-10) << t.name() << " cut=" << cut;
    }
  }
}

TEST(SelectiveScan, ChainedDecodeStepsEqualOneScan) {
  const int64_t T = 12;
  for (bool f16 : {false, true}) {
    const OwnedCall full = make_call(def(), split_case(1, T, 48, 16, 3, f16), 5);
    const OwnedCall ref = reference_of(full);
    for (const Target& t : targets(full.call)) {
      std::vector<OwnedCall> steps;
      steps.reserve(T);  // `state` points into the previous step
      const TensorRef* state = full.call.find("h0");
      double num = 0, den = 0;
      for (int64_t s = 0; s < T; ++s) {
        steps.push_back(slice_tokens(full, s, 1, state));
        run(t, steps.back().call);
        state = &steps.back().call.get("hT");
        for (int64_t d = 0; d < 48; ++d) {
          const double want = ref.call.get("y").as<float>()[s * 48 + d];
          const double got = steps.back().call.get("y").as<float>()[d];
          num += (got - want) * (got - want);
          den += want * want;
        }
      }
      EXPECT_LE(num / den, 1e-7) << t.name() << (f16 ? " f16" : " f32");
      EXPECT_LE(nmse(*state, ref.call.get("hT")), 1e-7) << t.name() << (f16 ? " f16" : " f32");
    }
  }
}

// The state updated in place (hT is h0) gives bit for bit what a separate hT
// gives, on every kernel: the decode step, a one-segment and a multi-segment
// scan, with groups, f32 and f16 activations.
TEST(SelectiveScan, StateUpdatedInPlace) {
  for (bool f16 : {false, true})
    for (int64_t T : {int64_t(1), int64_t(7), int64_t(150)}) {
      const OwnedCall separate = make_call(def(), split_case(2, T, 80, 16, 2, f16), 17);
      for (const Target& t : targets(separate.call)) {
        run(t, separate.call);
        OwnedCall in_place = scan_test::with_state_in_place(def(), separate.call);
        run(t, in_place.call);
        const std::string what = cat(t.name(), " T=", T, f16 ? " f16" : " f32");
        EXPECT_TRUE(scan_test::same_bits(in_place.call.get("y"), separate.call.get("y"))) << what;
        EXPECT_TRUE(scan_test::same_bits(in_place.call.get("h0"), separate.call.get("hT"))) << what;
      }
    }
}

// ------------------------------------------------------------ f16 activations

// See tests/scan_test_util.h.
OwnedCall widened_to_f32(const OpCall& call) { return scan_test::widened_to_f32(def(), call); }
OwnedCall rounded_to_f16(const OpCall& call) {
  return scan_test::rounded_to_f16(def(), call, {"u", "delta", "Bm", "Cm", "z"});
}

// f16 activations give what f32 activations of the same values give: the
// kernels widen exactly and run the same fp32 arithmetic. Decode step, a
// multi-segment scan with groups and odd sizes, and a short segment.
TEST(SelectiveScan, F16ActivationsEqualF32OfSameValues) {
  struct Shape5 { int64_t B, T, D, N, G; };
  for (const Shape5& s : {Shape5{3, 1, 37, 16, 1}, Shape5{2, 77, 45, 5, 3}, Shape5{1, 130, 64, 16, 1}}) {
    OwnedCall h = make_call(def(), split_case(s.B, s.T, s.D, s.N, s.G, true), 21);
    ASSERT_EQ(h.call.get("u").dtype, DType::f16);
    OwnedCall f = widened_to_f32(h.call);
    for (const Target& t : targets(h.call))
      for (int64_t chunk : {int64_t(0), int64_t(16)}) {
        Tuning extra;
        if (chunk) extra["chunk"] = chunk;
        run(t, h.call, extra);
        run(t, f.call, extra);
        const std::string what = cat(t.name(), " B=", s.B, " T=", s.T, " D=", s.D, " N=", s.N, " G=", s.G, " chunk=", chunk);
        expect_close(h, f, 1e-12, what);
      }
  }
}

// ops.md's accuracy table: f16 storage of activations, fp32 accumulation,
// nmse <= 1e-5 against the fp32 (here: double) result of the unrounded
// inputs. Decode and a prefill with every option.
TEST(SelectiveScan, F16StorageWithinOpsBound) {
  for (int64_t T : {int64_t(1), int64_t(64)}) {
    const OwnedCall exact = make_call(def(), split_case(2, T, 256, 16, 2), 31);
    const OwnedCall ref = reference_of(exact);
    OwnedCall h = rounded_to_f16(exact.call);
    for (const Target& t : targets(h.call)) {
      run(t, h.call);
      scan_test::expect_f16_storage_within_ops_bound(h.call, ref.call, cat(t.name(), " T=", T));
    }
  }
}

TEST(SelectiveScan, NanPropagates) {
  OwnedCall oc = make_call(def(), split_case(1, 5, 32, 16, 1), 3);
  oc.storage["u"].as<float>()[2 * 32 + 7] = NAN;  // token 2, channel 7
  for (const Target& t : targets(oc.call)) {
    run(t, oc.call);
    EXPECT_TRUE(std::isnan(oc.call.get("y").as<float>()[2 * 32 + 7])) << t.name();
    EXPECT_TRUE(std::isnan(oc.call.get("hT").as<float>()[7 * 16])) << t.name();
    EXPECT_FALSE(std::isnan(oc.call.get("y").as<float>()[2 * 32 + 8])) << t.name();
  }
}

// ---------------------------------------------------------------- bad input

void expect_rejected(const std::function<void(OwnedCall&)>& spoil, const std::string& needle) {
  OwnedCall oc = make_call(def(), split_case(2, 6, 32, 16, 2), 1);
  spoil(oc);
  std::vector<float> y_before(static_cast<size_t>(2 * 6 * 32), 1234.5f);
  if (oc.call.find("y") && oc.call.get("y").nbytes() == y_before.size() * 4)
    std::memcpy(oc.call.get("y").data, y_before.data(), y_before.size() * 4);
  for (auto& d : devices().devices) {
    try {
      run_op(*d, oc.call);
      ADD_FAILURE() << "accepted a call that should fail with '" << needle << "'";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << "message: " << e.what();
      EXPECT_NE(std::string(e.what()).find("selective_scan"), std::string::npos) << "message: " << e.what();
    }
    if (oc.call.find("y") && oc.call.get("y").nbytes() == y_before.size() * 4)
      EXPECT_EQ(std::memcmp(oc.call.get("y").data, y_before.data(), y_before.size() * 4), 0) << "output written on error";
  }
}

void reshape(OwnedCall& oc, const std::string& name, Shape shape, DType dt = DType::f32) { oc.allocate(name, dt, shape); }

TEST(SelectiveScan, BadInputsNameTheArgument) {
  expect_rejected([](OwnedCall& oc) { oc.call.tensors.erase("u"); }, "missing tensor 'u'");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "u", {2, 6}); }, "u has 2 dims");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "u", {2, 6, 32}, DType::i8); }, "u has dtype i8, expected f32|f16");
  // The activations share u's dtype; parameters and state are f32.
  expect_rejected([](OwnedCall& oc) { reshape(oc, "u", {2, 6, 32}, DType::f16); }, "delta has dtype f32, expected f16 like u");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 2, 16}, DType::f16); }, "Bm has dtype f16, expected f32 like u");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Cm", {2, 6, 2, 16}, DType::f16); }, "Cm has dtype f16, expected f32 like u");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "z", {2, 6, 32}, DType::f16); }, "z has dtype f16, expected f32 like u");
  expect_rejected(
      [](OwnedCall& oc) {
        for (const char* name : {"u", "delta", "z"}) reshape(oc, name, {2, 6, 32}, DType::f16);
        reshape(oc, "Bm", {2, 6, 2, 16}, DType::f16);  // Cm stays f32
      },
      "Cm has dtype f32, expected f16 like u");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {32, 16}, DType::f16); }, "A has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Dskip", {32}, DType::f16); }, "Dskip has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "delta_bias", {32}, DType::f16); }, "delta_bias has dtype f16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {2, 32, 16}, DType::f16); }, "h0 has dtype f16, expected f32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "y", {2, 6, 32}, DType::f16); }, "output y has dtype f16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "delta", {2, 6, 31}); }, "delta has shape");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {31, 16}); }, "A dim 0 is 31, expected D=32");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {32, 300}); }, "A state size N=300");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "A", {32, 0}); }, "A state size N=0");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 3, 16}); }, "not a multiple of Bm groups G=3");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 5, 2, 16}); }, "Bm dim 1 is 5, expected T=6");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Bm", {2, 6, 2, 8}); }, "Bm dim 3 is 8, expected N=16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Cm", {2, 6, 1, 16}); }, "Cm has shape");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "Dskip", {33}); }, "Dskip dim 0 is 33");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "delta_bias", {32, 1}); }, "delta_bias has 2 dims");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "z", {2, 7, 32}); }, "z has shape");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {2, 32, 15}); }, "h0 dim 2 is 15, expected N=16");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "h0", {1, 32, 16}); }, "h0 dim 0 is 1, expected B=2");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "u", {2, 0, 32}); }, "tokens T=0");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("delta_softplus", std::string("maybe")); },
                  "delta_softplus='maybe'");
  expect_rejected([](OwnedCall& oc) { oc.call.params.set("chunk", int64_t(8)); }, "unknown param 'chunk'");
  expect_rejected([](OwnedCall& oc) { reshape(oc, "hT", {2, 32, 8}); }, "output hT has shape");
  expect_rejected([](OwnedCall& oc) {  // hT one element into h0: a partial overlap
    oc.call.tensors["hT"] = oc.call.get("h0");
    oc.call.tensors["hT"].data = oc.call.get("h0").as<float>() + 1;
  }, "output hT overlaps tensor h0 without being the same tensor");
  expect_rejected([](OwnedCall& oc) { oc.call.tensors["y"] = oc.call.get("u"); }, "output y overlaps tensor u");
}

}  // namespace
}  // namespace ek
