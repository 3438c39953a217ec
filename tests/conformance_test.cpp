// Conformance: every registered kernel, on every available device of the
// backends named in EK_TEST_BACKENDS (default: all), over its op's shared case
// list, against the op's scalar double-precision reference with the kernel's
// NMSE bound (ops.md). One test per (device, kernel, case).
//
// A backend with no device shows as a skipped test with the reason; a kernel
// that is not eligible for a case on a device (a feature it needs is absent)
// counts as "not applicable", never as passed. At exit a summary line per
// backend says how many cases ran.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "runtime/runtime.h"

namespace ek {
namespace {

// Conformance runs every case unless it is benchmark-only (tagged "bench" and
// none of the test tags), which keeps full-size shapes out of CI.
bool in_conformance(const OpCase& c) {
  if (!c.tags.count("bench")) return true;
  return c.tags.count("realistic") || c.tags.count("edge") || c.tags.count("smoke");
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char ch : s) out += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return out;
}

struct Tally {
  int ran = 0, failed = 0, not_applicable = 0, skipped = 0;
};
std::map<std::string, Tally>& tallies() {
  static std::map<std::string, Tally> t;
  return t;
}

DeviceSet& devices() {
  static DeviceSet set = [] {
    const char* env = std::getenv("EK_TEST_BACKENDS");
    return open_devices(env ? env : "");
  }();
  return set;
}

// Reference outputs are computed once per case and shared by all kernels.
struct CaseData {
  OwnedCall inputs_and_ref;  // outputs hold the reference
};
const OwnedCall& reference_for(const OpDef& def, const OpCase& c) {
  static std::map<std::string, std::unique_ptr<OwnedCall>> cache;
  const std::string key = def.name + "|" + c.name;
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  auto oc = std::make_unique<OwnedCall>(make_call(def, c, 42));
  def.reference(oc->call);
  return *(cache[key] = std::move(oc));
}

// Compares one output: NMSE within bound, finite wherever the reference is,
// and identical IEEE class (inf sign / NaN) wherever it is not.
void expect_close(const std::string& name, const TensorRef& out, const TensorRef& ref, double bound) {
  ASSERT_EQ(out.numel(), ref.numel()) << name;
  const double e = nmse(out, ref);
  EXPECT_LE(e, bound) << "output " << name << ": nmse " << e << " exceeds " << bound;
  EXPECT_EQ(count_nonfinite_where_ref_finite(out, ref), 0) << "output " << name << " has non-finite values";
  int64_t mismatched_special = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = load_as_double(ref, i);
    if (std::isfinite(r)) continue;
    const double o = load_as_double(out, i);
    if (std::isnan(r) ? !std::isnan(o) : o != r) ++mismatched_special;
  }
  EXPECT_EQ(mismatched_special, 0) << "output " << name << ": inf/nan positions differ from the reference";
}

class KernelCaseTest : public testing::Test {
 public:
  KernelCaseTest(Device* dev, const KernelImpl* k, const OpDef* def, OpCase c)
      : dev_(dev), kernel_(k), def_(def), case_(std::move(c)) {}

  void TestBody() override {
    Tally& tally = tallies()[dev_->backend()];
    const OwnedCall& ref = reference_for(*def_, case_);
    OwnedCall run = make_call(*def_, case_, 42);
    const std::string why = kernel_->ineligible_reason ? kernel_->ineligible_reason(dev_->profile(), run.call) : "";
    if (!why.empty()) {
      ++tally.not_applicable;
      GTEST_SKIP() << "not applicable on " << dev_->profile().label() << ": " << why;
    }
    // Poison outputs so a kernel that skips elements cannot pass on zeros.
    for (auto& kv : run.storage)
      if (ref.call.tensors.count(kv.first) && def_->infer_outputs(run.call).count(kv.first)) {
        const TensorRef t = kv.second.ref();
        for (int64_t i = 0; i < t.numel(); ++i)
          if (t.dtype == DType::f32) t.as<float>()[i] = NAN;
      }
    ++tally.ran;
    try {
      validate_call(*def_, run.call);
      auto inv = kernel_->bind(*dev_, run.call, kernel_->default_tuning());
      inv->execute();
      inv->read_outputs();
    } catch (const std::exception& e) {
      ++tally.failed;
      FAIL() << kernel_->id() << " threw: " << e.what();
    }
    for (const auto& kv : def_->infer_outputs(run.call))
      expect_close(kv.first, run.call.get(kv.first), ref.call.get(kv.first), kernel_->nmse_bound);
    if (HasFailure()) ++tally.failed;
  }

