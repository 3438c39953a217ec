// The CPU (Halide AOT) kernels of rms_norm and causal_conv1d: every variant,
// forced one by one, against the op's reference over its whole case list with
// the ops.md bounds; thread counts do not change results; disabled ISA
// features move selection to the next variant; Halide-side failures surface
// as errors, not crashes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include <HalideRuntime.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "backends/cpu/cpu_device.h"
#include "backends/cpu/cpu_thread_pool.h"
#include "runtime/runtime.h"

namespace ek {
namespace {

const char* const kOps[] = {"rms_norm", "causal_conv1d"};

CpuDevice& device() {
  static CpuDevice dev;
  return dev;
}

bool is_f16_case(const OpCase& c) { return c.dims.count("f16") && c.dims.at("f16") != 0; }

// ops.md: f32 activations 1e-7; f16 storage of activations 1e-5.
double bound_for(const OpCase& c) { return is_f16_case(c) ? 1e-5 : 1e-7; }

// Output names of a call (those infer_outputs produces).
std::vector<std::string> outputs_of(const OpDef& def, const OpCall& call) {
  std::vector<std::string> out;
  for (const auto& kv : def.infer_outputs(call)) out.push_back(kv.first);
  return out;
}

// A variant is "hand" unless autoscheduled; hand variants must run every case
// whenever the CPU has their ISA.
bool is_auto(const KernelImpl& k) { return k.variant.find("_auto_") != std::string::npos; }

bool needs_missing_feature(const std::string& why) { return why.rfind("needs CPU feature", 0) == 0; }

class CpuHalideTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuHalideTest, EveryVariantMatchesReference) {
  const OpDef& def = Registry::instance().op(GetParam());
  const auto kernels = Registry::instance().kernels(def.name, "cpu");
  ASSERT_FALSE(kernels.empty()) << "no CPU kernels registered for " << def.name;
  int runs = 0;
  for (const KernelImpl* k : kernels) {
    int ran = 0, skipped = 0;
    for (const OpCase& c : def.cases()) {
      SCOPED_TRACE(k->id() + " on '" + c.name + "'");
      OwnedCall oc = make_call(def, c, 7);
      OwnedCall ref = make_call(def, c, 7);
      validate_call(def, oc.call);
      const std::string why = k->ineligible_reason(device().profile(), oc.call);
      if (!why.empty()) {
        // Only a missing ISA may stop a hand variant; autoscheduled tilings
        // may also not fit small shapes (their bounds query says so).
        EXPECT_TRUE(needs_missing_feature(why) || is_auto(*k)) << why;
        ++skipped;
        continue;
      }
      // Poison the outputs: every element must be written.
      for (const std::string& o : outputs_of(def, oc.call)) {
        const TensorRef& t = oc.call.get(o);
        std::memset(t.data, 0xff, t.nbytes());  // NaN in f32
      }
      auto inv = k->bind(device(), oc.call, k->default_tuning());
      inv->execute();
      inv->read_outputs();
      def.reference(ref.call);
      for (const std::string& o : outputs_of(def, oc.call)) {
        const TensorRef& out = oc.call.get(o);
        const TensorRef& want = ref.call.get(o);
        const double e = nmse(out, want);
        EXPECT_LE(e, bound_for(c)) << o;
        EXPECT_LE(e, k->nmse_bound) << o << " (the variant's declared bound)";
        EXPECT_EQ(count_nonfinite_where_ref_finite(out, want), 0) << o;
      }
      ++ran;
    }
    ::testing::Test::RecordProperty(k->variant + "_ran", ran);
    if (skipped) std::printf("  %s: ran %d cases, %d not eligible here\n", k->id().c_str(), ran, skipped);
    runs += ran;
  }
  EXPECT_GT(runs, 0);
}

// The same call on 1 and on 2 worker threads gives bit-identical outputs
// (parallelism is over independent rows/blocks, never inside a reduction).
TEST_P(CpuHalideTest, ThreadCountDoesNotChangeResults) {
  const OpDef& def = Registry::instance().op(GetParam());
  CpuDevice& dev = device();
  const int saved = dev.threads();
  for (const KernelImpl* k : Registry::instance().kernels(def.name, "cpu")) {
    for (const OpCase& c : def.cases()) {
      if (!c.tags.count("bench") && !c.tags.count("smoke")) continue;
      SCOPED_TRACE(k->id() + " on '" + c.name + "'");
      OwnedCall one = make_call(def, c, 11), two = make_call(def, c, 11);
      if (!k->ineligible_reason(dev.profile(), one.call).empty()) continue;
      dev.set_threads(1);
      auto inv1 = k->bind(dev, one.call, k->default_tuning());
      inv1->execute();
      dev.set_threads(2);
      auto inv2 = k->bind(dev, two.call, k->default_tuning());
      inv2->execute();
      for (const std::string& o : outputs_of(def, one.call)) {
        const TensorRef& a = one.call.get(o);
        const TensorRef& b = two.call.get(o);
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes()), 0) << o << " differs between 1 and 2 threads";
      }
    }
  }
  dev.set_threads(saved);
}