 private:
  Device* dev_;
  const KernelImpl* kernel_;
  const OpDef* def_;
  OpCase case_;
};

class SkippedBackend : public testing::Test {
 public:
  explicit SkippedBackend(std::string why) : why_(std::move(why)) {}
  void TestBody() override { GTEST_SKIP() << why_; }

 private:
  std::string why_;
};

void register_tests() {
  DeviceSet& set = devices();
  for (const DeviceScan& scan : set.scans) {
    bool any = false;
    for (const auto& d : set.devices) any |= d->backend() == scan.backend;
    if (any) continue;
    std::string why = "backend " + scan.backend + " has no device";
    for (const auto& n : scan.notes) why += "; " + n;
    tallies()[scan.backend].skipped++;
    testing::RegisterTest(("conformance/" + scan.backend).c_str(), "no_device", nullptr, nullptr, __FILE__,
                          __LINE__, [why]() -> testing::Test* { return new SkippedBackend(why); });
  }
  for (const auto& d : set.devices) {
    Device* dev = d.get();
    const std::string dev_tag = sanitize(dev->backend() + "_" + dev->profile().device_name).substr(0, 40);
    for (const OpDef* def : Registry::instance().ops()) {
      const auto kernels = Registry::instance().kernels(def->name, dev->backend());
      for (const KernelImpl* k : kernels)
        for (const OpCase& c : def->cases()) {
          if (!in_conformance(c)) continue;
          const std::string suite = def->name + "/" + dev->backend() + "/" + k->variant;
          testing::RegisterTest(suite.c_str(), (sanitize(c.name) + "__" + dev_tag).c_str(), nullptr, nullptr,
                                __FILE__, __LINE__,
                                [=]() -> testing::Test* { return new KernelCaseTest(dev, k, def, c); });
        }
    }
  }
}

class SummaryPrinter : public testing::Environment {
 public:
  void TearDown() override {
    for (const auto& kv : tallies())
      std::printf("conformance[%s]: %d cases ran, %d failed, %d not applicable%s\n", kv.first.c_str(),
                  kv.second.ran, kv.second.failed, kv.second.not_applicable,
                  kv.second.skipped ? ", backend SKIPPED (no device)" : "");
  }
};

}  // namespace
}  // namespace ek

// Exit code 77 tells CTest the run was skipped (SKIP_RETURN_CODE): a backend
// with no device must never show as passed. EK_REQUIRE_BACKENDS (set by CI)
// turns a missing device of a listed backend into a failure instead.
int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  ek::register_tests();
  testing::AddGlobalTestEnvironment(new ek::SummaryPrinter);
  const int rc = RUN_ALL_TESTS();
  if (rc != 0) return rc;
  const char* required = std::getenv("EK_REQUIRE_BACKENDS");
  bool ran_any = false;
  for (const auto& kv : ek::tallies()) {
    if (kv.second.skipped == 0) {
      ran_any = true;
      continue;
    }
    if (required && std::string(",") .append(required).append(",").find("," + kv.first + ",") != std::string::npos) {
      std::fprintf(stderr, "conformance: backend %s is required (EK_REQUIRE_BACKENDS) but has no device\n",
                   kv.first.c_str());
      return 1;
    }
  }
  return ran_any ? 0 : 77;
}