// Selection takes the widest hand variant the (possibly restricted) CPU has.
TEST_P(CpuHalideTest, SelectionFollowsDisabledFeatures) {
  const OpDef& def = Registry::instance().op(GetParam());
  const OpCase c = def.cases().front();
  OwnedCall oc = make_call(def, c, 3);
  const DeviceProfile& p = device().profile();
  auto selected = [&] { return select_kernel(p, oc.call).kernel->variant; };
#if defined(__x86_64__)
  ::unsetenv("EK_DISABLE_FEATURES");
  if (p.has("avx512f") && p.has("avx512bw") && p.has("avx512dq") && p.has("avx512vl")) {
    EXPECT_EQ(selected(), "halide_avx512");
  }
  ::setenv("EK_DISABLE_FEATURES", "avx512f", 1);
  if (p.has("avx2") && p.has("fma") && p.has("f16c")) {
    EXPECT_EQ(selected(), "halide_avx2");
  }
  ::setenv("EK_DISABLE_FEATURES", "avx512f,avx2", 1);
  EXPECT_EQ(selected(), "halide_sse41");
  // Forcing a variant the restricted CPU lacks is an error naming the feature.
  try {
    select_kernel(p, oc.call, SelectOptions{"halide_avx2", nullptr});
    ADD_FAILURE() << "forced halide_avx2 with avx2 disabled was accepted";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("avx2"), std::string::npos) << e.what();
  }
  ::unsetenv("EK_DISABLE_FEATURES");
#elif defined(__aarch64__)
  EXPECT_EQ(selected(), "halide_neon");
#endif
}

// run_op end to end with the default (heuristic) choice.
TEST_P(CpuHalideTest, RunOpWithDefaultSelection) {
  const OpDef& def = Registry::instance().op(GetParam());
  for (const OpCase& c : def.cases()) {
    if (!c.tags.count("smoke")) continue;
    SCOPED_TRACE(c.name);
    OwnedCall oc = make_call(def, c, 5), ref = make_call(def, c, 5);
    run_op(device(), oc.call);
    def.reference(ref.call);
    for (const std::string& o : outputs_of(def, oc.call))
      EXPECT_LE(nmse(oc.call.get(o), ref.call.get(o)), bound_for(c)) << o;
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, CpuHalideTest, ::testing::ValuesIn(std::vector<std::string>(std::begin(kOps), std::end(kOps))));

// The wrapper refuses views whose element count does not match the tensor.
TEST(CpuHalide, MismatchedOutputIsRefusedAtBind) {
  const OpDef& def = Registry::instance().op("rms_norm");
  OwnedCall oc = make_call(def, def.cases().front(), 1);
  const TensorRef x = oc.call.get("x");
  const int64_t rows = x.numel() / x.shape.back();
  // y claims one column less than x has, bypassing validate_call.
  HostTensor small(DType::f32, {rows, x.shape.back() - 1});
  OpCall bad = oc.call;
  bad.tensors["y"] = small.ref();
  for (const KernelImpl* k : Registry::instance().kernels("rms_norm", "cpu"))
    EXPECT_THROW(k->bind(device(), bad, k->default_tuning()), InvalidArgument) << k->id();
}

// An autoscheduled pipeline run on a shape its tiling does not fit (which
// ineligible_reason reports) fails inside Halide's own bounds checks: the
// runtime's message comes back as a DeviceError, nothing is written out of
// bounds.
TEST(CpuHalide, HalideErrorsSurfaceAsDeviceErrors) {
  const OpDef& def = Registry::instance().op("rms_norm");
  OpCase tiny;
  for (const OpCase& c : def.cases())
    if (c.dims.at("dim") == 1) tiny = c;
  ASSERT_FALSE(tiny.name.empty());
  OwnedCall oc = make_call(def, tiny, 1);
  int tried = 0;
  for (const KernelImpl* k : Registry::instance().kernels("rms_norm", "cpu")) {
    const std::string why = k->ineligible_reason(device().profile(), oc.call);
    if (!is_auto(*k) || why.empty() || needs_missing_feature(why)) continue;
    EXPECT_NE(why.find("does not fit"), std::string::npos) << why;
    auto inv = k->bind(device(), oc.call, k->default_tuning());
    try {
      inv->execute();
      ADD_FAILURE() << k->id() << " ran a shape its bounds query rejected";
    } catch (const DeviceError& e) {
      EXPECT_NE(std::string(e.what()).find("Halide pipeline failed"), std::string::npos) << e.what();
      EXPECT_GT(std::string(e.what()).size(), 60u) << "no runtime message: " << e.what();
    }
    ++tried;
  }
  if (tried == 0) GTEST_SKIP() << "no autoscheduled variant rejects dim=1 on this CPU";
}

TEST(CpuHalide, VariantsAreRegisteredPerIsa) {
  for (const char* op : kOps) {
    std::set<std::string> names;
    for (const KernelImpl* k : Registry::instance().kernels(op, "cpu")) names.insert(k->variant);
#if defined(__x86_64__)
    for (const char* v : {"halide_sse41", "halide_avx2", "halide_avx512", "halide_auto_avx2", "halide_auto_avx512"})
      EXPECT_TRUE(names.count(v)) << op << " lacks " << v;
#elif defined(__aarch64__)
    EXPECT_TRUE(names.count("halide_neon")) << op;
#endif
  }
}

// ---------------------------------------------------------------- thread pool
// The pool behind every Halide parallel loop (backends/cpu/cpu_thread_pool.h),
// driven through halide_do_par_for exactly as generated code calls it.

struct ParForRecord {
  std::vector<std::atomic<int>> hits;
  int fail_at = -1;
  explicit ParForRecord(int n) : hits(static_cast<size_t>(n)) {}
};

int record_task(void* /*uc*/, int i, uint8_t* closure) {
  auto* rec = reinterpret_cast<ParForRecord*>(closure);
  rec->hits[static_cast<size_t>(i)].fetch_add(1);
  return i == rec->fail_at ? 7 : 0;
}

void expect_each_once(ParForRecord& rec, int min, int size) {
  for (int i = 0; i < static_cast<int>(rec.hits.size()); ++i)
    EXPECT_EQ(rec.hits[i].load(), (i >= min && i < min + size) ? 1 : 0) << "iteration " << i;
}

TEST(CpuThreadPool, EveryIterationRunsExactlyOnce) {
  device();
  for (int threads : {1, 2, 3, 5}) {
    cpu::set_pool_threads(threads);
    EXPECT_EQ(cpu::pool_threads(), threads);
    for (int size : {0, 1, 2, 7, 64, 1001}) {
      ParForRecord rec(size + 5);
      ASSERT_EQ(halide_do_par_for(nullptr, &record_task, 3, size, reinterpret_cast<uint8_t*>(&rec)), 0);
      expect_each_once(rec, 3, size);
    }
  }
  cpu::set_pool_threads(device().threads());
}

TEST(CpuThreadPool, TaskErrorIsReturnedAndOtherIterationsStillRun) {
  device();
  cpu::set_pool_threads(2);
  ParForRecord rec(100);
  rec.fail_at = 41;
  EXPECT_EQ(halide_do_par_for(nullptr, &record_task, 0, 100, reinterpret_cast<uint8_t*>(&rec)), 7);
  expect_each_once(rec, 0, 100);
  cpu::set_pool_threads(device().threads());
}

TEST(CpuThreadPool, ParallelForRunsEveryIndexAndRethrowsTheFirstError) {
  device();
  cpu::set_pool_threads(2);
  for (int count : {0, 1, 2, 9}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(count));
    cpu::parallel_for(count, [&](int i) { hits[static_cast<size_t>(i)].fetch_add(1); });
    for (int i = 0; i < count; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
  }
  // A throwing task does not stop the others, and the caller sees the error.
  std::vector<std::atomic<int>> hits(8);
  EXPECT_THROW(cpu::parallel_for(8,
                                 [&](int i) {
                                   hits[static_cast<size_t>(i)].fetch_add(1);
                                   if (i == 5) throw InvalidArgument("task 5 failed");
                                 }),
               InvalidArgument);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "index " << i;
  cpu::set_pool_threads(device().threads());
}

int nested_task(void* uc, int i, uint8_t* closure) {
  auto* recs = reinterpret_cast<std::vector<std::unique_ptr<ParForRecord>>*>(closure);
  return halide_do_par_for(uc, &record_task, 0, 50, reinterpret_cast<uint8_t*>((*recs)[i].get()));
}

TEST(CpuThreadPool, NestedAndConcurrentLoopsComplete) {
  device();
  cpu::set_pool_threads(2);
  std::vector<std::unique_ptr<ParForRecord>> inner;
  for (int i = 0; i < 9; ++i) inner.push_back(std::make_unique<ParForRecord>(50));
  ASSERT_EQ(halide_do_par_for(nullptr, &nested_task, 0, 9, reinterpret_cast<uint8_t*>(&inner)), 0);
  for (auto& r : inner) expect_each_once(*r, 0, 50);

  // Several user threads at once: the busy pool sends late callers to
  // Halide's own pool; every loop still runs every iteration once.
  std::vector<std::unique_ptr<ParForRecord>> recs;
  for (int i = 0; i < 4; ++i) recs.push_back(std::make_unique<ParForRecord>(2000));
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 25; ++rep)
        EXPECT_EQ(halide_do_par_for(nullptr, &record_task, rep * 80, 80, reinterpret_cast<uint8_t*>(recs[c].get())), 0);
    });
  for (auto& t : callers) t.join();
  for (auto& r : recs) expect_each_once(*r, 0, 2000);
  cpu::set_pool_threads(device().threads());
}

}  // namespace
}  // namespace ek
